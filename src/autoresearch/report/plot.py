"""progress.png: the metric (val_bpb by default; `MetricConfig`) of every experiment of a tag, the running best
under the metric's direction, crashes along the bottom.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global state), so it is
safe in a headless loop and in threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from matplotlib.transforms import blended_transform_factory

from autoresearch.config import MetricConfig
from autoresearch.report.summary import running_best, summarize
from autoresearch.report.text import truncate
from autoresearch.safe_text import for_terminal
from autoresearch.store import Experiment, Status

LABEL_WIDTH = 32  # characters of a kept experiment's description written next to its dot
MAX_LABELS = 40  # beyond this many kept experiments, only the latest ones are labelled


def _title(tag: str, experiments: Sequence[Experiment], metric: MetricConfig) -> str:
    s = summarize(tag, experiments, metric=metric)
    c = s.counts
    title = (f"autoresearch/{tag}: {s.total} experiments, {s.kept} kept, {c['discard']} discarded, "
             f"{c['crash']} crashes, {c['timeout']} timeouts")
    if c["rejected"]:
        title += f", {c['rejected']} rejected"
    if c["pruned"]:
        title += f", {c['pruned']} stopped early"
    if s.best is not None and s.baseline is not None and s.improvement_pct is not None:
        sign = "+" if metric.maximize else "-"
        title += (f"\nbest {metric.name} {s.best.metric:.6f} vs baseline {s.baseline.metric:.6f} "
                  f"({sign}{s.improvement_pct:.2f}%)")
    return title


def _y_limits(values: list[float], baseline: float | None, maximize: bool = False) -> tuple[float, float]:
    """Data range with a margin; far outliers on the worse side of the baseline (above it when minimizing,
    below it when maximizing) are clipped (drawn at that edge)."""
    lo, hi = min(values), max(values)
    if baseline is not None and maximize:
        lo = max(lo, baseline - max(hi - baseline, 0.02 * abs(baseline), 1e-3))
    elif baseline is not None:
        hi = min(hi, baseline + max(baseline - lo, 0.02 * abs(baseline), 1e-3))
    span = hi - lo if hi > lo else max(abs(hi) * 0.01, 1e-3)
    return lo - 0.12 * span, hi + 0.08 * span


def plot_progress(tag: str, experiments: Sequence[Experiment], path: Path, *,
                  metric: MetricConfig = MetricConfig(), noise: float | None = None) -> Path:
    """Write the progress chart of `experiments` (one tag's, in seq order) to `path` (PNG) and return it.

    x = experiment number (seq), y = the metric (labelled with its name and direction). Finished
    experiments with a metric are dots (discarded grey, kept green and labelled with their shortened
    description); the running best KEEP under the metric's direction is a step line; crashes (red x),
    timeouts (orange x) and runs stopped early as hopeless (blue x) sit on the lower edge; discarded outliers far on the worse side are triangles on
    that edge. With no metric at all, the chart says so instead. Works for any number of experiments,
    including none.
    """
    path = Path(path)
    fig = Figure(figsize=(13, 6.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_title(_title(tag, experiments, metric), fontsize=11)
    ax.set_xlabel("experiment #")
    ax.set_ylabel(f"{metric.name} ({'higher' if metric.maximize else 'lower'} is better)")
    ax.grid(True, alpha=0.3)

    finished = [e for e in experiments if e.finished]
    scored = [e for e in finished if e.metric is not None]
    if not experiments:
        ax.text(0.5, 0.5, f"No experiments yet for tag {tag!r}", ha="center", va="center",
                transform=ax.transAxes, fontsize=14, color="grey")
        ax.set_xticks([])
        ax.set_yticks([])
        fig.savefig(path, format="png")
        return path

    last_seq = _set_scale(ax, tag, experiments, scored, metric)
    _draw_scored(ax, scored, metric)
    _draw_running_best(ax, finished, last_seq, metric, noise)
    _draw_failures(ax, finished)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center right", fontsize=8, framealpha=0.85)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _set_scale(ax, tag: str, experiments: Sequence[Experiment], scored: list[Experiment],
               metric: MetricConfig) -> int:
    """Fit the axes to the experiments (`scored`: those with a metric; with none, the chart says so) and
    return the last seq."""
    summary = summarize(tag, experiments, metric=metric)
    values = [e.metric for e in scored]
    if values:
        lo, hi = _y_limits(values, summary.baseline.metric if summary.baseline else None, metric.maximize)
        ax.set_ylim(lo, hi)
    else:
        ax.set_ylim(0, 1)
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"no experiment produced a {metric.name}", ha="center", va="center",
                transform=ax.transAxes, fontsize=13, color="grey")
    last_seq = max(e.seq for e in experiments)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(-0.5 - 0.01 * last_seq, last_seq + 0.5 + 0.01 * last_seq)
    return last_seq


def _draw_scored(ax, scored: list[Experiment], metric: MetricConfig) -> None:
    """The dots of the experiments with a metric: discarded grey (triangles on the edge when off the scale),
    kept green and labelled."""
    bottom_lim, top = ax.get_ylim()
    others = [e for e in scored if e.status is not Status.KEEP]
    inside = [e for e in others if bottom_lim <= e.metric <= top]
    if inside:
        ax.scatter([e.seq for e in inside], [e.metric for e in inside], s=14, color="#9e9e9e",
                   alpha=0.7, label="discarded", zorder=2)
    clipped = [e for e in others if not bottom_lim <= e.metric <= top]
    if clipped:  # far on the worse side of the baseline: a triangle on that edge
        edge = blended_transform_factory(ax.transData, ax.transAxes)
        ax.scatter([e.seq for e in clipped], [0.985 if e.metric > top else 0.015 for e in clipped],
                   marker="^" if not metric.maximize else "v", s=22, color="#9e9e9e", transform=edge,
                   label="discarded (off the scale)", zorder=2, clip_on=False)
    kept = [e for e in scored if e.status is Status.KEEP]
    if kept:
        ax.scatter([e.seq for e in kept], [e.metric for e in kept], s=46, color="#2ca02c",
                   edgecolors="black", linewidths=0.6, label="kept", zorder=4)
        for i, e in enumerate(kept[-MAX_LABELS:]):
            ax.annotate(truncate(for_terminal(e.description), LABEL_WIDTH), (e.seq, e.metric), xytext=(5, 6 + 7 * (i % 2)),
                        textcoords="offset points", fontsize=7, rotation=25, color="#1b5e20", zorder=5,
                        clip_on=True, parse_math=False)  # an agent's `$...$` is text, not (broken) mathtext


def _draw_running_best(ax, finished: list[Experiment], last_seq: int, metric: MetricConfig,
                       noise: float | None) -> None:
    """The step line of the running best, with a band of the measured noise around it when `noise` is given."""
    best = running_best([(e.status, e.metric) for e in finished], metric=metric)
    steps = [(e.seq, b) for e, b in zip(finished, best, strict=True) if b is not None]
    if not steps:
        return
    xs = [x for x, _ in steps] + [last_seq]
    ys = [y for _, y in steps] + [steps[-1][1]]
    ax.step(xs, ys, where="post", color="#2ca02c", linewidth=1.6, alpha=0.85, label="running best", zorder=3)
    if noise:  # the measured run-to-run noise around the best: results inside it are re-run before a keep
        ax.fill_between(xs, [y - noise for y in ys], [y + noise for y in ys], step="post", color="#2ca02c",
                        alpha=0.12, linewidth=0, label=f"best ± noise (sigma {noise:.4g})", zorder=2)


def _draw_failures(ax, finished: list[Experiment]) -> None:
    """Crashes, timeouts and runs stopped early, as crosses along the bottom edge."""
    bottom = blended_transform_factory(ax.transData, ax.transAxes)
    for status, color, label in ((Status.CRASH, "#d62728", "crash"), (Status.TIMEOUT, "#ff7f0e", "timeout"),
                                 (Status.PRUNED, "#1f77b4", "stopped early")):
        seqs = [e.seq for e in finished if e.status is status]
        if seqs:
            ax.scatter(seqs, [0.03] * len(seqs), marker="x", s=36, color=color, transform=bottom,
                       label=label, zorder=4, clip_on=False)
