"""The keep rule as an object (decide/rule.py): what it asks for next, given the runs so far."""

import pytest

from autoresearch.config import KeepConfig
from autoresearch.decide.rule import (
    BestState,
    Case,
    Confirm,
    Decision,
    Purpose,
    RemeasureBest,
    Run,
    RunAgain,
    Strict,
    current,
    keep_rule,
    measured_noise,
)

BEST = (Run(1.000, 0), Run(1.002, 1), Run(0.998, 2))  # mean 1.0, sigma 0.002
NOISY = (tuple(Run(v) for v in (1.0, 1.003, 0.997, 1.001, 0.999, 1.002)),)  # 5 dof of noise, sigma ~0.0022


def test_the_baseline_runs_its_noise_seeds_then_is_kept():
    rule = Confirm(noise_seeds=3)
    asked = [rule.next(Case(tuple(Run(1.0, s) for s in range(n)), None, first_seed=7)) for n in range(4)]
    assert asked[:3] == [RunAgain(7, Purpose.OWN), RunAgain(8, Purpose.NOISE), RunAgain(9, Purpose.NOISE)]
    assert isinstance(asked[3], Decision) and asked[3].keep
    strict = Strict(noise_seeds=3)
    assert isinstance(strict.next(Case((Run(1.0),), None)), Decision)  # strict: one run


def test_strict_keeps_what_is_lower_by_any_amount_and_nothing_else():
    rule = Strict()
    assert rule.next(Case((Run(0.9999),), BEST)).keep
    assert not rule.next(Case((Run(1.0),), BEST)).keep  # equal is not better
    assert Strict(maximize=True).next(Case((Run(1.0001),), BEST)).keep


def test_confirm_runs_again_within_the_noise_with_the_next_seed_then_decides():
    rule = Confirm()
    first = rule.next(Case((Run(0.9975, 10),), BEST, NOISY, first_seed=10))  # about 1.2 standard errors better
    assert first == RunAgain(11, Purpose.CONFIRM, first.reason) and "within the noise" in first.reason
    kept = rule.next(Case((Run(0.9975, 10), Run(0.9955, 11), Run(0.9950, 12)), BEST, NOISY, first_seed=10))
    assert isinstance(kept, Decision) and kept.keep and "confirmation runs" in kept.reason
    dropped = rule.next(Case((Run(0.9975, 10), Run(1.003, 11)), BEST, NOISY, first_seed=10))
    assert isinstance(dropped, Decision) and not dropped.keep
    clear = rule.next(Case((Run(0.98),), BEST, NOISY))
    assert isinstance(clear, Decision) and clear.keep and clear.reason.endswith("kept at once")


def test_a_best_measured_at_another_machine_speed_runs_again_once_and_then_counts():
    rule = Strict(speed_tolerance=0.25, best_runs=2)
    best = tuple(Run(1.0, i, speed=100.0) for i in range(3))
    slow = (Run(1.1, 0, speed=50.0),)
    asked = rule.next(Case(slow, best))
    assert asked == RemeasureBest(2, Purpose.SPEED, asked.reason, then=100.0, now=50.0) and asked.shift == -0.5
    again = (*best, Run(1.2, 3, speed=52.0), Run(1.2, 4, speed=51.0))  # the best at the new speed: worse
    decided = rule.next(Case(slow, again, speed_checked=True))
    assert isinstance(decided, Decision) and decided.keep  # 1.1 beats the best's 1.2 at this speed
    assert not rule.next(Case(slow, best, speed_checked=True)).keep  # none alike even so: all of them count
    assert isinstance(Strict(speed_tolerance=0).next(Case(slow, best)), Decision)  # the check is off


def test_the_noise_is_measured_within_runs_of_one_speed():
    steady = (Run(1.0, speed=100), Run(1.002, speed=101), Run(1.2, speed=50), Run(1.204, speed=51))
    noise = measured_noise((steady,), tolerance=0.25)
    assert noise.dof == 2 and noise.sigma == pytest.approx(((0.001**2 * 2 + 0.002**2 * 2) / 2) ** 0.5)
    mixed = measured_noise((steady,), tolerance=0)  # the check off: the slow runs count as noise
    assert mixed.dof == 3 and mixed.sigma > 0.1
    assert current(steady, 0.25) == list(steady[2:])  # the latest runs' speed group


def test_before_a_proposal_a_best_kept_at_once_is_settled_and_the_noise_measured_afresh():
    rule = Confirm(noise_seeds=3, best_runs=2, recalibrate_every=5)
    assert rule.before_proposal(BestState(runs=1)) == RemeasureBest(1, Purpose.REMEASURE, "settle")
    assert rule.before_proposal(BestState(runs=1, settled=True)) is None  # once, even if a run failed
    assert rule.before_proposal(BestState(runs=2)) is None
    assert rule.before_proposal(BestState(runs=4, keeps_since_noise=5)) == RemeasureBest(3, Purpose.NOISE, "noise")
    assert rule.before_proposal(BestState(runs=4, requested=True)).reason == "requested"
    strict = Strict(noise_seeds=3)
    assert strict.before_proposal(BestState(runs=1, keeps_since_noise=9)) is None  # strict never settles
    assert strict.before_proposal(BestState(runs=1, requested=True)) == RemeasureBest(3, Purpose.NOISE, "requested")


def test_the_rule_is_made_from_the_keep_settings():
    assert isinstance(keep_rule(KeepConfig(rule="strict")), Strict)
    rule = keep_rule(KeepConfig(noise_seeds=5, clear_z=4.0, recalibrate_every=0), maximize=True)
    assert isinstance(rule, Confirm) and rule.noise_seeds == 5 and rule.thresholds.clear_z == 4.0
    assert rule.maximize and rule.recalibrate_every == 0
