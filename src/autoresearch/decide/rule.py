"""The keep rule as an object: given the runs so far, what to do next. Pure logic, no I/O.

The loop asks `KeepRule.next` after every run of an experiment, and executes the answer:

- `RunAgain`: run the candidate once more, with this seed (the baseline's seeds, a confirmation);
- `RemeasureBest`: run the best again this many times first (its runs were made at another machine speed);
- `Decision`: keep it or discard it, and why.

Before each proposal it asks `KeepRule.before_proposal` whether the best should be measured again (a new
best kept on one run, the noise due to be measured afresh, a person's request). `Strict` keeps whatever is
better by any amount; `Confirm` weighs the difference against the measured noise (stats.judge,
docs/keep.md). `decide.simulate` drives these same objects on synthetic streams, so the rates in
docs/keep.md are the loop's own.
"""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from autoresearch.decide import speed
from autoresearch.decide.stats import Noise, Thresholds, Verdict, judge, pooled_noise
from autoresearch.store import Run


class Purpose(str, Enum):
    """Why a run is made: what its metric is evidence of."""

    OWN = "own"  # a proposal's first run, or the baseline's
    CONFIRM = "confirm"  # a proposal run again with a fresh seed, its first result being within the noise
    NOISE = "noise"  # the baseline's further seeds, or the best run again to measure the noise afresh
    REMEASURE = "remeasure"  # the best run again: a new best brought up to `keep.best_runs`, the machine check
    SPEED = "speed"  # the best run again at the machine's speed of now, which moved since its runs

    def __str__(self) -> str:
        return self.value


Group = Sequence[Run]  # the runs of one piece of code


def seed_for(first_seed: int, index: int) -> int:
    """The seed of run `index` (0 first) of a piece of code whose first run had `first_seed` (`Store.runs`)."""
    return first_seed + index


def measured_noise(history: Sequence[Group], extra: Group = (), *, speed_now: float | None = None,
                   tolerance: float = 0.0) -> Noise:
    """The run-to-run noise pooled over every group of runs of one code (the baseline's seeds, confirmations,
    re-measurements), each split into runs made at about one machine speed (`speed.groups`), and `extra` (a
    group being made). With `speed_now`, only the groups made at about that speed count, as long as they give
    at least one degree of freedom: a loaded machine's runs spread more, and that spread is not the noise of
    the machine as it is now."""
    groups, at_now = [], []
    for runs in history:
        speeds = [r.speed for r in runs]
        for members in speed.groups(speeds, tolerance):
            groups.append([runs[i].metric for i in members])
            if speed.comparable([speeds[i] for i in members], speed_now, tolerance):
                at_now.append(groups[-1])
    chosen = at_now if sum(len(g) - 1 for g in at_now) >= 1 else groups
    return pooled_noise([*chosen, *([[r.metric for r in extra]] if extra else [])])


def current(runs: Group, tolerance: float) -> list[Run]:
    """The runs made at about the machine speed of the latest one: the code as measured on the machine as
    it is now (all of them when the speed did not move)."""
    if not runs:
        return []
    latest = next(g for g in speed.groups([r.speed for r in runs], tolerance) if len(runs) - 1 in g)
    return [runs[i] for i in latest]


@dataclass(frozen=True)
class Case:
    """What the rule judges: a candidate's runs so far, against the best's."""

    runs: tuple[Run, ...]  # the candidate's, in order
    best: tuple[Run, ...] | None  # every run of the best; None: there is none yet (the baseline)
    history: tuple[Group, ...] = ()  # the groups of runs of one code measured so far in the line (the noise)
    first_seed: int = 0  # the candidate's first seed
    simpler: bool = False  # its change removes more lines than it adds
    added_lines: int = 0  # code lines its change adds, less those it removes (decide/complexity.py)
    speed_checked: bool = False  # the best ran again at this candidate's machine speed already
    speed_now: float | None = None  # the machine's latest speed, for a candidate without runs that measured it


@dataclass(frozen=True)
class RunAgain:
    seed: int
    purpose: Purpose
    reason: str = ""


