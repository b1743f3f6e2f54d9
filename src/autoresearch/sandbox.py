"""The only place that starts candidate code (train.py, anything it imports, the evaluation worker that
runs its model), and so the one place that contains it.

Every candidate process gets:
- its own session and, on Linux, death with the harness (a harness killed with `kill -9` takes its
  candidate down with it);
- an environment cleared to an allow-list (`candidate_env`): no API keys, tokens or passwords;
- rlimits on the size of a file it writes and on its open files.

Where bubblewrap works (Linux with `bwrap` on PATH and namespaces allowed), it also runs in a box
(`bwrap_argv`), built from a `Box`:
- no network, loopback included (a new network namespace);
- a new PID namespace, so killing the box kills every process in it, double-forked daemons too;
- all capabilities dropped, so it cannot remount or unmount anything;
- a file system made only of what it needs: the system folders and Python read-only, its working
  folder (writable, or read-only for the evaluation worker) with the folder's `.git` and
  `.autoresearch/` hidden, the extra files it may read (the train split) and folders it may write
  (its model's output folder), and a size-capped /tmp. Everything else is absent: the validation and
  test data, the experiment store, the repository, other worktrees, the home folder, /run and the
  host's sockets.

Where bubblewrap cannot run but the kernel has Landlock (`landlock.py`), the candidate restricts itself
before it starts (`landlock_ruleset`): it can read only the system folders, Python, its working folder (not
its `.git` and `.autoresearch/`) and the extra files it may read; write only below its working folder's
entries, its extra folders and a scratch folder of its own (its TMPDIR); no TCP (kernel ABI 4+); no
signals to the harness (ABI 6+). Weaker than the box: no PID namespace (a pids cgroup, where there is one,
is killed as a whole instead), UDP and unix sockets are not covered, nothing is read-only in place (what
it may write it may change), and new files cannot be made at the top of its working folder.

Without either the run still happens, contained only by the process group and the rlimits. `isolation()`
says which layer is used ("bwrap", "landlock" or "process") and warns loudly below the box; the runner
records it with every experiment and the report shows it. `AUTORESEARCH_SANDBOX=landlock` picks the
Landlock layer, `AUTORESEARCH_SANDBOX=off` turns containment off on purpose (for debugging a task; never
overnight).
"""

from __future__ import annotations

import ctypes
import functools
import itertools
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch import landlock

log = logging.getLogger(__name__)

_SECRET = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION)", re.IGNORECASE)
# What a candidate's environment keeps of the harness's: the names below, and names with these prefixes.
ENV_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "PYTHONPATH",
                       "PYTHONHASHSEED", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                       "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"})
ENV_PREFIXES = ("LC_", "AUTORESEARCH_", "CUDA_", "NVIDIA_", "TORCH_", "TORCHINDUCTOR_", "PYTORCH_", "TRITON_",
                "CUBLAS_", "CUDNN_", "NCCL_", "XLA_", "UV_")
HARNESS_ONLY = frozenset({"AUTORESEARCH_CACHE", "AUTORESEARCH_SANDBOX", "AUTORESEARCH_FAULT"})  # not for candidates
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
HIDDEN_SYSTEM_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers",
                       "/etc/ssh", "/etc/ssl/private")
HIDDEN_IN_WORKDIR = (".git", ".autoresearch")  # the repository, and the harness's folder (store, logs)
TMP_BYTES = 4 << 30  # the box's /tmp
MAX_FILE_BYTES = 64 << 30  # RLIMIT_FSIZE: the largest file a candidate may write
MAX_OPEN_FILES = 4096  # RLIMIT_NOFILE
MAX_TASKS = 8192  # processes and threads of one candidate, where a pids cgroup can hold it (a fork bomb's end)


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


