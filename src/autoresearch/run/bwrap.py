"""The bubblewrap layer: the command lines that run a program in a box, and the probe of whether bubblewrap
works here at all (`problem`).

- `bwrap_argv`: a candidate's box, built from a `sandbox.Box`: no network (a new network namespace, loopback
  included, unless the task's settings share the host's), a new PID namespace, every capability dropped, and a
  file system of only what `view.py` shows, with size-capped /tmp and /dev/shm and a read-only /dev.
- `agent_argv`: the coding agent's box, which is not candidate code: it keeps the machine as the user sees it,
  less the harness's records of the task (they hold the hidden test split's figures).

Invariant: bwrap mounts in the order of its arguments, so every mount that covers or shows again something
comes after the mount it changes (`bwrap_argv` says which order).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.run import view
from autoresearch.run.view import HIDDEN_IN_WORKDIR, HIDDEN_SYSTEM_FILES, SYSTEM_DIRS, under

if TYPE_CHECKING:
    from autoresearch.run.sandbox import Box

HIDDEN_TMPFS_BYTES = 1 << 20  # what covers `.git` and `.autoresearch/` in the box: room for mount points only
TMP_BYTES = 4 << 30  # the box's /tmp, at most (and at most a quarter of its memory limit)
SHM_BYTES = 4 << 30  # the box's /dev/shm (torch's worker processes share tensors there), likewise
REPORTS_WITH_TEST_FIGURES = ("report.md", "report.html")  # in the task folder; the agent's box covers them


def problem() -> str | None:
    """Why bubblewrap cannot make a box on this machine; None where it can."""
    if sys.platform != "linux":
        return f"bubblewrap is Linux only (this is {sys.platform})"
    if shutil.which("bwrap") is None:
        return "bwrap is not on PATH"
    probe = ["bwrap", "--ro-bind", "/", "/", "--unshare-all", "--cap-drop", "ALL", "--die-with-parent",
             "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"bwrap cannot be run ({err})"
    if result.returncode != 0:
        return f"bwrap cannot make namespaces here ({result.stderr.strip() or result.returncode})"
    return None


def bwrap_argv(box: Box, *, python_paths: Iterable[str] = (), tmp_bytes: int = TMP_BYTES, shm_bytes: int = SHM_BYTES,
               devices: Sequence[str] | None = None) -> list[str]:
    """The bubblewrap command line (before the program's own argv) that runs a program in `box`. With the GPU,
    `devices` are the NVIDIA device nodes it gets (`gpus.gpu_nodes`; None: all of them).

    Order matters: bwrap mounts in order, so /tmp comes before anything that lives under it, the working
    folder before what is hidden in it, and the hiding before the folders that are shown again."""
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL"]
    if box.network:
        args.append("--share-net")
    for folder in SYSTEM_DIRS:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    for secret in HIDDEN_SYSTEM_FILES:
        if os.path.isdir(secret) and not os.path.islink(secret):
            args += ["--tmpfs", secret, "--remount-ro", secret]  # empty, and no scratch space in RAM
        elif os.path.exists(secret):
            args += ["--ro-bind", "/dev/null", secret]
    args += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys"]
    if box.gpu:
        for node in sorted(map(str, Path("/dev").glob("nvidia*"))) if devices is None else devices:
            args += ["--dev-bind", node, node]
    # /dev is a tmpfs (RAM) the box's root could fill: read-only once made (its device nodes work as before)
    args += ["--size", str(shm_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    args += ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    workdir = box.workdir.resolve()
    for path in view.shown(box, python_paths):
        if not under(path, SYSTEM_DIRS) and not under(path, (str(workdir),)):
            args += ["--ro-bind", path, path]
    args += ["--bind" if box.writable else "--ro-bind", str(workdir), str(workdir)]
    for hidden in HIDDEN_IN_WORKDIR:
        target = workdir / hidden
        if target.is_dir() and not target.is_symlink():  # a small tmpfs: only the mount points of what is shown again
            args += ["--size", str(HIDDEN_TMPFS_BYTES), "--tmpfs", str(target)]
        elif target.is_file() and not target.is_symlink():  # a worktree's `.git` file: covered, it cannot be rewritten
            args += ["--ro-bind", "/dev/null", str(target)]
    for path in map(str, box.read):  # files inside the working folder's hidden parts, shown again
        if under(path, (str(workdir),)) and os.path.exists(path):
            args += ["--ro-bind", path, path]
    for folder in box.write:
        args += ["--bind", str(folder), str(folder)]
    for sock in _sockets([workdir, *box.write]):
        args += ["--ro-bind", "/dev/null", sock]
    args += ["--remount-ro", "/", "--chdir", str(workdir), "--"]  # the box's own root: no uncapped scratch
    return args


def _sockets(folders: Iterable[Path], limit: int = 20_000) -> list[str]:
    """Unix socket files in the folders a box can reach (a network namespace does not cover them)."""
    found, seen = [], 0
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d not in HIDDEN_IN_WORKDIR]
            for name in files:
                seen += 1
                path = os.path.join(root, name)
                try:
                    if stat.S_ISSOCK(os.lstat(path).st_mode):
                        found.append(path)
                except OSError:
                    continue
            if seen > limit:
                return found
    return found


def agent_argv(workdir: Path, task_dir: Path, *, shown: Iterable[Path] = (), hidden: Iterable[Path] = ()) -> list[str]:
    """The bubblewrap command line (before the agent's own) that runs a coding agent (`cmd:`, claude, codex,
    aider). An agent is not candidate code: it keeps the machine as the user sees it (files, network,
    devices, its own configuration and keys). But it must not see the harness's records of the task, which
    hold the hidden test split's figures: the task's `.autoresearch/` (the store, the logs, the other
    worktrees) and its reports (`REPORTS_WITH_TEST_FIGURES`) are covered, and so are the folders in `hidden` (the data cache, with the
    validation and test splits). Its worktree `workdir` and the folders in `shown` (its prompt) are shown
    again. It gets a PID namespace of its own, so what it leaves running ends with it. Git's own files are
    read-only (the task's `.git` folder, the worktree's `.git` file, and the git folders a `.git` file leads
    to): the harness runs git outside this box, so a filter, hook or include written there would run as the
    harness. The agent can still read them (git log, git diff)."""
    task_dir = task_dir.resolve()
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--dev-bind", "/", "/", "--proc", "/proc"]
    harness = task_dir / ".autoresearch"
    if harness.is_dir():
        args += ["--tmpfs", str(harness)]
    for name in REPORTS_WITH_TEST_FIGURES:
        if (task_dir / name).is_file():
            args += ["--ro-bind", "/dev/null", str(task_dir / name)]
    for folder in hidden:
        if Path(folder).is_dir() and not under(str(workdir.resolve()), (str(Path(folder).resolve()),)):
            args += ["--tmpfs", str(Path(folder).resolve())]
    for folder in (*shown, workdir):
        args += ["--bind", str(Path(folder).resolve()), str(Path(folder).resolve())]
    for checkout in (task_dir, workdir.resolve()):  # after the worktree's bind, which would show its `.git` again
        link = checkout / ".git"
        if link.is_symlink() or not link.exists():
            continue
        folders = []
        text = link.read_text(errors="replace")[:4096].strip() if link.is_file() else ""
        if text.startswith("gitdir:"):  # a linked checkout: its git folder, and the repository's common one
            target = Path(checkout, text[len("gitdir:"):].strip())
            common = target / "commondir"
            folders = [target, target / common.read_text(errors="replace").strip()] if common.is_file() else [target]
        for folder in map(os.path.realpath, folders):
            if os.path.isdir(folder) and not under(folder, (str(harness),)):
                args += ["--ro-bind", folder, folder]
        args += ["--ro-bind", str(link), str(link)]
    return args + ["--chdir", str(workdir.resolve()), "--"]

