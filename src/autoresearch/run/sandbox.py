"""The only place that starts candidate code (train.py, anything it imports, the evaluation worker that
runs its model), and so the one place that contains it.

Every candidate process gets:
- its own session and, on Linux, death with the harness (a harness killed with `kill -9` takes its
  candidate down with it);
- an environment cleared to an allow-list (`candidate_env`): no API keys, tokens or passwords;
- rlimits on the size of a file it writes and on its open files;
- a memory limit for its processes together (`sandbox.max_memory_gb`; by default `MEMORY_SHARE` of the
  machine's memory): a memory cgroup of its own, where the harness may make one (`_MemoryLimit`), which
  also counts the files it keeps in RAM (a tmpfs: the box's /tmp and /dev/shm). Past the limit the kernel
  kills it, and `CandidateProcess.memory_exceeded` says so. Without such a cgroup, RLIMIT_AS bounds each of
  its processes on its own, except with the GPU (CUDA reserves far more address space than it uses), where
  nothing bounds its memory; the log says which once.

Where bubblewrap works (Linux with `bwrap` on PATH and namespaces allowed), it also runs in a box
(`bwrap_argv`), built from a `Box`:
- no network, loopback included (a new network namespace);
- a new PID namespace, so killing the box kills every process in it, double-forked daemons too;
- all capabilities dropped, so it cannot remount or unmount anything;
- a file system made only of what it needs: the system folders and Python read-only, its working
  folder (writable, or read-only for the evaluation worker) with the folder's `.git` and
  `.autoresearch/` hidden, the extra files it may read (the train split) and folders it may write
  (its model's output folder), and a size-capped /tmp and /dev/shm (both within its memory limit). /dev
  is read-only (a tmpfs in RAM otherwise). With the GPU it gets the device nodes of the GPUs
  CUDA_VISIBLE_DEVICES names (`gpu_nodes`) and the driver's control nodes, not those of the other GPUs
  (another loop's, under `--parallel`). Everything else is absent: the validation and test data, the
  experiment store, the repository, other worktrees, the home folder, /run and the host's sockets.

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
import errno
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
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.run import landlock

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
HIDDEN_TMPFS_BYTES = 1 << 20  # what covers `.git` and `.autoresearch/` in the box: room for mount points only
TMP_BYTES = 4 << 30  # the box's /tmp, at most (and at most a quarter of its memory limit)
SHM_BYTES = 4 << 30  # the box's /dev/shm (torch's worker processes share tensors there), likewise
MEMORY_SHARE = 0.75  # a candidate's memory limit where sandbox.max_memory_gb is 0: this share of the machine's
GB = 1 << 30
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
    max_memory_gb: float = 0.0  # the most memory its processes may use together; 0: `MEMORY_SHARE` of the machine's


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
        log.warning("AUTORESEARCH_SANDBOX=off: candidate code runs without the sandbox: it can read your files (the "
                    "validation and test data, the store, your home), reach the network and other processes; the "
                    "harness still owns the clock, the metric, its environment and its own folders "
                    "(docs/security.md)")
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


def bwrap_argv(box: Box, *, python_paths: Iterable[str] = (), tmp_bytes: int = TMP_BYTES, shm_bytes: int = SHM_BYTES,
               devices: Sequence[str] | None = None) -> list[str]:
    """The bubblewrap command line (before the program's own argv) that runs a program in `box`. With the GPU,
    `devices` are the NVIDIA device nodes it gets (`gpu_nodes`; None: all of them).

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
    shown = _shown(box, python_paths)
    for path in shown:
        if not _under(path, SYSTEM_DIRS) and not _under(path, (str(workdir),)):
            args += ["--ro-bind", path, path]
    args += ["--bind" if box.writable else "--ro-bind", str(workdir), str(workdir)]
    for hidden in HIDDEN_IN_WORKDIR:
        target = workdir / hidden
        if target.is_dir() and not target.is_symlink():  # a small tmpfs: only the mount points of what is shown again
            args += ["--size", str(HIDDEN_TMPFS_BYTES), "--tmpfs", str(target)]
        elif target.is_file() and not target.is_symlink():  # a worktree's `.git` file: covered, it cannot be rewritten
            args += ["--ro-bind", "/dev/null", str(target)]
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
              ]
    rules += _rights_except("/dev", landlock.DEVICES, ("/dev/shm",))
    # No /dev/shm: under Landlock it is the host's, shared by every candidate and evaluation worker, so it would
    # carry whatever one leaves there to the next (POSIX shared memory and semaphores, e.g. multiprocessing's
    # locks and DataLoader workers, are therefore not available in this layer; the box has a private one).
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


