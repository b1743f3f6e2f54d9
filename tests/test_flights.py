"""Several runs of one loop at once (`runs_at_once`, loop/flights.py), in-process with a `FakeRunner` whose
runs last a little while and overlap: the baseline's seeds, a candidate's confirmations and the best's
re-runs train together, and the loop decides exactly what it decides when they go one after another."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from loopkit import Scripted, code_text, loss_of, make_task, proposals, run_loop, scored, settings

from autoresearch.config import ConfigError, config_from_dict
from autoresearch.decide.rule import Case, Confirm, Strict
from autoresearch.run.supervise import run_folder
from autoresearch.store import Run, Status, Store

SMALL_GAINS = proposals("LOSS = 0.995\n", "LOSS = 0.99\n", "LOSS = 1.004\n", "LOSS = 0.985\n", "LOSS = 0.975\n",
                        "LOSS = 0.99\nUNUSED = 1\n", "LOSS = 0.97\n")


def overlapped(runner, a, b) -> bool:
    (s1, e1), (s2, e2) = runner.spans[a.key], runner.spans[b.key]
    return s1 < e2 and s2 < e1


def recorded(task: Path) -> list[tuple]:
    """Each experiment's status, metric and runs (metric, seed, purpose), as the store has them."""
    with Store.open(task) as store:
        return [(e.status, e.metric, [(r.metric, r.seed, r.purpose) for r in store.runs(e)])
                for e in store.experiments("t")]


def test_runs_at_once_decide_exactly_what_runs_one_after_another_decide(tmp_path):
    script = scored(loss_of, sigma=0.01)
    one = make_task(tmp_path, "one")
    _, serial, _ = run_loop(one, script, SMALL_GAINS)
    many = make_task(tmp_path, "many")
    history, parallel, _ = run_loop(many, script, SMALL_GAINS, runs_at_once=3, seconds=0.05)
    assert any(e.metrics.get("confirm_runs") for e in history)  # confirmations happened
    assert recorded(many) == recorded(one)
    assert parallel.most_at_once == 3  # the baseline's seeds at once, at least
    assert {r.key for r in serial.requests} <= {r.key for r in parallel.requests}
    # whatever ran ahead and was not taken left no folder behind
    with Store.open(many) as store:
        for e in store.experiments("t"):
            folder, runs = Path(e.log_path).parent, len(store.runs(e))
            assert {p for p in folder.glob("run-*")} == {run_folder(folder, i) for i in range(1, runs)}


def test_the_baselines_seeds_train_at_once(tmp_path):
    task = make_task(tmp_path)
    history, runner, _ = run_loop(task, scored(loss_of, sigma=0.01), runs_at_once=3, seconds=0.2,
                                  config=settings(keep={"noise_seeds": 3}))
    first, second, third = [r for r in runner.requests if r.seq == 0]
    assert overlapped(runner, first, second) and overlapped(runner, first, third)
    assert history[0].metrics["run_seeds"] == [0, 1, 2]


def test_a_confirmation_and_its_further_seeds_train_at_once_and_the_unused_are_called_off(tmp_path):
    task = make_task(tmp_path)

    def script(request):
        if request.seq == 1 and request.seed >= 2:
            time.sleep(1.0)  # the further confirmations are still training when the rule decides
        return Scripted(metric=loss_of(code_text(request)) + (0.0, 0.01, -0.01, 0.005)[request.seed % 4] *
                        (request.seq == 0) + (0.02 * (request.seed == 1)) * (request.seq == 1))

    history, runner, _ = run_loop(task, script, proposals("LOSS = 0.985\n"), runs_at_once=4, seconds=0.1)
    base, candidate = history
    asked = [r for r in runner.requests if r.seq == 1]
    assert [r.seed for r in asked] == [0, 1, 2, 3]  # its first run, then the confirmations at once
    assert overlapped(runner, asked[1], asked[2]) and overlapped(runner, asked[1], asked[3])
    assert candidate.status is Status.DISCARD and candidate.metrics["run_seeds"] == [0, 1]
    assert {r.seed for r in runner.cancelled if r.seq == 1} == {2, 3}
    folder = Path(candidate.log_path).parent
    assert run_folder(folder, 1).exists() and not run_folder(folder, 2).exists()


