"""Stopping hopeless runs early (prune.py): what is stopped, when, and what is let through."""

from __future__ import annotations

import math

from autoresearch.decide.prune import Pruner, Settings, curve_of, gap, level

BUDGET = 100.0


def schedule(t: float, warmdown: float = 0.4, scale: float = 1.0) -> float:
    """A training curve like the baseline's: a fast early fall, then a learning-rate decay over the last
    `warmdown` of the budget that takes a further 0.3 off by the end. `scale` stretches time (a slower run)."""
    t = t / scale
    decay_from = (1 - warmdown) * BUDGET
    decayed = 0.3 * max(0.0, t - decay_from) / (warmdown * BUDGET) if warmdown else 0.0
    return 2.0 + 3.0 * math.exp(-t / 15) - decayed


def curve(f, offset: float = 0.0) -> list[tuple[float, float]]:
    return [(float(t), f(t) + offset) for t in range(1, int(BUDGET) + 1)]


def steps(points) -> list[dict]:
    return [{"event": "step", "step": i, "elapsed": t, "train_loss": loss, "tokens": i, "tokens_per_s": 1.0}
            for i, (t, loss) in enumerate(points, 1)]


def first_stop(pruner: Pruner, points) -> tuple[float, str] | None:
    for event in steps(points):
        reason = pruner.observe(event)
        if reason is not None:
            return event["elapsed"], reason
    return None


REFERENCES = [curve(schedule, -0.01), curve(schedule), curve(schedule, 0.01)]


def test_a_run_like_the_best_or_better_is_never_stopped():
    assert first_stop(Pruner(REFERENCES, BUDGET), curve(schedule)) is None
    assert first_stop(Pruner(REFERENCES, BUDGET), curve(schedule, -0.5)) is None


def test_a_hopeless_run_is_stopped_once_it_has_been_behind_for_the_hold_and_the_reason_says_why():
    stuck = curve(lambda t: schedule(t) + 1.5)  # 1.5 above the best all along
    at, reason = first_stop(Pruner(REFERENCES, BUDGET), stuck)
    assert at == 35.0  # after 25% of the budget, and behind without a break for 10% more
    assert reason.startswith("stopped early at 35% of the budget: train loss ")
    assert "for the best's 3 runs at 35 s" in reason and "even falling 2x as far as they did" in reason


def test_the_window_the_hold_and_the_start_follow_the_settings():
    stuck = curve(lambda t: schedule(t) + 1.5)
    at, _ = first_stop(Pruner(REFERENCES, BUDGET, Settings(after=0.4, hold=0.0)), stuck)
    assert at == 40.0
    assert first_stop(Pruner(REFERENCES, BUDGET, Settings(enabled=False)), stuck) is None


def test_a_later_learning_rate_decay_is_let_through_though_it_is_behind_in_the_middle():
    # decays over the last 10% instead of 40%: behind the best from 60% on, by 0.08 at 75% (over the window)
    late = curve(lambda t: schedule(t, warmdown=0.1))
    found = gap(late, REFERENCES, 75.0, BUDGET, Settings())
    assert found.loss - found.theirs > 0.075 > found.allowance and not found.hopeless
    assert first_stop(Pruner(REFERENCES, BUDGET), late) is None


def test_a_slow_start_within_reach_is_let_through_and_a_far_one_is_not():
    assert first_stop(Pruner(REFERENCES, BUDGET), curve(lambda t: schedule(t, scale=1.3))) is None
    assert first_stop(Pruner(REFERENCES, BUDGET), curve(lambda t: schedule(t, scale=6.0))) is not None


def test_nothing_is_decided_after_until_nor_for_a_spike_shorter_than_the_hold():
    falls_behind_late = curve(lambda t: schedule(t) + (2.0 if t > 76 else 0.0))
    assert first_stop(Pruner(REFERENCES, BUDGET), falls_behind_late) is None
    spike = curve(lambda t: schedule(t) + (2.0 if 40 <= t < 49 else 0.0))  # 9 s behind, hold is 10 s
    assert first_stop(Pruner(REFERENCES, BUDGET, Settings(window=0.01)), spike) is None


def test_the_allowance_grows_with_the_spread_of_the_best_s_runs():
    spread = [curve(schedule, -0.3), curve(schedule), curve(schedule, 0.3)]
    found = gap(curve(schedule), spread, 50.0, BUDGET, Settings())
    assert math.isclose(found.allowance, 3 * 0.3)  # 3 standard deviations, above the 2% margin (0.04)
    assert not gap(curve(schedule, 0.9), spread, 50.0, BUDGET, Settings(catch_up=1.0)).hopeless
    alone = gap(curve(schedule), [curve(schedule)], 50.0, BUDGET, Settings())
    assert math.isclose(alone.allowance, 0.02 * level(curve(schedule), 100.0, 10.0))  # 2% of the final level


def test_only_runs_of_the_best_made_at_about_this_machine_speed_count():
    stuck = curve(lambda t: schedule(t) + 1.5)
    slower = Pruner(REFERENCES, BUDGET, speeds=[100.0, 100.0, 100.0], tolerance=0.25)
    slower.observe({"event": "machine_speed", "gflops": 60.0})  # no run of the best was made this slow
    assert first_stop(slower, stuck) is None
    alike = Pruner(REFERENCES, BUDGET, speeds=[100.0, 60.0, None], tolerance=0.25)
    alike.observe({"event": "machine_speed", "gflops": 62.0})
    assert len(alike.references) == 2 and first_stop(alike, stuck) is not None


def test_curves_come_from_step_events_only_and_a_gap_needs_points_in_the_window():
    events = [{"event": "start", "params": 1}, {"event": "step", "elapsed": 1.0, "train_loss": 5.0},
              {"event": "step", "elapsed": 2.0}, {"event": "done", "steps": 2}]
    assert curve_of(events) == [(1.0, 5.0)]
    assert level([(1.0, 5.0), (2.0, 4.0), (3.0, 3.0)], 3.0, 1.5) == 3.5
    assert level([(1.0, 5.0), (5.0, 3.0)], 4.0, 1.0) == 3.5  # lines further apart than the window: read between
    assert level([(1.0, 5.0)], 4.0, 1.0) is None
    assert gap([(50.0, 3.0)], REFERENCES, 70.0, BUDGET, Settings(window=0.05)) is None
    assert gap([(50.0, 3.0)], [[(1.0, 5.0), (40.0, 3.0)]], 50.0, BUDGET, Settings()) is None  # the best's ends early
    assert Pruner([[], []], BUDGET).observe(steps(curve(schedule))[50]) is None  # no reference curve: no decision
