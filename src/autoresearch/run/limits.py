"""What bounds a candidate's processes, besides the box: the rlimits, a pids cgroup, a memory limit, death
with the harness, and no capabilities; set up in the harness, and taken on by the child between fork and exec
(`prepare_child`).

- rlimits: no file over `MAX_FILE_BYTES`, at most `MAX_OPEN_FILES` open files;
- a pids cgroup of its own (`TaskLimit`), where the harness may make one (v1 `pids` controller), with
  `pids.max` = `MAX_TASKS`; what is left in it when the run ends is killed;
- a memory limit for its processes together (`memory_limit`: `sandbox.max_memory_gb`, or `MEMORY_SHARE` of
  `machine_memory()`): a memory cgroup of its own (`MemoryLimit`), which also counts what it keeps in a tmpfs,
  or else RLIMIT_AS per process, except with the GPU, where nothing bounds it;
- outside the box every capability dropped (`_drop_capabilities`), and the harness itself non-dumpable
  (`protect_harness`), so that no candidate can read the harness's environment or memory.

Invariants: a cgroup's folder is made before the child starts and removed only after its processes are
killed; the harness's cgroups are named `autoresearch-<pid>-<n>`, and those of harnesses that are gone are
removed (`_remove_stale`). `prepare_child` runs between fork and exec, so it makes only plain system calls,
and the Landlock rules come last in it (they would forbid the cgroups' files).
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.run import landlock
from autoresearch.run.view import say_once

if TYPE_CHECKING:
    from autoresearch.run.sandbox import Box

log = logging.getLogger(__name__)

MEMORY_SHARE = 0.75  # a candidate's memory limit where sandbox.max_memory_gb is 0: this share of the machine's
GB = 1 << 30
MAX_FILE_BYTES = 64 << 30  # RLIMIT_FSIZE: the largest file a candidate may write
MAX_OPEN_FILES = 4096  # RLIMIT_NOFILE
MAX_TASKS = 8192  # processes and threads of one candidate, where a pids cgroup can hold it (a fork bomb's end)


# -- the process limit ----------------------------------------------------------------------------

@functools.cache
def _pids_parent() -> Path | None:
    """The pids cgroup (v1) the harness is in, if this process may make cgroups under it; else None."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "pids" in controllers.split(","):
            folder = Path("/sys/fs/cgroup/pids") / path.lstrip("/")
            if (folder / "cgroup.procs").exists() and os.access(folder, os.W_OK):
                _remove_stale(folder)
                return folder
    log.info("no writable pids cgroup: a candidate's process count is bounded only by the deadline")
    return None


def _remove_stale(parent: Path) -> None:
    """Remove the empty cgroups of harnesses that are gone (killed before they could clean up)."""
    for folder in parent.glob("autoresearch-*-*"):
        owner = folder.name.split("-")[1]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            try:
                folder.rmdir()
            except OSError:
                pass


class TaskLimit:
    """A pids cgroup of its own for one candidate, with `pids.max`; nothing where cgroups are not ours."""

    _count = 0

    def __init__(self, limit: int) -> None:
        self.folder: Path | None = None
        parent = _pids_parent()
        if parent is None:
            return
        TaskLimit._count += 1
        folder = parent / f"autoresearch-{os.getpid()}-{TaskLimit._count}"
        try:
            folder.mkdir()
            (folder / "pids.max").write_text(str(limit))
        except OSError as err:
            log.info("cannot make a pids cgroup (%s): the process count is bounded only by the deadline", err)
            self.folder = folder
            self.remove(tries=1)
            return
        self.folder = folder

    def join(self) -> None:
        """In the child, before exec: enter the cgroup."""
        if self.folder is not None:  # plain system calls: this runs between fork and exec
            fd = os.open(self.folder / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, str(os.getpid()).encode())
            finally:
                os.close(fd)

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup (repeatedly: a fork between reading and killing)."""
        folder = self.folder  # another thread may remove it meanwhile
        if folder is None:
            return
        for _ in range(20):
            try:
                pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                return
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)

    def remove(self, tries: int = 50) -> None:
        """Remove the cgroup once its processes are gone (they are being killed)."""
        folder, self.folder = self.folder, None
        if folder is None or not folder.exists():
            return
        for _ in range(tries):
            try:
                folder.rmdir()
                return
            except OSError:
                time.sleep(0.02)
        log.warning("the cgroup %s is still busy; it is left behind", folder)


# -- the memory limit -----------------------------------------------------------------------------

def _memory_cgroups() -> list[tuple[int, Path, Path]]:
    """The memory cgroups this process is in, v1 first: (version, folder, the mount point of its hierarchy)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        hierarchy, controllers, path = line.split(":", 2)
        version = 1 if "memory" in controllers.split(",") else 2 if hierarchy == "0" else 0
        for mount in mounts if version else ():
            head, dash, tail = mount.partition(" - ")
            fields, kind = head.split(), tail.split()
            if not dash or len(fields) < 5 or len(kind) < 3:
                continue
            if (version == 1 and kind[0] == "cgroup" and "memory" in kind[2].split(",")) or \
                    (version == 2 and kind[0] == "cgroup2"):
                root, point = fields[3], fields[4]
                if root == "/" or path == root or path.startswith(root + "/"):
                    relative = path if root == "/" else path[len(root):]
                    found.append((version, Path(point) / relative.lstrip("/"), Path(point)))
                    break
    return sorted(found, key=lambda cgroup: cgroup[0])


