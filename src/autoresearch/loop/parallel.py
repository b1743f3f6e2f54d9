"""Several loops of one task at once, one per GPU or per share of the CPU cores (`autoresearch run --parallel`).

`plan` (pure) gives each loop its place: a tag of its own (`<tag>-0`, `<tag>-1`, ...) and one GPU, or on a
machine without one, its own cores. `Supervisor` starts one `autoresearch run` process per place, follows
the output each writes to its log file, passes Ctrl-C on to all of them, starts again one that died
(`restart`, pure), and waits for them. Each loop is an ordinary run of the folder (its branch, worktree,
noise estimate, store rows and lock), so `status --all`, `report --tag`, `compare` and `--resume` work on
them as on any run. `--parallel 1` is one run watched over this way, under its own tag.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from autoresearch.run.limits import MEMORY_SHARE


class ParallelError(Exception):
    """The loops cannot be placed; the message names the fix."""


@dataclass(frozen=True)
class Place:
    """Where one of the loops runs."""

    tag: str
    env: dict[str, str] = field(default_factory=dict)  # what its process gets on top of the harness's environment
    cpus: tuple[int, ...] | None = None  # the cores it is pinned to (None: not pinned)

    cluster: bool = False  # its runs go to a Ray cluster, which places each (ray_runner.py)

    @property
    def where(self) -> str:
        if self.cluster:
            return "runs on the Ray cluster"
        if "CUDA_VISIBLE_DEVICES" in self.env:
            return f"GPU {self.env['CUDA_VISIBLE_DEVICES']}"
        return f"cores {_ranges(self.cpus or ())}"


def plan(count: str, base_tag: str, gpus: Sequence[str], cpus: Sequence[int], *, cluster: bool = False) -> list[Place]:
    """One place per loop, tagged `<base_tag>-<i>` (a single loop: `base_tag` itself). `count`: a number, or
    `all` (one loop per GPU). `gpus`: the ids of the visible GPUs (what `CUDA_VISIBLE_DEVICES` names, or
    0..n-1); `cpus`: the cores this process may use. With GPUs, loop i gets GPU i and CUDA_DEVICE_ORDER=PCI_BUS_ID,
    so that CUDA counts the GPUs in the order in which the box of its runs finds the device node of GPU i
    (`gpus.gpu_nodes`: it gets that GPU's only); without, the cores are cut into `count` runs of neighbours,
    as even as they go, and each loop's maths libraries get as many threads as it has cores. Each loop's runs
    get an equal part of the memory that one run may take by default (AUTORESEARCH_MEMORY_SHARE, read by
    `limits.memory_limit`), so that the loops together cannot take the machine's. `cluster`: their runs go to
    a Ray cluster, so that no loop is given a GPU or cores here."""
    if cluster and count.strip().lower() == "all":
        raise ParallelError("--parallel all counts this machine's GPUs; with --executor ray give how many loops "
                            "to run, e.g. as many as the cluster has GPUs")
    if count.strip().lower() == "all":
        if not gpus:
            raise ParallelError("--parallel all means one loop per GPU, and no GPU is visible here: give how many "
                                "loops to run on the CPU instead, e.g. --parallel 2 (each gets its share of the cores)")
        n = len(gpus)
    else:
        try:
            n = int(count)
        except ValueError:
            raise ParallelError(f"--parallel {count}: give how many loops to run at once (a whole number), or "
                                "`all` for one per GPU") from None
        if n < 1:
            raise ParallelError(f"--parallel {count}: give at least 1 loop")
    tags = [f"{base_tag}-{i}" for i in range(n)] if n > 1 else [base_tag]  # one loop: a run watched over
    if cluster:  # the loops only propose and decide here; Ray places each run on a node
        return [Place(tag, cluster=True) for tag in tags]
    memory = {"AUTORESEARCH_MEMORY_SHARE": f"{MEMORY_SHARE / n:.4g}"} if n > 1 else {}
    if gpus:
        if n > len(gpus):
            raise ParallelError(f"--parallel {n}: only {len(gpus)} GPU(s) are visible ({', '.join(gpus)}), and each "
                                "loop needs one of its own: give at most that many, or --parallel all")
        return [Place(tag, env={"CUDA_VISIBLE_DEVICES": gpu, "CUDA_DEVICE_ORDER": "PCI_BUS_ID", **memory})
                for tag, gpu in zip(tags, gpus, strict=False)]
    cores = sorted(cpus)
    if n > len(cores):
        raise ParallelError(f"--parallel {n}: this machine lets the loops use {len(cores)} core(s), and each loop "
                            f"needs at least one: give at most {len(cores)}")
    places, start = [], 0
    for i, tag in enumerate(tags):
        size = len(cores) // n + (1 if i < len(cores) % n else 0)
        mine = tuple(cores[start:start + size])
        start += size
        threads = str(len(mine))
        places.append(Place(tag, env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **memory}, cpus=mine))
    return places


def _ranges(cores: Sequence[int]) -> str:
    """`0-3,6` for cores 0, 1, 2, 3 and 6."""
    parts: list[str] = []
    for core in sorted(cores):
        if parts and core == int(parts[-1].split("-")[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{core}"
        else:
            parts.append(str(core))
    return ",".join(parts) or "-"


RESTART_WAIT_SECONDS = 10.0  # before a loop that died is started again
QUICK_DEATH_SECONDS = 120.0  # a loop that dies sooner after its start died quickly...
QUICK_DEATHS = 3  # ...and after this many quick deaths in a row it is not started again


def restart(code: int, ran_seconds: float, quick_before: int, *, stopping: bool) -> tuple[bool, int]:
    """Whether a loop that ended with exit status `code` after `ran_seconds` is started again (with --resume),
    and how many quick deaths in a row it has had, this one counted. A loop that stopped as asked (status 0),
    refused to start or was refused (2: the command's clear errors), or was stopped by a signal meant to stop it
    (SIGINT, SIGTERM, SIGHUP) stays stopped, as does every loop once the supervisor is `stopping`; one that
    crashed (1: an unforeseen error) or was killed (SIGKILL: the kernel out of memory, say) is started again,
    unless it keeps dying within `QUICK_DEATH_SECONDS` of its start."""
    quick = quick_before + 1 if ran_seconds < QUICK_DEATH_SECONDS else 0
    meant = {0, 2} | {-int(getattr(signal, name)) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)}
    return (not stopping and code not in meant and quick < QUICK_DEATHS), quick


def log_file(log_dir: Path, tag: str) -> Path:
    """Where the loop of `tag` writes its output."""
    return log_dir / f"{tag.replace('/', '_')}.log"


def visible_gpus() -> list[str]:
    """The ids of the CUDA devices this process may use: those `CUDA_VISIBLE_DEVICES` names where it is set,
    else every device torch sees."""
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [gpu.strip() for gpu in named.split(",") if gpu.strip() and gpu.strip() != "-1"]
    try:
        import torch
    except ImportError:
        return []
    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def usable_cpus() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


class Supervisor:
    """The processes of the loops: started, their lines passed on as they come, signals passed on.

    Each loop writes its output to a file of its own (`<log_dir>/<tag>.log`, appended to), and the supervisor
    reads the files: the loops do not depend on it, so a supervisor killed outright leaves them running and
    logging, as if started by hand."""

    POLL_SECONDS = 0.2

    def __init__(self, places: Sequence[Place], argv: Callable[[Place, bool], list[str]], log_dir: Path,
                 env: dict[str, str] | None = None, restart_wait: float = RESTART_WAIT_SECONDS) -> None:
        """`argv(place, again)`: the command of a place's loop; `again` when it is started again after dying."""
        self.places = {place.tag: place for place in places}
        self.argv = argv
        self.log_dir = log_dir
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}  # lines reach the file as printed
        self.restart_wait = restart_wait
        self.stopping = False  # set once the loops were asked to stop: none is started again
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, BinaryIO] = {}
        self._partial: dict[str, bytes] = {}
        self._started: dict[str, float] = {}
        self._quick: dict[str, int] = {}
        self._due: dict[str, float] = {}  # tag -> when its loop, dead, is started again
        self._ended: set[str] = set()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for tag in self.places:
            reader = open(log_file(self.log_dir, tag), "ab+")
            reader.seek(0, os.SEEK_END)  # what an earlier invocation wrote is not shown again
            self._logs[tag], self._partial[tag] = reader, b""
            self._launch(tag, again=False)

    def _launch(self, tag: str, *, again: bool) -> None:
        with open(log_file(self.log_dir, tag), "ab") as log:
            self.procs[tag] = self._spawn(self.places[tag], log, again)
        self._started[tag] = time.monotonic()

    def _spawn(self, place: Place, log: BinaryIO, again: bool) -> subprocess.Popen:
        pinned = place.cpus is not None and hasattr(os, "sched_setaffinity")
        mine = os.sched_getaffinity(0) if pinned else None
        if pinned:  # a child takes the mask of the thread that starts it; this thread gets its own back
            os.sched_setaffinity(0, place.cpus)
        try:
            # A session of its own: Ctrl-C at the terminal reaches only the supervisor, which passes it on once
            # per press (a loop reads the first as "stop after this experiment", the second as "now").
            return subprocess.Popen(self.argv(place, again), env={**self.env, **place.env}, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            if pinned:
                os.sched_setaffinity(0, mine)

    def lines(self, *, final: bool = False, of: str | None = None) -> list[tuple[str, str]]:
        """The lines the loops (or the loop `of`) wrote since the last call, as (tag, line); `final`: with any
        unended last line."""
        found = []
        for tag, reader in self._logs.items():
            if of is not None and tag != of:
                continue
            data = self._partial[tag] + reader.read()
            *complete, self._partial[tag] = data.split(b"\n")
            if final and self._partial[tag]:
                complete.append(self._partial[tag])
                self._partial[tag] = b""
            found += [(tag, raw.decode("utf-8", "replace")) for raw in complete]
        return found

    def signal(self, signum: int) -> None:
        """Pass `signum` on to every loop that runs; from then on, none is started again."""
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    proc.send_signal(signum)
                except ProcessLookupError:
                    pass

    def follow(self, on_line: Callable[[str, str], None],
               on_restart: Callable[[str, int, float, float], None] = lambda *_: None) -> dict[str, int]:
        """Pass the loops' lines to `on_line(tag, line)` until all have ended, starting again those that died
        (`restart`; `on_restart(tag, exit status, seconds it ran, seconds until it starts again)` is told);
        their last exit statuses."""
        while len(self._ended) < len(self.places):
            for tag, line in self.lines():
                on_line(tag, line)
            now = time.monotonic()
            for tag, proc in self.procs.items():
                code = proc.poll()
                if code is None or tag in self._ended or tag in self._due:
                    continue
                for _, line in self.lines(final=True, of=tag):  # its last words come before the news of its end
                    on_line(tag, line)
                again, self._quick[tag] = restart(code, now - self._started[tag], self._quick.get(tag, 0),
                                                  stopping=self.stopping)
                if again:
                    self._due[tag] = now + self.restart_wait
                    on_restart(tag, code, now - self._started[tag], self.restart_wait)
                else:
                    self._ended.add(tag)
            for tag, due in list(self._due.items()):
                if self.stopping:  # asked to stop while it waited: it stays stopped
                    del self._due[tag]
                    self._ended.add(tag)
                elif now >= due:
                    del self._due[tag]
                    self._launch(tag, again=True)
            time.sleep(self.POLL_SECONDS)
        for tag, line in self.lines(final=True):
            on_line(tag, line)
        for reader in self._logs.values():
            reader.close()
        return {tag: proc.wait() for tag, proc in self.procs.items()}


def run_all(places: Sequence[Place], argv: Callable[[Place, bool], list[str]], log_dir: Path,
            on_line: Callable[[str, str], None], on_stopping: Callable[[int], None] = lambda _: None,
            on_restart: Callable[[str, int, float, float], None] = lambda *_: None,
            env: dict[str, str] | None = None, restart_wait: float = RESTART_WAIT_SECONDS) -> dict[str, int]:
    """Start a loop per place and follow them until all have ended, starting again a loop that died
    (`Supervisor.follow`). Ctrl-C is passed on to each (`on_stopping` is told how many so far); SIGTERM and
    SIGHUP (the terminal closed) reach them as SIGTERM, unless they are ignored here. `env`: added to each
    loop's environment. Returns each tag's last exit status."""
    supervisor = Supervisor(places, argv, log_dir, env, restart_wait)
    presses = 0

    def on_interrupt(signum, frame):
        nonlocal presses
        presses += 1
        on_stopping(presses)
        supervisor.signal(signal.SIGINT)

    def on_terminate(signum, frame):
        supervisor.signal(signal.SIGTERM)

    handled = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ())
    previous = {signum: signal.getsignal(signum) for signum in handled}
    # what the shell had ignored stays ignored (under `nohup`, a closed terminal must not stop the loops)
    previous = {signum: handler for signum, handler in previous.items()
                if signum == signal.SIGINT or handler is not signal.SIG_IGN}
    for signum in previous:
        signal.signal(signum, on_interrupt if signum == signal.SIGINT else on_terminate)
    try:
        supervisor.start()
        return supervisor.follow(on_line, on_restart)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)


def loop_argv(place: Place, options: list[str]) -> list[str]:
    """The command of one loop: this Python's `autoresearch run`, the options given, and the place's tag."""
    return [sys.executable, "-m", "autoresearch", "run", *options, "--tag", place.tag]
