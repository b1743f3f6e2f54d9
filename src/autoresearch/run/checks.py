"""A user's checks on a candidate about to be kept (`[keep] checks`, docs/keep.md "Checks").

Each command runs in the candidate's box (`sandbox.start`: no network, an environment without credentials,
the memory and file limits of a run), in a fresh copy of the candidate's commit, so nothing a check writes
(a cache, a report) reaches the worktree, the next experiment or the harness. The first that fails, or runs
past its time limit, vetoes the keep; its output, cut to its tail, says why, and goes to the agent with its
next request.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.run import sandbox

OUTPUT_CHARS = 4000  # of a failed check's output, kept (the tail: where tools print their summary)


@dataclass(frozen=True)
class CheckFailure:
    command: str
    code: int | None  # its exit code; None: it ran past its time limit, or could not start
    output: str
    seconds: float

    def text(self) -> str:
        """The reason recorded with the rejected experiment (and shown to the agent)."""
        how = ("ran past its time limit" if self.code is None and self.seconds > 0 else "could not start"
               if self.code is None else f"exited with {self.code}")
        return f"checks failed: `{self.command}` {how}:\n{self.output.strip()}"


def run_checks(commands: Sequence[str], export, *, timeout: float, scratch: Path) -> CheckFailure | None:
    """Run `commands` one after another in a fresh copy of the code (`export(folder)` writes it), each in the
    box, each within `timeout` seconds; the first failure, or None when all pass. `scratch`: where the copy
    is made (on the run's disk)."""
    scratch.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="checks-", dir=scratch))
    try:
        export(folder / "code")
        for command in commands:
            failure = _run_one(command, folder / "code", timeout)
            if failure is not None:
                return failure
        return None
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_one(command: str, workdir: Path, timeout: float) -> CheckFailure | None:
    started = time.monotonic()
    argv = shlex.split(command)
    if argv[0] in ("python", "python3"):
        argv[0] = sys.executable  # the harness's Python, whose packages the box shows
    else:
        argv[0] = shutil.which(argv[0]) or argv[0]  # as the harness finds it (a venv's ruff, say)
    try:
        process = sandbox.start(argv, sandbox.Box(workdir=workdir), {}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    except OSError as err:
        return CheckFailure(command, None, f"{err.strerror or err}", 0.0)
    try:
        output, _ = process.popen.communicate(timeout=timeout)
        code = process.popen.returncode
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.popen.communicate()
        code = None
    finally:
        process.kill()  # whatever it left running in its box
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output or ""
    if code == 0:
        return None
    return CheckFailure(command, code, text[-OUTPUT_CHARS:], max(time.monotonic() - started, 1e-3))
