"""The loop's decisions, in-process with scripted outcomes (`FakeRunner`): what is run, how often, with which
seeds and for what purpose, and what is kept. No training: each test takes milliseconds and always ends the
same way. (The real runs of the same paths are in test_loop.py, test_keep_loop.py and test_speed.py.)"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from loopkit import Scripted, code_text, fake_loop, loss_of, make_task, proposals, run_loop, scored, settings

from autoresearch.agents.replay import ReplayAgent
from autoresearch.decide.measured import measured
from autoresearch.loop import Limits, LoopError, request_recalibration
from autoresearch.store import Status, Store


def purposes(runner, seq: int) -> list[tuple[str, int]]:
    """(purpose, seed) of each run the loop asked for experiment `seq`'s code, in order."""
    return [(str(r.purpose), r.seed) for r in runner.requests if r.seq == seq]


def test_the_confirm_rule_keeps_real_gains_and_not_noise(tmp_path):
    task = make_task(tmp_path)
    changes = proposals(("nothing of substance", "LOSS = 1.0\nUNUSED = 1\n"), ("a clear gain", "LOSS = 0.92\n"),
                        ("a small gain", "LOSS = 0.985\n"))
    history, runner, reason = run_loop(task, scored(loss_of, sigma=0.01), changes)
    base, null, clear, small = history
    assert reason == "all 3 replay proposals used"
    assert purposes(runner, 0) == [("own", 0), ("noise", 1), ("noise", 2)]
    assert base.status is Status.KEEP and base.metrics["run_seeds"] == [0, 1, 2]
    assert base.metric == pytest.approx(sum(base.metrics["runs"]) / 3) and base.metrics["noise_dof"] == 2
    assert null.status is Status.DISCARD
    assert clear.status is Status.KEEP and purposes(runner, 2) == [("own", 0), ("remeasure", 1)]  # kept on one run
    assert "at once" in clear.metrics["verdict"] and clear.metrics["z"] >= 3
    assert clear.metrics["improvement"] == pytest.approx(base.metric - clear.metric)
    # 0.065 above the best's 0.92 run: not better, discarded on its first run. Within the noise of a best that
    # is 0.015 better, it would have been run again (below).
    assert small.status is Status.DISCARD and purposes(runner, 3) == [("own", 0)]
    rows = (task / "results.tsv").read_text().splitlines()
    assert len(rows) == 1 + len(history) and rows[2].split("\t")[3] == "discard"


def test_a_gain_within_the_noise_is_run_again_with_fresh_seeds_until_the_rule_decides(tmp_path):
    task = make_task(tmp_path)
    history, runner, _ = run_loop(task, scored(loss_of, sigma=0.01), proposals("LOSS = 0.985\n"))
    base, small = history
    runs = purposes(runner, 1)
    assert runs[0] == ("own", 0) and runs[1:] == [("confirm", seed) for seed in range(1, len(runs))]
    assert small.metrics["confirm_runs"] == len(runs) - 1 >= 1 and len(small.metrics["runs"]) == len(runs)
    assert small.metrics["verdict"] and small.status in (Status.KEEP, Status.DISCARD)
    assert (small.status is Status.KEEP) == (small.metrics["z"] >= 2.0 or "simpler" in small.metrics["verdict"])


def test_strict_runs_each_once_and_keeps_only_what_is_lower(tmp_path):
    task = make_task(tmp_path)
    changes = proposals(*(f"LOSS = 1.0\nUNUSED = {i}\n" for i in range(3)), "LOSS = 0.9999\n", "LOSS = 1.0001\n")
    history, runner, _ = run_loop(task, changes=changes, config=settings(keep={"rule": "strict"}))
    assert [e.status for e in history] == [Status.KEEP, Status.DISCARD, Status.DISCARD, Status.DISCARD, Status.KEEP,
                                           Status.DISCARD]
    assert len(runner.requests) == 6 and all("runs" not in e.metrics for e in history)  # one run each