def test_the_bests_re_runs_and_the_candidates_confirmation_train_at_once(tmp_path):
    task = make_task(tmp_path)
    machine = {"speed": 100.0}

    def script(request):
        return Scripted(metric=loss_of(code_text(request)) + request.seed * 1e-4, speed=machine["speed"])

    def on_event(event):
        if event.get("event") == "decided" and event.get("seq") == 0:
            machine["speed"] = 50.0

    config = settings(keep={"speed_tolerance": 0.25, "best_runs": 2, "noise_seeds": 2})
    history, runner, _ = run_loop(task, script, proposals("LOSS = 0.9995\n"), config=config, on_event=on_event,
                                  runs_at_once=3, seconds=0.2)
    best_runs = [r for r in runner.requests if r.seq == 0 and str(r.purpose) == "speed"]
    confirmation = next(r for r in runner.requests if r.seq == 1 and r.seed == 1)
    assert len(best_runs) == 2 and all(overlapped(runner, b, confirmation) for b in best_runs)


def test_a_change_is_kept_only_if_every_run_of_it_made_came_back_clean(tmp_path):
    def script(request):
        if request.seq == 1 and request.seed >= 2:
            return Scripted(status="tampered", error="train.py wrote to the evaluator")
        noise = (0.0, 0.01, -0.01)[request.seed % 3] if request.seq == 0 else 0.0
        return Scripted(metric=loss_of(code_text(request)) + noise)

    change = proposals("LOSS = 0.975\n")
    serial_task = make_task(tmp_path, "serial")
    (_, kept), _, _ = run_loop(serial_task, script, change)
    assert kept.status is Status.KEEP and kept.metrics["run_seeds"] == [0, 1]  # decided before seed 2
    task = make_task(tmp_path, "at-once")
    (_, void), runner, _ = run_loop(task, script, change, runs_at_once=3, seconds=0.05)
    assert {r.seed for r in runner.requests if r.seq == 1} == {0, 1, 2, 3}
    assert void.status is Status.TAMPERED and "wrote to the evaluator" in void.error


def test_the_rule_says_how_many_runs_may_start_ahead():
    run = Run(1.0, 0, None, "own")
    confirm, strict = Confirm(noise_seeds=3), Strict(noise_seeds=3)
    assert confirm.ahead(Case(runs=(), best=None)) == 2  # the baseline's three seeds are all asked for
    assert confirm.ahead(Case(runs=(run,), best=None)) == 1
    assert confirm.ahead(Case(runs=(), best=(run,))) == 0  # a first run is often decided alone
    assert confirm.ahead(Case(runs=(run,), best=(run,))) == 2  # the first confirmation, and two more
    assert confirm.ahead(Case(runs=(run,) * 3, best=(run,))) == 0
    assert strict.ahead(Case(runs=(run,), best=(run,))) == 0
    assert strict.ahead(Case(runs=(), best=None)) == 0


@pytest.mark.parametrize("executor, message", [
    ({"runs_at_once": 2}, "need kind = ray"),
    ({"kind": "ray", "runs_at_once": 0}, "use 1"),
])
def test_runs_at_once_is_checked(executor, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"executor": executor}).validate()


@pytest.mark.parametrize("train, executor, device", [
    ({"device": "auto"}, {"kind": "ray", "gpus": 1.0}, "cuda"),  # the nodes' GPU, whatever the driver has
    ({"device": "auto"}, {"kind": "ray", "gpus": 0.0, "cpus": 4.0}, "cpu"),
    ({"device": "cuda"}, {"kind": "ray", "gpus": 0.0}, "cuda"),  # what the task says, when it says it
    ({"device": "auto", "command": "python solve.py"}, {"kind": "ray"}, "-"),  # nothing the harness evaluates
])
def test_the_device_of_runs_on_a_cluster_is_the_nodes(train, executor, device):
    from autoresearch.run.executor import run_device

    config = config_from_dict({"train": train, "executor": executor,
                               "metric": {"source": "regex", "regex": "^score: (\\S+)", "name": "score", "direction": "maximize"}
                               if "command" in train else {},
                               "loop": {"editable": ["solve.py"]} if "command" in train else {}})
    assert run_device(config.validate()) == device
