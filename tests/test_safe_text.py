"""safe_text: hostile text (an agent's description, train.py's output) shown where it cannot act. The pure
functions, then the output spots that use them, rendered as a terminal, a markdown viewer or a browser would."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from rich.console import Console
from rich.text import Text

from autoresearch.config import MetricConfig
from autoresearch.report import build_table, report_markdown, running_view, write_report
from autoresearch.report.compare import contenders, write_compare
from autoresearch.report.experiment import experiment_data, experiment_lines
from autoresearch.report.runs import runs_table
from autoresearch.report.summary import summarize
from autoresearch.safe_text import for_html, for_markdown, for_markup, for_terminal, markdown_code
from autoresearch.store import Status, Store

RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
TAG = "t"

HOSTILE = [
    "\x1b]0;pwned\x07", "\x1b[2J\x1b[H", "\x9b31mred", "progress 10%\roverwritten", "bell\x07 bs\x08 nul\x00 del\x7f",
    "\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\", "right-to-left \u202egnp.exe", "\x85 next line",
    "[bold red]RED[/] [link=http://evil.example]x[/link] [/]", "trailing backslash \\", "\\[bold]x[/bold]",
    "<script>alert(1)</script>", '<img src=x onerror="alert(2)">', '" onmouseover="alert(3)', "&lt;b&gt; &amp;",
    "![pixel](http://evil.example/p.png)", "[click](javascript:alert(4))", "[ref]: http://evil.example",
    "<http://evil.example/auto>", "`code` ``two`` \\`", "a | b \\| c || d", "*em* **strong** _u_ ~~del~~",
    "line one\nline two\r\nline three", "tab\there", "[^note] [x][ref] ![y][ref]", "</details></pre><b>",
]


def _render(renderable, width: int = 200) -> str:
    console = Console(file=io.StringIO(), width=width, force_terminal=False, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


# ---------------------------------------------------------------------- the terminal


@pytest.mark.parametrize("text", HOSTILE)
def test_for_terminal_leaves_no_control_character(text: str) -> None:
    safe = for_terminal(text)
    assert not RAW_CONTROL.search(safe) and "\u202e" not in safe


def test_for_terminal_makes_the_escapes_visible() -> None:
    assert for_terminal("\x1b]0;pwned\x07") == "\\x1b]0;pwned\\x07"
    assert for_terminal("\x1b[2J") == "\\x1b[2J"
    assert for_terminal("\x9b31m") == "\\x9b31m"
    assert for_terminal("a\rb") == "a\\x0db"
    assert for_terminal("a\r\nb\nc\td") == "a\nb\nc\td"  # line ends and tabs stay
    assert for_terminal("\x7f \x00 \u202e \u2066") == "\\x7f \\x00 \\u202e \\u2066"
    assert for_terminal("plain ü — ✓ [x]") == "plain ü — ✓ [x]"  # everything else is untouched
    assert for_terminal(None) == "" and for_terminal(3.5) == "3.5"
    every = "".join(map(chr, range(0xA0)))
    assert not RAW_CONTROL.search(for_terminal(every).replace("\t", "").replace("\n", ""))


@pytest.mark.parametrize("text", HOSTILE)
def test_for_markup_shows_as_written_inside_markup(text: str) -> None:
    shown = _render(Text.from_markup(f"[bold]before[/]{for_markup(text)}[dim]after[/]"))
    assert not RAW_CONTROL.search(shown)
    if "\n" not in text and "\t" not in text:
        assert shown == f"before{for_terminal(text)}after\n"


def test_rich_markup_in_a_description_is_not_interpreted() -> None:
    console = Console(file=io.StringIO(), width=200, force_terminal=True, color_system="truecolor")
    console.print(f"[bold]experiment 1[/]: {for_markup('[link=http://evil.example]x[/link] [red]r[/]')}", highlight=False)
    out = console.file.getvalue()
    assert "[link=http://evil.example]x[/link] [red]r[/]" in out
    assert "\x1b]8;" not in out  # no hyperlink was made


# ---------------------------------------------------------------------- markdown


@pytest.mark.parametrize("text", HOSTILE)
def test_for_markdown_renders_as_the_text_itself(text: str) -> None:
    page = MarkdownIt("commonmark").enable("table").render(f"x {for_markdown(text)}")  # raw HTML allowed
    parsed = _parse(page)
    assert [tag for tag, _ in parsed.tags] == ["p"], page  # no element from the text: no link, image, code, html
    assert "".join(parsed.text).strip() == "x " + " ".join(for_terminal(text).split())
    assert "<" not in for_markdown(text) and "\n" not in for_markdown(text)
    assert not RAW_CONTROL.search(for_markdown(text))


@pytest.mark.parametrize("text", HOSTILE)
def test_for_markdown_keeps_a_table_cell_one_cell(text: str) -> None:
    table = f"| a | b | c |\n|---|---|---|\n| 1 | {for_markdown(text)} | 3 |\n"
    tokens = MarkdownIt("commonmark").enable("table").parse(table)
    assert sum(1 for t in tokens if t.type == "td_open") == 3, table
    assert [t for t in tokens if t.type == "inline"][-1].content == "3"


def test_for_markdown_escapes() -> None:
    assert for_markdown("<script>") == "&lt;script&gt;"
    assert for_markdown("![x](http://e/p.png)") == "\\!\\[x\\](http://e/p.png)"
    assert for_markdown("a | b\nc") == "a \\| b c"
    assert for_markdown("\\|") == "\\\\\\|"  # an escaped pipe of the attacker's own is escaped again
    assert for_markdown("\x1b[2J") == "\\\\x1b\\[2J"


@pytest.mark.parametrize("text", ["x", "a`b", "``", "` x `", "a ``` b `", "<b>|</b>"])
def test_markdown_code_cannot_be_closed_from_inside(text: str) -> None:
    page = MarkdownIt("commonmark").render(f"see {markdown_code(text)} here")
    parsed = _parse(page)
    assert [tag for tag, _ in parsed.tags] == ["p", "code"], page
    assert "".join(parsed.text).strip() == f"see {text} here"


def test_for_html_escapes_text_and_attributes() -> None:
    assert for_html('<img src=x onerror="alert(1)">') == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"
    assert for_html("it's") == "it&#x27;s"
    assert for_html("\x1b[2J") == "\\x1b[2J"
    page = f'<p title="{for_html(HOSTILE[13])}">{for_html(HOSTILE[12])}</p>'
    assert _parse(page).tags == [("p", {"title": HOSTILE[13]})]


# ---------------------------------------------------------------------- the output spots


@pytest.fixture
def hostile(tmp_path: Path):
    task = tmp_path / "task"
    task.mkdir()
    with Store.open(task) as store:
        def add(status, description, metric=None, error=None, diff=""):
            store.record(status=status, tag=TAG, parent_commit="a" * 40, commit="b" * 40, diff=diff,
                         description=description, agent="agent \x1b[31m[bold]x[/] <b>|", seed=0, metric=metric,
                         training_seconds=1.0, total_seconds=2.0, error=error)
        add(Status.KEEP, "baseline", 1.0)
        for i, text in enumerate(HOSTILE):
            add(Status.KEEP if i % 3 == 0 else Status.CRASH, f"{text} #{i}", 1.0 - 0.01 * (i + 1) if i % 3 == 0 else None,
                error=None if i % 3 == 0 else f"RuntimeError: {text}\n{text}",
                diff=f"--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-x\n+{text}\n")
        store.record(status=Status.KEEP, tag=TAG, parent_commit="a" * 40, commit="b" * 40, diff="",
                     description="$\\frac{$ broken mathtext", agent="$\\frac{$ | <b>", seed=0, metric=0.5)
        yield store


def test_status_table_and_running_view_show_no_control_or_markup(hostile: Store) -> None:
    history = hostile.experiments(TAG)
    shown = _render(build_table(TAG, history), width=220)
    assert not RAW_CONTROL.search(shown) and "[bold red]RED[/]" in shown
    shown = _render(running_view("running #3: \x1b]0;x\x07 [bold]b[/]", None, 10.0))
    assert not RAW_CONTROL.search(shown) and "[bold]b[/]" in shown
    summary = summarize(TAG, history)
    shown = _render(runs_table([summary], {TAG: True}, doing={TAG: "#3 \x1b[2J [red]r[/]"}), width=220)
    assert not RAW_CONTROL.search(shown) and "[red]r[/]" in shown


def test_the_report_files_carry_nothing_live(hostile: Store, tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_report(hostile, TAG, out)  # a description of broken mathtext does not stop the plot
    md = (out / "report.md").read_text()
    assert not RAW_CONTROL.search(md) and "<script" not in md and "<img" not in md
    rendered = _parse(MarkdownIt("commonmark").enable("table").render(md))
    assert {tag for tag, _ in rendered.tags} <= {"h1", "h2", "p", "ul", "li", "strong", "code", "table", "thead",
                                                 "tbody", "tr", "th", "td", "img"}
    assert [attrs["src"] for tag, attrs in rendered.tags if tag == "img"] == ["progress.png"]
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    cells, widths = 0, set()
    for token in tokens:
        if token.type == "tr_open":
            cells = 0
        elif token.type in ("th_open", "td_open"):
            cells += 1
        elif token.type == "tr_close":
            widths.add(cells)
        elif token.type == "table_close":
            assert len(widths) == 1, widths
            widths = set()
    page = (out / "report.html").read_text()
    parsed = _parse(page)
    assert not RAW_CONTROL.search(page)
    assert not {"script", "a", "b"} & {tag for tag, _ in parsed.tags}
    assert not [attrs for _, attrs in parsed.tags if any(name.startswith("on") for name in attrs)]
    assert [a["src"][:22] for tag, a in parsed.tags if tag == "img"] == ["data:image/png;base64,"]
    assert sum(1 for tag, _ in parsed.tags if tag == "details") == len(hostile.experiments(TAG))


def test_experiment_lines_shown_safely(hostile: Store) -> None:
    history = hostile.experiments(TAG)
    for e in history:
        lines = experiment_lines(experiment_data(e, history))
        shown = _render(Text("\n".join(for_terminal(line) for line in lines)))
        assert not RAW_CONTROL.search(shown)


def test_a_tag_with_backticks_stays_in_its_code_span() -> None:
    assert report_markdown("t", []).startswith("# autoresearch report: `t`\n")
    md = report_markdown("a`b <i>", [])
    assert md.startswith("# autoresearch report: ``a`b <i>``\n") and "<i>" not in _parse(
        MarkdownIt("commonmark").render(md)).tags


def test_compare_md_and_plot_of_hostile_agents(hostile: Store, tmp_path: Path) -> None:
    found = contenders(hostile, [TAG], MetricConfig())
    assert any("$" in agent for agent in found[0].agents)
    png, md_path = write_compare(found, tmp_path, MetricConfig())  # an agent named in mathtext does not stop it
    md = md_path.read_text()
    assert not RAW_CONTROL.search(md) and "<b>" not in md
    tokens = MarkdownIt("commonmark").enable("table").parse(md)
    header = sum(1 for t in tokens if t.type == "th_open")
    assert header and sum(1 for t in tokens if t.type == "td_open") == header  # one run, one row, whole