@functools.cache
def _memory_parent() -> tuple[int, Path] | None:
    """The memory cgroup the harness is in, (version, folder), if this process may make memory cgroups under it."""
    for version, folder, _ in _memory_cgroups():
        if not os.access(folder, os.W_OK):
            continue
        if version == 1 and (folder / "memory.limit_in_bytes").exists():
            _remove_stale(folder)
            return version, folder
        if version == 2:
            try:
                if "memory" not in (folder / "cgroup.controllers").read_text().split():
                    continue
                if "memory" not in (folder / "cgroup.subtree_control").read_text().split():
                    (folder / "cgroup.subtree_control").write_text("+memory")  # refused where it holds processes
            except OSError:
                continue
            _remove_stale(folder)
            return version, folder
    return None


@functools.cache
def machine_memory() -> int:
    """The memory (bytes) there is for candidates: the machine's, or less where the harness's memory cgroup (or
    one above it) is limited; 0 where it is not known."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = 0
    for version, folder, mount in _memory_cgroups():
        while True:
            try:
                value = (folder / ("memory.limit_in_bytes" if version == 1 else "memory.max")).read_text().strip()
            except OSError:
                value = "max"
            if value.isdigit() and (total <= 0 or int(value) < total):
                total = int(value)
            if folder == mount or mount not in folder.parents:
                break
            folder = folder.parent
    return max(total, 0)


def memory_limit(box: Box) -> int:
    """The most memory (bytes) the processes of a candidate in `box` may use together: `box.max_memory_gb`
    (sandbox.max_memory_gb), or where that is 0, `MEMORY_SHARE` of `machine_memory()` (0: no limit known); of
    the loops that `--parallel` runs side by side, each gets its part of that share (AUTORESEARCH_MEMORY_SHARE)."""
    if box.max_memory_gb > 0:
        return int(box.max_memory_gb * GB)
    try:
        share = float(os.environ.get("AUTORESEARCH_MEMORY_SHARE") or MEMORY_SHARE)
    except ValueError:
        share = MEMORY_SHARE
    return int((share if 0 < share <= MEMORY_SHARE else MEMORY_SHARE) * machine_memory())


def _oom_killed(folder: Path, version: int, limit: int) -> bool:
    """Whether the kernel has killed a process of the memory cgroup `folder` for going past its limit."""
    try:
        if version == 2:
            events = dict(line.split() for line in (folder / "memory.events").read_text().splitlines() if line.strip())
            return int(events.get("oom_kill", 0)) > 0 or int(events.get("oom_group_kill", 0)) > 0
        control = dict(line.split() for line in (folder / "memory.oom_control").read_text().splitlines()
                       if line.strip())
        if "oom_kill" in control:
            return int(control["oom_kill"]) > 0
        # kernels before 4.13 count no kills: it met its limit, and its use came to it
        return int((folder / "memory.failcnt").read_text()) > 0 and \
            int((folder / "memory.max_usage_in_bytes").read_text()) >= 0.95 * limit
    except (OSError, ValueError):
        return False


class MemoryLimit(TaskLimit):
    """A memory cgroup of its own for one candidate: at most `limit` bytes for its processes together, the files
    they keep in a tmpfs included (the box's /tmp and /dev/shm), without swap (v1: `memory.limit_in_bytes` and
    `memory.memsw.limit_in_bytes`; v2: `memory.max`, `memory.swap.max`, and `memory.oom.group`, so that all of it
    is killed at once). Past the limit the kernel kills it (`exceeded`). Where no memory cgroup is ours,
    RLIMIT_AS bounds each of its processes instead, except with the GPU (CUDA reserves far more address space
    than it uses, and would fail), where nothing bounds it."""

    _count = 0

    def __init__(self, limit: int, *, gpu: bool = False) -> None:
        self.folder: Path | None = None
        self.limit = limit
        self.version = 0
        self.rlimit: int | None = None  # RLIMIT_AS, where there is no cgroup
        self._exceeded = False
        parent = _memory_parent() if limit > 0 else None
        if parent is not None:
            MemoryLimit._count += 1
            folder = parent[1] / f"autoresearch-{os.getpid()}-{MemoryLimit._count}"
            try:
                folder.mkdir()
                self.folder = folder
                if parent[0] == 1:
                    (folder / "memory.limit_in_bytes").write_text(str(limit))
                    if (folder / "memory.memsw.limit_in_bytes").exists():
                        (folder / "memory.memsw.limit_in_bytes").write_text(str(limit))
                else:
                    (folder / "memory.max").write_text(str(limit))
                    for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                        if (folder / name).exists():
                            (folder / name).write_text(value)
                self.version = parent[0]
                return
            except OSError as err:
                say_once(log, logging.WARNING, "cannot make a memory cgroup under %s (%s)", parent[1], err)
                self.remove(tries=1)
        if limit <= 0:
            say_once(log, logging.WARNING, "the machine's memory is not known: candidates get no memory limit")
        elif gpu:
            say_once(log, logging.WARNING, "no memory cgroup of our own here: the memory of candidates that use "
                     "the GPU is not bounded (an address-space limit would break CUDA)")
        else:
            self.rlimit = limit
            say_once(log, logging.WARNING, "no memory cgroup of our own here: each process of a candidate gets an "
                     "address-space limit (RLIMIT_AS) of %.3g GB instead, not its processes together", limit / GB)

    def join(self) -> None:
        """In the child, before exec: enter the cgroup, or take the address-space limit."""
        super().join()
        if self.rlimit is not None:
            try:
                import resource

                hard = resource.getrlimit(resource.RLIMIT_AS)[1]
                cap = self.rlimit if hard == resource.RLIM_INFINITY else min(self.rlimit, hard)
                resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
            except (ImportError, ValueError, OSError):
                pass

    def exceeded(self) -> bool:
        """Whether the kernel has killed one of its processes for going past the limit (so far)."""
        folder = self.folder  # another thread may remove it meanwhile
        if folder is not None and not self._exceeded:
            self._exceeded = _oom_killed(folder, self.version, self.limit)
        return self._exceeded

    def remove(self, tries: int = 50) -> None:
        self.exceeded()  # what the cgroup counted goes with it
        super().remove(tries)


# -- the child, before exec ------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def prepare_child(tasks: TaskLimit | None = None, rules: landlock.Ruleset | None = None,
                  memory: MemoryLimit | None = None, *, drop_capabilities: bool = False) -> None:
    """In the child, before exec: its pids and memory cgroups, death with the harness (Linux), the rlimits,
    outside the box every capability dropped (the box drops them itself), and the Landlock rules (last: they
    would forbid the cgroups' files)."""
    if tasks is not None:
        tasks.join()
    if memory is not None:
        memory.join()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the process group kill still applies
        pass
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (MAX_FILE_BYTES, MAX_FILE_BYTES))
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(MAX_OPEN_FILES, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, cap) if soft != resource.RLIM_INFINITY else cap, cap))
    except (ImportError, ValueError, OSError):
        pass
    if drop_capabilities:
        _drop_capabilities()
    if rules is not None:
        landlock.restrict_self(rules)  # raises rather than run unrestricted


_PR_CAPBSET_DROP, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, _PR_SET_DUMPABLE = 24, 47, 4, 4
_CAPABILITY_VERSION_3 = 0x20080522


def _drop_capabilities() -> None:
    """Give up every capability, for good (bounding, ambient, effective, permitted, inheritable): a candidate
    started by root is then root without root's powers. Above all without CAP_SYS_PTRACE, so it cannot read a
    non-dumpable harness's /proc/<pid>/environ or memory (`protect_harness`). Linux only; a no-op elsewhere."""
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(_CAPABILITY_VERSION_3, 0)
    empty = (ctypes.c_uint32 * 6)()
    if libc.capset(header, empty) != 0:
        raise OSError(ctypes.get_errno(), "cannot drop the candidate's capabilities")


@functools.cache
def protect_harness() -> None:
    """Make this process non-dumpable before any candidate starts: its /proc/<pid>/environ (the agents' API keys),
    memory and file descriptors can then be read only by a process with CAP_SYS_PTRACE, which no candidate has
    (`_drop_capabilities`, the box's `--cap-drop ALL`). Costs core dumps and attaching a debugger to the harness."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)

