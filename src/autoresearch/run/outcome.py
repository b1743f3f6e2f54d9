"""What one run of an experiment's code measured: the `Outcome` a runner hands back through the seam
(`seam.py`), built field by field with an `OutcomeBuilder` while the run goes.

Invariants: an `Outcome` is frozen, and its `status` is ok or the store's word for how it failed (`Status`: crash, timeout, pruned, tampered), one vocabulary from the run to the record; the figures
that come from train.py's own progress lines (`absorb`) are its claims, cleaned (`supervise.parse_progress`) but
not trusted: the harness's clock and evaluation decide the timing and the metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class Outcome:
    """What one run of an experiment's code measured (frozen: a runner builds it with `OutcomeBuilder`)."""

    status: str  # ok | crash | timeout | pruned (stopped early: `stop_when`) | tampered (void: evaluate.EvaluationVoid)
    metric: float | None = None  # the task's metric (val_bpb with the built-in evaluation)
    metric_name: str = "val_bpb"
    val_bpb: float | None = None
    val_bpb_stderr: float | None = None
    training_seconds: float | None = None  # built-in contract: `start` line to `done` line, as the harness read them
    total_seconds: float = 0.0
    startup_seconds: float | None = None  # from launch to the `start` line, by the harness's clock
    finish_seconds: float | None = None  # from the `done` line to the exit (saving), by the harness's clock
    reported_training_seconds: float | None = None  # what train.py said (its `done` line); not trusted
    eval_seconds: float | None = None
    peak_memory_bytes: int | None = None
    tokens: int | None = None
    steps: int | None = None
    params: int | None = None
    flops_per_token: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    device: str | None = None
    prestarted: bool = False  # train.py ran in an interpreter started ahead of time (prestart.py)
    machine_speed: float | None = None  # GFLOP/s of the harness's probe before train.py (speed.py; CPU: and after)
    isolation: str | None = None  # how the candidate was contained: bwrap, or process (no sandbox)
    node: str | None = None  # the cluster node that ran it (ray_runner.py); None: this machine
    causal_tv: float | None = None  # the causality probe's largest total variation (None: not probed)
    test_bpb: float | None = None  # on the hidden test split, measured with the probe; never used to decide
    probe_seconds: float | None = None  # the probe and the test evaluation
    seed: int = 0
    budget_seconds: float = 0.0
    log_path: str = ""
    error: str | None = None
    events: tuple[dict, ...] = field(default=(), repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "events"}


class OutcomeBuilder:
    """An `Outcome` being measured: its fields, set one by one as the run goes; `done` freezes them."""

    def __init__(self, **given: object) -> None:
        unknown = set(given) - {f.name for f in fields(Outcome)}
        if unknown:
            raise TypeError(f"Outcome has no field {sorted(unknown)}")
        for f in fields(Outcome):
            setattr(self, f.name, given.get(f.name, [] if f.name == "events" else f.default))

    def done(self) -> Outcome:
        values = {f.name: getattr(self, f.name) for f in fields(Outcome)}
        return Outcome(**{**values, "events": tuple(values["events"])})


def absorb(outcome: OutcomeBuilder, event: dict) -> None:
    """What a (cleaned) progress event of train.py says about the run, into `outcome`."""
    kind = event["event"]
    if kind == "start":
        outcome.params = event.get("params")
        outcome.flops_per_token = event.get("flops_per_token")
    elif kind == "step":
        outcome.steps, outcome.tokens = event.get("step"), event.get("tokens")
    elif kind == "done":
        outcome.steps = event.get("steps", outcome.steps)
        outcome.tokens = event.get("tokens", outcome.tokens)
        outcome.reported_training_seconds = event.get("training_seconds")
        outcome.peak_memory_bytes = event.get("peak_memory_bytes")
