"""How steady a run's measurements are: the run-to-run noise of its metric (and the runs spent measuring
it), and the machine's speed at each run (speed.py), as JSON-ready figures and as lines of text.

The store-reading functions (`measured_noise`, `noise_data`, `speed_data`, ...) only read; `noise_line`,
`confirmations_text` and `speed_text` put their figures in words for `status` and report.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from autoresearch.config import MetricConfig
from autoresearch.decide import rule
from autoresearch.decide.measured import speed_tolerance
from autoresearch.decide.stats import Noise
from autoresearch.report.text import noun
from autoresearch.store import Run, Status, Store


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
