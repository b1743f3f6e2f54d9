"""What a tracker receives of one decided experiment, computed from the store's records: pure, no I/O.

`experiment_export` turns an `Experiment`, its runs, the line's record and the curves of its run logs into
an `ExperimentExport`: flat params (text), flat metrics (finite numbers) and one curve per run. It is the
same for every tracker; each tracker module only maps it onto its own calls, so what is exported is tested
once, here, without any tracker.

Texts written by agents or candidates (descriptions, agent names, errors, diffs) are untrusted: they go
out as plain text with their control characters made visible (`safe_text.for_terminal`), never as markup,
and each tracker cuts them to its limits with `cut`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from autoresearch.config import MetricConfig
from autoresearch.safe_text import for_terminal
from autoresearch.store import Experiment, LineRecord, Run, Status

CURVE_POINTS = 1000  # at most this many points of a run's curve are sent (evenly thinned, the last kept)
NAME_CHARS = 80  # of a description, in a run's display name
CUT_MARK = " [cut]"

# Figures of `Experiment.metrics` exported as they are (when numbers), by the name they get in the trackers.
_RECORDED_FIGURES = {"mfu": "mfu", "params": "model_params", "val_bpb_stderr": "val_bpb_stderr",
                     "eval_seconds": "eval_seconds", "startup_seconds": "startup_seconds",
                     "finish_seconds": "finish_seconds", "reported_training_seconds": "reported_training_seconds",
                     "improvement": "improvement", "improvement_stderr": "improvement_stderr", "z": "z",
                     "noise_sigma": "noise_sigma", "causal_tv": "causal_tv", "speed_shift": "speed_shift"}
_AGENT_PREFIX = "agent_"  # the agent's spend (tokens, seconds, cost_usd), as propose.py records it


@dataclass(frozen=True)
class CurvePoint:
    """One `step` progress line of a run's log (docs/contract.md): the loss at a step, and when."""

    step: int
    seconds: float | None  # training seconds so far (`elapsed`)
    loss: float | None  # `train_loss`
    tokens_per_s: float | None = None


@dataclass(frozen=True)
class RunExport:
    """One run of the experiment's code: run 1 is its own, the next ones confirmations or the baseline's
    seeds. `metric` None: the run did not end with a result (it crashed, was pruned or timed out)."""

    number: int  # 1 first, as `run-<number>/` in the log folder
    seed: int
    metric: float | None
    purpose: str
    curve: tuple[CurvePoint, ...] = ()


@dataclass(frozen=True)
class ExperimentExport:
    """Everything a tracker is sent about one decided experiment."""

    key: str  # "<tag>#<seq>": how a tracker recognises an experiment it has already
    tag: str
    seq: int
    status: str
    name: str  # the run's display name: "#<seq> <description, cut>"
    metric_name: str
    started_at: float  # unix time
    ended_at: float
    params: dict[str, str] = field(hash=False)  # plain text, not cut yet
    metrics: dict[str, float] = field(hash=False)  # finite numbers only
    runs: tuple[RunExport, ...] = ()
    diff: str = ""

    @property
    def metric(self) -> float | None:
        return self.metrics.get(self.metric_name)

    @property
    def failed(self) -> bool:
        return self.status in (Status.CRASH.value, Status.TIMEOUT.value)


def key_of(tag: str, seq: int) -> str:
    return f"{tag}#{seq}"


def plain(text: object) -> str:
    """Untrusted text as plain text: control and bidirectional characters shown as escapes."""
    return for_terminal(text)


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters; a cut one ends with CUT_MARK, so that it does not read as whole."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(CUT_MARK))] + CUT_MARK


def first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def thinned(points: Sequence[CurvePoint], limit: int = CURVE_POINTS) -> tuple[CurvePoint, ...]:
    """At most `limit` of `points`, evenly spread, the first and the last always among them."""
    if len(points) <= limit:
        return tuple(points)
    if limit < 2:
        return tuple(points[-1:])
    last = len(points) - 1
    picks = sorted({round(i * last / (limit - 1)) for i in range(limit)})
    return tuple(points[i] for i in picks)


def curve_of(events: Iterable[Mapping]) -> tuple[CurvePoint, ...]:
    """The training curve of a run from its progress events (`report.progress.parse_events`): one point per
    `step` event with a whole step number, thinned to CURVE_POINTS."""
    points = []
    for event in events:
        if event.get("event") != "step":
            continue
        step = _finite(event.get("step"))
        if step is None or not step.is_integer():
            continue
        points.append(CurvePoint(int(step), _finite(event.get("elapsed")), _finite(event.get("train_loss")),
                                 _finite(event.get("tokens_per_s"))))
    return thinned(points)


