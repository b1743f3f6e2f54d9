"""The keep rule: is a candidate better than the best so far, or only lucky? Pure logic, no I/O.

Two runs of the same train.py with different seeds differ (the run-to-run noise, sigma). A rule that
keeps anything lower by any amount (`strict`) keeps about half of the changes that do nothing. The
`confirm` rule compares means, in units of their standard error:

- `noise` is estimated from groups of runs of the same code with different seeds (the baseline's seeds,
  every confirmation, every re-measurement): the pooled within-group standard deviation, with its degrees
  of freedom.
- An estimate from few runs can be too low by luck. So it is widened by t_dof(Phi(w)) / w, Student's t
  quantile over the normal one at `widen_z` (w, 2) standard deviations: x2.26 at 2 degrees of freedom,
  x1.32 at 5, x1.14 at 10, x1.04 at 30. (Student's t at the keep thresholds themselves would ask too much:
  at 2 degrees of freedom it keeps about half of the real 3-sigma gains.)
- The improvement of a candidate is the best's mean minus the candidate's mean (for a metric to
  minimize), with standard error widened_sigma * sqrt(1/n_candidate + 1/n_best); z is their ratio.
- After its first run: z >= `clear_z` keeps it at once; z <= `gate_z` discards it; in between it is
  run again with fresh seeds (`confirm`). While the noise rests on fewer than `learn_dof` degrees of
  freedom, the gate is 0: any first run better than the best is confirmed, so that the noise gets
  measured. (Three baseline seeds that spread widely by luck would otherwise hide every real gain:
  nothing gets confirmed, so the estimate never improves.)
- After each confirmation run: z >= `confirm_z` keeps it; z <= `futility_z` discards it; after
  `max_confirm` runs without either, it is discarded.
- A tie (|z| < `tie_z` once it has been confirmed, or at once) goes to the simpler change: a candidate
  whose change removes more lines than it adds is kept when it is no worse than the best by more than
  `tie_z` standard errors (the simplicity criterion, made mechanical).
- With a `price` (`[keep] complexity_cost` times the code lines the change adds net, decide/complexity.py),
  z is taken of the improvement less the price: a change must beat the best by the price more than the
  noise asks, and one that removes code (a negative price) by less (docs/keep.md, "The price of
  complexity").

The loop applies this through the rule objects of `decide.rule`; their false-keep and true-keep rates are
measured by `bench/keep_rule_sim.py` (docs/keep.md).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

KEEP, DISCARD, CONFIRM = "keep", "discard", "confirm"


@dataclass(frozen=True)
class Thresholds:
    clear_z: float = 3.0  # first run: keep at once above this
    gate_z: float = 0.5  # first run: discard at or below this (not better, or hardly)
    confirm_z: float = 2.0  # after confirmation runs: keep at or above this
    futility_z: float = 1.0  # after a confirmation run: discard at or below this
    max_confirm: int = 3  # confirmation runs at most
    tie_z: float = 1.0  # a simpler change within this many standard errors of the best is kept
    widen_z: float = 2.0  # the noise estimate is widened by t_dof(Phi(widen_z)) / widen_z (0: not widened)
    learn_dof: int = 5  # below this many degrees of freedom, any first run better than the best is confirmed


@dataclass(frozen=True)
class Noise:
    """The run-to-run standard deviation of the metric, and the degrees of freedom it rests on."""

    sigma: float
    dof: int

    @property
    def known(self) -> bool:
        """Measured at all: on at least two runs of the same code (a sigma of 0 is a measurement too)."""
        return self.dof >= 1


def pooled_noise(groups: Iterable[Sequence[float]]) -> Noise:
    """The pooled within-group standard deviation of groups of runs of the same code (each group one
    version of the code run with different seeds). Groups of one run carry no information about it."""
    squares, dof = 0.0, 0
    for group in groups:
        values = [float(v) for v in group if v is not None and math.isfinite(v)]
        if len(values) < 2:
            continue
        if min(values) < max(values):  # equal runs add exactly nothing (their float mean may be off by 1e-17)
            mean = math.fsum(values) / len(values)
            squares += math.fsum((v - mean) ** 2 for v in values)
        dof += len(values) - 1
    return Noise(math.sqrt(squares / dof) if dof else 0.0, dof)


@dataclass(frozen=True)
class Verdict:
    action: str  # KEEP, DISCARD or CONFIRM (run it again with a fresh seed)
    reason: str
    improvement: float  # how much better the candidate's mean is than the best's (positive: better)
    stderr: float  # the standard error of `improvement` (nan when the noise is unknown)
    z: float  # (improvement - price) / stderr
    price: float = 0.0  # what the change's added code costs, in the metric (negative: credit for removed code)


def judge(candidate: Sequence[float], best: Sequence[float], noise: Noise, *, maximize: bool = False,
          simpler: bool = False, price: float = 0.0, thresholds: Thresholds = Thresholds()) -> Verdict:
    """What to do with a candidate, given its runs so far (`candidate`: the first run, then the confirmation
    runs), the best's runs (`best`), and the noise. `simpler`: its change removes more lines than it adds.
    `price`: how much better than the best it must be on top of what the noise asks (the price of the code
    it adds; negative, a credit, for code it removes): z is that of the improvement less the price, so the
    price moves every threshold by the same amount of the metric."""
    if not candidate or not best:
        raise ValueError("judge needs at least one run of the candidate and of the best")
    th = thresholds
    sign = 1.0 if maximize else -1.0
    improvement = sign * (_mean(candidate) - _mean(best))
    net = improvement - price
    priced = _priced(price)

    def verdict(action: str, reason: str, stderr: float = math.nan, z: float = math.nan) -> Verdict:
        return Verdict(action, reason + priced, improvement, stderr, z, price)

    if not noise.known:  # nothing to measure the noise by yet: a better result is run again, to measure it
        if net <= 0:
            return verdict(DISCARD, "not better (the noise is not measured yet)")
        if len(candidate) - 1 < th.max_confirm:
            return verdict(CONFIRM, "better, but the noise is not measured yet: run again with a fresh seed")
        return verdict(KEEP, "better (the noise could not be measured)")
    stderr = standard_error(noise, len(candidate), len(best), th)
    z = net / stderr if stderr > 0 else math.copysign(math.inf, net) if net else 0.0
    confirmed = len(candidate) > 1
    keep_at = th.confirm_z if confirmed else th.clear_z
    if z >= keep_at:
        how = f"after {len(candidate) - 1} confirmation run{'s' if len(candidate) > 2 else ''}" if confirmed else \
            "at once"
        return verdict(KEEP, f"better {_by(z)}: kept {how}", stderr, z)
    if simpler and z > -th.tie_z:
        return verdict(KEEP, f"a simpler change, as good within the noise ({z:+.1f} standard errors): kept", stderr, z)
    floor = th.futility_z if confirmed else th.gate_z if noise.dof >= th.learn_dof else 0.0
    if z <= floor:
        return verdict(DISCARD, f"{_at(z)}: " + ("not better" if net <= 0 else "within the noise"), stderr, z)
    if len(candidate) - 1 >= th.max_confirm:
        return verdict(DISCARD, f"{z:+.1f} standard errors after {th.max_confirm} confirmation runs: not clearly "
                       "better", stderr, z)
    return verdict(CONFIRM, f"better {_by(z)}, within the noise: run again with a fresh seed", stderr, z)


def _priced(price: float) -> str:
    """What a verdict's reason adds of the price it was judged with (nothing when there was none)."""
    if not price:
        return ""
    return f" (net of the code's price, {price:+.6g}: " + ("its added lines raised the bar)" if price > 0 else
                                                            "its removed lines lowered the bar)")