def test_a_restarted_loop_goes_on_from_the_runs_already_made(tmp_path):
    task = make_task(tmp_path)
    calls = []

    def dies_at_the_second_run(request):
        calls.append(request.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the loop dies between runs of the baseline
        return 1.0 + request.seed / 1000

    loop, _ = fake_loop(task, dies_at_the_second_run, limits=Limits(max_experiments=1))
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    loop.close()
    loop, runner = fake_loop(task, dies_at_the_second_run, resume=True, limits=Limits(max_experiments=1))
    try:
        loop.run()
        (base,) = loop.store.experiments("t")
    finally:
        loop.close()
    assert calls == [0, 1, 1, 2]  # seed 0 ran once; seed 1, cut short, ran again
    assert base.status is Status.KEEP and base.metrics["run_seeds"] == [0, 1, 2]


def test_the_best_is_measured_again_every_few_keeps(tmp_path):
    task = make_task(tmp_path)
    config = settings(keep={"recalibrate_every": 1, "noise_seeds": 2})
    history, runner, _ = run_loop(task, scored(loss_of, sigma=0.01), proposals("LOSS = 0.8\n", "LOSS = 0.8\nA = 0\n"),
                                  config=config)
    base, kept, null = history
    assert kept.status is Status.KEEP and null.status is Status.DISCARD
    assert purposes(runner, 1) == [("own", 0), ("noise", 1), ("noise", 2)]  # noise_seeds more, once kept
    with Store.open(task) as store:
        assert len(store.remeasured_runs(kept)) == 2


@pytest.mark.parametrize("best_runs", [2, 1])
def test_a_best_kept_on_one_run_is_run_again_until_it_has_best_runs(tmp_path, best_runs):
    task = make_task(tmp_path)
    config = settings(keep={"learn_dof": 0, "recalibrate_every": 0, "best_runs": best_runs})
    history, runner, _ = run_loop(task, scored(loss_of, sigma=0.01), proposals("LOSS = 0.7\n", "LOSS = 0.7\nA = 0\n"),
                                  config=config)
    base, kept, null = history
    assert kept.status is Status.KEEP and kept.metrics["confirm_runs"] == 0 and null.status is Status.DISCARD
    settling = [("remeasure", 1)] if best_runs == 2 else []
    assert purposes(runner, 1) == [("own", 0), *settling]
    with Store.open(task) as store:
        again = store.remeasured_runs(kept)
        (shown,) = [e for e in measured(store, "t") if e.id == kept.id]
    assert len(again) == best_runs - 1
    assert shown.metric == pytest.approx((kept.metric + sum(again)) / (1 + len(again)))  # shown as measured


def test_a_new_best_whose_settling_run_fails_is_not_run_again_and_again(tmp_path):
    task = make_task(tmp_path)

    def flaky(request):
        if "LOSS = 0.7" in code_text(request) and request.seed == 1:
            return Scripted(status="crash", error="seed 1 fails")
        return loss_of(code_text(request))

    config = settings(keep={"learn_dof": 0, "recalibrate_every": 0})
    history, runner, _ = run_loop(task, flaky, proposals("LOSS = 0.7\n", "LOSS = 0.7\nA = 0\n", "LOSS = 0.7\nB = 0\n"),
                                  config=config)
    kept = history[1]
    assert kept.status is Status.KEEP and len(history) == 4  # the loop went on with the next proposals
    assert purposes(runner, 1) == [("own", 0), ("remeasure", 1)]  # tried once, not before every proposal


def test_the_best_is_measured_again_on_request_once_per_request(tmp_path):
    task = make_task(tmp_path)
    config = settings(keep={"recalibrate_every": 0, "noise_seeds": 2})
    changes = proposals("LOSS = 1.0\nA = 0\n", "LOSS = 1.0\nB = 0\n", "LOSS = 1.0\nC = 0\n")
    run_loop(task, changes=changes, config=config, limits=Limits(max_experiments=2))
    with Store.open(task) as store:
        request_recalibration(store, "t")
    _, runner, _ = run_loop(task, changes=changes, config=config, resume=True, limits=Limits(max_experiments=3))
    assert purposes(runner, 0) == [("noise", 2), ("noise", 3)]  # the baseline's next seeds
    _, runner, _ = run_loop(task, changes=changes, config=config, resume=True, limits=Limits(max_experiments=4))
    assert purposes(runner, 0) == []  # a request served is not served twice


def test_a_slower_machine_makes_the_best_run_again_at_its_speed(tmp_path):
    task = make_task(tmp_path)
    machine = {"speed": 100.0}
    events = []

    def script(request):
        loss = loss_of(code_text(request)) * (1.3 if machine["speed"] < 80 else 1.0)  # a slow machine trains less
        return Scripted(metric=loss + request.seed * 1e-4, speed=machine["speed"])

    def on_event(event):
        events.append(event)
        if event.get("event") == "decided" and event.get("seq") == 0:
            machine["speed"] = 50.0  # from now on, half as fast

    config = settings(keep={"rule": "strict", "speed_tolerance": 0.25, "best_runs": 2})
    history, runner, _ = run_loop(task, script, proposals("LOSS = 0.95\n", "LOSS = 0.96\n"), config=config,
                                  on_event=on_event)
    base, first, second = history
    shifts = [e for e in events if e.get("event") == "speed"]
    assert [(e["seq"], e["best_seq"], e["runs"], e["shift"]) for e in shifts] == [(1, 0, 2, -0.5)]
    baseline_runs = [r for r in runner.requests if r.seq == 0]
    assert [(str(r.purpose), r.index, r.commit) for r in baseline_runs] == [
        ("own", 0, base.commit), ("speed", 1, base.commit), ("speed", 2, base.commit)]
    assert all(r.run_dir.parent == Path(base.log_path).parent for r in baseline_runs[1:])  # in the best's folder
    # judged against the best's runs at the new speed (1.3 slower), the gains are kept; the shift is recorded
    assert first.status is Status.KEEP and first.metrics["speed_shift"] == -0.5
    assert second.status is Status.DISCARD and "speed_shift" not in second.metrics  # runs at its speed existed


def test_the_speed_check_can_be_turned_off(tmp_path):
    task = make_task(tmp_path)
    speeds = iter([100.0, 100.0, 100.0, 30.0])

    def script(request):
        return Scripted(metric=loss_of(code_text(request)), speed=next(speeds))

    history, runner, _ = run_loop(task, script, proposals("LOSS = 1.0\nA = 0\n"),
                                  config=settings(keep={"speed_tolerance": 0}))
    assert [str(r.purpose) for r in runner.requests] == ["own", "noise", "noise", "own"]
    assert "speed_shift" not in history[1].metrics


def test_a_hopeless_first_run_is_stopped_early_and_its_code_not_run_again(tmp_path):
    task = make_task(tmp_path)

    def script(request):
        frozen = "FROZEN" in code_text(request)
        curve = [(t / 2, 3.0 if frozen else 3.0 - 2.0 * t / 20) for t in range(21)]  # 10 s of training
        return Scripted(metric=loss_of(code_text(request)), curve=curve)

    config = settings(prune={"enabled": True}, keep={"rule": "strict"})
    history, runner, _ = run_loop(task, script, proposals("LOSS = 0.9\nFROZEN = 1\n", "LOSS = 0.9\nFROZEN = 1\n",
                                                          "LOSS = 0.9\n"), config=config)
    base, hopeless, again, fine = history
    assert (hopeless.status, again.status, fine.status) == (Status.PRUNED, Status.REJECTED, Status.KEEP)
    assert hopeless.error.startswith("stopped early at ") and again.metrics["same_code_as"] == hopeless.seq
    steps = [json.loads(line.split(" ", 1)[1]) for line in Path(hopeless.log_path).read_text().splitlines()]
    assert 2.5 <= steps[-1]["elapsed"] <= 7.5  # stopped between 25% and 75% of the budget, not at the end
    assert runner.requests[1].pruner is not None and runner.requests[0].pruner is None  # the baseline never


def test_a_hundred_and_twenty_experiments_lose_nothing(tmp_path):
    task = make_task(tmp_path)

    def script(request):
        text = code_text(request)
        if "CRASH" in text:
            return Scripted(status="crash", error="boom")
        return loss_of(text) + request.seed * 1e-6

    changes = []
    for i in range(120):
        kind = i % 4
        text = (f"LOSS = {1 - (i + 1) / 1000:.4f}\n" if kind == 0 else f"LOSS = 2.0\nA = {i}\n" if kind == 1 else
                f"LOSS = 1.0\nCRASH = {i}\n" if kind == 2 else None)
        changes.append({"description": f"#{i}", **({"files": {"train.py": text}} if text else {})})
    history, runner, reason = run_loop(task, script, changes, config=settings(keep={"rule": "strict"}))
    assert reason == "all 120 replay proposals used" and [e.seq for e in history] == list(range(121))
    statuses = [e.status for e in history[1:]]
    assert statuses == [Status.KEEP, Status.DISCARD, Status.CRASH, Status.REJECTED] * 30
    assert len(runner.requests) == 1 + 90  # the baseline, and every proposal that changed something
    rows = (task / "results.tsv").read_text().splitlines()
    assert len(rows) == 122
    with Store.open(task) as store:
        assert store.incumbent("t").description == "#116"


def test_after_crashes_in_a_row_the_best_runs_once_and_a_broken_machine_stops_the_run(tmp_path):
    task = make_task(tmp_path)
    broken = {"now": False}

    def script(request):
        if broken["now"] or "CRASH" in code_text(request):
            return Scripted(status="crash", error="CUDA error: an illegal memory access")
        return loss_of(code_text(request))

    changes = proposals("LOSS = 0.9\n", *(f"LOSS = 0.8\nCRASH = {i}\n" for i in range(8)))
    loop, runner = fake_loop(task, script, ReplayAgent(changes),
                             config=settings(keep={"rule": "strict"}, loop={"check_best_after_crashes": 2}))
    try:
        loop.on_event = lambda e: broken.update(now=True) if e.get("event") == "decided" and e["seq"] == 4 else None
        reason = loop.run()
        history = loop.store.experiments("t")
    finally:
        loop.close()
    # after crashes 2 (seq 2, 3) the best ran fine; after 4 (seq 4, 5) the machine itself was broken
    assert [str(r.purpose) for r in runner.requests if r.seq == 1] == ["own", "remeasure", "remeasure"]
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP] + [Status.CRASH] * 4
    assert reason.startswith("4 experiments in a row failed, and the best (#1) failed too when it ran again")


