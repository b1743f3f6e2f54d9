"""Figures of a run, computed from the store's records: deltas, counts, baseline vs best, the status table.

Everything here reads; nothing writes to the store. The pure functions (`deltas`, `running_best`,
`summarize`, `format_duration`, ...) take experiments or plain values, so they can be tested without a
store; `status_data`, `status_table` and `running_line` are the thin store-reading entry points.

Definitions used throughout (and by `report.md` and `progress.png`):

- the *metric* is the task's (`MetricConfig`: its name, val_bpb by default, and its direction, minimize or
  maximize); *better* means lower when minimizing, higher when maximizing. Every figure function takes it
  as `metric=` (default: val_bpb, minimize);
- the *best at the time* of an experiment is the best metric among the KEEP experiments before it (by
  seq); an experiment's *delta* is its metric minus that best (negative = better when minimizing,
  positive = better when maximizing). It is None when the experiment has no metric or nothing was kept
  before it (e.g. the baseline);
- the *baseline* is the first KEEP experiment (normally seq 0, the unmodified train.py);
- the *best* is the latest KEEP experiment, as `Store.incumbent`: the code the branch holds (each keep beat
  the best before it). Its metric is as measured now (`Store.measured`): a best run again at a new machine
  speed, or after a lucky first run, may read worse than an earlier keep's first figure, and is still the
  best, since it beat that keep when both were measured alike;
- the *improvement* is how much better the best is than the baseline (baseline - best when minimizing,
  best - baseline when maximizing; positive = better in both directions), and relative to |baseline| as a
  percentage;
- *wall time* is from the first experiment's start to the last one's end (or `now` while one runs);
  *experiment time* is the sum of the experiments' `total_seconds`.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rich import box
from rich.table import Table
from rich.text import Text

from autoresearch.config import MetricConfig
from autoresearch.decide import rule
from autoresearch.decide.measured import measured, speed_tolerance
from autoresearch.decide.stats import Noise
from autoresearch.report.safe_text import for_terminal
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


# ---------------------------------------------------------------------- pure helpers


def _improves(status: Status | str, value: float | None, best: float | None, metric: MetricConfig) -> bool:
    """Does a point with `status` and `value` become the new best KEEP (strictly better than `best`)?"""
    return Status(status) is Status.KEEP and value is not None and (best is None or metric.better(value, best))


def deltas(points: Sequence[tuple[Status, float | None]], *,
           metric: MetricConfig = MetricConfig()) -> list[float | None]:
    """For each `(status, value)` in seq order: value minus the best KEEP value strictly before it (best
    under `metric`'s direction).

    Better than the best at the time is negative when minimizing, positive when maximizing. None where the
    point has no value or no KEEP came before it. The point's own status does not matter for its delta,
    only for the points after it.
    """
    out: list[float | None] = []
    best: float | None = None
    for status, value in points:
        out.append(None if value is None or best is None else value - best)
        if _improves(status, value, best, metric):
            best = value
    return out


def running_best(points: Sequence[tuple[Status, float | None]], *,
                 metric: MetricConfig = MetricConfig()) -> list[float | None]:
    """For each `(status, value)` in seq order: the best KEEP value under `metric`'s direction up to and
    including it (None before the first KEEP). The step line of `progress.png`."""
    out: list[float | None] = []
    best: float | None = None
    for status, value in points:
        if _improves(status, value, best, metric):
            best = value
        out.append(best)
    return out


def experiment_deltas(experiments: Sequence[Experiment], *,
                      metric: MetricConfig = MetricConfig()) -> list[float | None]:
    """`deltas` of experiments given in seq order."""
    return deltas([(e.status, e.metric) for e in experiments], metric=metric)


def is_better_delta(delta: float, metric: MetricConfig = MetricConfig()) -> bool:
    """Is a delta (value minus the best at the time) an improvement under `metric`'s direction?"""
    return delta > 0 if metric.maximize else delta < 0


def format_duration(seconds: float | None) -> str:
    """A short human duration: `-` for None, `42s`, `3m 05s`, `2h 03m`, `1d 04h`."""
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def truncate(text: str, width: int) -> str:
    """`text` on one line, cut to at most `width` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def first_line(text: str | None) -> str:
    """The first non-blank line of a text, stripped; empty for None or blank text."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


_ERROR_LINE = re.compile(r"(?i)\b\w*(error|exception)\b|\bout of memory\b|\bkilled\b")


def error_line(text: str | None) -> str:
    """The line that best says why an experiment failed, stripped; empty for None or blank text.

    The first line that names an error (`...Error`, `...Exception`, `error`, `out of memory`, `killed`),
    skipping traceback headers and frames (`Traceback ...`, `File "..."`); failing that, the first non-blank
    line, or, when that is a traceback header, the last non-blank line (where Python puts the exception).
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Traceback", "File ")):
            continue
        if _ERROR_LINE.search(line):
            return line
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def _gb(n: int | None) -> float | None:
    return None if n is None else n / 1024**3


@dataclass(frozen=True)
class Summary:
    """The headline figures of one tag's experiments (see the module docstring for the definitions)."""

    tag: str
    total: int
    counts: dict[str, int] = field(hash=False)  # every Status value -> number of experiments with it
    baseline: Experiment | None
    best: Experiment | None
    improvement: float | None  # how much better the best is than the baseline (positive = better)
    improvement_pct: float | None  # improvement / |baseline| * 100
    first_started: float | None  # unix time
    last_ended: float | None  # unix time of the last end (None if nothing finished)
    wall_seconds: float | None
    experiment_seconds: float  # sum of total_seconds
    running: Experiment | None  # the latest RUNNING experiment, if any
    metric: MetricConfig = MetricConfig()  # the metric the figures were computed for
    agent: dict = field(default_factory=dict, hash=False)  # what the agent spent: agent_usage()
    repeats: int = 0  # rejected proposals whose code was measured already (docs/loop.md)

    @property
    def kept(self) -> int:
        return self.counts[Status.KEEP.value]


def summarize(tag: str, experiments: Sequence[Experiment], now: float | None = None, *,
              metric: MetricConfig = MetricConfig()) -> Summary:
    """The `Summary` of `experiments` (one tag's, in seq order) under `metric`'s direction. `now` (default:
    the clock) ends the wall time while an experiment is still running."""
    now = time.time() if now is None else now
    counts = {s.value: 0 for s in Status}
    for e in experiments:
        counts[e.status.value] += 1
    kept = [e for e in experiments if e.status is Status.KEEP and e.metric is not None]
    baseline = kept[0] if kept else None
    sign = -1.0 if metric.maximize else 1.0
    best = kept[-1] if kept else None
    improvement = improvement_pct = None
    if baseline is not None and best is not None:
        improvement = sign * (baseline.metric - best.metric)
        improvement_pct = 100.0 * improvement / abs(baseline.metric) if baseline.metric else None
    running = [e for e in experiments if e.status is Status.RUNNING]
    ends = [e.ended_at for e in experiments if e.ended_at is not None]
    first = min((e.started_at for e in experiments), default=None)
    last = max(ends, default=None)
    end = now if running else last
    wall = None if first is None or end is None else max(0.0, end - first)
    spent = sum(e.total_seconds or 0.0 for e in experiments)
    return Summary(tag=tag, total=len(experiments), counts=counts, baseline=baseline, best=best,
                   improvement=improvement, improvement_pct=improvement_pct, first_started=first,
                   last_ended=last, wall_seconds=wall, experiment_seconds=spent,
                   running=running[-1] if running else None, metric=metric, agent=agent_usage(experiments),
                   repeats=sum(1 for e in experiments if e.status is Status.REJECTED and "same_code_as" in e.metrics))


def steering(experiments: Sequence[Experiment], texts: Mapping[str, str]) -> list[dict]:
    """When the person steered: each proposal (in seq order) made under another program.md than the proposal
    before it, as `{"seq", "program", "added", "removed"}` (lines against the text before; `texts`: the texts
    by id, `Store.programs`). Proposals without a program mark (the baseline, older stores) are skipped."""
    changes, before = [], None
    for e in experiments:
        key = e.metrics.get("program")
        if not isinstance(key, str):
            continue
        if before is not None and key != before:
            diff = difflib.unified_diff(texts.get(before, "").splitlines(), texts.get(key, "").splitlines(),
                                        lineterm="", n=0)
            lines = [line for line in diff if not line.startswith(("---", "+++", "@@"))]
            changes.append({"seq": e.seq, "program": key, "added": sum(line.startswith("+") for line in lines),
                            "removed": sum(line.startswith("-") for line in lines)})
        before = key
    return changes


def steering_text(experiments: Sequence[Experiment], changes: Sequence[dict]) -> str | None:
    """`steering` in words; None when no proposal has a program mark."""
    if not any(isinstance(e.metrics.get("program"), str) for e in experiments):
        return None
    if not changes:
        return "program.md was the same for every proposal"
    return (f"program.md changed {noun(len(changes), 'time')}: " +
            ", ".join(f"before #{c['seq']} (+{c['added']}/-{c['removed']} lines)" for c in changes))


def adoptions(experiments: Sequence[Experiment]) -> list[dict]:
    """The bests of other runs this run took up (`loop.adopt_from`), in seq order, as `{"seq", "source",
    "source_seq", "status"}`."""
    return [{"seq": e.seq, "source": e.metrics["adopted_from"], "source_seq": e.metrics.get("adopted_seq"),
             "status": e.status.value} for e in experiments if isinstance(e.metrics.get("adopted_from"), str)]


def adoptions_text(taken: Sequence[dict]) -> str | None:
    """`adoptions` in words; None when there are none."""
    if not taken:
        return None
    kept = sum(1 for a in taken if a["status"] == Status.KEEP.value)
    return (f"{noun(len(taken), 'best')} of other runs tried here, {kept} kept: "
            + ", ".join(f"#{a['seq']} ({a['source']} #{a['source_seq']}, {a['status']})" for a in taken))


def proposers(experiments: Sequence[Experiment], *, metric: MetricConfig = MetricConfig()) -> list[dict]:
    """What each agent that proposed in a run did (the baseline and the bests taken up from other runs aside),
    in the order each first proposed: `agent`, `proposals`, `kept`, `failed` (crashes and timeouts), `gain`
    (how far its keeps moved the best, each against the best before it; positive = better) and `spent`
    (`agent_usage` of its proposals)."""
    moved = experiment_deltas(experiments, metric=metric)
    sign = 1.0 if metric.maximize else -1.0
    rows: dict[str, dict] = {}
    for e, delta in zip(experiments, moved, strict=True):
        if e.seq == 0 or e.agent == "-" or isinstance(e.metrics.get("adopted_from"), str):
            continue
        row = rows.setdefault(e.agent, {"agent": e.agent, "proposals": 0, "kept": 0, "failed": 0, "gain": 0.0,
                                        "experiments": []})
        row["proposals"] += 1
        row["experiments"].append(e)
        row["failed"] += e.status in (Status.CRASH, Status.TIMEOUT)
        if e.status is Status.KEEP:
            row["kept"] += 1
            row["gain"] += sign * delta if delta is not None else 0.0
    return [{**{k: v for k, v in row.items() if k != "experiments"}, "spent": agent_usage(row["experiments"])}
            for row in rows.values()]


def agent_usage(experiments: Sequence[Experiment]) -> dict[str, float]:
    """What the agent spent over `experiments`, summed from their `agent_*` metrics: `cost_usd`,
    `tokens_in`, `tokens_out`, `seconds` (each only if some experiment reported it)."""
    totals: dict[str, float] = {}
    for e in experiments:
        for key in ("cost_usd", "tokens_in", "tokens_out", "seconds"):
            value = e.metrics.get(f"agent_{key}")
            if isinstance(value, (int, float)):
                totals[key] = totals.get(key, 0.0) + value
    return totals


def caption(summary: Summary, *, metric: MetricConfig | None = None) -> str:
    """One line of the headline figures, e.g. `12 experiments · 3 kept · 1 crash · ... · val_bpb baseline
    0.997000 · best 0.981000 (#7, -0.016000 / -1.60%) · wall 1h 02m`. The change of the best is signed as
    the metric moved (down when minimizing, up when maximizing). `metric` defaults to the summary's."""
    metric = summary.metric if metric is None else metric
    if summary.total == 0:
        return f"no experiments yet for tag {summary.tag!r}"
    c = summary.counts
    parts = [f"{summary.total} experiments", f"{summary.kept} kept", f"{c['discard']} discarded",
             f"{c['crash']} crashes", f"{c['timeout']} timeouts",
             f"{c['rejected']} rejected" + (f" ({summary.repeats} already measured)" if summary.repeats else "")]
    if c["pruned"]:
        parts.append(f"{c['pruned']} stopped early")
    if c["tampered"]:
        parts.append(f"{c['tampered']} tampered")
    if c["running"]:
        parts.append(f"{c['running']} running")
    if summary.baseline is not None:
        parts.append(f"{metric.name} baseline {summary.baseline.metric:.6f}")
    if summary.best is not None:
        best = f"best {summary.best.metric:.6f} (#{summary.best.seq}"
        if summary.improvement is not None and summary.improvement_pct is not None:
            sign = "+" if metric.maximize else "-"
            best += f", {sign}{summary.improvement:.6f} / {sign}{summary.improvement_pct:.2f}%"
        parts.append(best + ")")
    else:
        parts.append(f"no {metric.name} yet")
    parts.append(f"wall {format_duration(summary.wall_seconds)}")
    spent = summary.agent
    if "cost_usd" in spent or "tokens_in" in spent:
        tokens = spent.get("tokens_in", 0) + spent.get("tokens_out", 0)
        parts.append("agent " + (f"${spent['cost_usd']:.2f}, " if "cost_usd" in spent else "") + f"{tokens:,.0f} tokens")
    return " · ".join(parts)


def experiment_row(e: Experiment, delta: float | None) -> dict:
    """The JSON-ready figures of one experiment as shown in the status table."""
    return {"seq": e.seq, "status": e.status.value, "metric": e.metric, "delta": delta,
            "training_seconds": e.training_seconds, "total_seconds": e.total_seconds,
            "peak_memory_gb": _gb(e.peak_memory_bytes), "commit": e.commit, "description": e.description,
            "error": error_line(e.error) or None, "started_at": e.started_at, "ended_at": e.ended_at}


def summary_data(summary: Summary) -> dict:
    """The JSON-ready figures of a `Summary` (without the per-experiment rows), with the metric's name and
    direction (`metric_name`, `direction`) it was computed for."""
    b, best = summary.baseline, summary.best
    return {"tag": summary.tag, "metric_name": summary.metric.name, "direction": summary.metric.direction,
            "total": summary.total, "kept": summary.kept, "counts": dict(summary.counts),
            "already_measured": summary.repeats,
            "baseline_metric": b.metric if b else None, "baseline_seq": b.seq if b else None,
            "best_metric": best.metric if best else None, "best_seq": best.seq if best else None,
            "best_description": best.description if best else None,
            "improvement": summary.improvement, "improvement_pct": summary.improvement_pct,
            "first_started": summary.first_started, "last_ended": summary.last_ended,
            "wall_seconds": summary.wall_seconds, "experiment_seconds": summary.experiment_seconds,
            "agent": dict(summary.agent)}


# ---------------------------------------------------------------------- store entry points


def measured_noise(store: Store, tag: str, extra: Sequence[float] | None = None, *,
                   speed_now: float | None = None) -> Noise:
    """The run-to-run noise of `tag`'s metric as measured so far (`decide.rule.measured_noise`), with `extra`
    (a group of runs being made) and at the machine speed `speed_now` (as `latest_speed`)."""
    return rule.measured_noise(line_runs(store, tag), [Run(v) for v in extra or ()], speed_now=speed_now,
                               tolerance=speed_tolerance(store, tag))


def line_runs(store: Store, tag: str) -> list[list[Run]]:
    """The runs of each piece of code `tag` measured to a result (kept or discarded), one group each."""
    return [store.runs(e) for e in store.experiments(tag) if e.status in (Status.KEEP, Status.DISCARD)]


def latest_speed(store: Store, tag: str) -> float | None:
    """The machine's speed at the latest run of `tag` that measured it (an experiment's own runs, by seq)."""
    known = [p for e in store.experiments(tag) for p in e.metrics.get("run_speeds") or [] if p is not None]
    return known[-1] if known else None


def noise_data(store: Store, tag: str) -> dict:
    """The noise and what measuring it cost, JSON-ready: sigma (None until measured) and its degrees of
    freedom, the runs beyond one per experiment (confirmations, the baseline's extra seeds, re-measurements)."""
    noise = measured_noise(store, tag, speed_now=latest_speed(store, tag))
    experiments = store.experiments(tag)
    extra = sum(max(0, len(store.measured_runs(e)) - 1) for e in experiments if e.status in (Status.KEEP, Status.DISCARD))
    confirmations = sum(e.metrics.get("confirm_runs", 0) for e in experiments)
    confirmed = sum(1 for e in experiments if e.metrics.get("confirm_runs"))
    return {"sigma": noise.sigma if noise.known else None, "dof": noise.dof, "extra_runs": extra,
            "confirmation_runs": confirmations, "confirmed_experiments": confirmed}


def noise_line(data: dict, metric: MetricConfig = MetricConfig()) -> str:
    """`noise: sigma 0.0021 val_bpb (9 degrees of freedom); 4 confirmation runs for 3 experiments`."""
    if data["sigma"] is None:
        return "noise: not measured yet"
    line = f"noise: sigma {data['sigma']:.4g} {metric.name} ({noun(data['dof'], 'degree')} of freedom)"
    if data["confirmation_runs"]:
        line += "; " + confirmations_text(data)
    return line


def confirmations_text(data: dict) -> str:
    """`4 confirmation runs for 3 experiments`, from `noise_data`."""
    return (f"{noun(data['confirmation_runs'], 'confirmation run')} for "
            f"{noun(data['confirmed_experiments'], 'experiment')}")


def speed_data(store: Store, tag: str) -> dict:
    """The machine's speed as the harness measured it before each run (speed.py), JSON-ready: the runs
    measured, their median, lowest and highest GFLOP/s, the latest run's, and `shifts`: the experiments
    before which the speed had moved past `keep.speed_tolerance` since the best was measured (seq and shift,
    -0.4 for 40% slower), for which the best ran again."""
    experiments = [e for e in store.experiments(tag) if e.status in (Status.KEEP, Status.DISCARD)]
    speeds = [p for e in experiments for p in store.measured_speeds(e) if p is not None]
    shifts = [{"seq": e.seq, "shift": e.metrics["speed_shift"]} for e in experiments if "speed_shift" in e.metrics]
    if not speeds:
        return {"runs": 0, "shifts": shifts}
    ordered = sorted(speeds)
    return {"runs": len(speeds), "median": ordered[len(ordered) // 2], "low": ordered[0], "high": ordered[-1],
            "latest": latest_speed(store, tag), "shifts": shifts}


def speed_text(data: dict) -> str | None:
    """`183 GFLOP/s at the latest run (150 to 195 over 24 runs); the best ran again at a new speed before
    #7 (70% slower)`; None when no run was measured."""
    if not data["runs"]:
        return None
    text = f"{data['latest'] or data['median']:,.0f} GFLOP/s at the latest run ({data['low']:,.0f} to " \
           f"{data['high']:,.0f} over {noun(data['runs'], 'run')})"
    if data["shifts"]:
        found = ", ".join(f"#{s['seq']} ({abs(s['shift']):.0%} {'faster' if s['shift'] > 0 else 'slower'})"
                          for s in data["shifts"][-5:])
        text += f"; the best ran again at a new speed before {found}"
    return text


def noun(n: int, singular: str) -> str:
    """`1 run`, `2 runs`: a count with its noun."""
    return f"{n} {singular}{'' if n == 1 else 's'}"


def status_data(store: Store, tag: str, now: float | None = None, *,
                metric: MetricConfig = MetricConfig()) -> dict:
    """Everything `autoresearch status --json` prints: `summary_data` plus `experiments` (one dict per
    experiment, `experiment_row`) and `running` (`running_data`, or None). JSON-serialisable."""
    experiments = measured(store, tag)
    summary = summarize(tag, experiments, now, metric=metric)
    rows = [experiment_row(e, d)
            for e, d in zip(experiments, experiment_deltas(experiments, metric=metric), strict=True)]
    return {**summary_data(summary), "noise": noise_data(store, tag),
            "machine_speed": speed_data(store, tag),
            "experiments": rows, "running": running_data(summary.running, now)}


def running_data(experiment: Experiment | None, now: float | None = None) -> dict | None:
    """seq, description, started_at, seconds since its start and log path of a RUNNING experiment."""
    if experiment is None:
        return None
    now = time.time() if now is None else now
    return {"seq": experiment.seq, "description": experiment.description, "started_at": experiment.started_at,
            "running_seconds": max(0.0, now - experiment.started_at), "log_path": experiment.log_path}


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _one_line_text(text: str) -> Text:
    return Text(text, no_wrap=True, overflow="ellipsis")


def build_table(tag: str, experiments: Sequence[Experiment], *, now: float | None = None,
                last: int | None = None, metric: MetricConfig = MetricConfig()) -> Table:
    """The status table of `experiments` (one tag's, in seq order): one row per experiment (only the
    `last` ones if given; the caption always counts them all), status colour-coded, the metric's column
    named after it, deltas green when better under its direction and red when worse, caption = `caption`.

    Fits an 80-column terminal: the figures never wrap or shrink; the description (with a failure's
    error line) is the column that gives way, cut with an ellipsis."""
    summary = summarize(tag, experiments, now, metric=metric)
    # A light frame (a rule under the header, no vertical lines, no outer edge, one space between columns)
    # leaves the description room on an 80-column terminal.
    table = Table(title=f"autoresearch/{tag}", caption=caption(summary), caption_justify="left",
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
        style = STATUS_STYLES[e.status]
        if delta is None:
            delta_text = Text("-")
        else:
            colour = "" if delta == 0 else ("green" if is_better_delta(delta, metric) else "red")
            delta_text = Text(f"{delta:+.6f}", style=colour)
        description = e.description
        if e.status in (Status.CRASH, Status.TIMEOUT, Status.REJECTED, Status.TAMPERED, Status.PRUNED) and e.error:
            description = f"{description} — {error_line(e.error)}"
        table.add_row(str(e.seq), Text(e.status.value, style=style), _fmt(e.metric, "{:.6f}"), delta_text,
                      _fmt(e.training_seconds, "{:.1f}"), _fmt(e.total_seconds, "{:.1f}"),
                      _fmt(_gb(e.peak_memory_bytes), "{:.1f}"),
                      _one_line_text(truncate(for_terminal(description), DESCRIPTION_WIDTH)))
    return table


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


def runs_table(summaries: Sequence[Summary], alive: dict[str, bool | None], *, now: float | None = None,
               metric: MetricConfig = MetricConfig(), doing: dict[str, str] | None = None) -> Table:
    """All the runs of a task folder, one row each (`status --all`): tag, whether its loop lives (`alive`:
    tag -> True, False, or None where unknown), experiments, keeps, crashes, baseline and best under
    `metric`'s direction, the best's change, and how long ago the run last finished an experiment; with
    `doing` (tag -> a short text), a last column of what each live loop is doing now."""
    now = time.time() if now is None else now
    table = Table(title="runs", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for name, justify in (("tag", "left"), ("loop", "left"), ("experiments", "right"), ("kept", "right"),
                          ("crashes", "right"), ("baseline", "right"), ("best", "right"), ("change", "right"),
                          ("last", "right"), *((("now", "left"),) if doing is not None else ())):
        table.add_column(name, justify=justify, no_wrap=True)
    for summary in summaries:
        live = alive.get(summary.tag)
        loop = Text("running", style="bold cyan") if live else Text("?" if live is None else "stopped", style="dim")
        change = "-"
        if summary.improvement_pct is not None:
            change = f"{'+' if metric.maximize else '-'}{summary.improvement_pct:.2f}%"
        last = "-" if summary.last_ended is None else format_duration(max(0.0, now - summary.last_ended)) + " ago"
        crashes = summary.counts["crash"] + summary.counts["timeout"]
        table.add_row(summary.tag, loop, str(summary.total), str(summary.kept), str(crashes),
                      _fmt(summary.baseline.metric if summary.baseline else None, "{:.6f}"),
                      _fmt(summary.best.metric if summary.best else None, "{:.6f}"), change, last,
                      *((Text(for_terminal(doing.get(summary.tag, "") if live else "")),) if doing is not None else ()))
    return table


def loop_line(tag: str, alive: bool | None, running_seq: int | None, holder: str | None = None,
              others: Sequence[str] = ()) -> str:
    """Whether the loop of `tag` lives, said so that a dead one's next step is plain. `alive` None: unknown
    (no file locks on this system); `running_seq`: the experiment the store has as RUNNING; `holder`: who
    runs it (e.g. `pid 123, since ...`); `others`: tags of live loops beside it in the task folder."""
    if alive is None:
        text = "loop: liveness unknown on this system"
    elif alive:
        text = f"loop: running ({holder})" if holder else "loop: running"
        if running_seq is None:
            text += ", between experiments (the agent is proposing, or the best is being measured)"
    elif running_seq is not None:
        text = (f"loop: not running (stopped or killed), so #{running_seq} was interrupted; it runs again with "
                f"`autoresearch run --resume --tag {tag}`")
    else:
        text = f"loop: not running; continue with `autoresearch run --resume --tag {tag}`"
    if others:
        text += f". Also running in this folder: {', '.join(others)}"
    return text


CARRYOVER = 0.5  # test gains below this share of the val gains, over a stretch of keeps, raise the warning
CARRYOVER_WINDOW = 3  # the most recent keeps that are checked on their own as well


def carryover_warning(points: Sequence[tuple[int, float, float]]) -> str | None:
    """Whether validation gains carry over to the hidden test split. `points`: (seq, val, test) of the kept
    experiments in order, lower is better. A warning naming the stretch where val improved but test
    improved by less than CARRYOVER of that (over all keeps, or over the last CARRYOVER_WINDOW), else None."""
    if len(points) < 2:
        return None
    stretches = [points]
    if len(points) > CARRYOVER_WINDOW:
        stretches.append(points[-CARRYOVER_WINDOW - 1:])
    for stretch in reversed(stretches):  # the recent stretch first: it is the sharper warning
        (first, val0, test0), (last, val1, test1) = stretch[0], stretch[-1]
        val_gain, test_gain = val0 - val1, test0 - test1
        if val_gain > 0 and test_gain < CARRYOVER * val_gain:
            return (f"from #{first} to #{last} val_bpb improved by {val_gain:.4f} but the hidden test split by "
                    f"{test_gain:.4f}: the gains no longer carry over, and the search may be fitting the "
                    "validation set (more val tokens, or fresh ideas, help)")
    return None