def candidate_env(extra: Mapping[str, str], *, boxed: bool = False, names: Iterable[str] = (),
                  tmpdir: str | None = None) -> dict[str, str]:
    """The harness's environment cut to the allow-list (and `names`, which the task's settings pass on),
    without anything that looks like a credential, plus `extra` (the harness's own variables for the run).
    In a box, TMPDIR is the box's /tmp (or `tmpdir`); HOME keeps its value, but only what the box shows of
    it exists."""
    allowed = set(names)
    env = {k: v for k, v in os.environ.items() if (k in ENV_NAMES or k in allowed or k.startswith(ENV_PREFIXES))
           and not _SECRET.search(k) and k not in HARNESS_ONLY}
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
        log.warning("AUTORESEARCH_SANDBOX=off: candidate code runs without the sandbox")
        return "process"
    why = "AUTORESEARCH_SANDBOX=landlock" if wanted == "landlock" else _bwrap_problem()
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


def _bwrap_problem() -> str | None:
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


def bwrap_argv(box: Box, *, python_paths: Iterable[str] = (), tmp_bytes: int = TMP_BYTES) -> list[str]:
    """The bubblewrap command line (before the program's own argv) that runs a program in `box`.

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
            args += ["--tmpfs", secret]
        elif os.path.exists(secret):
            args += ["--ro-bind", "/dev/null", secret]
    args += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/sys", "/sys"]
    if box.gpu:
        for node in sorted(Path("/dev").glob("nvidia*")):
            args += ["--dev-bind", str(node), str(node)]
    args += ["--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    workdir = box.workdir.resolve()
    shown = _shown(box, python_paths)
    for path in shown:
        if not _under(path, SYSTEM_DIRS) and not _under(path, (str(workdir),)):
            args += ["--ro-bind", path, path]
    args += ["--bind" if box.writable else "--ro-bind", str(workdir), str(workdir)]
    for hidden in HIDDEN_IN_WORKDIR:
        target = workdir / hidden
        if target.is_dir() and not target.is_symlink():
            args += ["--tmpfs", str(target)]
    for path in map(str, box.read):  # files inside the working folder's hidden parts, shown again
        if _under(path, (str(workdir),)) and os.path.exists(path):
            args += ["--ro-bind", path, path]
    for folder in box.write:
        args += ["--bind", str(folder), str(folder)]
    for sock in _sockets([workdir, *box.write]):
        args += ["--ro-bind", "/dev/null", sock]
    args += ["--remount-ro", "/", "--chdir", str(workdir), "--"]  # the box's own root: no uncapped scratch
    return args


def python_paths() -> list[str]:
    """Where this interpreter and its packages live: what a candidate needs to read to run Python. Not the
    first entry of the harness's own `sys.path`: that is the folder it was started from (with `python -m`,
    often the task folder, whose store and repository must stay hidden) or its script's."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    search = sys.path if getattr(sys.flags, "safe_path", False) else sys.path[1:]
    paths.update(p for p in search if p and os.path.isabs(p))
    return sorted(os.path.realpath(p) for p in paths if os.path.exists(p))


def landlock_ruleset(box: Box, *, python_paths: Iterable[str] = (), scratch: Path | None = None) -> landlock.Ruleset:
    """The Landlock rules for `box`: what the box would show, as rights. Landlock grants rights beneath a
    path and cannot take them back further down, so a folder holding something hidden is split: the folder
    itself may only be listed, and each of its entries but the hidden ones gets the rights."""
    rules: list[tuple[str, int]] = []
    workdir = str(box.workdir.resolve())
    for folder in SYSTEM_DIRS:
        if os.path.isdir(folder):
            rules += _rights_except(os.path.realpath(folder), landlock.READ, HIDDEN_SYSTEM_FILES)
    rules += [("/proc", landlock.READ_FILE | landlock.READ_DIR), ("/sys", landlock.READ_FILE | landlock.READ_DIR),
              ("/dev", landlock.DEVICES)]
    if os.path.isdir("/dev/shm"):
        rules.append(("/dev/shm", landlock.WRITE))  # shared memory of torch's worker processes (a tmpfs)
    for path in _shown(box, python_paths):
        if not _under(path, (workdir,)):
            rules.append((path, landlock.READ))
    hidden = tuple(os.path.join(workdir, name) for name in HIDDEN_IN_WORKDIR)
    rules += _rights_except(workdir, landlock.WRITE if box.writable else landlock.READ, hidden)
    rules += [(os.path.realpath(p), landlock.READ) for p in map(str, box.read)
              if _under(os.path.realpath(p), (workdir,)) and os.path.exists(p)]
    rules += [(os.path.realpath(folder), landlock.WRITE) for folder in box.write]
    if scratch is not None:
        rules.append((str(scratch), landlock.WRITE))
    return landlock.Ruleset(rules=tuple(rules), network=box.network)