def experiment_export(experiment: Experiment, *, runs: Sequence[Run], curves: Sequence[Sequence[CurvePoint]],
                      best_so_far: float | None, best_before: float | None, line: LineRecord,
                      metric: MetricConfig, keep_rule: str | None = None) -> ExperimentExport:
    """The export of a decided `experiment`.

    `runs`: its runs as the store holds them (`Store.runs`); `curves`: the curve of each run that left a
    log, run 1 first (one more than `runs` when the last run failed); `best_so_far`: the best metric of the
    line up to and including it, `best_before`: up to it (`report.summary.running_best`); `line`: the line's
    record (budget, protocol); `keep_rule`: the task's `keep.rule`, when known."""
    e = experiment
    return ExperimentExport(
        key=key_of(e.tag, e.seq), tag=e.tag, seq=e.seq, status=e.status.value,
        name=cut(plain(f"#{e.seq} {first_line(e.description)}".strip()), NAME_CHARS + 8),
        metric_name=metric.name, started_at=e.started_at, ended_at=e.ended_at or e.started_at,
        params=export_params(e, runs, line, metric, keep_rule),
        metrics=export_metrics(e, runs, best_so_far, best_before, metric),
        runs=export_runs(e, runs, curves), diff=plain(e.diff))


def export_params(e: Experiment, runs: Sequence[Run], line: LineRecord, metric: MetricConfig,
                  keep_rule: str | None) -> dict[str, str]:
    """Who proposed what, on which commit, and what it was measured under: text, keyed for the trackers."""
    protocol = dict(line.protocol or {})
    reason = e.error if e.error else e.metrics.get("verdict")
    values: dict[str, object] = {
        "tag": e.tag, "seq": e.seq, "status": e.status.value, "agent": e.agent, "description": e.description,
        "commit": e.commit, "parent_commit": e.parent_commit, "seed": e.seed, "reason": reason,
        "run_seeds": ",".join(str(r.seed) for r in runs) if runs else None,
        "metric.name": metric.name, "metric.direction": metric.direction, "metric.source": metric.source,
        "keep.rule": keep_rule, "budget_seconds": line.budget_seconds, "device": protocol.get("device"),
        "lineup": line.lineup, "adopted_from": e.metrics.get("adopted_from"),
        "same_code_as": e.metrics.get("same_code_as"), "code_hash": e.code_hash,
        **{f"protocol.{key}": value for key, value in sorted(protocol.items())},
    }
    return {key: plain(_text(value)) for key, value in values.items() if value is not None and value != ""}


def export_metrics(e: Experiment, runs: Sequence[Run], best_so_far: float | None, best_before: float | None,
                   metric: MetricConfig) -> dict[str, float]:
    """The experiment's figures as numbers: the metric and the best so far; speed, memory and time; cost."""
    m = e.metrics
    figures: dict[str, object] = {
        metric.name: e.metric, "best_so_far": best_so_far,
        "delta": e.metric - best_before if e.metric is not None and best_before is not None else None,
        "runs": len(runs) if runs else None,
        "tokens": e.tokens, "steps": e.steps,
        "tokens_per_s": e.tokens / e.training_seconds if e.tokens and e.training_seconds else None,
        "peak_memory_gb": e.peak_memory_bytes / 1e9 if e.peak_memory_bytes else None,
        "training_seconds": e.training_seconds, "total_seconds": e.total_seconds,
        "wall_seconds": e.ended_at - e.started_at if e.ended_at is not None else None,
        f"test_{metric.name}": m.get("test_bpb"),
        **{name: m.get(recorded) for recorded, name in _RECORDED_FIGURES.items()},
        "cost/gpu_seconds": m.get("gpu_seconds"),
        **{f"cost/{key}": value for key, value in sorted(m.items()) if key.startswith(_AGENT_PREFIX)},
    }
    return {key: float(value) for key, value in figures.items() if _finite(value) is not None}


def export_runs(e: Experiment, runs: Sequence[Run], curves: Sequence[Sequence[CurvePoint]]) -> tuple[RunExport, ...]:
    """Each run's metric, seed and curve; the run that failed (no record in `runs`) with its curve only."""
    count = max(len(runs), len(curves))
    out = []
    for i in range(count):
        run = runs[i] if i < len(runs) else None
        out.append(RunExport(number=i + 1, seed=run.seed if run is not None else e.seed + i,
                             metric=run.metric if run is not None else None,
                             purpose=run.purpose if run is not None else "own" if i == 0 else "confirm",
                             curve=tuple(curves[i]) if i < len(curves) else ()))
    return tuple(out)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value, sort_keys=True, default=str)
