"""The only place that starts candidate code (train.py, anything it imports, the evaluation worker that
runs its model), and so the one place that contains it.

Every candidate process gets:
- its own session and, on Linux, death with the harness (a harness killed with `kill -9` takes its
  candidate down with it);
- an environment cleared to an allow-list (`candidate_env`): no API keys, tokens or passwords;
- rlimits on the size of a file it writes and on its open files;
- a memory limit for its processes together (`sandbox.max_memory_gb`; by default `limits.MEMORY_SHARE` of
  the machine's memory): a memory cgroup of its own, where the harness may make one (`limits.MemoryLimit`),
  which also counts the files it keeps in RAM (a tmpfs: the box's /tmp and /dev/shm). Past the limit the
  kernel kills it, and `CandidateProcess.memory_exceeded` says so. Without such a cgroup, RLIMIT_AS bounds
  each of its processes on its own, except with the GPU (CUDA reserves far more address space than it uses),
  where nothing bounds its memory; the log says which once.

Where bubblewrap works (Linux with `bwrap` on PATH and namespaces allowed), it also runs in a box
(`bwrap.bwrap_argv`), built from a `Box`:
- no network, loopback included (a new network namespace);
- a new PID namespace, so killing the box kills every process in it, double-forked daemons too;
- all capabilities dropped, so it cannot remount or unmount anything;
- a file system made only of what it needs: the system folders and Python read-only, its working
  folder (writable, or read-only for the evaluation worker) with the folder's `.git` and
  `.autoresearch/` hidden, the extra files it may read (the train split) and folders it may write
  (its model's output folder), and a size-capped /tmp and /dev/shm (both within its memory limit). /dev
  is read-only (a tmpfs in RAM otherwise). With the GPU it gets the device nodes of the GPUs
  CUDA_VISIBLE_DEVICES names (`gpus.gpu_nodes`) and the driver's control nodes, not those of the other GPUs
  (another loop's, under `--parallel`). Everything else is absent: the validation and test data, the
  experiment store, the repository, other worktrees, the home folder, /run and the host's sockets.

Where bubblewrap cannot run but the kernel has Landlock (`landlock.py`), the candidate restricts itself
before it starts (`landlock_rules.landlock_ruleset`): it can read only the system folders, Python, its
working folder (not its `.git` and `.autoresearch/`) and the extra files it may read; write only below its
working folder's entries, its extra folders and a scratch folder of its own (its TMPDIR); no TCP (kernel ABI
4+); no signals to the harness (ABI 6+). Weaker than the box: no PID namespace (a pids cgroup, where there is one,
is killed as a whole instead), UDP and unix sockets are not covered, nothing is read-only in place (what
it may write it may change), and new files cannot be made at the top of its working folder.

Without either the run still happens, contained only by the process group and the rlimits. `isolation()`
says which layer is used ("bwrap", "landlock" or "process") and warns loudly below the box; the runner
records it with every experiment and the report shows it. `AUTORESEARCH_SANDBOX=landlock` picks the
Landlock layer, `AUTORESEARCH_SANDBOX=off` turns containment off on purpose (for debugging a task; never
overnight).

This module is the common API: the `Box`, the environment (`candidate_env`), the layer (`isolation`), and
starting and ending candidate processes (`start`, `CandidateProcess`). Beside it, each with its own part:
`view.py` (what every layer shows and hides), `bwrap.py` (the box's command line, and the coding agent's
box), `landlock_rules.py` (the Landlock layer's rules), `gpus.py` (which GPUs' device nodes a box gets) and
`limits.py` (rlimits, cgroups, the memory limit, the child's preparation before exec).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.run import bwrap, gpus, landlock, landlock_rules, limits, view

log = logging.getLogger(__name__)

_SECRET = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION)", re.IGNORECASE)
# What a candidate's environment keeps of the harness's: the names below, and names with these prefixes.
ENV_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "PYTHONPATH",
                       "PYTHONHASHSEED", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                       "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"})
ENV_PREFIXES = ("LC_", "AUTORESEARCH_", "CUDA_", "NVIDIA_", "TORCH_", "TORCHINDUCTOR_", "PYTORCH_", "TRITON_",
                "CUBLAS_", "CUDNN_", "NCCL_", "XLA_", "UV_")
HARNESS_ONLY = frozenset({"AUTORESEARCH_CACHE", "AUTORESEARCH_SANDBOX", "AUTORESEARCH_FAULT"})  # not for candidates


@dataclass(frozen=True)
class Box:
    """What a candidate process may see and touch."""

    workdir: Path  # its working folder; `.git` and `.autoresearch/` in it are hidden
    writable: bool = True  # may it write in `workdir`
    read: tuple[Path, ...] = ()  # files or folders it may read besides (e.g. the train split)
    write: tuple[Path, ...] = ()  # folders it may write besides (inside the hidden `.autoresearch/` too)
    gpu: bool = False  # pass the NVIDIA device nodes through
    network: bool = False  # share the host's network (only where the task's settings ask for it)
    env: tuple[str, ...] = ()  # names of further environment variables it gets as they are
    max_memory_gb: float = 0.0  # the most memory its processes may use together; 0: a share (`limits.memory_limit`)


def reaches_candidates(name: str, names: Iterable[str] = ()) -> bool:
    """Does the environment variable `name` reach candidates' runs: on the allow-list (or in `names`, which
    the task's settings pass on), and not named like a credential?"""
    return (name in ENV_NAMES or name in names or name.startswith(ENV_PREFIXES)) and not _SECRET.search(name) \
        and name not in HARNESS_ONLY


