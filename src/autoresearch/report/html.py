"""report.html: the report as one file for a browser. report.md's summary and tables, the progress plot
embedded, and every experiment below them: a line each that opens, on a click, to what `autoresearch show`
prints (the verdict, the runs, the cost, why it failed) and its diff. No script and nothing fetched: it can
be mailed, or opened from a copy of the task folder.

An experiment's line, its facts, its highlighted diff and the styles are the dashboard's own
(`autoresearch.serve.pages`, serve/static/dashboard.css), so the file and `autoresearch serve` never drift.

Pure: the markdown, the experiments and the plot's bytes in, the page out.
"""

from __future__ import annotations

import base64
import html
import importlib.resources
from collections.abc import Sequence

from markdown_it import MarkdownIt

from autoresearch.config import MetricConfig
from autoresearch.report.experiment import experiments_data
from autoresearch.serve.pages import (
    DIFF_CSS,
    MAX_DIFF_CHARS,
    diff_html,
    experiment_facts,
    experiment_summary_line,
)
from autoresearch.store import Experiment

__all__ = ["MAX_DIFF_CHARS", "report_html"]

_PAGE = "main { max-width: 1100px; }"  # the report is one column of text, tables and the chart


def _styles() -> str:
    shared = importlib.resources.files("autoresearch.serve").joinpath("static").joinpath("dashboard.css")
    return shared.read_text(encoding="utf-8") + DIFF_CSS + _PAGE


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
            f"<title>{title}</title><style>{_styles()}</style></head><body><main>\n{body}\n"
            f"<h2>Every experiment</h2>\n<p>The latest first; click one to open it.</p>\n{''.join(rows)}"
            "</main></body></html>\n")


def _experiment(data: dict, metric: MetricConfig) -> str:
    diff = f'<div class="diff-box">{diff_html(data["diff"])}</div>' if data["diff"] else ""
    return (f'<details class="experiment"><summary>{experiment_summary_line(data)}</summary>'
            f"{experiment_facts(data, metric)}{diff}</details>\n")
