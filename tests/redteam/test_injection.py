"""Hostile text through the real command line: proposal descriptions from the agent and train.py's output
(its progress events, its log, the error made of its log's tail) carry terminal escapes, rich markup,
HTML and markdown. None of it may act where it is shown: no raw control character reaches the terminal
(`run`'s own lines, `status`, `show`, `report`), markup shows as written, report.html has no live tag or
handler from it, and report.md renders no HTML, image or link from it and keeps its tables whole.

One loop (the baseline and two crashing proposals, at a 2 s budget) feeds every check.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import TINY_TOML, cli
from markdown_it import MarkdownIt

pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out

# What must never reach a terminal: C0 controls but \t and \n (ESC and \r among them), DEL and C1 (as a
# character, or as a lone byte: see `_run`).
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\udc80-\udc9f]")

ESCAPES = "\x1b]0;pwned\x07 \x1b[2J \x9b31m \rOVER"
MARKUP = "[bold red]RED[/] [link=http://evil.example/t]tl[/link]"
HTML_BITS = '<script>alert(1)</script> <img src=x onerror=alert(2)> " onmouseover="alert(3)'
MD_BITS = "![pixel](http://evil.example/p.png) [click](javascript:alert(4)) <http://evil.example/a> `x | y` | z"

DESCRIPTIONS = [
    f"{MARKUP} one {ESCAPES} {HTML_BITS} {MD_BITS}\nsecond | line",
    f"![p2](http://evil.example/2.png) {MARKUP} two </details></pre><script>alert(5)</script> {ESCAPES}",
]


def hostile_train(n: int) -> str:
    """A train.py that reports a start with hostile text fields, prints escapes and markup, and crashes with
    an error message full of them (so the log's tail becomes the experiment's error)."""
    start = {"event": "start", "params": 1, "device": f"\x1b]0;dev\x07{MARKUP}", "profile": "[bold]prof[/]\r"}
    return (f"# raw escapes in the code, for the diff: \x1b[2J \x1b]0;diff{n}\x07 \x9b1m \r\n"
            "import json\n"
            f"print('@autoresearch ' + json.dumps({start!r}), flush=True)\n"
            f"print({MD_BITS + ' ' + ESCAPES + ' ' + MARKUP + ' ' + HTML_BITS!r}, flush=True)\n"
            f"raise RuntimeError({f'crash{n} ' + ESCAPES + ' ' + MARKUP + ' ' + HTML_BITS + ' ' + MD_BITS!r})\n")


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real command line, its output as written: no newline translation (which would turn a \r into a
    \n), and a byte that is not UTF-8 kept apart (as a lone surrogate) instead of replaced."""
    done = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, timeout=900,
                          env={**os.environ, "COLUMNS": "200"})
    done.stdout, done.stderr = (done.stdout.decode("utf-8", "surrogateescape"),
                                done.stderr.decode("utf-8", "surrogateescape"))
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("injection")
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")}
    env["AUTORESEARCH_CACHE"] = str(root / "cache")  # the module-scoped task has its own cache
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        task = root / "task"
        cli("init", str(task), cwd=root)
        toml = TINY_TOML.replace("budget_seconds = 5.0", "budget_seconds = 2.0").replace(
            "startup_allowance_seconds = 120.0", "startup_allowance_seconds = 60.0")
        (task / "autoresearch.toml").write_text(toml)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qam", "tiny settings"],
                       cwd=task, check=True)
        cli("prepare", cwd=task)
        proposals = [{"description": d, "files": {"train.py": hostile_train(n)}} for n, d in enumerate(DESCRIPTIONS, 1)]
        (root / "hostile.json").write_text(json.dumps(proposals))
        outputs = {"run": _run("run", "--agent", f"replay:{root / 'hostile.json'}", "--tag", "rt", cwd=task)}
        for command in (("status",), ("show", "2", "--log", "20"), ("show", "1", "--log", "20"), ("report",)):
            outputs[" ".join(command)] = _run(*command, cwd=task)
        yield task, outputs
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_the_attack_reached_the_store(hostile_run):
    """The checks below are not empty: the hostile texts were recorded as they were given."""
    from autoresearch.store import Status, Store

    task, _ = hostile_run
    with Store.open(task) as store:
        history = store.experiments("rt")
    assert [e.status for e in history] == [Status.KEEP, Status.CRASH, Status.CRASH]
    assert "\x1b]0;pwned\x07" in history[1].description and "<script>" in history[2].description
    assert "\x1b[2J" in history[1].error and "[bold red]RED[/]" in history[2].error
    assert "\x1b]0;diff2\x07" in history[2].diff