# -- the GPUs a box gets --------------------------------------------------------------------------

NVIDIA_DRIVER = Path("/proc/driver/nvidia")
_GPU_NODE = re.compile(r"nvidia\d+")  # a GPU's own node; the others (nvidiactl, nvidia-uvm, nvidia-caps...) serve all
_PCI_ADDRESS = re.compile(r"([0-9a-fA-F]+):([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-7])")
_LEGACY_MIG = re.compile(r"MIG-(GPU-[0-9a-fA-F-]+)/\d+/\d+")  # MIG-GPU-<its GPU's uuid>/<instance>/<compute instance>


@dataclass(frozen=True)
class GpuNodes:
    """The NVIDIA device nodes a box gets (`gpu_nodes`)."""

    nodes: tuple[str, ...]  # its GPUs' nodes and the control nodes; every node where `problem` is set
    env: dict[str, str] = field(default_factory=dict)  # what the box's environment gets instead of the harness's
    problem: str | None = None  # why it gets every node: what could not be mapped


@dataclass(frozen=True)
class _Gpu:
    address: tuple[int, ...]  # PCI domain, bus, device and function: the order of CUDA_DEVICE_ORDER=PCI_BUS_ID
    minor: int  # its device node is /dev/nvidia<minor>
    uuid: str | None  # GPU-<uuid>, where the driver shows it
    model: str