def _by(z: float) -> str:
    """How much better, in words: `by 2.3 standard errors`; with a noise of exactly 0 (a deterministic
    task), z is infinite and the words say so."""
    return f"by {z:.1f} standard errors" if math.isfinite(z) else "with no run-to-run noise at all"


def _at(z: float) -> str:
    return f"{z:+.1f} standard errors" if math.isfinite(z) else "no run-to-run noise at all"


def standard_error(noise: Noise, candidate_runs: int, best_runs: int, thresholds: Thresholds = Thresholds()) -> float:
    """The standard error of the difference of two means, of `candidate_runs` and `best_runs` runs, with the
    noise estimate widened for its degrees of freedom. The noise must be known."""
    return noise.sigma * widening(noise.dof, thresholds.widen_z) * math.sqrt(1 / candidate_runs + 1 / best_runs)


def clear_margin(noise: Noise, best_runs: int, thresholds: Thresholds = Thresholds()) -> float:
    """How much better than the best (measured `best_runs` times) a first run must be to be kept at once."""
    return thresholds.clear_z * standard_error(noise, 1, best_runs, thresholds)


def widening(dof: int, z: float = 2.0) -> float:
    """How much to widen a standard deviation estimated with `dof` degrees of freedom: Student's t quantile
    over the normal quantile, both at the normal's `z`-sigma level (1 for z = 0, or infinitely many dof)."""
    if dof < 1:
        raise ValueError(f"widening needs at least 1 degree of freedom, not {dof}")
    if z <= 0:
        return 1.0
    return t_quantile(_normal_cdf(z), dof) / z


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, dof: int) -> float:
    """The p-quantile of Student's t distribution with `dof` (whole) degrees of freedom, p in [0.5, 1)."""
    if not 0.5 <= p < 1:
        raise ValueError(f"t_quantile needs 0.5 <= p < 1, not {p}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, dof) < p:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, dof) < p else (lo, mid)
    return (lo + hi) / 2


def t_cdf(t: float, dof: int) -> float:
    """P(T <= t) for Student's t with `dof` whole degrees of freedom: the closed form in the angle
    theta = atan(t / sqrt(dof)), a finite series in cos(theta) (odd and even dof differ)."""
    if dof < 1:
        raise ValueError(f"t_cdf needs at least 1 degree of freedom, not {dof}")
    theta = math.atan(abs(t) / math.sqrt(dof))
    sin, cos2 = math.sin(theta), math.cos(theta) ** 2
    if dof % 2:  # odd: (2/pi) * (theta + sin * cos * (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ...))
        term, series = 1.0, 1.0 if dof > 1 else 0.0
        for k in range(1, (dof - 1) // 2):
            term *= cos2 * (2 * k) / (2 * k + 1)
            series += term
        inside = 2 / math.pi * (theta + sin * math.cos(theta) * series)
    else:  # even: sin * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...)
        term = series = 1.0
        for k in range(1, dof // 2):
            term *= cos2 * (2 * k - 1) / (2 * k)
            series += term
        inside = sin * series
    return 0.5 + math.copysign(inside, t) / 2


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def changed_lines(diff: str) -> tuple[int, int]:
    """Lines added and removed by a unified diff (file headers not counted; blank lines and comments
    count like any other)."""
    added = removed = 0
    for line in diff.splitlines():
        if line.startswith("+++") or line.startswith("---"):
            continue
        if line.startswith("+"):
            added += 1
        elif line.startswith("-"):
            removed += 1
    return added, removed


def is_simpler(diff: str) -> bool:
    """Does the change remove more lines than it adds?"""
    added, removed = changed_lines(diff)
    return removed > added


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)
