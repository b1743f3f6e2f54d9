"""The only place that starts candidate code (train.py and anything it imports).

Covers: its own process session, so the whole process group is killed at a deadline; on Linux,
death with the harness (a harness killed with `kill -9` takes its candidate down with it); a working
directory; an environment built here (the caller's variables plus the harness's, minus variables
that look like credentials); output to pipes the harness reads.

Does not cover yet: filesystem, network and PID-namespace isolation. Those belong here too, so
that every run of candidate code gains them at once.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

_SECRET = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGKILL it when the harness dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the process group kill still applies
        pass


_PR_SET_PDEATHSIG = 1


def candidate_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _SECRET.search(k)}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class CandidateProcess:
    """A running piece of candidate code; `kill()` ends its whole process group."""

    def __init__(self, popen: subprocess.Popen) -> None:
        self.popen = popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def go(self, script: Path, env: Mapping[str, str]) -> None:
        """Tell a prestarted interpreter (`prestart_python`) to run `script` with `env` added to its
        environment. OSError if it is no longer listening."""
        order = json.dumps({"script": str(script), "env": dict(env)}) + "\n"
        self.popen.stdin.write(order.encode())
        self.popen.stdin.close()


def start(argv: Sequence[str], cwd: Path, env: Mapping[str, str], *, stdin: int | None = None,
          stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.STDOUT) -> CandidateProcess:
    """Start the program `argv` (no shell) in its own session. Raises OSError if it cannot be started."""
    popen = subprocess.Popen(list(argv), cwd=cwd, env=candidate_env(env), stdin=stdin,
                             stdout=stdout, stderr=stderr, start_new_session=True,
                             preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    return CandidateProcess(popen)


def prestart_python(cwd: Path, env: Mapping[str, str]) -> CandidateProcess:
    """An interpreter that imports torch now and runs a script when told (`CandidateProcess.go`), its
    output on one pipe like `start_python`'s. See `prestart.py`."""
    return start_python(["-m", "autoresearch.prestart"], cwd, env, stdin=subprocess.PIPE)


def start_python(args: Sequence[str], cwd: Path, env: Mapping[str, str], *, stdin: int | None = None,
                 stdout: int | None = subprocess.PIPE, stderr: int | None = subprocess.STDOUT) -> CandidateProcess:
    """Start `python <args>` with the harness's interpreter, in its own session."""
    return start([sys.executable, *args], cwd, env, stdin=stdin, stdout=stdout, stderr=stderr)
