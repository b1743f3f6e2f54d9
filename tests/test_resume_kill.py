"""kill -9 the whole loop at random moments, 20 times; after every --resume, store, results.tsv and git agree."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.loop import FAULT_POINTS
from autoresearch.store import Status, Store

pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out


def proposals(train_py: str) -> list[dict]:
    """Whole-file proposals (they apply whatever was kept before), a crash and an empty one early on."""
    def warmdown(frac: str) -> dict:
        return {"description": f"warmdown {frac}",
                "files": {"train.py": train_py.replace("WARMDOWN_FRAC = 0.4", f"WARMDOWN_FRAC = {frac}")}}

    return [warmdown("0.1"), {"description": "exit with an error", "files": {"train.py": "raise SystemExit(3)\n"}},
            {"description": "change nothing"}, *[warmdown(f) for f in ("0.2", "0.3", "0.5", "0.6", "0.7", "0.8")],
            {"description": "change nothing again"}, warmdown("0.9")]


def git(task: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=task, capture_output=True, text=True, check=True).stdout.strip()


def check_agreement(task: Path, tag: str) -> list:
    """Invariants that must hold whenever the loop is not running."""
    with Store.open(task) as store:
        history = store.experiments(tag)
    assert [e.seq for e in history] == list(range(len(history))), "seq numbers must be contiguous"
    finished = [e for e in history if e.status != Status.RUNNING]
    running = [e for e in history if e.status == Status.RUNNING]
    assert len(running) <= 1
    tsv = (task / "results.tsv").read_text().splitlines() if (task / "results.tsv").exists() else ["header"]
    # results.tsv is rewritten after each decision; it may lag the store by at most the last write
    assert len(finished) - 1 <= len(tsv) - 1 <= len(finished)
    head = git(task, "rev-parse", f"autoresearch/{tag}")
    kept = [e for e in history if e.status == Status.KEEP]
    on_branch = set(git(task, "rev-list", f"autoresearch/{tag}").split())
    for e in kept:
        assert e.commit in on_branch, f"kept experiment {e.seq} lost from the branch"
    for e in finished:
        if e.status != Status.KEEP and e.commit and e.seq > 0:
            # a discarded commit may only still be the head if resume has not yet reset it
            assert e.commit not in on_branch or e.commit == head
    return history


def phase_hit(task: Path, tag: str) -> str:
    """Where the kill landed, read from what it left behind."""
    if not (task / ".autoresearch" / "store.sqlite").exists():
        return "start-up"
    with Store.open(task) as store:
        running = store.running(tag)
    if not running:
        return "between experiments (agent, git, store)"
    log = Path(running[0].log_path)
    return "evaluation" if log.exists() and '"event": "done"' in log.read_text() else "training"


def test_kill_minus_nine_twenty_times(tiny_task, prepare):
    toml = (tiny_task / "autoresearch.toml").read_text().replace("budget_seconds = 5.0", "budget_seconds = 1.0")
    (tiny_task / "autoresearch.toml").write_text(toml)
    subprocess.run(["git", "commit", "-qam", "tiny settings"], cwd=tiny_task, check=True)
    prepare(tiny_task)
    patches = tiny_task.parent / "patches.json"
    plan = proposals((tiny_task / "train.py").read_text())
    patches.write_text(json.dumps(plan))
    base = [sys.executable, "-m", "autoresearch", "run", "--agent", f"replay:{patches}", "--tag", "k"]
    rng = random.Random(7)
    kills, phases = 0, set()
    while kills < 20:
        args = base + (["--resume"] if kills or (tiny_task / ".autoresearch" / "store.sqlite").exists() else [])
        if kills and not git(tiny_task, "branch", "--list", "autoresearch/k"):
            args = base
        if kills < len(FAULT_POINTS):  # first, a kill at each exact git/store step...
            env = {**os.environ, "AUTORESEARCH_FAULT": FAULT_POINTS[kills]}
            proc = subprocess.run(args, cwd=tiny_task, capture_output=True, text=True, env=env, timeout=300)
            assert proc.returncode == -signal.SIGKILL, (FAULT_POINTS[kills], proc.stdout, proc.stderr)
            phases.add(FAULT_POINTS[kills])
        else:  # ...then at random moments, mostly in training and evaluation
            proc = subprocess.Popen(args, cwd=tiny_task, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    start_new_session=True, text=True)
            time.sleep(rng.uniform(0.3, 6.0))
            if proc.poll() is not None:  # finished every proposal before the kill
                break
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            phases.add(phase_hit(tiny_task, "k"))
        kills += 1
        check_agreement(tiny_task, "k")
    final = subprocess.run(base + ["--resume"], cwd=tiny_task, capture_output=True, text=True, timeout=600)
    assert final.returncode == 0, final.stdout + final.stderr
    history = check_agreement(tiny_task, "k")
    assert kills >= 15 and {*FAULT_POINTS, "training"} <= phases, (kills, phases)
    # nothing lost or counted twice: every proposal appears exactly once, after the baseline
    assert [e.description for e in history] == ["baseline"] + [p["description"] for p in plan]
    assert all(e.status != Status.RUNNING for e in history)
    tsv = (tiny_task / "results.tsv").read_text().splitlines()
    assert len(tsv) == len(history) + 1
    head = git(tiny_task, "rev-parse", "autoresearch/k")
    assert head == [e for e in history if e.status == Status.KEEP][-1].commit
