"""The keep rule on synthetic metric streams: no training in the loop."""

import math
import random

import numpy as np
import pytest

from autoresearch.decide.rule import Case, Decision, Run, Strict
from autoresearch.decide.simulate import simulate
from autoresearch.decide.stats import (
    CONFIRM,
    DISCARD,
    KEEP,
    Noise,
    Thresholds,
    changed_lines,
    clear_margin,
    is_simpler,
    judge,
    pooled_noise,
    t_cdf,
    t_quantile,
    widening,
)

NOISE = Noise(sigma=0.01, dof=10)
WIDE = 0.01 * 1.14184  # NOISE's sigma widened for its 10 degrees of freedom: t_10(Phi(2)) / 2
BEST = [1.000, 1.002, 0.998]  # mean 1.0


def test_the_noise_is_the_pooled_within_group_deviation():
    groups = [[1.0, 1.2, 0.9], [2.0, 2.1], [5.0]]  # the lone run carries nothing
    expected = math.sqrt((np.var([1.0, 1.2, 0.9]) * 3 + np.var([2.0, 2.1]) * 2) / 3)
    noise = pooled_noise(groups)
    assert noise.dof == 3 and noise.sigma == pytest.approx(expected)
    assert not pooled_noise([[1.0], [2.0]]).known
    # runs that agree to the last bit measured no noise at all, though their float mean is 0.10000000000000002
    assert pooled_noise([[0.1, 0.1, 0.1], [0.7, 0.7]]) == Noise(0.0, 3)


def test_a_clear_gain_is_kept_at_once_and_a_loss_discarded():
    clear = judge([0.95], BEST, NOISE)  # 3.8 standard errors better; stderr WIDE * sqrt(1 + 1/3)
    assert clear.action == KEEP and "at once" in clear.reason
    assert clear.improvement == pytest.approx(0.05)
    assert clear.stderr == pytest.approx(WIDE * math.sqrt(4 / 3), rel=1e-4)
    assert clear.z == pytest.approx(0.05 / (WIDE * math.sqrt(4 / 3)), rel=1e-4)
    assert judge([1.01], BEST, NOISE).action == DISCARD
    assert judge([1.0], BEST, NOISE).action == DISCARD  # a tie is not a gain
    assert judge([0.997], BEST, NOISE).action == DISCARD  # under the gate: 0.23 standard errors


def test_a_gain_within_the_noise_is_confirmed_then_kept_or_dropped():
    first = judge([0.98], BEST, NOISE)  # 1.5 standard errors
    assert first.action == CONFIRM
    assert judge([0.98, 0.975], BEST, NOISE).action == KEEP  # the mean holds: 2.2 standard errors
    dropped = judge([0.98, 1.01], BEST, NOISE)  # the mean falls back to 0.995: 0.5 standard errors
    assert dropped.action == DISCARD and "within the noise" in dropped.reason
    th = Thresholds(max_confirm=2)
    undecided = [0.985, 0.99, 0.99]  # 1.25 standard errors after two confirmations: not clearly better
    assert judge(undecided[:2], BEST, NOISE, thresholds=th).action == CONFIRM
    last = judge(undecided, BEST, NOISE, thresholds=th)
    assert last.action == DISCARD and "after 2 confirmation runs" in last.reason


def test_student_t_matches_its_tables():
    assert t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: atan(1) / pi + 1/2
    assert t_cdf(0.0, 7) == pytest.approx(0.5) and t_cdf(-2.0, 3) == pytest.approx(1 - t_cdf(2.0, 3))
    assert t_quantile(0.975, 10) == pytest.approx(2.228139, abs=1e-5)  # the textbook two-sided 5% value
    assert t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-5)
    assert t_quantile(0.975, 5) == pytest.approx(2.570582, abs=1e-5)
    assert t_quantile(0.975, 400) == pytest.approx(1.965942, abs=1e-4)
    with pytest.raises(ValueError):
        t_quantile(0.2, 3)


def test_a_noise_estimate_from_few_runs_is_widened():
    assert widening(2) == pytest.approx(2.26327, abs=1e-4)
    assert widening(5) == pytest.approx(1.32432, abs=1e-4)
    factors = [widening(d) for d in (1, 2, 3, 5, 10, 30, 100, 500)]
    assert factors == sorted(factors, reverse=True) and 1 < factors[-1] < 1.003
    assert widening(2, z=0) == 1.0
    few = Noise(sigma=0.01, dof=2)  # three baseline seeds
    lucky = [0.96]  # 3.5 sigma-hats better: a clear keep if the estimate were exact
    assert judge(lucky, BEST, few, thresholds=Thresholds(widen_z=0)).action == KEEP
    assert judge(lucky, BEST, few).action == CONFIRM  # 1.5 widened standard errors: run again
    assert judge(lucky, BEST, Noise(sigma=0.01, dof=200)).action == KEEP  # a firm estimate: kept at once


