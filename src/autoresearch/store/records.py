"""The store's records: frozen snapshots of what was written, and the checks a value passes before it is.

Records are frozen (in the style of Optuna's FrozenTrial): reading one twice gives two equal, independent
objects, and changing the store never changes a snapshot already taken. Text fields are plain UTF-8 (lone
surrogates become U+FFFD); numbers must be finite. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class StoreError(Exception):
    """A problem with the store; the message names the file and the fix."""


class AlreadyFinishedError(StoreError):
    """`finish` was called for an experiment that is already finished (it would be counted twice)."""


class UnknownExperimentError(StoreError, LookupError):
    """No experiment has this id."""


class Status(str, Enum):
    """The state of an experiment. Every status but RUNNING is final."""

    RUNNING = "running"  # begun, not (yet) finished: a loop that died mid-experiment leaves this
    KEEP = "keep"  # improved the metric: the candidate commit was kept
    DISCARD = "discard"  # ran fine, no improvement: reset
    CRASH = "crash"  # train.py or its evaluation failed
    TIMEOUT = "timeout"  # ran past budget + start-up allowance and was killed
    REJECTED = "rejected"  # the proposal was refused before it ran (e.g. did not apply, broke the rules)
    TAMPERED = "tampered"  # the candidate touched what the harness owns (data, evaluator, clock)
    PRUNED = "pruned"  # stopped early: its training curve showed it could not beat the best (prune.py)

    @property
    def finished(self) -> bool:
        return self is not Status.RUNNING

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Experiment:
    """One experiment as stored at the moment it was read. Immutable; `store.get(id)` for a fresh copy."""

    id: int
    tag: str  # run tag, e.g. "nov27" (branch autoresearch/<tag>)
    seq: int  # 0-based number of the experiment within its tag (0 = baseline)
    parent_commit: str  # commit the proposal was built on
    commit: str | None  # commit of the candidate (None for rejected proposals that were never committed)
    diff: str
    description: str
    agent: str
    seed: int
    status: Status
    metric: float | None  # the task's metric (val_bpb for the built-in task)
    metrics: dict = field(hash=False)  # any other metrics (JSON), e.g. {"val_bpb_stderr": ...}
    training_seconds: float | None
    total_seconds: float | None
    peak_memory_bytes: int | None
    tokens: int | None
    steps: int | None
    log_path: str | None
    started_at: float  # unix time
    ended_at: float | None
    error: str | None  # reason for rejected/crash/timeout, or log tail
    code_hash: str | None = None  # `same_code.code_hash` of the editable files it ran (None: not run, or older)

    @property
    def finished(self) -> bool:
        return self.status.finished


PURPOSES = ("own", "confirm", "noise", "remeasure", "speed")  # decide.rule.Purpose's values


@dataclass(frozen=True)
class Run:
    """One measurement of an experiment's code (a row of the `runs` table)."""

    metric: float
    seed: int = 0
    speed: float | None = None  # the machine's speed at the run (GFLOP/s, speed.py; None: not measured)
    purpose: str = "own"  # why it was made: one of PURPOSES
    of_best: bool = False  # made later, when the experiment was the best and was measured again
    node: str | None = None  # the cluster node that made it (`--executor ray`); None: this machine
    gpu_seconds: float | None = None  # the GPU time it took on that node



REMEASURE_REASONS = ("settle", "speed", "noise", "requested", "machine")  # why the best was measured again


@dataclass(frozen=True)
class LineRecord:
    """A tag's line of research as the loop of that tag set it up (a row of the `lines` table): what its
    results are measured under, and what it was asked."""

    tag: str
    budget_seconds: float | None = None  # the training budget every run of the line gets
    protocol: dict | None = field(default=None, hash=False)  # `protocol.of`: what its metric is measured under
    speed_tolerance: float | None = None  # `keep.speed_tolerance` as it last ran with it
    lineup: str | None = None  # agents taking turns (`Rotation.lineup`, e.g. "claude+tune*2"), if any
    lineup_since: int = 0  # ...from this experiment count on
    phases: dict = field(default_factory=lambda: {"startup": [], "finish": []}, hash=False)  # the baseline's
    # start-up and finish seconds (latest 20), by the harness's clock
    recalibrations_requested: int = 0  # `autoresearch recalibrate` requests so far


@dataclass(frozen=True)
class Remeasure:
    """One time the best was measured again (a row of the `remeasures` table), however many runs it got."""

    best_id: int  # the experiment whose code ran again
    reason: str  # one of REMEASURE_REASONS
    runs_asked: int
    runs_made: int  # fewer than asked: a run failed, and the rest were not made
    for_id: int | None = None  # the candidate it was made for (speed), or the first crash of a series (machine)
    requests_served: int = 0  # the line's recalibration requests it answered (noise, requested)


