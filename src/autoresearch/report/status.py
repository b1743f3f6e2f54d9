"""The status of one run (`autoresearch status`): the colour-coded table of its experiments, the same as
JSON (`--json`), and the line on the experiment running now.

`status_data`, `status_table` and `running_line` read the store; `build_table`, `running_data` and
`describe_running` take experiments. The figures are `report.summary`'s, under its definitions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from rich import box
from rich.table import Table
from rich.text import Text

from autoresearch.config import MetricConfig
from autoresearch.decide import complexity
from autoresearch.decide.measured import measured
from autoresearch.report.noise import noise_data, speed_data
from autoresearch.report.summary import (
    caption,
    experiment_deltas,
    experiment_row,
    is_better_delta,
    summarize,
    summary_data,
)
from autoresearch.report.text import error_line, format_duration, gigabytes, or_dash, truncate
from autoresearch.safe_text import for_terminal
from autoresearch.store import Experiment, Run, Status, Store

# Colour (rich style) of each status in the table.
STATUS_STYLES: dict[Status, str] = {
    Status.RUNNING: "bold cyan",
    Status.KEEP: "bold green",
    Status.DISCARD: "bright_black",
    Status.CRASH: "bold red",
    Status.TIMEOUT: "dark_orange",
    Status.REJECTED: "yellow",
    Status.TAMPERED: "bold magenta",
    Status.PRUNED: "blue",
}
DESCRIPTION_WIDTH = 60  # characters of a description shown in the table
# The statuses whose row shows the experiment's error line after its description.
_FAILED = (Status.CRASH, Status.TIMEOUT, Status.REJECTED, Status.TAMPERED, Status.PRUNED)


def status_data(store: Store, tag: str, now: float | None = None, *,
                metric: MetricConfig = MetricConfig()) -> dict:
    """Everything `autoresearch status --json` prints: `summary_data` plus `experiments` (one dict per
    experiment, `experiment_row`) and `running` (`running_data`, or None). JSON-serialisable."""
    experiments = measured(store, tag)
    summary = summarize(tag, experiments, now, metric=metric)
    rows = [experiment_row(e, d)
            for e, d in zip(experiments, experiment_deltas(experiments, metric=metric), strict=True)]
    return {**summary_data(summary), "noise": noise_data(store, tag),
            "machine_speed": speed_data(store, tag), "cluster": cluster_of(store, experiments),
            "experiments": rows, "running": running_data(summary.running, now)}


def cluster_data(experiments: list[Experiment], remeasured: list[Run] = ()) -> dict | None:
    """For the runs made on a cluster (`--executor ray`): the nodes that ran them (how many each) and the
    GPU-hours they took; None if none was. The experiments' own runs (failed ones too) come from their
    metrics, and `remeasured`: the runs the bests got later (`cluster_of`)."""
    runs: dict[str, int] = {}
    gpu_seconds = 0.0
    for e in experiments:
        for node in e.metrics.get("run_nodes") or ():
            if node:
                runs[node] = runs.get(node, 0) + 1
        gpu_seconds += e.metrics.get("gpu_seconds") or 0.0
    for run in remeasured:
        if run.node:
            runs[run.node] = runs.get(run.node, 0) + 1
            gpu_seconds += run.gpu_seconds or 0.0
    if not runs:
        return None
    return {"nodes": dict(sorted(runs.items())), "gpu_hours": gpu_seconds / 3600}


def cluster_of(store: Store, experiments: list[Experiment]) -> dict | None:
    """`cluster_data` of `experiments`, with the re-runs their bests got from the store."""
    return cluster_data(experiments, [r for e in experiments for r in store.runs(e) if r.of_best])


def cluster_line(cluster: dict) -> str:
    """`cluster: 2 nodes (10.0.0.5 (1a2b3c4d) 12 runs, ...), 1.25 GPU-hours`."""
    nodes = ", ".join(f"{node} {count} run{'s' * (count != 1)}" for node, count in cluster["nodes"].items())
    return f"cluster: {len(cluster['nodes'])} node{'s' * (len(cluster['nodes']) != 1)} ({nodes}), " \
           f"{cluster['gpu_hours']:.2f} GPU-hours"


def running_data(experiment: Experiment | None, now: float | None = None) -> dict | None:
    """seq, description, started_at, seconds since its start and log path of a RUNNING experiment."""
    if experiment is None:
        return None
    now = time.time() if now is None else now
    return {"seq": experiment.seq, "description": experiment.description, "started_at": experiment.started_at,
            "running_seconds": max(0.0, now - experiment.started_at), "log_path": experiment.log_path}


def _one_line_text(text: str) -> Text:
    return Text(text, no_wrap=True, overflow="ellipsis")


def build_table(tag: str, experiments: Sequence[Experiment], *, now: float | None = None,
                last: int | None = None, metric: MetricConfig = MetricConfig()) -> Table:
    """The status table of `experiments` (one tag's, in seq order): one row per experiment (only the
    `last` ones if given; the caption always counts them all), status colour-coded, the metric's column
    named after it, deltas green when better under its direction and red when worse, caption = `caption`.

    Fits an 80-column terminal: the figures never wrap or shrink; the description (with a failure's
    error line) is the column that gives way, cut with an ellipsis. Under the caption, a line on the best's
    code (`code: 120 lines, 8 functions, complexity 14 (+20 lines, ... since the baseline)`, where it was
    measured: decide/complexity.py), so that code growing one gain at a time shows."""
    summary = summarize(tag, experiments, now, metric=metric)
    code = complexity.summary_text(summary.best.metrics, summary.baseline.metrics if summary.baseline else None) \
        if summary.best is not None else None
    # A light frame (a rule under the header, no vertical lines, no outer edge, one space between columns)
    # leaves the description room on an 80-column terminal.
    table = Table(title=f"autoresearch/{tag}", caption=caption(summary) + (f"\ncode: {code}" if code else ""),
                  caption_justify="left",
                  title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column(metric.name, justify="right", no_wrap=True)
    table.add_column("delta", justify="right", no_wrap=True)
    table.add_column("train s", justify="right", no_wrap=True)
    table.add_column("total s", justify="right", no_wrap=True)
    table.add_column("mem GB", justify="right", no_wrap=True)
    # The only wrapable column, so rich narrows it first when the table is too wide; its cells (and header)
    # are single-line Text that is cut with an ellipsis instead of wrapping.
    table.add_column(_one_line_text("description"), max_width=DESCRIPTION_WIDTH)
    pairs = list(zip(experiments, experiment_deltas(experiments, metric=metric), strict=True))
    if last is not None:
        pairs = pairs[-last:] if last > 0 else []
    for e, delta in pairs:
        table.add_row(*_experiment_cells(e, delta, metric))
    return table


def _experiment_cells(e: Experiment, delta: float | None, metric: MetricConfig) -> list:
    """The cells of one experiment's row of `build_table`."""
    if delta is None:
        delta_text = Text("-")
    else:
        colour = "" if delta == 0 else ("green" if is_better_delta(delta, metric) else "red")
        delta_text = Text(f"{delta:+.6f}", style=colour)
    description = e.description
    if e.status in _FAILED and e.error:
        description = f"{description} — {error_line(e.error)}"
    return [str(e.seq), Text(e.status.value, style=STATUS_STYLES[e.status]), or_dash(e.metric, "{:.6f}"),
            delta_text, or_dash(e.training_seconds, "{:.1f}"), or_dash(e.total_seconds, "{:.1f}"),
            or_dash(gigabytes(e.peak_memory_bytes), "{:.1f}"),
            _one_line_text(truncate(for_terminal(description), DESCRIPTION_WIDTH))]


def status_table(store: Store, tag: str, *, now: float | None = None, last: int | None = None,
                 metric: MetricConfig = MetricConfig()) -> Table:
    """`build_table` of the experiments of `tag` in `store` (an empty table with a clear caption if none)."""
    return build_table(tag, measured(store, tag), now=now, last=last, metric=metric)


def describe_running(experiment: Experiment | None, now: float | None = None) -> str | None:
    """`running #12: <description> (started 3m 05s ago)`, or None when nothing runs."""
    if experiment is None:
        return None
    now = time.time() if now is None else now
    ago = format_duration(max(0.0, now - experiment.started_at))
    return f"running #{experiment.seq}: {truncate(experiment.description, 80)} (started {ago} ago)"


def running_line(store: Store, tag: str, now: float | None = None) -> str | None:
    """The line describing the RUNNING experiment of `tag` (the latest, if several were left over by a
    dead loop), or None when none runs. See `describe_running`."""
    running = store.running(tag)
    return describe_running(running[-1] if running else None, now)