def test_the_margin_told_to_agents_is_the_one_the_rule_keeps_at():
    margin = clear_margin(NOISE, 3)
    assert margin == pytest.approx(3 * WIDE * math.sqrt(4 / 3), rel=1e-4)
    assert judge([1.0 - margin * 1.01], BEST, NOISE).action == KEEP
    assert judge([1.0 - margin * 0.99], BEST, NOISE).action == CONFIRM
    assert clear_margin(NOISE, 12) < margin  # a firmer best: a smaller gain is clear


def test_while_the_noise_is_barely_measured_any_better_first_run_is_confirmed():
    wide = [1.131, 0.994, 0.953]  # three baseline seeds that spread widely by luck: sigma-hat 0.093 on 2 dof
    noise = pooled_noise([wide])
    assert noise.dof == 2 and noise.sigma > 0.09
    candidate = [0.99]  # 0.036 better: 0.14 widened standard errors, under the gate
    assert judge(candidate, wide, noise).action == CONFIRM  # confirmed, and its runs add to the estimate
    assert judge(candidate, wide, noise, thresholds=Thresholds(learn_dof=0)).action == DISCARD
    assert judge([1.05], wide, noise).action == DISCARD  # not better at all: nothing to confirm
    assert judge(candidate, wide, Noise(noise.sigma, 5)).action == DISCARD  # measured well enough: the gate


def test_direction_follows_the_metric():
    assert judge([1.05], BEST, NOISE, maximize=True).action == KEEP
    assert judge([0.95], BEST, NOISE, maximize=True).action == DISCARD
    def strict(candidate: float, best: float, maximize: bool = False) -> bool:
        decision = Strict(maximize=maximize).next(Case((Run(candidate),), (Run(best),)))
        assert isinstance(decision, Decision)
        return decision.keep

    assert strict(0.5, 1.0) and not strict(0.5, 1.0, maximize=True)


def test_ties_go_to_the_simpler_change():
    assert judge([1.005], BEST, NOISE, simpler=True).action == KEEP  # 0.4 standard errors worse, but simpler
    assert judge([1.005], BEST, NOISE).action == DISCARD
    assert judge([1.03], BEST, NOISE, simpler=True).action == DISCARD  # simpler, but clearly worse
    diff = "--- a/train.py\n+++ b/train.py\n@@ -1,3 +1,2 @@\n-x = 1\n-y = 2\n+x = 2\n keep\n"
    assert changed_lines(diff) == (1, 2) and is_simpler(diff)
    assert not is_simpler(diff.replace("-y = 2\n", ""))


def test_without_a_noise_estimate_a_gain_is_run_again_to_measure_it():
    verdict = judge([0.999], [1.0], Noise(0.0, 0))
    assert verdict.action == CONFIRM and math.isnan(verdict.z)
    assert judge([1.001], [1.0], Noise(0.0, 0)).action == DISCARD
    assert judge([0.999, 0.998], [1.0], Noise(0.0, 0), thresholds=Thresholds(max_confirm=1)).action == KEEP
    with pytest.raises(ValueError):
        judge([], BEST, NOISE)


def test_on_null_streams_the_rule_keeps_few_where_strict_keeps_about_a_third_to_a_half():
    rates = simulate(0.0, streams=150, candidates=20, seed=3)
    assert rates.keep_rate <= 0.05
    assert 0.3 <= rates.strict_keep_rate <= 0.6
    assert rates.extra_runs_per_looked_better <= 1.5


def test_a_three_sigma_gain_is_kept_at_least_four_times_in_five():
    rates = simulate(3.0, streams=1500, candidates=1, seed=4)
    assert rates.keep_rate >= 0.8
    assert rates.extra_runs_per_looked_better <= 1.5


def test_the_first_candidate_after_three_seeds_is_rarely_kept_for_nothing():
    widened = simulate(0.0, streams=3000, candidates=1, seed=5)
    plain = simulate(0.0, streams=3000, candidates=1, seed=5, thresholds=Thresholds(widen_z=0))
    assert widened.keep_rate <= 0.05 < plain.keep_rate  # the estimate from 2 dof is too low often enough
    assert 0.45 <= widened.strict_keep_rate <= 0.55  # strict against a fixed best: a coin flip


def test_the_simulation_is_a_real_stream_of_draws():
    a, b = simulate(0.0, streams=20, seed=1), simulate(0.0, streams=20, seed=2)
    assert a != b  # different seeds, different streams
    random.seed(0)  # the simulation has its own generator: global state does not change it
    assert simulate(0.0, streams=20, seed=1) == a


def test_a_metric_without_noise_is_decided_at_once():
    exact = Noise(sigma=0.0, dof=2)  # a deterministic task: every run gives the same number
    kept, dropped = judge([0.999], [1.0, 1.0, 1.0], exact), judge([1.001], [1.0, 1.0, 1.0], exact)
    assert kept.action == KEEP and kept.reason == "better with no run-to-run noise at all: kept at once"
    assert dropped.action == DISCARD and dropped.reason == "no run-to-run noise at all: not better"
    assert "inf" not in kept.reason + dropped.reason
    assert judge([1.0], [1.0, 1.0, 1.0], exact).action == DISCARD
    assert judge([1.0], [1.0, 1.0, 1.0], exact, simpler=True).action == KEEP
