"""The keep rules on synthetic metric streams, no training: the rule objects the loop uses (`decide.rule`),
fed runs drawn from normal distributions, so that the false-keep and true-keep rates measured here
(bench/keep_rule_sim.py, docs/keep.md) are the real loop's."""

from __future__ import annotations

import random
from dataclasses import dataclass

from autoresearch.decide.rule import (
    BestState,
    Case,
    Confirm,
    Decision,
    KeepRule,
    RemeasureBest,
    RunAgain,
    Strict,
)
from autoresearch.decide.stats import DISCARD, KEEP, Thresholds
from autoresearch.store import Run


@dataclass(frozen=True)
class SimulatedRates:
    keep_rate: float  # kept candidates / candidates
    looked_better: float  # candidates whose first run beat the best's mean / candidates
    extra_runs_per_looked_better: float  # confirmation and settling runs / candidates that looked better
    strict_keep_rate: float  # what `strict` would have kept of the same first runs, against the same best


def simulated_candidate(rng: random.Random, true: float, best: list[float], groups: list[list[float]], *,
                        rule: KeepRule | None = None) -> tuple[str, list[float]]:
    """One candidate on a synthetic stream, judged by `rule` (the confirm rule's defaults if None) as the loop
    judges it: runs drawn from normal(`true`, 1) for as long as the rule asks, against the best's runs `best`,
    with the noise pooled over `groups` (the stream's groups of runs so far). KEEP or DISCARD, and its runs."""
    rule = rule or Confirm()
    runs: list[float] = []
    history = tuple(tuple(Run(v) for v in group) for group in groups)
    while True:
        answer = rule.next(Case(tuple(Run(v) for v in runs), tuple(Run(v) for v in best), history))
        if isinstance(answer, Decision):
            return (KEEP if answer.keep else DISCARD), runs
        if isinstance(answer, RemeasureBest):  # no machine speeds here: never asked
            raise AssertionError("a synthetic stream has no machine speed to move")
        assert isinstance(answer, RunAgain)
        runs.append(rng.gauss(true, 1.0))


def settle(rng: random.Random, rule: KeepRule, best: list[float], true: float) -> int:
    """Run a new best again for as long as `rule.before_proposal` asks (its settling runs); how many ran."""
    answer = rule.before_proposal(BestState(runs=len(best)))
    more = answer.runs if answer is not None else 0
    best.extend(rng.gauss(true, 1.0) for _ in range(more))
    return more


def simulate(true_gain: float, *, streams: int = 200, candidates: int = 20, noise_seeds: int = 3, seed: int = 0,
             thresholds: Thresholds = Thresholds(), rule: str = "confirm", best_runs: int = 2) -> SimulatedRates:
    """The rule on synthetic metric streams, as the loop applies it: `streams` runs of the loop, each a
    baseline run `noise_seeds` times, then `candidates` candidates. Each candidate is truly better than the
    best so far by `true_gain` noise sigmas (0: an A/A test, nothing of substance changed) and is judged
    against the best's runs (`simulated_candidate`). A kept candidate becomes the best, and is run again
    for as long as the rule asks (`settle`, counted as extra runs). Metric to minimize, sigma 1.
    `rule="strict"` runs the streams with the strict rule instead."""
    judge_by = (Confirm(noise_seeds=noise_seeds, best_runs=best_runs, thresholds=thresholds, recalibrate_every=0)
                if rule == "confirm" else Strict(noise_seeds=noise_seeds, best_runs=best_runs))
    strict = Strict()
    rng = random.Random(seed)
    kept = looked = extra = strict_kept = total = 0
    for _ in range(streams):
        best_true = 0.0
        best = [rng.gauss(best_true, 1.0) for _ in range(noise_seeds)]
        groups: list[list[float]] = [best]
        for _ in range(candidates):
            true = best_true - true_gain
            total += 1
            action, runs = simulated_candidate(rng, true, best, groups, rule=judge_by)
            extra += len(runs) - 1
            mean = sum(best) / len(best)
            looked += runs[0] < mean
            first = strict.next(Case((Run(runs[0]),), tuple(Run(v) for v in best)))
            strict_kept += isinstance(first, Decision) and first.keep
            groups.append(runs)
            if action == KEEP:
                kept += 1
                best, best_true = runs, true
                extra += settle(rng, judge_by, best, true)
    return SimulatedRates(kept / total, looked / total, extra / max(looked, 1), strict_kept / total)
