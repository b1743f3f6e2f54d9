"""Reporting on a run: the status table, live progress of the running experiment, and report files.

- `status_table(store, tag)`, `status_data(store, tag)` (for `--json`), `running_line(store, tag)`
  (`report.status`; the figures they show are `report.summary`'s);
- `read_progress(log_path)`, `render_progress(progress, budget_seconds)`, `progress_text(...)`;
- `write_report(store, tag, out_dir)`: results.tsv, progress.png, report.md.

Text from candidate code or an agent (descriptions, logs, errors, agents' names) goes through
`autoresearch.safe_text` wherever it is shown: the terminal, report.md, report.html.

The figures and labels follow the task's metric: every function that computes or shows them takes
`metric=` (an `autoresearch.config.MetricConfig`: its name and whether lower or higher is better; default
val_bpb, lower is better). The best is the best under that direction.

matplotlib is imported only by `write_report` (via `autoresearch.report.plot`), so `status` stays light.
"""

from __future__ import annotations

from pathlib import Path

from autoresearch.config import MetricConfig
from autoresearch.decide.measured import measured
from autoresearch.report.markdown import report_markdown
from autoresearch.report.noise import noise_data, speed_data
from autoresearch.report.progress import (
    parse_events,
    progress_from_text,
    progress_text,
    read_progress,
    render_progress,
    running_view,
)
from autoresearch.report.status import build_table, running_line, status_data, status_table
from autoresearch.report.summary import caption, deltas, running_best, steering, summarize
from autoresearch.store import Store
from autoresearch.store.export import export_results_tsv

__all__ = [
    "build_table", "caption", "deltas", "parse_events", "progress_from_text", "progress_text", "read_progress",
    "render_progress", "report_markdown", "running_best", "running_line", "running_view", "status_data",
    "status_table", "summarize", "write_report",
]


def write_report(store: Store, tag: str, out_dir: Path, *, metric: MetricConfig = MetricConfig()) -> list[Path]:
    """Write `results.tsv` (`store.export.export_results_tsv`, its metric column named after `metric`),
    `progress.png`, `report.md` and `report.html` (the same, with every experiment's change, for a browser)
    for `tag` into `out_dir` (created if missing) and return their paths in that order. Works for a tag with no experiments (the files say so). Overwrites earlier reports in
    `out_dir`."""
    from autoresearch.report.html import report_html  # shares the dashboard's page code (serve.pages)
    from autoresearch.report.plot import plot_progress  # matplotlib: only when a report is written

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    experiments = measured(store, tag)
    tsv = out_dir / "results.tsv"
    export_results_tsv(experiments, tsv, metric_name=metric.name)
    noise = noise_data(store, tag)
    png = plot_progress(tag, experiments, out_dir / "progress.png", metric=metric, noise=noise["sigma"])
    texts = store.programs(e.metrics["program"] for e in experiments if isinstance(e.metrics.get("program"), str))
    md = out_dir / "report.md"
    markdown = report_markdown(tag, experiments, image=png.name, metric=metric, noise=noise,
                               speed=speed_data(store, tag), steered=steering(experiments, texts))
    md.write_text(markdown, encoding="utf-8")
    page = out_dir / "report.html"
    page.write_text(report_html(markdown, experiments, metric=metric, image=png.name, png=png.read_bytes()),
                    encoding="utf-8")
    return [tsv, png, md, page]