def gpu_nodes(visible: str | None, driver: Path = NVIDIA_DRIVER, dev: Path = Path("/dev"), *, pci_order: bool = True,
              mig_parents: Mapping[str, str] | None = None) -> GpuNodes:
    """The device nodes (in `dev`) of the GPUs that `visible` names, and the control nodes that every GPU needs.

    `visible` is CUDA_VISIBLE_DEVICES (None: every GPU): indices, GPU-<uuid> (or a unique start of one) or
    MIG-<uuid> entries; an empty or negative entry ends it, as in CUDA. The GPUs are read from the driver's
    folder `driver` (/proc/driver/nvidia: `gpus/<PCI address>/information` gives each one's "Device Minor" and
    "GPU UUID"). Indices count the GPUs in PCI bus order, as CUDA does with CUDA_DEVICE_ORDER=PCI_BUS_ID
    (`pci_order`); otherwise only where the GPUs are all of one model. A MIG device gets its GPU's node and
    nvidia-caps (`mig_parents`: MIG UUID -> its GPU's UUID, from `nvidia-smi -L`; the old form
    MIG-GPU-<uuid>/<gi>/<ci> names it itself). In a box with fewer GPUs' nodes CUDA counts only those, so index
    entries are renamed to the GPUs' UUIDs in the box's environment (`env`), or counted again among its GPUs
    where the driver shows no UUID. What cannot be mapped gets every node, with the `problem` said."""
    every = tuple(sorted(str(node) for node in dev.glob("nvidia*")))
    if visible is None:
        return GpuNodes(every)
    control = tuple(node for node in every if not _GPU_NODE.fullmatch(os.path.basename(node)))
    entries: list[str] = []
    for entry in (e.strip() for e in visible.split(",")):
        if not entry or re.fullmatch(r"-\d+", entry):
            break
        entries.append(entry)
    if not entries:
        return GpuNodes(control)
    gpus = _driver_gpus(driver)
    if isinstance(gpus, str):
        return GpuNodes(every, problem=f"CUDA_VISIBLE_DEVICES={visible}, but {gpus}")
    mig_mode = any((driver / "capabilities").glob("gpu*/mig/gi*"))
    picked: list[_Gpu] = []
    for entry in entries:
        gpu = _gpu_named(entry, gpus, pci_order=pci_order, mig_mode=mig_mode, mig_parents=mig_parents or {})
        if isinstance(gpu, str):
            return GpuNodes(every, problem=f"CUDA_VISIBLE_DEVICES={visible}: {gpu}")
        picked.append(gpu)
    if {gpu.minor for gpu in picked} == {gpu.minor for gpu in gpus}:
        return GpuNodes(every)  # all of them: the environment stays as it is
    own = sorted({str(dev / f"nvidia{gpu.minor}") for gpu in picked} & set(every))
    if all(e.isdigit() for e in entries) and any(gpu.uuid is None for gpu in picked):
        ranks = sorted(set(picked), key=lambda gpu: gpu.address)
        env = {"CUDA_VISIBLE_DEVICES": ",".join(str(ranks.index(gpu)) for gpu in picked),
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    elif any(e.isdigit() and gpu.uuid is None for e, gpu in zip(entries, picked, strict=True)):
        return GpuNodes(every, problem=f"CUDA_VISIBLE_DEVICES={visible}: the driver shows no UUID for a GPU it "
                                       "names by index, besides GPUs named by UUID")
    else:
        env = {"CUDA_VISIBLE_DEVICES": ",".join(gpu.uuid if e.isdigit() else e
                                                for e, gpu in zip(entries, picked, strict=True))}
    return GpuNodes(tuple(sorted((*control, *own))), env=env)


def _driver_gpus(driver: Path) -> list[_Gpu] | str:
    """The GPUs the driver's folder lists, in PCI bus order; or what keeps them from being known."""
    infos = sorted((driver / "gpus").glob("*/information"))
    if not infos:
        return f"{driver / 'gpus'} lists no GPU"
    gpus = []
    for info in infos:
        try:
            text = info.read_text(errors="replace")
        except OSError as err:
            return f"{info} cannot be read ({err.strerror})"
        fields: dict[str, str] = {}
        for line in text.splitlines():
            key, colon, value = line.partition(":")
            if colon:
                fields.setdefault(key.strip(), value.strip())
        minor = fields.get("Device Minor", "")
        address = _PCI_ADDRESS.fullmatch(fields.get("Bus Location") or info.parent.name)
        if not minor.isdigit() or address is None:
            return f"{info} shows no device minor or PCI address"
        if fields.get("GPU Excluded", fields.get("Blacklisted", "No")).lower().startswith("yes"):
            return f"the driver excludes the GPU at {info.parent.name} (CUDA does not count it)"
        uuid = fields.get("GPU UUID", "")
        gpus.append(_Gpu(address=tuple(int(part, 16) for part in address.groups()), minor=int(minor),
                         uuid=uuid if re.fullmatch(r"GPU-[0-9a-fA-F-]{8,}", uuid) else None,
                         model=fields.get("Model", "")))
    return sorted(gpus, key=lambda gpu: gpu.address)


def _gpu_named(entry: str, gpus: Sequence[_Gpu], *, pci_order: bool, mig_mode: bool,
               mig_parents: Mapping[str, str]) -> _Gpu | str:
    """The GPU that one entry of CUDA_VISIBLE_DEVICES names, or why it is not known."""
    if entry.isdigit():
        if mig_mode:
            return "a GPU here is in MIG mode, where CUDA's indices do not count GPUs"
        if not pci_order and len({gpu.model for gpu in gpus}) > 1:
            return ("without CUDA_DEVICE_ORDER=PCI_BUS_ID, CUDA counts the GPUs fastest first, and these are of "
                    "different models")
        if int(entry) >= len(gpus):
            return f"there are {len(gpus)} GPUs, and {entry} is not one of their indices"
        return gpus[int(entry)]
    uuid = entry
    if entry.upper().startswith("MIG-"):
        legacy = _LEGACY_MIG.fullmatch(entry)
        parents = {parent for mig, parent in mig_parents.items() if mig.lower().startswith(entry.lower())}
        if legacy is None and len(parents) != 1:
            return f"the GPU of the MIG device {entry} is not known (`nvidia-smi -L` lists them)"
        uuid = legacy.group(1) if legacy is not None else parents.pop()
    if uuid.upper().startswith("GPU-"):
        found = [gpu for gpu in gpus if gpu.uuid is not None and gpu.uuid.lower().startswith(uuid.lower())]
        if len(found) == 1:
            return found[0]
        return f"{len(found) or 'no'} GPUs have the UUID {uuid}"
    return f"{entry!r} is neither an index nor a GPU or MIG UUID"


def mig_parents(listing: str) -> dict[str, str]:
    """MIG device UUID -> the UUID of its GPU, from what `nvidia-smi -L` prints (each GPU's line, then its MIG
    devices' lines)."""
    parents: dict[str, str] = {}
    gpu = None
    for line in listing.splitlines():
        found = re.search(r"\(UUID: ((?:GPU|MIG)-[^)\s]+)\)", line)
        if found is None:
            continue
        if found.group(1).startswith("GPU-"):
            gpu = found.group(1)
        elif gpu is not None:
            parents[found.group(1)] = gpu
    return parents


@functools.cache
def _machine_mig_parents() -> dict[str, str]:
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return mig_parents(listed.stdout)


def box_gpu_nodes(env: Mapping[str, str]) -> GpuNodes:
    """`gpu_nodes` on this machine for a box whose environment is `env`; what cannot be mapped is logged once."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    entries = [e.strip() for e in (visible or "").split(",")]
    parents = _machine_mig_parents() if any(e.upper().startswith("MIG-") and not _LEGACY_MIG.fullmatch(e)
                                            for e in entries) else None
    found = gpu_nodes(visible, pci_order=env.get("CUDA_DEVICE_ORDER", "").upper() == "PCI_BUS_ID",
                      mig_parents=parents)
    if found.problem is not None:
        _say_once(logging.WARNING, "the box gets the device nodes of every GPU, not only its own: %s", found.problem)
    return found


_said: set[str] = set()


def _say_once(level: int, message: str, *args: object) -> None:
    text = message % args if args else message
    if text not in _said:
        _said.add(text)
        log.log(level, text)


# -- the coding agent's box ----------------------------------------------------------------------

REPORTS_WITH_TEST_FIGURES = ("report.md", "report.html")  # in the task folder; the agent's box covers them


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
        if Path(folder).is_dir() and not _under(str(workdir.resolve()), (str(Path(folder).resolve()),)):
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
            if os.path.isdir(folder) and not _under(folder, (str(harness),)):
                args += ["--ro-bind", folder, folder]
        args += ["--ro-bind", str(link), str(link)]
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


class _MemoryLimit(_TaskLimit):
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
            _MemoryLimit._count += 1
            folder = parent[1] / f"autoresearch-{os.getpid()}-{_MemoryLimit._count}"
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
                _say_once(logging.WARNING, "cannot make a memory cgroup under %s (%s)", parent[1], err)
                self.remove(tries=1)
        if limit <= 0:
            _say_once(logging.WARNING, "the machine's memory is not known: candidates get no memory limit")
        elif gpu:
            _say_once(logging.WARNING, "no memory cgroup of our own here: the memory of candidates that use the GPU "
                      "is not bounded (an address-space limit would break CUDA)")
        else:
            self.rlimit = limit
            _say_once(logging.WARNING, "no memory cgroup of our own here: each process of a candidate gets an address-"
                      "space limit (RLIMIT_AS) of %.3g GB instead, not its processes together", limit / GB)

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


# -- processes ------------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _prepare_child(tasks: _TaskLimit | None = None, rules: landlock.Ruleset | None = None,
                   memory: _MemoryLimit | None = None, *, drop_capabilities: bool = False) -> None:
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


class CandidateProcess:
    """A running piece of candidate code; `kill()` ends its whole process group (and its box, with every
    process in it)."""

    def __init__(self, popen: subprocess.Popen, isolation: str, tasks: _TaskLimit | None = None,
                 scratch: Path | None = None, deferred: Box | None = None, memory: _MemoryLimit | None = None) -> None:
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
        """Its memory limit (`memory_limit`), in GB; None where it has none."""
        return self._memory.limit / GB if self._memory is not None and self._memory.limit > 0 else None

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
        self.tell(order)  # its input stays open: the harness's stop line comes on it (runner.py)

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
    protect_harness()
    how = isolation()
    command = list(argv)
    rules, scratch = None, None
    limit = memory_limit(box)
    if how == "landlock":
        scratch = _scratch_folder(box.workdir) if box.writable else None  # a read-only box writes nowhere
        rules = None if prestarted else landlock_ruleset(box, python_paths=python_paths(), scratch=scratch)
        landlock.prepare()
    child_env = candidate_env(env, boxed=how == "bwrap", names=box.env, tmpdir=str(scratch) if scratch else None)
    if how == "bwrap":
        gpus = box_gpu_nodes(child_env) if box.gpu else None
        if gpus is not None:
            child_env.update(gpus.env)
        quarter = limit // 4 if limit > 0 else max(TMP_BYTES, SHM_BYTES)  # each tmpfs within a quarter of the limit
        command = bwrap_argv(box, python_paths=python_paths(), tmp_bytes=min(TMP_BYTES, quarter),
                             shm_bytes=min(SHM_BYTES, quarter), devices=gpus.nodes if gpus is not None else None) + command
    tasks = _TaskLimit(MAX_TASKS) if sys.platform == "linux" else None
    memory = _MemoryLimit(limit, gpu=box.gpu) if sys.platform == "linux" else None
    try:
        popen = subprocess.Popen(command, cwd=box.workdir, env=child_env, stdin=stdin, stdout=stdout, stderr=stderr,
                                 start_new_session=True,
                                 preexec_fn=functools.partial(_prepare_child, tasks, rules, memory,
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
