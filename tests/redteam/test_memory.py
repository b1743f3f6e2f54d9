"""A train.py that allocates memory until it is stopped, run through the real loop in each layer: the bubblewrap
box, the Landlock layer and no sandbox (`AUTORESEARCH_SANDBOX=off`). Its memory cgroup stops it at
`sandbox.max_memory_gb` in every one of them, the run is recorded as a crash that says so, nothing of it is
kept, and the loop goes on to the next proposal.

The attack stops itself at 4 GB, should the limit be missing, so that the machine's memory is safe either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TOML

from autoresearch.run import landlock, limits, sandbox
from autoresearch.store import Status, Store

pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out

MAX_MEMORY_GB = 1.5
HOG = '''
if __name__ == "__main__":
    _blocks = []
    for _i in range(64):  # 4 GB at most
        _blocks.append(b"x" * (64 << 20))
        print("REDTEAM memory held", (_i + 1) * 64, "MB", flush=True)
    print("REDTEAM memory NOT STOPPED", flush=True)

'''


def run_env(root: Path, layer: str) -> dict[str, str]:
    return {**os.environ, "AUTORESEARCH_CACHE": str(root / "cache"),
            "AUTORESEARCH_SANDBOX": {"bwrap": "", "landlock": "landlock", "off": "off"}[layer]}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """The tiny task, prepared once for the three layers (each runs under a tag of its own)."""
    if sys.platform != "linux" or limits._memory_parent() is None:
        pytest.skip("no memory cgroup of ours here")
    root = tmp_path_factory.mktemp("memory")
    task = root / "task"
    env = run_env(root, "bwrap")
    subprocess.run([sys.executable, "-m", "autoresearch", "init", str(task)], cwd=root, env=env, check=True,
                   capture_output=True)
    toml = TINY_TOML.replace("budget_seconds = 5.0", "budget_seconds = 2.0").replace(
        "startup_allowance_seconds = 120.0", "startup_allowance_seconds = 60.0") + \
        f"\n[sandbox]\nmax_memory_gb = {MAX_MEMORY_GB}\n"  # [eval] was last
    (task / "autoresearch.toml").write_text(toml)
    subprocess.run(["git", "commit", "-qam", "tiny settings"], cwd=task, check=True,
                   env={**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@x"})
    subprocess.run([sys.executable, "-m", "autoresearch", "prepare"], cwd=task, env=env, check=True,
                   capture_output=True)
    train = (task / "train.py").read_text()
    assert "WARMDOWN_FRAC = 0.4" in train
    (root / "proposals.json").write_text(json.dumps([
        {"description": "redteam memory", "files": {"train.py": HOG + train}},
        {"description": "longer warm-down", "files": {"train.py": train.replace("WARMDOWN_FRAC = 0.4",
                                                                                "WARMDOWN_FRAC = 0.5")}}]))
    return task


@pytest.mark.parametrize("layer", ["bwrap", "landlock", "off"])
def test_a_run_that_takes_memory_until_stopped_is_a_crash_and_the_loop_goes_on(prepared, layer):
    if layer == "bwrap" and sandbox.isolation() != "bwrap":
        pytest.skip("no bubblewrap box here")
    if layer == "landlock" and landlock.abi() < 6:
        pytest.skip("the Landlock layer needs ABI 6")
    task, tag = prepared, f"rt-{layer}"
    done = subprocess.run([sys.executable, "-m", "autoresearch", "run", "--agent",
                           f"replay:{task.parent / 'proposals.json'}", "--tag", tag], cwd=task,
                          env=run_env(task.parent, layer), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    with Store.open(task) as store:
        history = store.experiments(tag)
    assert [e.description for e in history] == ["baseline", "redteam memory", "longer warm-down"], history
    baseline, hog, after = history
    assert baseline.status is Status.KEEP
    assert baseline.metrics["isolation"] == {"bwrap": "bwrap", "landlock": "landlock", "off": "process"}[layer]
    assert hog.status is Status.CRASH, (hog.status, hog.error)
    assert hog.error == (f"train.py was stopped: it used more than its memory limit of {MAX_MEMORY_GB:g} GB "
                         "(sandbox.max_memory_gb)"), hog.error
    log = Path(hog.log_path).read_text(errors="replace")
    held = [int(line.split()[3]) for line in log.splitlines() if line.startswith("REDTEAM memory held")]
    assert held and max(held) < MAX_MEMORY_GB * 1024 and "NOT STOPPED" not in log, log[-2000:]
    assert after.status in (Status.KEEP, Status.DISCARD), (after.status, after.error)  # the loop went on
    head = subprocess.run(["git", "show", f"autoresearch/{tag}:train.py"], cwd=task, capture_output=True,
                          text=True, check=True).stdout
    assert "REDTEAM" not in head  # nothing of it was kept
