"""Helpers shared by the benchmarks: a task folder with default settings, and the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
