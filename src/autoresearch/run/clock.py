"""The harness's clock over one run: when to tell train.py to stop, when to kill it, and whether its own
figures agree with what the harness saw (pure: times are given, nothing is read or started here).

A run of the built-in contract has three phases, each timed by the harness from the moments it reads
train.py's progress lines (docs/contract.md):

- **start-up**, from launch to the `start` line: at most `startup` seconds (the task's allowance, or one
  measured from the baseline's own start-up: `allowance`);
- **training**, from the `start` line: at `budget` seconds the harness tells the run to stop (a `stop` line
  on its standard input); the `done` line must come within `overrun` seconds after that (one step, and the
  time to read the line), or the run is killed as a timeout;
- **finish**, from the `done` line to the exit (saving the model): at most `finish` seconds.

Whatever train.py reports, the harness's own measure of the training phase is what a run is judged by:
`training_seconds` in its `done` line must agree with it within `tolerance`, or the run is `tampered`
(it kept a clock of its own, to train longer than it says).
"""

from __future__ import annotations

from dataclasses import dataclass

STOP, KILL = "stop", "kill"


def overrun_for(budget: float) -> float:
    """How long after the harness's stop a run may take to report `done`: its last step, and the line's way."""
    return max(2.0, 0.03 * budget)


def tolerance_for(budget: float) -> float:
    """How far train.py's own training time may be from the harness's measure of it."""
    return 1.0 + 0.02 * budget


def allowance(measured: list[float], factor: float, margin: float, cap: float) -> float:
    """An untimed phase's allowance from the baseline's own durations of it: `factor` times the longest, plus
    `margin` seconds, never over `cap` (the task's setting)."""
    return min(cap, factor * max(measured) + margin) if measured else cap


@dataclass
class Clock:
    """One run's phases. Feed it the moments (`started`, `done`); ask it for the next action (`next_action`)
    and, once the run ended, for its `verdict`."""

    budget: float
    startup: float  # longest start-up allowed
    finish: float  # longest finish (saving) allowed
    launched: float  # when the run was told to go (a monotonic clock, seconds)
    overrun: float | None = None
    tolerance: float | None = None
    start_at: float | None = None
    done_at: float | None = None
    stop_sent: bool = False

    def __post_init__(self) -> None:
        self.overrun = overrun_for(self.budget) if self.overrun is None else self.overrun
        self.tolerance = tolerance_for(self.budget) if self.tolerance is None else self.tolerance

    def started(self, now: float) -> None:
        if self.start_at is None:
            self.start_at = now

    def done(self, now: float) -> None:
        if self.done_at is None and self.start_at is not None:
            self.done_at = now

    @property
    def startup_seconds(self) -> float | None:
        return None if self.start_at is None else self.start_at - self.launched

    @property
    def training_seconds(self) -> float | None:
        """The harness's measure of the training phase: from the `start` line to the `done` line."""
        return None if self.start_at is None or self.done_at is None else self.done_at - self.start_at

    def finish_seconds(self, ended: float) -> float | None:
        return None if self.done_at is None else ended - self.done_at

    def next_action(self) -> tuple[float, str, str]:
        """(when, STOP or KILL, why): what the harness does next if nothing else happens first."""
        if self.start_at is None:
            return (self.launched + self.startup, KILL,
                    f"did not start training within its start-up allowance of {self.startup:.0f} s")
        if self.done_at is None:
            stop = self.start_at + self.budget
            if not self.stop_sent:
                return stop, STOP, "the budget is spent"
            return (stop + self.overrun, KILL,
                    f"trained past its budget of {self.budget:g} s: no `done` within {self.overrun:.0f} s of the "
                    "harness's stop")
        return (self.done_at + self.finish, KILL,
                f"did not exit within {self.finish:.0f} s of its `done` line (saving is allowed that long)")

    def verdict(self, reported_training: float | None) -> tuple[str, str] | None:
        """("tampered", why) when train.py's reported training time disagrees with the harness's measure of
        it, or ("timeout", why) when the harness's measure ran past the budget; None when all is well."""
        measured = self.training_seconds
        if measured is None:
            return None
        if measured > self.budget + self.overrun:
            return "timeout", (f"trained {measured:.1f} s by the harness's clock, past its budget of {self.budget:g} s "
                               f"and the {self.overrun:.0f} s a last step may take")
        if reported_training is not None and abs(reported_training - measured) > self.tolerance:
            return "tampered", (f"its own clock disagrees with the harness's: it reported {reported_training:.1f} s "
                                f"of training, the harness measured {measured:.1f} s from its `start` line to its "
                                "`done` line")
        return None
