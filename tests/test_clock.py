"""The harness's clock over one run (pure): when it stops and kills a run, and when a run's own figures
disagree with it."""

import pytest

from autoresearch.run.clock import KILL, STOP, Clock, allowance, overrun_for, tolerance_for


def clock(**kw) -> Clock:
    return Clock(**{"budget": 10.0, "startup": 20.0, "finish": 8.0, "launched": 100.0, **kw})


def test_before_start_the_run_is_killed_at_its_start_up_allowance():
    c = clock()
    when, action, why = c.next_action()
    assert (when, action) == (120.0, KILL) and "start-up allowance of 20 s" in why


def test_the_budget_runs_from_the_start_line_as_the_harness_read_it():
    c = clock()
    c.started(103.0)
    assert c.next_action()[:2] == (113.0, STOP)
    c.stop_sent = True
    when, action, why = c.next_action()
    assert action == KILL and when == 113.0 + overrun_for(10.0) and "past its budget" in why
    c.done(113.2)
    assert c.next_action()[:2] == (121.2, KILL)  # then saving may take `finish`
    assert c.startup_seconds == pytest.approx(3.0) and c.training_seconds == pytest.approx(10.2)
    assert c.finish_seconds(114.0) == pytest.approx(0.8)


def test_a_second_start_or_done_line_moves_nothing():
    c = clock()
    c.started(101.0)
    c.started(150.0)
    c.done(111.0)
    c.done(190.0)
    assert c.start_at == 101.0 and c.done_at == 111.0


def test_a_done_line_before_any_start_is_ignored():
    c = clock()
    c.done(101.0)
    assert c.done_at is None and c.next_action()[1] == KILL


def test_an_honest_run_agrees_with_the_clock():
    c = clock()
    c.started(101.0)
    c.done(111.05)
    assert c.verdict(10.0) is None


def test_a_run_that_reports_less_training_than_it_had_is_tampered():
    c = clock(budget=5.0)
    c.started(101.0)
    c.done(106.5)  # within the overrun, but it says it trained 5 s... of 5.5
    assert c.verdict(5.0) is None  # within the tolerance
    c2 = clock(budget=5.0)
    c2.started(101.0)
    c2.done(107.0)
    status, why = c2.verdict(2.0)
    assert status == "tampered" and "disagrees" in why


def test_a_run_that_kept_a_clock_of_its_own_before_its_start_line_is_tampered():
    c = clock(budget=5.0)
    c.started(101.0)
    c.done(106.0)
    assert c.verdict(21.8)[0] == "tampered"  # 21.8 s of its own against 5 s by the harness


def test_training_past_the_budget_and_its_overrun_is_a_timeout():
    c = clock(budget=5.0)
    c.started(101.0)
    c.done(101.0 + 5.0 + overrun_for(5.0) + 0.5)
    status, why = c.verdict(None)
    assert status == "timeout" and "past its budget" in why


def test_allowances_follow_the_baseline_but_never_pass_the_cap():
    assert allowance([], 2.0, 5.0, 180.0) == 180.0
    assert allowance([3.0, 4.0], 2.0, 5.0, 180.0) == 13.0
    assert allowance([100.0], 2.0, 5.0, 180.0) == 180.0


def test_overrun_and_tolerance_grow_with_the_budget():
    assert overrun_for(5.0) == 2.0 and overrun_for(300.0) == pytest.approx(9.0)
    assert tolerance_for(300.0) == pytest.approx(7.0)