def test_no_raw_control_character_reaches_the_terminal(hostile_run):
    _, outputs = hostile_run
    for name, done in outputs.items():
        for stream, text in (("stdout", done.stdout), ("stderr", done.stderr)):
            found = RAW_CONTROL.findall(text)
            assert not found, (name, stream, found[:5], text[-3000:])


def test_rich_markup_from_the_attacker_shows_as_written(hostile_run):
    _, outputs = hostile_run
    run = outputs["run"].stdout
    assert "[bold red]RED[/]" in run  # the experiment lines, with their descriptions
    assert "[bold red]RED[/] [link=http://evil.example/t]" in run  # the start event's device
    assert "[bold]prof[/]\\x0d" in run  # its profile, the \r at its end made visible
    assert "[bold red]RED[/]" in outputs["status"].stdout
    show = outputs["show 2 --log 20"].stdout
    assert "[bold red]RED[/] [link=http://evil.example/t]tl[/link]" in show and "crash2" in show
    assert "\\x1b]0;pwned\\x07" in show and "OVER" in show  # the escapes made visible, not dropped unseen


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def _elements(page: str) -> list[tuple[str, dict]]:
    parser = _Elements()
    parser.feed(page)
    parser.close()
    return parser.tags


def _assert_no_live_html(page: str, what: str) -> None:
    for tag, attrs in _elements(page):
        assert tag not in ("script", "a", "iframe", "object", "embed", "form"), (what, tag, attrs)
        assert not any(name.startswith("on") for name in attrs), (what, tag, attrs)
        if tag == "img":  # the report's own plot only
            assert attrs.get("src", "").startswith(("data:image/png;base64,", "progress.png")), (what, attrs)
            assert "evil" not in attrs.get("src", "") and "alt" in attrs and "pixel" not in attrs["alt"]


def test_report_html_has_no_live_tag_from_the_attacker(hostile_run):
    task, _ = hostile_run
    page = (task / "report.html").read_text()
    _assert_no_live_html(page, "report.html")
    assert "alert(1)" in page and "&lt;script&gt;" in page  # shown as text
    assert sum(1 for tag, _ in _elements(page) if tag == "details") == 3  # the injected </details> closed nothing
    assert not RAW_CONTROL.search(page)


def test_report_md_renders_no_html_image_or_link_from_the_attacker(hostile_run):
    task, _ = hostile_run
    md = (task / "report.md").read_text()
    assert "<script" not in md and "<img" not in md and "<http" not in md
    assert not re.search(r"(?<!\\)!\[pixel\]|(?<!\\)\[click\]\(|(?<!\\)!\[p2\]", md)
    assert not RAW_CONTROL.search(md)
    # rendered as a markdown viewer would, raw HTML allowed: nothing live, no link, only the report's image
    md_parser = MarkdownIt("commonmark").enable("table")
    _assert_no_live_html(md_parser.render(md), "report.md")
    # every table row keeps the header's number of cells
    tokens = md_parser.parse(md)
    rows, row = [], None
    for token in tokens:
        if token.type == "tr_open":
            row = 0
        elif token.type in ("th_open", "td_open"):
            row += 1
        elif token.type == "tr_close":
            rows.append(row)
        elif token.type == "table_close":
            assert len(set(rows)) == 1, rows
            rows = []
    crashes = md.split("## Crashes and timeouts")[1].split("\n## ")[0]
    assert sum(line.startswith("|") for line in crashes.splitlines()) == 4  # the header, its rule, two crashes
    assert "alert(1)" in crashes and "evil.example" in crashes


def test_results_tsv_keeps_its_columns(hostile_run):
    task, _ = hostile_run
    lines = (task / "results.tsv").read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 5  # the header and three experiments
    assert all(line.count("\t") == 4 for line in lines[:-1]), lines
