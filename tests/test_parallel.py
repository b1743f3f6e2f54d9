"""Several loops at once from one command (`autoresearch run --parallel N`): each on its own GPU or cores, each
its own run, sharing their bests, stopped together by one Ctrl-C."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder, git

from autoresearch.loop.parallel import QUICK_DEATHS, ParallelError, Place, _ranges, plan, restart
from autoresearch.store import Status, Store

pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out

# Prints the cores it may use and its maths threads (what --parallel set), then its score.
SOLVE_PY = """import os, time
RATE = 0.1
PAUSE = 0.0
time.sleep(PAUSE)
print("cores:", ",".join(map(str, sorted(os.sched_getaffinity(0)))), "threads:", os.environ.get("OMP_NUM_THREADS"))
print(f"score: {1.0 - (RATE - 0.3) ** 2:.6f}")
"""

# Sets RATE by the run it works for: the best value in run -0, a lesser gain in the others.
AGENT_PY = """import os, pathlib, re
rate = "0.3" if os.getcwd().endswith("-0") else "0.15"
path = pathlib.Path("solve.py")
path.write_text(re.sub(r"RATE = \\S+", "RATE = " + rate, path.read_text()))
"""


def test_one_loop_per_gpu_in_the_order_they_are_visible():
    places = plan("all", "nov28", ["0", "1", "3"], list(range(16)))
    assert [(p.tag, p.env, p.cpus) for p in places] == [
        (f"nov28-{i}", {"CUDA_VISIBLE_DEVICES": gpu, "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                        "AUTORESEARCH_MEMORY_SHARE": "0.25"}, None)  # each a third of the 75% one run may take
        for i, gpu in enumerate(["0", "1", "3"])]
    assert [p.where for p in places] == ["GPU 0", "GPU 1", "GPU 3"]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plan("2", "t", ["0", "1", "3"], [0])] == ["0", "1"]
    assert [(p.tag, p.where) for p in plan("all", "t", ["5"], [0])] == [("t", "GPU 5")]  # one loop keeps the tag
    assert plan("all", "t", ["5"], [0])[0].env == {"CUDA_VISIBLE_DEVICES": "5", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_without_a_gpu_the_cores_are_cut_into_neighbouring_shares():
    places = plan("3", "t", [], [7, 6, 5, 4, 3, 2, 1, 0])
    assert [p.cpus for p in places] == [(0, 1, 2), (3, 4, 5), (6, 7)]
    assert [p.env for p in places] == [{"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "AUTORESEARCH_MEMORY_SHARE": "0.25"}
                                       for n in ("3", "3", "2")]
    assert [p.where for p in places] == ["cores 0-2", "cores 3-5", "cores 6-7"]
    assert _ranges([8, 7, 0, 1, 2, 5]) == "0-2,5,7-8" and Place("t", cpus=(4,)).where == "cores 4"


@pytest.mark.parametrize("count, gpus, cpus, says", [
    ("all", [], [0, 1], "no GPU is visible here"),
    ("4", ["0", "1", "2"], [0, 1], "only 3 GPU(s) are visible (0, 1, 2)"),
    ("3", [], [0, 1], "use 2 core(s), and each loop needs at least one: give at most 2"),
    ("two", [], [0, 1], "a whole number"),
    ("0", ["0"], [0], "at least 1 loop"),
])
def test_what_cannot_be_placed_says_what_to_give(count, gpus, cpus, says):
    with pytest.raises(ParallelError, match="--parallel") as caught:
        plan(count, "t", gpus, cpus)
    assert says in str(caught.value)


def test_a_loop_that_died_is_started_again_unless_it_was_stopped_or_keeps_dying():
    assert restart(1, 600.0, 0, stopping=False) == (True, 0)  # an unforeseen error
    assert restart(-signal.SIGKILL, 600.0, 2, stopping=False) == (True, 0)  # killed (out of memory) after a while
    for code in (0, 2, -signal.SIGINT, -signal.SIGTERM, -signal.SIGHUP):  # stopped, refused, or asked to stop
        assert restart(code, 600.0, 0, stopping=False)[0] is False, code
    assert restart(1, 600.0, 0, stopping=True)[0] is False  # the supervisor was asked to stop
    quick = [restart(-signal.SIGKILL, 5.0, n, stopping=False) for n in range(QUICK_DEATHS)]
    assert quick == [(True, 1), (True, 2), (False, 3)][:QUICK_DEATHS]  # dying at once, again and again: left dead


def loop_pid(task, tag: str) -> int | None:
    shown = cli("status", "--tag", tag, "--json", cwd=task, check=False)
    return json.loads(shown.stdout)["loop"].get("pid") if shown.returncode == 0 else None


def test_a_loop_killed_outright_is_started_again_and_one_ctrl_c_stops_every_loop(tmp_path):
    task = parallel_task(tmp_path, SOLVE_PY.replace("PAUSE = 0.0", "PAUSE = 1.0"))
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--parallel", "2", "--tag", "x",
                             "--agent", "tune:random"], cwd=task, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        def wait_for(found, seconds=120):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and proc.poll() is None:
                if (value := found()) is not None:
                    return value
                time.sleep(0.5)
            raise AssertionError("waited in vain")

        first = wait_for(lambda: loop_pid(task, "x-1"))
        wait_for(lambda: loop_pid(task, "x-0"))
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: (pid := loop_pid(task, "x-1")) and pid != first and pid or None)
        proc.send_signal(signal.SIGINT)
        out, errors = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert second != first and proc.returncode == 0, out + errors
    assert "was killed by signal 9" in errors and "starts again with --resume in 10 s" in errors
    # one Ctrl-C: every loop stops after its running experiment, with nothing left running or cut short
    assert "stopping every loop after its experiment" in errors
    assert out.count("loop stopped: stopped on request") == 2, out
    with Store.open(task) as store:
        for tag in ("x-0", "x-1"):
            history = store.experiments(tag)
            assert [e.seq for e in history] == list(range(len(history))), tag
            assert history and all(e.finished for e in history), tag


def parallel_task(tmp_path, solve_py: str = SOLVE_PY):
    task = generic_task_folder(tmp_path, solve_py)
    settings = task / "autoresearch.toml"
    text, quick = re.subn(r"(?m)^agent_retry_seconds = .*$", "agent_retry_seconds = 0.5", settings.read_text())
    assert quick == 1
    settings.write_text(text)
    git(task, "commit", "-qam", "quick retries")
    (tmp_path / "agent.py").write_text(AGENT_PY)
    return task


def logged(experiment) -> str:
    return open(experiment.log_path).read()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to give each loop its own")
def test_two_loops_run_on_their_own_cores_and_take_up_each_others_best(tmp_path):
    task = parallel_task(tmp_path)
    done = cli("run", "--parallel", "2", "--tag", "p", "--max-experiments", "5",
               "--agent", f"cmd:{sys.executable} {tmp_path / 'agent.py'}", cwd=task)
    shown = done.stdout
    assert "p-0: cores " in shown and "p-1: cores " in shown
    assert "[p-0] " in shown and "[p-1] " in shown and "loop stopped" in shown
    with Store.open(task) as store:
        runs = {tag: store.experiments(tag) for tag in ("p-0", "p-1")}
    cores = {}
    for tag, history in runs.items():
        assert len(history) == 5 and all(e.status is not Status.RUNNING for e in history), tag
        seen = {line for e in history if e.log_path for line in logged(e).splitlines() if line.startswith("cores:")}
        assert len(seen) == 1, seen  # every experiment of a loop ran on the same cores
        cores[tag] = set(seen.pop().split()[1].split(","))
        assert f"threads: {len(cores[tag])}" in logged(history[0])
    assert not cores["p-0"] & cores["p-1"]  # no core shared
    assert cores["p-0"] | cores["p-1"] == {str(c) for c in os.sched_getaffinity(0)}
    # p-1 found a lesser gain and took up p-0's best; p-0 had nothing to take up
    adopted = [e for e in runs["p-1"] if e.agent == "adopt:p-0"]
    assert adopted and adopted[0].status is Status.KEEP and "RATE = 0.3" in adopted[0].diff
    assert not [e for e in runs["p-0"] if e.agent.startswith("adopt:")]
    # the closing table lists both runs
    assert any(line.split()[:2] == ["p-0", "stopped"] for line in shown.splitlines()), shown
    assert any(line.split()[:2] == ["p-1", "stopped"] for line in shown.splitlines()), shown


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_the_loops_outlive_their_supervisor_killed_outright(tmp_path):
    task = parallel_task(tmp_path, SOLVE_PY.replace("PAUSE = 0.0", "PAUSE = 1.0"))
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--parallel", "2", "--tag", "k",
                             "--agent", "tune:random"], cwd=task, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids = {}
    try:
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            for run in json.loads(cli("status", "--all", "--json", cwd=task, check=False).stdout or "[]"):
                if run["loop_alive"]:
                    pids[run["tag"]] = json.loads(cli("status", "--tag", run["tag"], "--json", cwd=task).stdout)["loop"]["pid"]
        proc.kill()
        proc.wait()
        assert sorted(pids) == ["k-0", "k-1"]
        logs = {tag: task / ".autoresearch" / "logs" / "parallel" / f"{tag}.log" for tag in pids}
        sizes = {tag: path.stat().st_size for tag, path in logs.items()}
        time.sleep(4)  # the loops go on, and so do their logs
        assert all(os.kill(pid, 0) is None for pid in pids.values())
        assert all(path.stat().st_size > sizes[tag] for tag, path in logs.items()), sizes
        # the dashboard of a night: the runs side by side, refreshed, with what each loop is doing
        # Ctrl-C as at a terminal: a test run started in the background (`pytest &`) ignores SIGINT, and Python
        # started with SIGINT ignored keeps ignoring it, so the watch gets it back first
        watch = subprocess.Popen([sys.executable, "-m", "autoresearch", "status", "--all", "--watch"], cwd=task,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "COLUMNS": "200"},
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(4)
        watch.send_signal(signal.SIGINT)
        try:
            shown = watch.communicate(timeout=30)[0]
        finally:
            watch.kill()
        rows = [line.split() for line in shown.splitlines()]
        assert any(row[-1:] == ["now"] for row in rows), shown
        mine = [row for row in rows if row[:2] in ([tag, "running"] for tag in pids)]
        assert len(mine) == 2, shown  # each loop training (#seq, its description, its progress) or between two
        assert all(any(cell.startswith("#") for cell in row) or row[-2:] == ["between", "experiments"]
                   for row in mine), shown
    finally:
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGINT)  # stop after the running experiment, as a Ctrl-C does
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 60
    while any(alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.5)
    with Store.open(task) as store:
        for tag in pids:
            assert all(e.finished for e in store.experiments(tag)), tag
    for path in logs.values():
        assert "loop stopped: stopped on request" in path.read_text()


def test_parallel_refuses_what_it_cannot_place_and_resumes_the_loops_that_have_runs(tmp_path):
    task = parallel_task(tmp_path)
    result = cli("run", "--parallel", "64", cwd=task, check=False)
    assert result.returncode == 2 and "--parallel 64" in result.stderr and "give at most" in result.stderr
    result = cli("run", "--parallel", "2", "--tag", "r", "--resume", cwd=task, check=False)
    assert result.returncode == 2 and "nothing to resume: none of r-0, r-1 has a run" in result.stderr
    cli("run", "--tag", "r-0", "--max-experiments", "2", "--agent", "tune:random", cwd=task)
    result = cli("run", "--parallel", "2", "--tag", "r", cwd=task, check=False)
    assert result.returncode == 2 and "r-0 already has a run: continue with --resume" in result.stderr
    with Store.open(task) as store:
        assert store.tags() == ["r-0"]  # refused before any loop started
    grown = cli("run", "--parallel", "2", "--tag", "r", "--resume", "--max-experiments", "3", "--agent", "tune:random",
                cwd=task)
    assert grown.stdout.count("loop stopped: reached 3 experiments") == 2, grown.stdout
    with Store.open(task) as store:
        assert [len(store.experiments(tag)) for tag in ("r-0", "r-1")] == [3, 3]