def _rights_except(folder: str, rights: int, hidden: Sequence[str]) -> list[tuple[str, int]]:
    """Rules granting `rights` on `folder` and everything in it except the paths in `hidden` (and except
    symbolic links among the entries of a split folder: a link would grant its target)."""
    inside = [h for h in hidden if _under(h, (folder,))]
    if not inside:
        return [(folder, rights)]
    if folder in inside:
        return []
    rules = [(folder, landlock.READ_DIR)]
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return rules
    for name in entries:
        path = os.path.join(folder, name)
        if not os.path.islink(path):
            rules += _rights_except(path, rights, inside)
    return rules


def _shown(box: Box, python_paths: Iterable[str]) -> list[str]:
    """The folders and files shown read-only besides the system folders: Python's and `box.read`, without
    any that holds the working folder (it would show the hidden parts of a task folder around it)."""
    workdir = str(box.workdir.resolve())
    paths = _outermost([p for p in (*python_paths, *map(str, box.read)) if os.path.exists(p)])
    dropped = [p for p in paths if p != workdir and _under(workdir, (p,))]
    if dropped:
        log.info("not shown to candidates, because they hold the working folder: %s", ", ".join(dropped))
    return [p for p in paths if p not in dropped]


def _outermost(paths: Iterable[str]) -> list[str]:
    """`paths` without those inside another one (binding a folder binds what is in it)."""
    kept: list[str] = []
    for path in sorted(set(os.path.realpath(p) for p in paths), key=len):
        if not _under(path, kept):
            kept.append(path)
    return kept


