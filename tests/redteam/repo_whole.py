"""Whether a task's repository came through an attack on git whole (the red team's git attacks)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def plain_git(task: Path, *args: str) -> subprocess.CompletedProcess:
    """git as a careful user runs it (none of the user's configuration, no hooks, no fsmonitor)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", "-c", f"core.hooksPath={os.devnull}", "-c", "core.fsmonitor=false", *args],
                          cwd=task, capture_output=True, text=True,
                          env={**env, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})


def assert_repository_whole(task: Path, worktree: Path) -> None:
    assert plain_git(task, "fsck", "--no-progress").returncode == 0
    assert "evil" not in (task / ".git" / "config").read_text()
    assert not (task / ".git" / "hooks" / "pre-commit").exists()
    assert (worktree / ".git").read_text() == f"gitdir: {task / '.git' / 'worktrees' / worktree.name}\n"
    status = plain_git(worktree, "status", "--porcelain")  # the user's own git works in the worktree
    assert status.returncode == 0 and status.stdout == "", status.stdout + status.stderr