def candidate_env(extra: Mapping[str, str], *, boxed: bool = False, names: Iterable[str] = (),
                  tmpdir: str | None = None) -> dict[str, str]:
    """The harness's environment cut to the allow-list (and `names`, which the task's settings pass on),
    without anything that looks like a credential, plus `extra` (the harness's own variables for the run).
    In a box, TMPDIR is the box's /tmp (or `tmpdir`); HOME keeps its value, but only what the box shows of
    it exists."""
    allowed = set(names)
    env = {k: v for k, v in os.environ.items() if reaches_candidates(k, allowed)}
    env["PYTHONUNBUFFERED"] = "1"
    if boxed or tmpdir:
        env["TMPDIR"] = tmpdir or "/tmp"
    env.update(extra)
    return env


# -- isolation ------------------------------------------------------------------------------------

WRITE_CONFINED = ("bwrap", "landlock")  # the layers under which a candidate writes only where its Box lets it


@functools.cache
def isolation() -> str:
    """How candidate code is contained here: "bwrap" (the box), "landlock" (the kernel's rules: no
    bubblewrap, or `AUTORESEARCH_SANDBOX=landlock`), or "process" (process group and rlimits only: neither,
    or `AUTORESEARCH_SANDBOX=off`). Checked once; anything below the box is logged loudly."""
    wanted = os.environ.get("AUTORESEARCH_SANDBOX", "").lower()
    if wanted in ("off", "0", "no", "false"):
        log.warning("AUTORESEARCH_SANDBOX=off: candidate code runs without the sandbox: it can read your files (the "
                    "validation and test data, the store, your home), reach the network and other processes; the "
                    "harness still owns the clock, the metric, its environment and its own folders "
                    "(docs/security.md)")
        return "process"
    why = "AUTORESEARCH_SANDBOX=landlock" if wanted == "landlock" else bwrap.problem()
    if why is None:
        return "bwrap"
    if landlock.abi() >= 1:
        log.warning("WEAKER SANDBOX: %s, so candidate code is contained by Landlock (ABI %d) instead of the "
                    "bubblewrap box: no PID namespace, UDP and unix sockets not covered (docs/security.md). "
                    "Install bubblewrap (apt-get install bubblewrap) for the full box.", why, landlock.abi())
        return "landlock"
    log.warning("NO SANDBOX: %s, and this kernel has no Landlock. Candidate code runs with your rights, network "
                "and files; install bubblewrap (apt-get install bubblewrap) on Linux.", why)
    return "process"


class CandidateProcess:
    """A running piece of candidate code; `kill()` ends its whole process group (and its box, with every
    process in it)."""

    def __init__(self, popen: subprocess.Popen, isolation: str, tasks: limits.TaskLimit | None = None,
                 scratch: Path | None = None, deferred: Box | None = None,
                 memory: limits.MemoryLimit | None = None) -> None:
        self.popen = popen
        self.isolation = isolation
        self._tasks = tasks
        self._memory = memory
        self._scratch = scratch  # its TMPDIR outside a box: removed with it
        self._deferred = deferred  # a prestarted interpreter's Landlock box: its rules go with the order

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def memory_gb(self) -> float | None:
        """Its memory limit (`limits.memory_limit`), in GB; None where it has none."""
        return self._memory.limit / limits.GB if self._memory is not None and self._memory.limit > 0 else None

    def memory_exceeded(self) -> bool:
        """Whether the kernel killed one of its processes for going past its memory limit (known where that
        limit is a memory cgroup; also once it has ended)."""
        return self._memory is not None and self._memory.exceeded()

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for cgroup in (self._tasks, self._memory):
            if cgroup is not None:
                cgroup.kill_all()  # without a PID namespace, what left the process group too
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._clean_up()

    def wait(self, timeout: float | None = None) -> int:
        code = self.popen.wait(timeout=timeout)
        self._clean_up()
        return code

    def _clean_up(self) -> None:
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except OSError:  # a stop line it never read
                pass
        for cgroup in (self._tasks, self._memory):
            if cgroup is not None:
                cgroup.kill_all()  # what it left behind (a daemon, outside a box)
                cgroup.remove()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def go(self, script: Path, env: Mapping[str, str], *, speed_probe: str | None = None) -> None:
        """Tell a prestarted interpreter (`prestart_python`) to run `script` with `env` added to its
        environment, after measuring the machine's speed on the device `speed_probe` if given (prestart.py).
        OSError if it is no longer listening."""
        order = {"script": str(script), "env": dict(env)}
        if speed_probe is not None:
            order["speed_probe"] = speed_probe
        self.tell(order)  # its input stays open: the harness's stop line comes on it (supervise.py)

    def tell(self, order: dict) -> None:
        """Send a prestarted process its order, one JSON line; in the Landlock layer with the rules it must
        restrict itself to, made now: they name files by what they are now (git replaces files)."""
        if self._deferred is not None:
            rules = landlock_rules.landlock_ruleset(self._deferred, python_paths=view.python_paths(),
                                                   scratch=self._scratch)
            order = {**order, "landlock": rules.to_json()}
        self.popen.stdin.write((json.dumps(order) + "\n").encode())
        self.popen.stdin.flush()


