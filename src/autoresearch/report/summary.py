"""Figures of a run, computed from the store's records: deltas, counts, baseline vs best, the summary.

Everything here is pure: the functions (`deltas`, `running_best`, `summarize`, `caption`, `proposers`, ...)
take experiments or plain values, so they can be tested without a store. Around them, each in its module:
`report.text` (durations, counts, one-line cuts, error lines), `report.noise` (the run-to-run noise and the
machine's speed), `report.status` (the status table and `--json` of one run) and `report.runs` (the table of
all the runs of a folder).

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
  the best before it). Its metric is as measured now (`decide.measured`): a best run again at a new machine
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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from autoresearch.config import MetricConfig
from autoresearch.decide import complexity
from autoresearch.report.text import error_line, format_duration, gigabytes, noun
from autoresearch.store import Experiment, Status

# ---------------------------------------------------------------------- deltas and the running best


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


# ---------------------------------------------------------------------- the summary record


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
    """The JSON-ready figures of one experiment as shown in the status table, with its code's size and
    complexity (`code_lines`, `code_functions`, `code_complexity`: None where not measured) and the code
    lines its change added and removed (`code_lines_added`, `code_lines_removed`: None without a diff, as
    the baseline's); decide/complexity.py counts them."""
    added, removed = complexity.changed_code_lines(e.diff) if e.diff else (None, None)
    return {"seq": e.seq, "status": e.status.value, "metric": e.metric, "delta": delta,
            "training_seconds": e.training_seconds, "total_seconds": e.total_seconds,
            "peak_memory_gb": gigabytes(e.peak_memory_bytes), "commit": e.commit, "description": e.description,
            "error": error_line(e.error) or None, "started_at": e.started_at, "ended_at": e.ended_at,
            **{key: e.metrics.get(key) for key in (complexity.LINES, complexity.FUNCTIONS, complexity.COMPLEXITY)},
            "code_lines_added": added, "code_lines_removed": removed}


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


# ---------------------------------------------------------------------- what else happened in a run


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