@dataclass(frozen=True)
class RemeasureBest:
    runs: int
    purpose: Purpose
    reason: str
    then: float | None = None  # the machine's speed at the best's runs (a speed check)
    now: float | None = None  # ...and at the candidate's

    @property
    def shift(self) -> float | None:
        """How much faster (> 0) or slower (< 0) the machine is now than at the best's runs."""
        return speed.shift(self.then, self.now) if self.then and self.now else None


@dataclass(frozen=True)
class Decision:
    keep: bool
    reason: str | None
    verdict: Verdict | None = None
    noise: Noise = Noise(0.0, 0)


Answer = RunAgain | RemeasureBest | Decision


@dataclass(frozen=True)
class BestState:
    """What `before_proposal` weighs: the best as measured so far."""

    runs: int  # its runs
    settled: bool = False  # brought up to `best_runs` once already (even if a run failed)
    keeps_since_noise: int = 0  # keeps since the noise was last measured afresh
    requested: bool = False  # a person asked for it (`autoresearch recalibrate`)


class KeepRule(ABC):
    """A keep rule. `noise_seeds`: the baseline's runs; `speed_tolerance`: runs whose machine speeds differ
    by more than this fraction are not compared (0: the check is off); `best_runs`: how often the best runs
    again when its runs were all made at another speed; `complexity_cost`: how much of the metric each code
    line a change adds must gain on top of what the rule asks otherwise (a line it removes earns as much
    back; docs/keep.md, "The price of complexity")."""

    name: str
    weighs_noise = False  # whether its decisions rest on the measured noise (recorded with each experiment)

    def __init__(self, *, maximize: bool = False, noise_seeds: int = 3, best_runs: int = 2,
                 speed_tolerance: float = 0.0, thresholds: Thresholds = Thresholds(),
                 complexity_cost: float = 0.0) -> None:
        self.maximize, self.noise_seeds, self.best_runs = maximize, noise_seeds, best_runs
        self.speed_tolerance, self.thresholds, self.complexity_cost = speed_tolerance, thresholds, complexity_cost

    def price(self, case: Case) -> float:
        """What the candidate's change costs, in the metric: `complexity_cost` per code line it adds net
        (negative, a credit, when it removes more than it adds)."""
        return self.complexity_cost * case.added_lines

    def next(self, case: Case) -> Answer:
        """What to do with the candidate now."""
        if not case.runs:
            return RunAgain(seed_for(case.first_seed, 0), Purpose.OWN)
        if case.best is None:
            return self._baseline(case)
        compared = self.compared(case)
        if isinstance(compared, RemeasureBest):
            return compared
        return self._judge(case, compared)

    def ahead(self, case: Case) -> int:
        """How many runs of the candidate, beyond the one `next` asks for now, are worth starting at once when
        runs can go in parallel (`[executor] runs_at_once`). Their seeds are the ones later answers would ask
        for, and the loop hands this rule their results one by one, in order, as if they had been made one
        after another: so its decisions are the same; a run it does not ask for is thrown away. The
        baseline's further seeds are always asked for; a candidate's confirmations once one was asked for (a
        first run is decided on its own more often than not)."""
        if case.best is None:
            return max(0, self.baseline_runs - len(case.runs) - 1)
        return max(0, self.most_runs - len(case.runs) - 1) if case.runs else 0

    @property
    def most_runs(self) -> int:
        """The most runs a candidate can be given: its first, and its confirmations."""
        return 1

    def compared(self, case: Case) -> list[Run] | RemeasureBest:
        """The best's runs made at about the machine speed of the candidate's runs, to compare with. When
        none was, the best is to run again first (once per candidate), so that both are measured on the
        machine as it is; if the speed moved again meanwhile, all of the best's runs count."""
        best = case.best or ()
        now = speed.typical([r.speed for r in case.runs])
        chosen = speed.comparable([r.speed for r in best], now, self.speed_tolerance)
        if chosen:
            return [best[i] for i in chosen]
        if not case.speed_checked:
            then = speed.typical([r.speed for r in best])
            return RemeasureBest(max(1, self.best_runs), Purpose.SPEED, "the machine's speed moved since the best "
                                 "was measured", then=then, now=now)
        return list(best)

    def noise(self, case: Case) -> Noise:
        """The noise the candidate is judged with: the line's, with its own runs, at their machine speed."""
        now = speed.typical([r.speed for r in case.runs])
        return measured_noise(case.history, case.runs, speed_now=now if now is not None else case.speed_now,
                              tolerance=self.speed_tolerance)

    def better(self, a: float, b: float) -> bool:
        return a > b if self.maximize else a < b

    def _baseline(self, case: Case) -> Answer:
        if len(case.runs) < self.baseline_runs:
            return RunAgain(seed_for(case.first_seed, len(case.runs)), Purpose.NOISE)
        return Decision(True, None, noise=self.noise(case))

    @property
    def baseline_runs(self) -> int:
        return 1

    @abstractmethod
    def _judge(self, case: Case, best: list[Run]) -> Answer: ...

    def before_proposal(self, best: BestState) -> RemeasureBest | None:
        """Whether the best runs again before the next proposal, and how often."""
        if best.requested:
            return RemeasureBest(self.noise_seeds, Purpose.NOISE, "requested")
        return None


