"""Watching a running experiment: its output read line by line (`output_lines`, capped at `MAX_LINE_BYTES` a
line), its progress lines parsed (`parse_progress`), and its clock carried out (`Watch`: the stop line at the
budget, the kill past an allowance). Also where a run's log lies (`run_folder`) and what progress it logged
(`logged_progress`).

train.py reports progress as `@autoresearch {json}` lines (docs/contract.md). They drive the live display and
the throughput figures; the metric comes from `evaluate.py` alone.

Invariants: a progress line is candidate output, so only the contract's events and fields are kept, cleaned;
reading output ends when the pipe does, or shortly after the process ended (something it left behind may hold
the pipe open); the clock's deadlines are measured on the harness's monotonic clock from what the harness read.
"""

from __future__ import annotations

import json
import math
import os
import select
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from autoresearch.run import sandbox
from autoresearch.run.clock import STOP, Clock

PROGRESS_PREFIX = "@autoresearch "
LOG_LIMIT_BYTES = 32 << 20  # of a run's output kept in train.log; the rest is read and dropped
MAX_LINE_BYTES = 1 << 20  # output is read in lines of at most this many bytes (a line without end is cut)
STOP_LINE = b"stop\n"  # written to train.py's standard input when the budget is spent (docs/contract.md)

CANDIDATE_EVENTS = ("start", "step", "done")  # what train.py may report; every other name is the harness's
INTEGER_FIELDS = frozenset({"params", "step", "steps", "tokens", "peak_memory_bytes"})
TEXT_FIELDS = frozenset({"device", "profile"})  # every other field is a number


def parse_progress(line: str) -> dict | None:
    """The event of a progress line, or None for free-form output and malformed lines.

    The line is candidate output, so it is cleaned before anything uses it: only the contract's events
    (`CANDIDATE_EVENTS`), and of their fields only finite numbers (whole numbers where counts are meant)
    and, for `TEXT_FIELDS`, short strings. A line that claims to be the harness's own event (an evaluation) is ignored."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        event = json.loads(line[len(PROGRESS_PREFIX):])
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(event, dict) or event.get("event") not in CANDIDATE_EVENTS:
        return None
    clean: dict = {"event": event["event"]}
    for key, value in event.items():
        if key == "event" or not isinstance(key, str):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            clean[key] = int(value) if key in INTEGER_FIELDS else value
        elif isinstance(value, str) and len(value) <= 200 and key in TEXT_FIELDS:
            clean[key] = value
    return clean


def run_folder(experiment_dir: Path, index: int) -> Path:
    """Where run `index` (0 first) of an experiment writes its train.log: the experiment's log folder for the
    first, `run-<index + 1>/` in it for the confirmation runs and the later runs of a best."""
    return experiment_dir / f"run-{index + 1}" if index else experiment_dir


def logged_progress(log_path: Path) -> list[dict]:
    """The progress events in a run's log file (`parse_progress`); none if the file is missing."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            return [event for line in log if (event := parse_progress(line.rstrip("\n"))) is not None]
    except OSError:
        return []


def output_lines(popen: subprocess.Popen, max_line: int = MAX_LINE_BYTES, linger: float = 1.0) -> Iterator[bytes]:
    """What `popen` writes to its stdout pipe, line by line (a line longer than `max_line` comes in pieces of
    that size), until the pipe ends, or `linger` seconds after the process ended: outside the box, a process
    it left behind (a daemon) could hold the pipe open, or keep writing to it, for ever."""
    fd = popen.stdout.fileno()
    buffer, ended = b"", None
    while True:
        if ended is None and popen.poll() is not None:
            ended = time.monotonic()
        if ended is not None and time.monotonic() - ended > linger:
            break
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        buffer += chunk
        while True:
            cut = buffer.find(b"\n", 0, max_line)
            if cut < 0 and len(buffer) < max_line:
                break
            end = cut + 1 if cut >= 0 else max_line
            yield buffer[:end]
            buffer = buffer[end:]
    if buffer:
        yield buffer


class Watch(threading.Thread):
    """Carries out the run's clock (clock.py): the stop line at the budget, the kill past an allowance."""

    def __init__(self, clock: Clock, proc: sandbox.CandidateProcess, *, stops: bool) -> None:
        super().__init__(daemon=True)
        self.clock, self.proc, self.stops = clock, proc, stops
        self.killed: str | None = None  # why the run was killed, if it was
        self._lock, self._changed, self._ended = threading.Lock(), threading.Event(), False

    def saw(self, event: str) -> None:
        """train.py's `start` or `done` line has just been read."""
        with self._lock:
            (self.clock.started if event == "start" else self.clock.done)(time.monotonic())
        self._changed.set()

    def stop(self) -> None:
        self._ended = True
        self._changed.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._ended:
            with self._lock:
                when, action, why = self.clock.next_action()
            delay = when - time.monotonic()
            if delay > 0:
                self._changed.wait(delay)
                self._changed.clear()
                continue
            if action == STOP:
                self.clock.stop_sent = True
                if self.stops:
                    self._tell_stop()
                continue
            self.killed = why
            self.proc.kill()
            return

    def _tell_stop(self) -> None:
        try:
            self.proc.popen.stdin.write(STOP_LINE)
            self.proc.popen.stdin.flush()
        except (OSError, ValueError):  # it closed its input, or is gone: the kill past the overrun follows
            pass