# ------------------------------------------------------------------------------------------ what is kept, resume

@pytest.mark.parametrize("policy", ["kept", "all"])
def test_trained_models_stay_only_for_kept_experiments(tmp_path, policy):
    task = make_task(tmp_path)
    config = settings(keep={"noise_seeds": 2, "best_runs": 1}, loop={"keep_models": policy})
    history, _, _ = run_loop(task, scored(loss_of, sigma=0.01), proposals("LOSS = 0.5\n", "LOSS = 2.0\n"),
                             config=config)
    folders = {e.seq: Path(e.log_path).parent for e in history}
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP, Status.DISCARD]
    assert (folders[0] / "run-2" / "train.log").is_file()  # the baseline ran twice
    if policy == "all":
        assert all((folder / "model" / "model.pt").is_file() for folder in folders.values())
        assert (folders[0] / "run-2" / "model" / "model.pt").is_file()
        return
    for e in history:  # one model per kept experiment, the first run's; none for the others
        assert (folders[e.seq] / "model" / "model.pt").is_file() == (e.status is Status.KEEP), e
        assert not list(folders[e.seq].glob("run-*/model")), e


def test_resume_drops_a_stray_commit_and_half_written_edits_and_goes_on(tmp_path):
    task = make_task(tmp_path)
    changes = proposals("LOSS = 0.9\n", "LOSS = 0.9\n", "LOSS = 0.8\n")
    strict = settings(keep={"rule": "strict"})
    first, _ = fake_loop(task, agent=ReplayAgent(changes), config=strict, limits=Limits(max_experiments=2))
    assert "2 experiments" in first.run()
    (first.worktree.path / "train.py").write_text("LOSS = 0.1\n")  # a crash after a commit, before the store
    first.worktree.commit("stray commit from a killed loop")
    (first.worktree.path / "train.py").write_text("half-written edit")  # and an uncommitted edit
    first.close()
    with pytest.raises(LoopError, match="--resume"):
        fake_loop(task, agent=ReplayAgent(changes), config=strict)
    second, runner = fake_loop(task, agent=ReplayAgent(changes), config=strict, resume=True,
                               limits=Limits(max_experiments=4))
    try:
        assert second.worktree.head() == second.incumbent().commit and not second.worktree.changed_files()
        second.run()
        history = second.store.experiments("t")
        assert [(e.seq, e.status) for e in history] == [(0, Status.KEEP), (1, Status.KEEP), (2, Status.REJECTED),
                                                        (3, Status.KEEP)]
        assert history[2].error == "empty proposal: no file changed"  # the best's own code
        assert second.worktree.head() == history[3].commit
        assert [r.seq for r in runner.requests] == [3]  # nothing of the first loop ran again
    finally:
        second.close()
    log = subprocess.run(["git", "log", "--format=%s", "autoresearch/t"], cwd=task, capture_output=True, text=True,
                         check=True).stdout
    assert "stray commit" not in log and log.splitlines()[:2] == ["change 3", "change 1"]