def proposal_values(*, tag: str, parent_commit: str, commit: str | None, diff: str, description: str, agent: str,
              seed: int, log_path: str | None) -> dict:
    if not isinstance(tag, str) or not tag.strip():
        raise ValueError(f"tag must be a non-empty string, not {tag!r}")
    return {"tag": tag, "parent_commit": checked_text("parent_commit", parent_commit),
            "commit": None if commit is None else checked_text("commit", commit), "diff": checked_text("diff", diff),
            "description": checked_text("description", description), "agent": checked_text("agent", agent),
            "seed": checked_int("seed", seed), "log_path": None if log_path is None else checked_text("log_path", str(log_path))}


def result_values(*, status: Status | str, metric: float | None, metrics: Mapping[str, Any] | None,
            training_seconds: float | None, total_seconds: float | None, peak_memory_bytes: int | None,
            tokens: int | None, steps: int | None, error: str | None) -> dict:
    try:
        status = Status(status)
    except ValueError:
        raise ValueError(f"unknown status {status!r}: use one of {', '.join(s.value for s in Status)}") from None
    if status is Status.RUNNING:
        raise ValueError("an experiment is finished with a final status, not RUNNING")
    metric = optional_float("metric", metric)
    if status is Status.KEEP and metric is None:
        raise ValueError("a KEEP experiment needs its metric")
    metrics = {} if metrics is None else metrics
    if not isinstance(metrics, Mapping) or not all(isinstance(k, str) for k in metrics):
        raise TypeError("metrics must be a mapping with string keys")
    try:
        metrics_json = json.dumps(finite_or_null(dict(metrics)), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"metrics must be JSON-serialisable: {err}") from err
    return {"status": status.value, "metric": metric, "metrics": metrics_json,
            "training_seconds": optional_float("training_seconds", training_seconds),
            "total_seconds": optional_float("total_seconds", total_seconds),
            "peak_memory_bytes": optional_int("peak_memory_bytes", peak_memory_bytes),
            "tokens": optional_int("tokens", tokens), "steps": optional_int("steps", steps),
            "error": None if error is None else checked_text("error", error)}


_SURROGATE = re.compile("[\ud800-\udfff]")


def checked_text(name: str, value: str) -> str:
    """Plain text as stored. Lone surrogates (undecodable bytes) cannot be UTF-8 and become U+FFFD."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)
    return value


def checked_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    return int(value)


def optional_int(name: str, value: Any) -> int | None:
    return None if value is None else checked_int(name, value)


def optional_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return float(value)


def finite_or_null(value: Any) -> Any:
    """Metrics come from train.py's figures: a NaN or inf there is stored as null rather than lost in a crash."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_null(v) for v in value]
    return value


def experiment_of(row: sqlite3.Row) -> Experiment:
    return Experiment(id=row["id"], tag=row["tag"], seq=row["seq"], parent_commit=row["parent_commit"],
                      commit=row["commit_sha"], diff=row["diff"], description=row["description"],
                      agent=row["agent"], seed=row["seed"], status=Status(row["status"]), metric=row["metric"],
                      metrics=json.loads(row["metrics"]), training_seconds=row["training_seconds"],
                      total_seconds=row["total_seconds"], peak_memory_bytes=row["peak_memory_bytes"],
                      tokens=row["tokens"], steps=row["steps"], log_path=row["log_path"],
                      started_at=row["started_at"], ended_at=row["ended_at"], error=row["error"],
                      code_hash=row["code_hash"])


LINE_FIELDS = frozenset(f.name for f in dataclasses.fields(LineRecord)) - {"tag"}
_LINE_JSON = ("protocol", "phases")  # stored as JSON text


def line_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """`set_line`'s fields as column values: JSON for the structured ones, checked numbers for the rest."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name in _LINE_JSON:
            out[name] = None if value is None else json.dumps(value, allow_nan=False, sort_keys=True)
        elif name == "lineup":
            out[name] = None if value is None else checked_text(name, value)
        elif name in ("lineup_since", "recalibrations_requested"):
            out[name] = checked_int(name, value)
        else:
            out[name] = optional_float(name, value)
    return out


def line_of(row: sqlite3.Row) -> LineRecord:
    return LineRecord(tag=row["tag"], budget_seconds=row["budget_seconds"],
                      protocol=json.loads(row["protocol"]) if row["protocol"] is not None else None,
                      speed_tolerance=row["speed_tolerance"], lineup=row["lineup"],
                      lineup_since=row["lineup_since"], phases=json.loads(row["phases"]),
                      recalibrations_requested=row["recalibrations_requested"])
