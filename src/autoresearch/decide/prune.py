"""Stopping a run early once its training curve shows that it cannot beat the best (`[prune]`).

A run that is far behind the best halfway through its budget is very unlikely to end ahead of it, and
its remaining minutes are better spent on the next experiment. The curves compared are train.py's
progress lines: (seconds of training, train loss), the plain next-token cross-entropy
(docs/contract.md). The reference is the best's own runs. Everything here is pure: the runner feeds the
candidate's progress to a `Pruner`, and stops the run when it gives a reason.

The rule is built to let through whatever might still win, above all a change of the learning-rate
schedule, whose loss can lag behind for most of a run and fall steeply at the end:

- nothing is decided before `after` of the budget, nor after `until` (late in a run, the steep fall of
  a learning-rate decay cannot be foreseen);
- losses are compared as means over the last `window` of the budget, at the same moment of training;
- the run is given credit for a fall `catch_up` times as large as the best's runs made from that moment
  to their end, and must still end above their final loss by `margin` of it, or by 3 standard
  deviations of the best's runs at that moment if that is more;
- and all that must hold without a break for `hold` of the budget.

Pruning can only ever discard: a pruned run is never kept, so it cannot make a false gain.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from autoresearch.decide import speed

Curve = list[tuple[float, float]]  # (seconds of training, train loss), in order of time


@dataclass(frozen=True)
class Settings:
    enabled: bool = True
    after: float = 0.25  # fraction of the budget before which nothing is decided
    until: float = 0.75  # fraction after which nothing is decided
    window: float = 0.1  # losses are averaged over this fraction of the budget
    catch_up: float = 2.0  # the run may still fall this many times as far as the best's runs did from here
    margin: float = 0.02  # ...and must still end above their final loss by this fraction of it
    hold: float = 0.1  # fraction of the budget for which that must hold without a break


def curve_of(events: Iterable[dict]) -> Curve:
    """The (elapsed, train_loss) points of a run's `step` progress events."""
    return [(float(e["elapsed"]), float(e["train_loss"])) for e in events
            if e.get("event") == "step" and isinstance(e.get("elapsed"), (int, float))
            and isinstance(e.get("train_loss"), (int, float)) and math.isfinite(e["train_loss"])]


def level(curve: Curve, at: float, width: float) -> float | None:
    """The mean loss of the points in (at - width, at]. A curve whose progress lines are further apart than
    that has none there: then its line from the point before to the point after is read at `at`. None if
    the curve does not reach that far on both sides."""
    losses = [loss for t, loss in curve if at - width < t <= at]
    if losses:
        return sum(losses) / len(losses)
    before = [(t, loss) for t, loss in curve if t <= at]
    after = [(t, loss) for t, loss in curve if t > at]
    if not before or not after:
        return None
    (t0, y0), (t1, y1) = before[-1], after[0]
    return y0 + (y1 - y0) * (at - t0) / (t1 - t0)


@dataclass(frozen=True)
class Gap:
    """Where a run stands against the best's runs at one moment."""

    at: float  # seconds of training
    loss: float  # the run's mean loss over the window
    theirs: float  # the best's runs' mean loss over the same window
    their_final: float  # the best's runs' mean loss over their last window
    credit: float  # how far the run may still fall: catch_up x (theirs - their_final)
    allowance: float  # by how much the run may end above their_final and still be let through

    @property
    def hopeless(self) -> bool:
        return self.loss - self.credit > self.their_final + self.allowance


def gap(candidate: Curve, references: list[Curve], at: float, budget: float, settings: Settings) -> Gap | None:
    """The run's `Gap` at `at` seconds; None when a curve has no point in the window there."""
    width = settings.window * budget
    mine = level(candidate, at, width)
    theirs = [level(ref, at, width) for ref in references]
    finals = [level(ref, ref[-1][0], width) for ref in references if ref]
    if mine is None or not references or None in theirs or len(finals) != len(references):
        return None
    now, final = statistics.fmean(theirs), statistics.fmean(finals)
    spread = statistics.stdev(theirs) if len(theirs) > 1 else 0.0
    return Gap(at=at, loss=mine, theirs=now, their_final=final, credit=settings.catch_up * max(now - final, 0.0),
               allowance=max(settings.margin * abs(final), 3 * spread))


class Pruner:
    """Feed it a run's progress events (`observe`); it answers with the reason to stop the run, once there is
    one. `references`: the curves of the best's runs, trained for the same `budget`. `speeds`: the machine's
    speed at each of them (None: unknown); once the run's own is known (its `machine_speed` event), only the
    runs made at about that speed (`speed.comparable` within `tolerance`) are compared with, and if there
    are none, nothing is decided: a run on a slower machine is behind for that alone."""

    def __init__(self, references: Sequence[Curve], budget: float, settings: Settings = Settings(), *,
                 speeds: Sequence[float | None] = (), tolerance: float = 0.0) -> None:
        speeds = [*speeds[:len(references)], *[None] * (len(references) - len(speeds))]
        kept = [i for i, ref in enumerate(references) if ref]
        self.references = [references[i] for i in kept]
        self.speeds, self.tolerance = [speeds[i] for i in kept], tolerance
        self.budget, self.settings = budget, settings
        self.curve: Curve = []
        self.behind_since: float | None = None  # when the run was first found hopeless, without a break since

    def observe(self, event: dict) -> str | None:
        if event.get("event") == "machine_speed":
            chosen = speed.comparable(self.speeds, event.get("gflops"), self.tolerance)
            self.references = [self.references[i] for i in chosen]
            self.speeds = [self.speeds[i] for i in chosen]
            return None
        points = curve_of([event])
        if not points or not self.settings.enabled or not self.references:
            return None
        self.curve.append(points[0])
        at = points[0][0]
        if not self.settings.after * self.budget <= at <= self.settings.until * self.budget:
            self.behind_since = None
            return None
        found = gap(self.curve, self.references, at, self.budget, self.settings)
        if found is None or not found.hopeless:
            self.behind_since = None
            return None
        if self.behind_since is None:
            self.behind_since = at
        if at - self.behind_since < self.settings.hold * self.budget:
            return None
        return explain(found, self.budget, self.settings, len(self.references))


def explain(found: Gap, budget: float, settings: Settings, runs: int) -> str:
    best = "the best" if runs == 1 else f"the best's {runs} runs"
    return (f"stopped early at {100 * found.at / budget:.0f}% of the budget: train loss {found.loss:.4f} against "
            f"{found.theirs:.4f} for {best} at {found.at:.0f} s; even falling {settings.catch_up:g}x as far as "
            f"they did from there, it would end at {found.loss - found.credit:.4f}, above their final "
            f"{found.their_final:.4f} by more than {found.allowance:.4f}")
