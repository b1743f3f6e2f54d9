"""The machine-speed check: the probe, the pure comparison, the probe's line in a run's output, and the loop
running the best again when the machine's speed has moved since it was measured."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from conftest import cli

from autoresearch.agents.replay import ReplayAgent
from autoresearch.config import load_config
from autoresearch.data.prepare import open_dataset
from autoresearch.decide import speed
from autoresearch.decide.measured import current_runs, measured
from autoresearch.loop import Loop
from autoresearch.report.noise import measured_noise
from autoresearch.run import sandbox
from autoresearch.store import Run, Status, Store


def test_comparable_picks_the_runs_made_at_about_the_same_speed():
    assert speed.comparable([100.0, 80.0, 130.0, None], 100.0, 0.25) == [0, 1, 3]  # 130 is 30% faster
    assert speed.comparable([100.0, 80.0], 60.0, 0.25) == []  # 100 is 67% faster than 60, 80 is 33%
    assert speed.comparable([100.0, 80.0], 64.0, 0.25) == [1]  # 80 = 1.25 x 64: at the edge
    assert speed.comparable([100.0, 40.0], None, 0.25) == [0, 1]  # the run's own speed is unknown
    assert speed.comparable([100.0, 40.0], 10.0, 0.0) == [0, 1]  # the check is off
    assert speed.shift(100.0, 50.0) == pytest.approx(-0.5) and speed.shift(50.0, 100.0) == pytest.approx(1.0)


def test_runs_of_one_code_are_grouped_by_speed():
    assert speed.groups([100.0, 104.0, 40.0, 41.0, 130.0], 0.25) == [[2, 3], [0, 1], [4]]
    assert speed.groups([100.0, None, 40.0], 0.25) == [[1, 2], [0]]  # unknown: with the first group
    assert speed.groups([100.0, 40.0], 0.0) == [[0, 1]] and speed.groups([None, None], 0.25) == [[0, 1]]
    assert speed.groups([], 0.25) == []


def test_a_slower_machine_does_not_count_as_noise(tmp_path):
    """The best's runs on a loaded machine score far worse: they are their own group for the noise, and the
    best is shown as measured on the machine as it is now."""
    with Store.open(tmp_path) as store:
        base = store.record(status=Status.KEEP, tag="t", parent_commit="a" * 40, commit="b" * 40, diff="",
                            description="baseline", agent="-", seed=0, metric=1.0,
                            metrics={"runs": [1.0, 1.01, 0.99], "run_speeds": [100.0, 102.0, 98.0]})
        for i, (value, speed_now) in enumerate([(1.5, 40.0), (1.51, 41.0)]):
            store.add_run(base, Run(value, 3 + i, speed_now, "remeasure", of_best=True))
        assert store.measured_speeds(base) == [100.0, 102.0, 98.0, 40.0, 41.0]
        grouped = measured_noise(store, "t")
        assert grouped.dof == 3 and grouped.sigma == pytest.approx(0.0091, rel=0.05)
        # at the machine's speed now: the runs made at about that speed
        quiet, loaded = measured_noise(store, "t", speed_now=101.0), measured_noise(store, "t", speed_now=40.0)
        assert quiet.dof == 2 and quiet.sigma == pytest.approx(0.01, rel=0.01)
        assert loaded.dof == 1 and loaded.sigma == pytest.approx(0.00707, rel=0.01)
        assert measured_noise(store, "t", speed_now=70.0).dof == 3  # none at that speed: all of them
        # shown (status, report, results.tsv) as measured at the latest run's speed
        assert current_runs(store, base) == [1.5, 1.51] and measured(store, "t")[0].metric == pytest.approx(1.505)
        store.set_line("t", speed_tolerance=0.0)  # the check off: one group, and the load looks like noise
        assert measured_noise(store, "t").sigma > 0.2 and measured(store, "t")[0].metric == pytest.approx(1.202)


def test_only_a_well_formed_speed_line_is_read():
    assert speed.parse_line(f"{speed.SPEED_PREFIX}123.5") == 123.5
    for line in (f"{speed.SPEED_PREFIX}none", f"{speed.SPEED_PREFIX}-3", f"{speed.SPEED_PREFIX}inf",
                 f"{speed.SPEED_PREFIX}nan", f"{speed.SPEED_PREFIX}0", "machine speed 12", ""):
        assert speed.parse_line(line) is None, line


def test_the_cpu_probe_measures_a_rate():
    rates = [speed.probe("cpu") for _ in range(3)]
    assert all(0 < r < 1e5 for r in rates)  # GFLOP/s of a CPU: more than nothing, less than any CPU has
    assert max(rates) / min(rates) < 10  # the same work timed the same way: the same order of magnitude


def test_the_gpu_probe_runs_in_a_child_so_train_py_finds_the_gpu_untouched(monkeypatch):
    ran_in = []
    monkeypatch.setattr(speed, "probe", lambda device: (ran_in.append(os.getpid()), 123.0)[1])
    assert speed.probe_before_script("cuda") == 123.0 and ran_in == []  # it ran, and not in this process
    assert speed.probe_before_script("cpu") == 123.0 and ran_in == [os.getpid()]  # a CPU: here
    monkeypatch.setattr(speed, "probe", lambda device: 1 / 0)
    with pytest.raises(RuntimeError, match="ended without a figure"):
        speed.probe_before_script("cuda")


def test_a_prestarted_interpreter_writes_the_speed_before_the_script_can_write_anything(tmp_path):
    script = tmp_path / "job" / "train.py"
    script.parent.mkdir()
    script.write_text(textwrap.dedent(f"""
        print("{speed.SPEED_PREFIX}999999")  # a candidate claiming a speed of its own
        print("script output")
    """))
    proc = sandbox.prestart_python(sandbox.Box(tmp_path), {})
    proc.go(script, {}, speed_probe="cpu")
    lines = proc.popen.stdout.read().decode().splitlines()
    assert proc.wait(timeout=60) == 0
    first = next(i for i, line in enumerate(lines) if line.startswith(speed.SPEED_PREFIX))
    assert 0 < speed.parse_line(lines[first]) < 999999
    assert lines.index("script output") > first + 1  # the candidate's claim comes after, where it is not read


# ------------------------------------------------------------------------------------------------ the loop

MARKER = "print('candidate code runs')\n"
FAKE = f"print('{speed.SPEED_PREFIX}1e9')\n"  # a candidate that claims the machine is as fast as ever


@pytest.fixture
def speed_task(tiny_task: Path, prepare) -> Path:
    toml = (tiny_task / "autoresearch.toml").read_text()
    toml = toml.replace("budget_seconds = 5.0", "budget_seconds = 2.0")
    toml = toml.replace("startup_allowance_seconds = 120.0", "startup_allowance_seconds = 25.0")
    toml = toml.replace('rule = "strict"', 'rule = "strict"\nbest_runs = 1').replace("speed_tolerance = 0",
                                                                                    "speed_tolerance = 0.25")
    (tiny_task / "autoresearch.toml").write_text(toml)
    subprocess.run(["git", "commit", "-qam", "tiny settings"], cwd=tiny_task, check=True)
    prepare(tiny_task)
    return tiny_task


def test_a_slower_machine_makes_the_best_run_again_at_its_speed(speed_task, tmp_path, monkeypatch):
    """The real runs of the speed check (the decisions are in test_decisions.py): the speed is the harness's
    figure, not what a candidate prints, and the best's extra runs run the best's code in its own folder."""
    load = tmp_path / "speed-factor"
    monkeypatch.setenv("AUTORESEARCH_FAULT_SPEED_FILE", str(load))
    train = (speed_task / "train.py").read_text()
    proposals = [{"description": "a candidate on a loaded machine", "files": {"train.py": FAKE + MARKER + train}}]
    events: list[dict] = []

    def on_event(event: dict) -> None:
        events.append(event)
        if event.get("event") == "decided" and event["seq"] == 0:
            # from now on the machine does a tenth of the work it did for the baseline: far below the dips a busy
            # test machine shows by itself (one of the baseline's own runs once measured 0.36 of the other)
            load.write_text("0.1")

    config = load_config(speed_task)
    loop = Loop(speed_task, config, open_dataset(config.data), ReplayAgent(proposals), tag="s", on_event=on_event)
    try:
        loop.run()
    finally:
        loop.close()
    with Store.open(speed_task) as store:
        base, loaded = store.experiments("s")
        base_runs, base_speeds = store.measured_runs(base), store.measured_speeds(base)
    assert loaded.status in (Status.KEEP, Status.DISCARD)
    (found,) = [e for e in events if e.get("event") == "speed"]  # one candidate: one check
    assert len(base_runs) == len(base_speeds) == 2  # its own run, and one more at the new speed (best_runs = 1)
    assert base_speeds[1] < 0.75 * base_speeds[0]  # scaled to 0.1: a margin for the quiet machine's dips
    assert found["seq"] == 1 and found["best_seq"] == 0 and found["runs"] == 1 and found["shift"] < -0.4
    assert loaded.metrics["speed_shift"] == pytest.approx(found["shift"])
    # the harness's own figure, not the candidate's claim
    assert loaded.metrics["run_speeds"][0] < 0.75 * base_speeds[0]
    # the extra run ran the best's code, in the best's log folder; the candidate ran its own
    log = (Path(base.log_path).parent / "run-2" / "train.log").read_text()
    assert "candidate code runs" not in log and '"event": "done"' in log
    assert "candidate code runs" in Path(loaded.log_path).read_text()

    # shown: status (text and JSON) and the report
    shown = json.loads(cli("status", "--json", "--tag", "s", cwd=speed_task).stdout)["machine_speed"]
    assert shown["shifts"] == [{"seq": 1, "shift": pytest.approx(found["shift"])}] and shown["runs"] == 3
    assert shown["low"] < 0.6 * shown["high"] and shown["latest"] == loaded.metrics["run_speeds"][-1]
    assert "the best ran again at a new speed before #1 (" in cli("status", "--tag", "s", cwd=speed_task).stdout
    cli("report", "--tag", "s", cwd=speed_task)
    assert "**Machine speed:**" in (speed_task / "report.md").read_text()
