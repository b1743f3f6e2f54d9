"""The disk a run writes to: checked before each run, watched while it runs.

A file's size is capped by an rlimit and the box's /tmp by its size, but many files in the run's folder
could still fill the disk the store and the repository live on. So:
- a run starts only with `sandbox.min_free_gb` free on its working folder's disk (`check_free`);
- while it runs, `DiskWatch` reads the disk's free space a few times a second, and stops the run (the
  caller's `on_overrun`) once it has used `sandbox.max_write_gb` of it, or the free space falls under a quarter
  of `min_free_gb`; the files it wrote are then deleted (`remove_written`).

Other processes write to the same disk (other loops of `--parallel`, other runs of a cluster node, anything
else on the machine). Where the box confines the run's writes to known folders, a fall of the free space past
the limit is therefore checked against what the run itself wrote there (`written_since`: the files in them
modified since it began) before the run is charged with it. Without a box a run may write anywhere, and the
whole fall is counted.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

GB = 1 << 30
POLL_SECONDS = 0.2


class DiskSpaceError(Exception):
    """Too little free disk to start a run; the message names the fix."""


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def check_free(path: Path, min_free_gb: float) -> None:
    """DiskSpaceError unless the disk of `path` has `min_free_gb` free."""
    free = free_bytes(path)
    if free < min_free_gb * GB:
        raise DiskSpaceError(f"only {free / GB:.1f} GB free on the disk of {path} (a run needs sandbox.min_free_gb = "
                             f"{min_free_gb:g}): free some space, or lower min_free_gb in autoresearch.toml")


def overrun(free_at_start: int, free_now: int, *, max_write_gb: float, min_free_gb: float) -> str | None:
    """Why a run must stop, given the disk's free bytes when it began and now; None while it may go on."""
    used = free_at_start - free_now
    if used > max_write_gb * GB:
        return wrote_too_much(used, max_write_gb)
    if free_now < min_free_gb * GB / 4:
        return (f"the disk's free space fell to {free_now / GB:.2f} GB, under a quarter of sandbox.min_free_gb = "
                f"{min_free_gb:g}")
    return None


def wrote_too_much(written: int, max_write_gb: float) -> str:
    return f"it wrote {written / GB:.2f} GB to its disk, more than sandbox.max_write_gb = {max_write_gb:g}"


def modified_since(folders: Iterable[Path], since: float) -> Iterator[tuple[str, os.stat_result]]:
    """The files in `folders` modified at or after `since` (a time.time()), with their stat."""
    for folder in folders:
        for root, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if st.st_mtime >= since:
                    yield path, st


def written_since(folders: Iterable[Path], since: float) -> int:
    """The bytes of the files in `folders` modified at or after `since`: what a run confined to them wrote."""
    return sum(st.st_size for _, st in modified_since(folders, since))


class DiskWatch:
    """Watches the disk of `path` from a thread while a run goes on (`start` to `stop`); calls `on_overrun`
    once, with the reason, when `overrun` says so. `reason` is then set. `own_folders`: where a boxed run can
    write; given, a fall of the free space counts only as far as the files in them grew (`written_since`)."""

    def __init__(self, path: Path, on_overrun: Callable[[str], None], *, max_write_gb: float,
                 min_free_gb: float, own_folders: Iterable[Path] | None = None) -> None:
        self.path, self.on_overrun = path, on_overrun
        self.max_write_gb, self.min_free_gb = max_write_gb, min_free_gb
        self.own_folders = None if own_folders is None else tuple(own_folders)
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="disk-watch", daemon=True)

    def start(self) -> None:
        self._start_free = free_bytes(self.path)
        self._since = time.time()
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(POLL_SECONDS):
            try:
                free = free_bytes(self.path)
                reason = overrun(self._start_free, free, max_write_gb=self.max_write_gb,
                                 min_free_gb=self.min_free_gb)
                if reason is not None and self.own_folders is not None and free >= self.min_free_gb * GB / 4:
                    # the disk fell past the limit: charged to the run only for what it wrote itself
                    own = written_since(self.own_folders, self._since)
                    if own > self.max_write_gb * GB:
                        reason = wrote_too_much(own, self.max_write_gb)
                    else:  # the rest was others' writing: counted from here, the folders walked again only
                        reason = None  # once the disk falls by the limit once more
                        self._start_free = free + own
            except OSError:
                continue
            if reason is not None:
                self.reason = reason
                self.on_overrun(reason)
                return


def files_in(folder: Path, skip: Iterable[str] = ()) -> set[str]:
    """The paths of the files in `folder` (not inside folders named in `skip`): a run's folder before it runs."""
    found: set[str] = set()
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in skip]
        found.update(os.path.join(root, name) for name in files)
    return found


def remove_written(workdir: Path, before: set[str], write_folders: Iterable[Path], since: float,
                   skip: Iterable[str] = ()) -> int:
    """Delete what a run that overran the disk wrote: the files in `workdir` that were not there `before`
    (not inside folders named in `skip`), and the files in `write_folders` modified at or after `since` (a
    time.time()); then the folders left empty. Returns the bytes freed."""
    freed = 0
    skip = tuple(skip)
    created = files_in(workdir, skip) - before
    created.update(path for path, _ in modified_since(write_folders, since))
    for path in created:
        try:
            size = os.lstat(path).st_size
            os.unlink(path)
            freed += size
        except OSError:
            continue
    for folder in (workdir, *write_folders):
        for root, _dirs, _ in os.walk(folder, topdown=False):
            if root == str(folder) or any(part in skip for part in Path(root).relative_to(folder).parts):
                continue
            try:
                if os.stat(root).st_mtime >= since:
                    os.rmdir(root)  # only when empty
            except OSError:
                pass
    return freed
