"""One loop per run tag, and a truthful answer to "is that run's loop alive?".

A loop holds an exclusive `flock` on `.autoresearch/locks/<tag>.lock` for as long as it lives. The kernel
drops the lock when the process ends, however it ends (`kill -9` included), so a lock can never go stale,
and a second loop on the same tag (a second `--resume` in another terminal, a supervisor restarting a loop
that still runs) is refused instead of fighting the first over the worktree. The file also holds who took
it (pid, host, start time, command line), for the error message and for `status`.

`holder` asks without taking the lock for longer than a probe: `status` and `recalibrate` use it to tell a
live loop from an experiment left RUNNING by a dead one. Runs of other tags in the same task folder are
independent (one per GPU, say); `live_tags` lists those whose loops are alive.

Where `fcntl` does not exist (Windows), nothing is locked and liveness is unknown (None).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCKS = Path(".autoresearch") / "locks"
RETRY_SECONDS = 2.0  # a status probe holds the lock for microseconds: a starting loop waits that out


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """An exclusive `flock` on the file `path` (created if missing) for the `with` block: processes that set
    up the same shared thing take turns. The kernel drops it with the process, so it never goes stale.
    Without `fcntl` (Windows), nothing is locked."""
    if fcntl is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the file drops the lock


class RunLockHeld(Exception):
    """Another live process runs the loop of this tag; the message names it and the way out."""


@dataclass(frozen=True)
class Holder:
    pid: int | None
    host: str | None
    started_at: float | None
    command: str | None

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started_at)) if self.started_at else "?"
        where = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        return f"pid {self.pid}{where}, since {since}"


def lock_path(task_dir: Path, tag: str) -> Path:
    return task_dir / LOCKS / f"{tag}.lock"


def _read(path: Path) -> Holder:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    return Holder(info.get("pid"), info.get("host"), info.get("started_at"), info.get("command"))


class RunLock:
    """The exclusive lock of one tag's loop. `acquire` raises RunLockHeld if a live loop has it."""

    def __init__(self, task_dir: Path, tag: str) -> None:
        self.path = lock_path(task_dir, tag)
        self.tag = tag
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by children (PEP 446)
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    holder = _read(self.path)
                    raise RunLockHeld(
                        f"run {self.tag!r} is already running ({holder.describe()}): watch it with "
                        f"`autoresearch status --tag {self.tag}`, stop it with Ctrl-C in its terminal or "
                        f"`kill {holder.pid}`, or start another run with --tag NEW") from None
                time.sleep(0.05)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(),
                "command": " ".join(sys.argv)}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(task_dir: Path, tag: str) -> Holder | None | bool:
    """Who runs the loop of `tag` now: a Holder if a live process holds its lock, False if none does, and
    None where that cannot be known (no `fcntl`)."""
    if fcntl is None:
        return None
    path = lock_path(task_dir, tag)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(path)
    finally:
        os.close(fd)  # releases the probe's shared lock, if it got one
    return False


def live_tags(task_dir: Path) -> list[str]:
    """The tags of this task folder whose loops are alive now, in name order."""
    folder = task_dir / LOCKS
    if fcntl is None or not folder.is_dir():
        return []
    tags = (str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.lock"))  # a tag may hold '/'
    return sorted(tag for tag in tags if holder(task_dir, tag))