def start(argv: Sequence[str], box: Box, env: Mapping[str, str], *, stdin: int | None = None,
          stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.STDOUT,
          prestarted: bool = False) -> CandidateProcess:
    """Start the program `argv` (no shell) in `box`, in its own session. OSError if it cannot be started.
    `prestarted`: harness code that runs candidate code later, when told (`CandidateProcess.go`); in the
    Landlock layer it restricts itself then, with rules made then."""
    limits.protect_harness()
    how = isolation()
    command = list(argv)
    rules, scratch = None, None
    limit = limits.memory_limit(box)
    if how == "landlock":
        scratch = _scratch_folder(box.workdir) if box.writable else None  # a read-only box writes nowhere
        rules = None if prestarted else landlock_rules.landlock_ruleset(box, python_paths=view.python_paths(),
                                                                        scratch=scratch)
        landlock.prepare()
    child_env = candidate_env(env, boxed=how == "bwrap", names=box.env, tmpdir=str(scratch) if scratch else None)
    if how == "bwrap":
        nodes = gpus.box_gpu_nodes(child_env) if box.gpu else None
        if nodes is not None:
            child_env.update(nodes.env)
        # each tmpfs within a quarter of the limit
        quarter = limit // 4 if limit > 0 else max(bwrap.TMP_BYTES, bwrap.SHM_BYTES)
        command = bwrap.bwrap_argv(box, python_paths=view.python_paths(), tmp_bytes=min(bwrap.TMP_BYTES, quarter),
                                   shm_bytes=min(bwrap.SHM_BYTES, quarter),
                                   devices=nodes.nodes if nodes is not None else None) + command
    tasks = limits.TaskLimit(limits.MAX_TASKS) if sys.platform == "linux" else None
    memory = limits.MemoryLimit(limit, gpu=box.gpu) if sys.platform == "linux" else None
    try:
        popen = subprocess.Popen(command, cwd=box.workdir, env=child_env, stdin=stdin, stdout=stdout, stderr=stderr,
                                 start_new_session=True,
                                 preexec_fn=functools.partial(limits.prepare_child, tasks, rules, memory,
                                                              drop_capabilities=how != "bwrap")
                                 if os.name == "posix" else None)
    except BaseException:
        for cgroup in (tasks, memory):
            if cgroup is not None:
                cgroup.remove()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    return CandidateProcess(popen, how, tasks, scratch, deferred=box if how == "landlock" and prestarted else None,
                            memory=memory)


_scratch_count = itertools.count(1)


def _scratch_folder(workdir: Path) -> Path:
    """A fresh TMPDIR for one candidate outside a box: in the working folder's hidden harness folder, so it
    is on the disk the run is watched on, and out of sight of other candidates."""
    folder = workdir / ".autoresearch" / "scratch" / f"{os.getpid()}-{next(_scratch_count)}"
    folder.mkdir(parents=True)
    return folder


def prestart_python(box: Box, env: Mapping[str, str]) -> CandidateProcess:
    """An interpreter that imports torch now and runs a script when told (`CandidateProcess.go`), its
    output on one pipe like `start_python`'s. See `prestart.py`."""
    return start([sys.executable, "-m", "autoresearch.run.prestart"], box, env, stdin=subprocess.PIPE, prestarted=True)


def start_python(args: Sequence[str], box: Box, env: Mapping[str, str], *, stdin: int | None = None,
                 stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.STDOUT) -> CandidateProcess:
    """Start `python <args>` with the harness's interpreter, in `box`, in its own session."""
    return start([sys.executable, *args], box, env, stdin=stdin, stdout=stdout, stderr=stderr)
