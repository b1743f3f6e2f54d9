"""Stale lock files: which `*.lock` file a killed git left, and removing it so the command can be retried.

Crash safety (the loop may be killed with `kill -9` at any moment and resumed): a `*.lock` file left by
a killed git process (`index.lock`, a ref lock, ...) is removed, with a warning in the log, and the
command is retried (`git._run`, once per lock file: one killed git may leave a worktree's `HEAD.lock`
and its branch's ref lock both), when the lock is at least `STALE_LOCK_SECONDS` old (a younger one is
waited for) and no git process that could hold it is running: one working in the repository's folders
and started before the lock was written (checked in `/proc` where it exists; elsewhere only the age
counts). While such a process runs the command waits, up to `LOCK_WAIT_SECONDS`, then fails with a
`GitError` naming it.

Runs no git; reads `/proc` and removes only the lock file it was given. The two durations are read
from this module at each call.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

#: A lock file at least this old, with no git process running in the repository, is stale.
STALE_LOCK_SECONDS = 5.0
#: How long to wait for a live git process in the repository to release its lock.
LOCK_WAIT_SECONDS = 30.0


def clear_stale_lock(lock: Path, scope_dirs: Callable[[], list[Path]], root: Path,
                     command: Sequence[str]) -> str | None:
    """Remove the lock file `lock` (absolute) if it is stale (see the module docstring). `scope_dirs` gives the
    folders where a git process would be working on the repository (asked again at each look), `root` is the
    task folder, `command` the git command that met the lock (both only for the log).

    Returns None when the command may be retried (the lock was stale and is gone, or its holder
    released it), else why the lock was left alone.
    """
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            written = lock.stat().st_mtime
        except FileNotFoundError:
            return None  # released meanwhile by the process that held it
        age = time.time() - written
        busy = _git_processes(scope_dirs(), since=written)
        if not busy and age >= STALE_LOCK_SECONDS:
            try:
                lock.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                return f"the stale lock {lock} cannot be removed ({e}): delete it by hand"
            log.warning("removed stale git lock %s (%.0f s old, no git process running in %s), "
                        "left by a git process that was killed; retrying: %s",
                        lock, age, root, " ".join(command))
            return None
        if time.monotonic() >= deadline:
            return (f"{lock} is still held after {LOCK_WAIT_SECONDS:.0f} s by git processes working in the "
                    f"repository ({'; '.join(busy)}): let them finish or end them, then resume")
        time.sleep(0.1)


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _git_processes(dirs: Sequence[Path], since: float) -> list[str]:
    """Live git processes that may hold a lock written at time `since`: 'pid: cmdline' of each one
    that is not ours, started before `since` (a later one cannot have taken the lock) and works in
    one of `dirs`.

    Empty where `/proc` does not exist: then lock staleness is judged by age alone.
    """
    proc = Path("/proc")
    try:
        boot, tick = _boot_time(), os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if not (entry / "comm").read_text().strip().startswith("git"):
                continue
            started = boot + int((entry / "stat").read_text().rpartition(")")[2].split()[19]) / tick
            cwd = Path(os.readlink(entry / "cwd"))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        if started > since + 1.0 or "fsmonitor--daemon" in cmdline:
            continue
        if any(cwd == d or d in cwd.parents for d in dirs):
            found.append(f"{entry.name}: {cmdline}")
    return found