def _under(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


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


# -- the coding agent's box ----------------------------------------------------------------------

REPORTS_WITH_TEST_FIGURES = ("report.md", "report.html")  # in the task folder; the agent's box covers them


def agent_argv(workdir: Path, task_dir: Path, *, shown: Iterable[Path] = (), hidden: Iterable[Path] = ()) -> list[str]:
    """The bubblewrap command line (before the agent's own) that runs a coding agent (`cmd:`, claude, codex,
    aider). An agent is not candidate code: it keeps the machine as the user sees it (files, network,
    devices, its own configuration and keys). But it must not see the harness's records of the task, which
    hold the hidden test split's figures: the task's `.autoresearch/` (the store, the logs, the other
    worktrees) and its reports (`REPORTS_WITH_TEST_FIGURES`) are covered, and so are the folders in `hidden` (the data cache, with the
    validation and test splits). Its worktree `workdir` and the folders in `shown` (its prompt) are shown
    again. It gets a PID namespace of its own, so what it leaves running ends with it."""
    task_dir = task_dir.resolve()
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--dev-bind", "/", "/", "--proc", "/proc"]
    harness = task_dir / ".autoresearch"
    if harness.is_dir():
        args += ["--tmpfs", str(harness)]
    for name in REPORTS_WITH_TEST_FIGURES:
        if (task_dir / name).is_file():
            args += ["--ro-bind", "/dev/null", str(task_dir / name)]
    for folder in hidden:
        if Path(folder).is_dir() and not _under(str(workdir.resolve()), (str(Path(folder).resolve()),)):
            args += ["--tmpfs", str(Path(folder).resolve())]
    for folder in (*shown, workdir):
        args += ["--bind", str(Path(folder).resolve()), str(Path(folder).resolve())]
    return args + ["--chdir", str(workdir.resolve()), "--"]


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


class _TaskLimit:
    """A pids cgroup of its own for one candidate, with `pids.max`; nothing where cgroups are not ours."""

    _count = 0

    def __init__(self, limit: int) -> None:
        self.folder: Path | None = None
        parent = _pids_parent()
        if parent is None:
            return
        _TaskLimit._count += 1
        folder = parent / f"autoresearch-{os.getpid()}-{_TaskLimit._count}"
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
        log.warning("the pids cgroup %s is still busy; it is left behind", folder)


# -- processes ------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _prepare_child(tasks: _TaskLimit | None = None, rules: landlock.Ruleset | None = None) -> None:
    """In the child, before exec: its pids cgroup, death with the harness (Linux), the rlimits, and the
    Landlock rules (last: they would forbid the cgroup's file)."""
    if tasks is not None:
        tasks.join()
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
    if rules is not None:
        landlock.restrict_self(rules)  # raises rather than run unrestricted


class CandidateProcess:
    """A running piece of candidate code; `kill()` ends its whole process group (and its box, with every
    process in it)."""

    def __init__(self, popen: subprocess.Popen, isolation: str, tasks: _TaskLimit | None = None,
                 scratch: Path | None = None, deferred: Box | None = None) -> None:
        self.popen = popen
        self.isolation = isolation
        self._tasks = tasks
        self._scratch = scratch  # its TMPDIR outside a box: removed with it
        self._deferred = deferred  # a prestarted interpreter's Landlock box: its rules go with the order

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self._tasks is not None:
            self._tasks.kill_all()  # without a PID namespace, what left the process group too
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
        if self._tasks is not None:
            self._tasks.kill_all()  # what it left behind (a daemon, outside a box)
            self._tasks.remove()
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
        self.tell(order)
        self.popen.stdin.close()

    def tell(self, order: dict) -> None:
        """Send a prestarted process its order, one JSON line; in the Landlock layer with the rules it must
        restrict itself to, made now: they name files by what they are now (git replaces files)."""
        if self._deferred is not None:
            rules = landlock_ruleset(self._deferred, python_paths=python_paths(), scratch=self._scratch)
            order = {**order, "landlock": rules.to_json()}
        self.popen.stdin.write((json.dumps(order) + "\n").encode())
        self.popen.stdin.flush()


def start(argv: Sequence[str], box: Box, env: Mapping[str, str], *, stdin: int | None = None,
          stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.STDOUT,
          prestarted: bool = False) -> CandidateProcess:
    """Start the program `argv` (no shell) in `box`, in its own session. OSError if it cannot be started.
    `prestarted`: harness code that runs candidate code later, when told (`CandidateProcess.go`); in the
    Landlock layer it restricts itself then, with rules made then."""
    how = isolation()
    command = list(argv)
    rules, scratch = None, None
    if how == "bwrap":
        command = bwrap_argv(box, python_paths=python_paths()) + command
    elif how == "landlock":
        scratch = _scratch_folder(box.workdir) if box.writable else None  # a read-only box writes nowhere
        rules = None if prestarted else landlock_ruleset(box, python_paths=python_paths(), scratch=scratch)
        landlock.prepare()
    tasks = _TaskLimit(MAX_TASKS) if sys.platform == "linux" else None
    child_env = candidate_env(env, boxed=how == "bwrap", names=box.env, tmpdir=str(scratch) if scratch else None)
    try:
        popen = subprocess.Popen(command, cwd=box.workdir, env=child_env, stdin=stdin, stdout=stdout, stderr=stderr,
                                 start_new_session=True,
                                 preexec_fn=functools.partial(_prepare_child, tasks, rules) if os.name == "posix" else None)
    except BaseException:
        if tasks is not None:
            tasks.remove()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
        raise
    return CandidateProcess(popen, how, tasks, scratch, deferred=box if how == "landlock" and prestarted else None)


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
    return start([sys.executable, "-m", "autoresearch.prestart"], box, env, stdin=subprocess.PIPE, prestarted=True)


def start_python(args: Sequence[str], box: Box, env: Mapping[str, str], *, stdin: int | None = None,
                 stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.STDOUT) -> CandidateProcess:
    """Start `python <args>` with the harness's interpreter, in `box`, in its own session."""
    return start([sys.executable, *args], box, env, stdin=stdin, stdout=stdout, stderr=stderr)
