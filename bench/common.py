"""Helpers shared by the benchmarks: a task folder with default settings, the real CLI, a train.py as a module."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType


def autoresearch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, text=True,
                          check=True)


def last_json(result: subprocess.CompletedProcess) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


def default_task(folder: Path) -> Path:
    """A task with the defaults `init` picks for this machine, prepared."""
    if not (folder / "autoresearch.toml").exists():
        autoresearch("init", str(folder), cwd=folder.parent if folder.parent.exists() else Path.cwd())
    autoresearch("prepare", cwd=folder)
    return folder


def run_replay(task: Path, proposals: list[dict], tag: str, budget: float) -> list:
    """Run the loop on `task` with the replay agent over `proposals` under `tag` (made unique with the time);
    the run's experiments, oldest first."""
    from autoresearch.store import Store

    patches = task / f".autoresearch-bench-{tag}.json"
    patches.write_text(json.dumps(proposals))
    tag = f"{tag}-{int(time.time())}"
    autoresearch("run", "--agent", f"replay:{patches}", "--tag", tag, "--budget", str(budget), cwd=task)
    with Store.open(task) as store:
        return store.experiments(tag)


def load_train_py(path: Path, name: str = "train") -> ModuleType:
    """A train.py imported as a module (importing it does not train), under `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
