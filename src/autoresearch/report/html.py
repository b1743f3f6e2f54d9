"""report.html: the report as one file for a browser. report.md's summary and tables, the progress plot
embedded, and every experiment below them: a line each that opens, on a click, to what `autoresearch show`
prints (the verdict, the runs, the cost, why it failed) and its diff. No script and nothing fetched: it can
be mailed, or opened from a copy of the task folder.

Pure: the markdown, the experiments and the plot's bytes in, the page out.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from markdown_it import MarkdownIt

from autoresearch.config import MetricConfig
from autoresearch.report.experiment import experiment_lines, experiments_data
from autoresearch.safe_text import for_html
from autoresearch.store import Experiment

MAX_DIFF_CHARS = 30_000  # a longer diff is cut in the page (the store keeps it whole: `autoresearch show`)

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
img { max-width: 100%; }
details { border-top: 1px solid #e3e3e3; padding: 2px 0; }
summary { cursor: pointer; font-family: ui-monospace, monospace; font-size: 13px; white-space: nowrap;
          overflow: hidden; text-overflow: ellipsis; }
pre { background: #f7f7f7; padding: 8px; overflow-x: auto; font-size: 12px; }
.keep { color: #1a7f37; font-weight: bold; } .discard { color: #777; } .rejected { color: #9a6700; }
.crash, .timeout, .tampered { color: #cf222e; font-weight: bold; } .running, .pruned { color: #0969da; }
.add { color: #1a7f37; } .del { color: #cf222e; } .hunk { color: #8250df; }
"""


def report_html(markdown: str, experiments: Sequence[Experiment], *, metric: MetricConfig = MetricConfig(),
                image: str | None = None, png: bytes | None = None) -> str:
    """The page: `markdown` (report.md's text) rendered, its image `image` replaced by `png` embedded, then
    every experiment of `experiments` (one run's, as `Store.measured` gives them), the latest first."""
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    if image and png is not None:
        body = body.replace(f'src="{html.escape(image)}"',
                            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"')
    title = html.escape(markdown.splitlines()[0].lstrip("# ") if markdown else "autoresearch report")
    rows = [_experiment(data, metric) for data in reversed(experiments_data(experiments, metric=metric))]
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{_STYLE}</style></head><body>\n{body}\n"
            f"<h2>Every experiment</h2>\n<p>The latest first; click one to open it.</p>\n{''.join(rows)}"
            "</body></html>\n")


def _experiment(data: dict, metric: MetricConfig) -> str:
    value = "" if data["metric"] is None else f" {data['metric']:.6f}"
    delta = "" if data["delta"] is None else f" ({data['delta']:+.6f})"
    first = (data["description"] or "(no description)").splitlines()[0]
    summary = (f"#{data['seq']} <span class=\"{data['status']}\">{data['status']}</span>{value}{delta} · "
               f"{for_html(data['agent'])} · {for_html(first)}")
    text = for_html("\n".join(experiment_lines(data, metric=metric)))
    return (f"<details><summary>{summary}</summary><pre>{text}</pre>"
            + (f"<pre>{_diff(data['diff'])}</pre>" if data["diff"] else "") + "</details>\n")


def _diff(diff: str) -> str:
    """A diff escaped for the page, its added, removed and hunk lines marked for colour; cut past
    `MAX_DIFF_CHARS`."""
    cut = len(diff) > MAX_DIFF_CHARS
    lines = []
    for line in diff[:MAX_DIFF_CHARS].splitlines():
        kind = ("hunk" if line.startswith("@@") else "add" if line.startswith("+") and not line.startswith("+++")
                else "del" if line.startswith("-") and not line.startswith("---") else None)
        escaped = for_html(line)
        lines.append(f'<span class="{kind}">{escaped}</span>' if kind else escaped)
    if cut:
        lines.append(f"... (cut at {MAX_DIFF_CHARS:,} characters: autoresearch show prints it whole)")
    return "\n".join(lines)