def test_an_experiment_begun_and_never_finished_runs_again_on_resume(tmp_path):
    task = make_task(tmp_path)
    loop, _ = fake_loop(task, limits=Limits(max_experiments=1))
    head = loop.worktree.head()
    # what a kill -9 during training leaves: the baseline begun but never finished
    loop.store.begin(tag="t", parent_commit=head, commit=head, diff="", description="baseline", agent="-", seed=0,
                     log_path=str(task / ".autoresearch" / "logs" / "t" / "0000" / "train.log"))
    loop.close()
    loop, runner = fake_loop(task, resume=True, limits=Limits(max_experiments=1))
    try:
        loop.run()
        (only,) = loop.store.experiments("t")
    finally:
        loop.close()
    assert only.status is Status.KEEP and only.metric == 1.0 and [r.seq for r in runner.requests] == [0, 0, 0]


def test_a_resumed_line_keeps_its_budget_and_refuses_another(tmp_path):
    task = make_task(tmp_path)
    fake_loop(task, budget=1.5)[0].close()  # `run --budget 1.5`, then stopped
    with pytest.raises(LoopError, match=r"trains for 1.5 s per experiment.*--budget 3 would compare"):
        fake_loop(task, resume=True, budget=3.0)
    events: list[dict] = []
    resumed, runner = fake_loop(task, resume=True, on_event=events.append, limits=Limits(max_experiments=1))
    try:
        assert resumed.budget == 1.5 and resumed.proposer.context().budget_seconds == 1.5
        resumed.run()
    finally:
        resumed.close()
    assert events[0] == {"event": "budget_kept", "budget": 1.5, "configured": 10.0}  # the task says 10 s
    assert {r.budget for r in runner.requests} == {1.5}