class Strict(KeepRule):
    """Keep whatever is better than the best's mean, by any amount (by more than its price, with
    `complexity_cost`): one run each."""

    name = "strict"

    def _judge(self, case: Case, best: list[Run]) -> Answer:
        """Better than the best's mean by more than the change's price (by anything, when lines are free)."""
        mean = statistics.fmean(r.metric for r in best)
        price = self.price(case)
        if not price:
            return Decision(self.better(case.runs[0].metric, mean), None, noise=self.noise(case))
        gain = (case.runs[0].metric - mean) * (1 if self.maximize else -1)
        keep = gain > price
        reason = (f"{'better' if keep else 'not better'} than the best by more than the price of its code "
                  f"({gain:+.6g} against {price:+.6g} for {case.added_lines:+d} lines)")
        return Decision(keep, reason, noise=self.noise(case))


class Confirm(KeepRule):
    """Keep what is better by more than the noise; run again what is within it (stats.judge)."""

    name = "confirm"
    weighs_noise = True

    def __init__(self, *, recalibrate_every: int = 5, **kw) -> None:
        super().__init__(**kw)
        self.recalibrate_every = recalibrate_every

    @property
    def baseline_runs(self) -> int:
        return self.noise_seeds

    @property
    def most_runs(self) -> int:
        return 1 + self.thresholds.max_confirm

    def _judge(self, case: Case, best: list[Run]) -> Answer:
        noise = self.noise(case)
        verdict = judge([r.metric for r in case.runs], [r.metric for r in best], noise, maximize=self.maximize,
                        simpler=case.simpler, price=self.price(case), thresholds=self.thresholds)
        if verdict.action == "confirm":
            return RunAgain(seed_for(case.first_seed, len(case.runs)), Purpose.CONFIRM, verdict.reason)
        return Decision(verdict.action == "keep", verdict.reason, verdict, noise)

    def before_proposal(self, best: BestState) -> RemeasureBest | None:
        """As `KeepRule`'s, and: every `recalibrate_every` keeps, `noise_seeds` more runs, so the noise is
        measured on the code as it is now; a best kept on fewer than `best_runs` runs (a keep at once) runs
        again until it has them, once: a best kept on one run is one lucky draw more often than not, and
        every later candidate would be judged against that luck (docs/keep.md, "A new best is run again")."""
        asked = super().before_proposal(best)
        if asked is not None:
            return asked
        if self.recalibrate_every and best.keeps_since_noise >= self.recalibrate_every:
            return RemeasureBest(self.noise_seeds, Purpose.NOISE, "noise")
        if best.runs < self.best_runs and not best.settled:
            return RemeasureBest(self.best_runs - best.runs, Purpose.REMEASURE, "settle")
        return None


RULES: dict[str, type[KeepRule]] = {"strict": Strict, "confirm": Confirm}


def keep_rule(keep, *, maximize: bool = False) -> KeepRule:
    """The rule `[keep]` (config.KeepConfig) names, with its settings."""
    common = dict(maximize=maximize, noise_seeds=keep.noise_seeds, best_runs=keep.best_runs,
                  speed_tolerance=keep.speed_tolerance, thresholds=keep.thresholds(),
                  complexity_cost=keep.complexity_cost)
    if keep.rule == "confirm":
        return Confirm(recalibrate_every=keep.recalibrate_every, **common)
    return RULES[keep.rule](**common)
