"""One loop per tag, and whether a tag's loop is alive: the lock itself between real processes, what
`status` says of a live and of a killed loop, a second loop on a live tag refused, and two tags run at once
in one task folder (one per GPU) without mixing their records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli
from test_keep_loop import LOSS_PY, make_task

from autoresearch.report.runs import loop_line
from autoresearch.runlock import RunLock, RunLockHeld, holder, live_tags
from autoresearch.store import Status, Store

HOLD = """import sys, time
from pathlib import Path
from autoresearch.runlock import RunLock
lock = RunLock(Path(sys.argv[1]), sys.argv[2]).acquire()
print("held", flush=True)
time.sleep(60)
"""


def hold_in_child(task: Path, tag: str) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(task), tag], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_held_lock_names_its_holder_and_is_freed_by_kill_minus_nine(tmp_path):
    assert holder(tmp_path, "a") is False  # never run
    child = hold_in_child(tmp_path, "a")
    try:
        who = holder(tmp_path, "a")
        assert who and who.pid == child.pid and who.started_at <= time.time()
        with pytest.raises(RunLockHeld, match=rf"run 'a' is already running \(pid {child.pid}.*kill {child.pid}"):
            RunLock(tmp_path, "a").acquire()
        assert holder(tmp_path, "a").pid == child.pid  # the refused attempt changed nothing
        with RunLock(tmp_path, "b"):  # another tag is independent
            assert live_tags(tmp_path) == ["a", "b"]
        assert live_tags(tmp_path) == ["a"]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert holder(tmp_path, "a") is False and live_tags(tmp_path) == []
    with RunLock(tmp_path, "a") as lock:  # the dead holder's lock is free at once
        assert holder(tmp_path, "a").pid == os.getpid()
    assert lock._fd is None and holder(tmp_path, "a") is False


def test_a_tag_with_a_slash_is_listed_whole(tmp_path):
    with RunLock(tmp_path, "gpu/0"):
        assert live_tags(tmp_path) == ["gpu/0"]


def test_the_loop_line_says_what_to_do():
    assert loop_line("t", True, 4, "pid 9, since 2026-11-27 10:00") == "loop: running (pid 9, since 2026-11-27 10:00)"
    assert "between experiments" in loop_line("t", True, None, "pid 9")
    dead = loop_line("t", False, 4)
    assert "#4 was interrupted" in dead and "autoresearch run --resume --tag t" in dead
    assert loop_line("t", False, None) == "loop: not running; continue with `autoresearch run --resume --tag t`"
    assert loop_line("t", None, None).startswith("loop: liveness unknown")
    assert loop_line("t", True, 2, others=["g1", "g2"]).endswith("Also running in this folder: g1, g2")


SLOW_PY = LOSS_PY.replace("import os, random", "import os, random, time\ntime.sleep(1.5)")


def slow_task(tmp_path: Path, patches: int) -> tuple[Path, Path]:
    """The noisy task with a 1.5 s 'training' and a replay agent of `patches` proposals."""
    task = make_task(tmp_path)
    (task / "loss.py").write_text(SLOW_PY)
    subprocess.run(["git", "commit", "-qam", "slow"], cwd=task, check=True)
    agent = tmp_path / "patches.json"
    agent.write_text(json.dumps([{"description": f"gain {i}", "files": {"loss.py": SLOW_PY.replace(
        "GAIN = 0.0", f"GAIN = {0.001 * i}")}} for i in range(1, patches + 1)]))
    return task, agent


def start_loop(task: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autoresearch", "run", *args], cwd=task,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})


def wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def running_seq(task: Path, tag: str) -> int | None:
    if not (task / ".autoresearch" / "store.sqlite").exists():
        return None
    with Store.open(task) as store:
        running = store.running(tag)
    return running[0].seq if running else None


def test_a_second_loop_on_a_live_tag_is_refused_and_a_killed_one_is_reported(tmp_path):
    task, agent = slow_task(tmp_path, patches=20)
    first = start_loop(task, "--agent", f"replay:{agent}", "--tag", "n")
    try:
        wait_for(lambda: (running_seq(task, "n") or 0) >= 1)
        second = cli("run", "--agent", f"replay:{agent}", "--tag", "n", "--resume", cwd=task, check=False)
        assert second.returncode != 0
        assert f"run 'n' is already running (pid {first.pid}" in second.stdout + second.stderr
        shown = cli("status", "--tag", "n", cwd=task).stdout
        assert f"loop: running (pid {first.pid}" in shown
        state = json.loads(cli("status", "--json", "--tag", "n", cwd=task).stdout)["loop"]
        assert state["alive"] is True and state["pid"] == first.pid and state["others"] == []
        assert "before its next experiment" in cli("recalibrate", "--tag", "n", cwd=task).stdout
        wait_for(lambda: running_seq(task, "n") is not None)  # kill it while an experiment trains
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    interrupted = running_seq(task, "n")
    shown = cli("status", "--tag", "n", cwd=task).stdout
    if interrupted is None:  # the experiment ended in the moment before the kill: rare, and still told right
        assert "loop: not running; continue with `autoresearch run --resume --tag n`" in shown
        interrupted = len(store_experiments(task, "n"))
    else:  # the store still says RUNNING: only the lock tells that the loop is dead
        assert f"loop: not running (stopped or killed), so #{interrupted} was interrupted" in shown
    assert json.loads(cli("status", "--json", "--tag", "n", cwd=task).stdout)["loop"]["alive"] is False
    assert "when it is resumed" in cli("recalibrate", "--tag", "n", cwd=task).stdout
    cli("run", "--agent", f"replay:{agent}", "--tag", "n", "--resume", "--max-experiments", str(interrupted + 1),
        cwd=task)
    with Store.open(task) as store:
        history = store.experiments("n")
    assert [e.seq for e in history] == list(range(interrupted + 1))
    assert history[interrupted].status is not Status.RUNNING and not store_running(task, "n")


def store_experiments(task: Path, tag: str) -> list:
    with Store.open(task) as store:
        return store.experiments(tag)


def store_running(task: Path, tag: str) -> list:
    with Store.open(task) as store:
        return store.running(tag)


def test_two_tags_run_at_once_in_one_task_folder(tmp_path):
    task, agent = slow_task(tmp_path, patches=3)
    first = start_loop(task, "--agent", f"replay:{agent}", "--tag", "gpu0", "--max-experiments", "4")
    try:
        wait_for(lambda: running_seq(task, "gpu0") is not None)
        second = start_loop(task, "--agent", f"replay:{agent}", "--tag", "gpu1", "--max-experiments", "4")
        wait_for(lambda: running_seq(task, "gpu1") is not None)
        shown = cli("status", "--tag", "gpu0", cwd=task).stdout
        assert "Also running in this folder: gpu1" in shown
        runs = json.loads(cli("status", "--all", "--json", cwd=task).stdout)
        assert [(r["tag"], r["loop_alive"]) for r in runs] == [("gpu0", True), ("gpu1", True)]
        out_second, _ = second.communicate(timeout=300)
        out_first, _ = first.communicate(timeout=300)
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert first.returncode == 0 and second.returncode == 0, out_first + out_second
    assert "results-gpu1.tsv" in out_second and "Results: " in out_first and "results.tsv" in out_first
    with Store.open(task) as store:
        runs = {tag: store.experiments(tag) for tag in ("gpu0", "gpu1")}
    for tag, history in runs.items():
        assert [e.seq for e in history] == [0, 1, 2, 3], tag
        assert all(e.status is not Status.RUNNING for e in history)
        branch = subprocess.run(["git", "rev-list", f"autoresearch/{tag}"], cwd=task, capture_output=True,
                                text=True, check=True).stdout.split()
        assert all(e.commit in branch for e in history if e.status is Status.KEEP)
    first_rows = (task / "results.tsv").read_text().splitlines()
    second_rows = (task / "results-gpu1.tsv").read_text().splitlines()
    assert len(first_rows) == len(second_rows) == 5  # a header and four experiments each, nothing mixed
    assert {r.split("\t")[0] for r in first_rows[1:]} == {e.commit[:7] for e in runs["gpu0"]}
    assert {r.split("\t")[0] for r in second_rows[1:]} == {e.commit[:7] for e in runs["gpu1"]}
    assert live_tags(task) == []
    table = cli("status", "--all", cwd=task).stdout
    for tag, history in runs.items():
        best = min(e.metric for e in history if e.status is Status.KEEP)
        assert any(line.split()[:4] == [tag, "stopped", "4", str(sum(e.status is Status.KEEP for e in history))]
                   and f"{best:.6f}" in line for line in table.splitlines()), table
