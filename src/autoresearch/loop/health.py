"""Running unattended: what the loop does after proposals that did not run (wait, then stop), and after
crashes in a row (run the best once more: if it fails too, the machine is broken, not the proposals)."""

from __future__ import annotations

import time

from autoresearch.decide.rule import Purpose
from autoresearch.loop.line import Line
from autoresearch.loop.measure import Measurer
from autoresearch.report.text import error_line
from autoresearch.store import Experiment, Status

RETRY_CAP_SECONDS = 600.0


def failures_in_a_row(history: list[Experiment]) -> int:
    """How many of a run's latest experiments are proposals that did not run (rejected: the agent failed or
    changed nothing, repeated code already measured, or edited files it may not), counted back from the
    latest to the first that ran."""
    count = 0
    for e in reversed(history):
        if e.status is not Status.REJECTED:
            break
        count += 1
    return count


def crashes_in_a_row(history: list[Experiment]) -> list[Experiment]:
    """A run's latest crashes and timeouts in a row, latest first, counted back to the first experiment that
    ran to a result (proposals that never ran, the rejected, are passed over)."""
    found = []
    for e in reversed(history):
        if e.status is Status.REJECTED:
            continue
        if e.status not in (Status.CRASH, Status.TIMEOUT):
            break
        found.append(e)
    return found


def retry_wait(failures: int, base: float, cap: float = RETRY_CAP_SECONDS) -> float:
    """Seconds to wait before asking the agent again after `failures` proposals in a row that did not run:
    none after one or two (bad luck), then `base`, 2 `base`, 4 `base`, ..., at most `cap`."""
    return 0.0 if failures < 3 else min(cap, base * 2.0 ** (failures - 3))


def after_failures(line: Line) -> str | None:
    """After proposals that did not run, in a row (`failures_in_a_row`): wait before the agent is asked
    again (`retry_wait`), or, at `loop.stop_after_agent_failures`, the reason to stop. None to go on."""
    history = line.experiments()
    failures = failures_in_a_row(history)
    if not failures:
        return None
    last = error_line(history[-1].error)
    limit = line.config.loop.stop_after_agent_failures
    if limit and failures >= limit:
        return f"{failures} proposals in a row did not run (the last: {last}); mend the agent, then " \
               "continue with --resume"
    wait = retry_wait(failures, line.config.loop.agent_retry_seconds)
    if wait > 0:
        line.on_event({"event": "agent_retry", "failures": failures, "seconds": wait, "error": last})
        until = time.monotonic() + wait
        while not line.stop_requested and time.monotonic() < until:  # Ctrl-C ends the wait
            time.sleep(min(0.5, max(0.0, until - time.monotonic())))
    return None


def check_machine(line: Line, measurer: Measurer) -> str | None:
    """After `loop.check_best_after_crashes` crashes or timeouts in a row (and after each as many more),
    the best runs once more, as a measurement of it like any other. If it fails too, the machine or its
    environment is broken (a GPU fallen off the bus, a full disk, a broken driver), not the proposals: the
    reason to stop, rather than spend the night, and the agent's fixes, on it. None to go on."""
    every = line.config.loop.check_best_after_crashes
    crashes = crashes_in_a_row(line.experiments())
    best = line.incumbent()
    if (not every or not crashes or len(crashes) % every or best is None or line.worktree.head() != best.commit
            or any(r.reason == "machine" and r.for_id == crashes[0].id for r in line.store.remeasures(line.tag))):
        return None
    line.on_event({"event": "check_machine", "crashes": len(crashes), "seq": best.seq})
    ran = measurer.remeasure(best, 1, Purpose.REMEASURE, reason="machine", for_id=crashes[0].id)
    line.export()
    if ran:
        line.on_event({"event": "machine_ok", "seq": best.seq})
        return None
    return (f"{len(crashes)} experiments in a row failed, and the best (#{best.seq}) failed too when it ran "
            f"again: the machine or its environment is broken, not the proposals (the last error: "
            f"{error_line(crashes[0].error)}); mend it, then continue with --resume")
