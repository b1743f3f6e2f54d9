"""Shared fixtures: every test gets its own data cache, never the user's."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A task small enough to prepare in seconds and train in a few more.
TINY_TOML = """
[data]
source = "builtin"
vocab_size = 512
train_mb = 1.0
val_mb = 0.2
test_mb = 0.2
tokenizer_sample_mb = 1.0

[train]
budget_seconds = 5.0
startup_allowance_seconds = 120.0
allowance_margin_seconds = 60.0  # a loaded test machine's start-ups vary by more than a real one's; test_clock.py

[loop]
agent_retry_seconds = 0.2  # the tests' agents answer at once; real ones that fail are waited for longer

[keep]
rule = "strict"  # one run per experiment keeps the tests fast; the confirm rule has tests of its own
speed_tolerance = 0  # runs as the tests expect them, however loaded the machine; test_speed.py turns it on

[prune]
enabled = false  # runs end as the tests expect them, at the tests' tiny budgets; test_loop.py turns it on

[eval]
seq_len = 128
tokens = 16384
batch_size = 16
"""


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(cache))
    return cache


def git(task: Path, *args: str) -> str:
    """Plain git in `task`, with a fixed identity (the tests' own setup and checks)."""
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args], cwd=task,
                          capture_output=True, text=True, check=True).stdout


def cli(*args: str, cwd: Path, check: bool = True, timeout: float = 600,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess (`env`: variables laid over this process's)."""
    result = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f"autoresearch {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def _prepared_caches(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {"root": tmp_path_factory.mktemp("prepared"), "built": {}}


@pytest.fixture
def prepare(_prepared_caches: dict, isolated_cache: Path):
    """`prepare(task)`: the task's data as `autoresearch prepare` makes it, in this test's own cache. Each
    [data] setting is prepared once per test session (by the real command) and copied from there."""
    from autoresearch.config import load_config

    def run(task: Path) -> None:
        key = json.dumps(dataclasses.asdict(load_config(task).data), sort_keys=True)
        built = _prepared_caches["built"].get(key)
        if built is None:
            built = _prepared_caches["root"] / f"cache-{len(_prepared_caches['built'])}"
            cli("prepare", cwd=task, env={"AUTORESEARCH_CACHE": str(built)})
            _prepared_caches["built"][key] = built
        shutil.copytree(built, isolated_cache, dirs_exist_ok=True)

    return run


@pytest.fixture
def tiny_task(tmp_path: Path) -> Path:
    """An initialised task folder with tiny settings (not yet prepared)."""
    task = tmp_path / "task"
    cli("init", str(task), cwd=tmp_path)
    (task / "autoresearch.toml").write_text(TINY_TOML)
    return task


def processes_with(marker: str) -> list[str]:
    """The pids of the processes whose command line holds `marker` (to find what a test's code left running)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(proc.name)
        except OSError:
            continue
    return found


# A generic task's solve.py: maximise a score that peaks at RATE = 0.3 and WIDTH = 6, after a moment of
# "training" (so that drafts are written, or runs overlap, while it runs). RATE and WIDTH sit apart, so
# that edits of each merge cleanly.
SLEEPY_SOLVE_PY = """\
import time

RATE = 0.1

# (the width is set further down)
#
#

WIDTH = 4

time.sleep(SLEEP)
score = 1.0 - (RATE - 0.3) ** 2 - 0.01 * (WIDTH - 6) ** 2
print(f"score: {score:.6f}")
"""


def sleepy_solve_py(seconds: float) -> str:
    return SLEEPY_SOLVE_PY.replace("SLEEP", repr(seconds))


def generic_task_folder(parent: Path, solve_py: str, name: str = "task") -> Path:
    """A committed task folder of its own command, `python solve.py`, whose metric `score` (higher is better)
    is read from the line `score: <value>` it prints; the agent may edit solve.py."""
    folder = parent / name
    folder.mkdir()
    (folder / "solve.py").write_text(solve_py)
    cli("init", str(folder), "--command", "python solve.py", "--metric-regex", r"^score:\s*(\S+)",
        "--metric-name", "score", "--maximize", "--editable", "solve.py", cwd=parent)
    git(folder, "add", "-A")
    git(folder, "commit", "-q", "--allow-empty", "-m", "task")
    return folder


def edit_solve(workdir: Path, step: tuple[str, ...]) -> str:
    """A scripted agent's edit of solve.py: `step` is (description, old, new, old, new, ...), each old text
    replaced by its new one; the description is returned. An old text not in the file fails the proposal."""
    from autoresearch.agents import AgentError

    description, *replacements = step
    path = workdir / "solve.py"
    text = path.read_text()
    for old, new in zip(replacements[::2], replacements[1::2], strict=True):
        if old not in text:
            raise AgentError(f"{old!r} is not in solve.py")
        text = text.replace(old, new)
    path.write_text(text)
    return description



@contextlib.contextmanager
def ray_cluster(root: Path, workers: tuple[str, ...]):
    """A real Ray cluster on 127.0.0.1, started with `ray start`: a head without CPUs and a worker node per
    name in `workers`, each with one CPU, a "runs" resource of its own and its own autoresearch cache
    (`root / name`, as separate machines would have); yields its address, and stops it."""
    ray_cli = str(Path(sys.executable).with_name("ray"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nodes = [(["--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false"], "head")]
    nodes += [(["--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--resources", '{"runs": 1}'], name)
              for name in workers]
    try:
        for args, cache in nodes:
            done = subprocess.run([ray_cli, "start", "--node-ip-address", "127.0.0.1", "--disable-usage-stats", *args],
                                  capture_output=True, text=True, timeout=180,
                                  env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0",
                                       "AUTORESEARCH_CACHE": str(root / cache)})
            assert done.returncode == 0, done.stdout + done.stderr
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
