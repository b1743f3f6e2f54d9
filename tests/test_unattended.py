"""What an unattended night meets, and what the loop does about it.

- An agent that fails to propose (an API down, a key expired, a command that changes nothing) is asked again
  after a wait that grows, and after `loop.stop_after_agent_failures` failures in a row the run stops, instead
  of filling the night with rejected records.
- A machine that breaks (every run fails, the best's too) stops the run after `loop.check_best_after_crashes`
  failures in a row, instead of spending the night, and the agent's fixes, on it; proposals that fail on a
  sound machine do not."""

import dataclasses
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder

from autoresearch.agents import Agent, AgentError, ProposalContext
from autoresearch.config import ConfigError, load_config
from autoresearch.loop import Limits, Loop, crashes_in_a_row, failures_in_a_row, retry_wait
from autoresearch.store import Status, Store

SOLVE_PY = "RATE = 0.1\nprint(f'score: {1.0 - (RATE - 0.3) ** 2:.6f}')\n"


def test_the_wait_doubles_from_the_third_failure_up_to_a_cap():
    assert [retry_wait(n, 10.0) for n in range(0, 10)] == [0, 0, 0, 10, 20, 40, 80, 160, 320, 600]
    assert retry_wait(30, 10.0) == 600 and retry_wait(5, 0.0) == 0


def test_only_the_latest_proposals_that_did_not_run_count(tmp_path):
    with Store.open(tmp_path) as store:
        def add(status, error=None):
            store.record(status=status, tag="t", parent_commit="a" * 40, diff="", description="x", agent="a",
                         seed=0, metric=0.5 if status in (Status.KEEP, Status.DISCARD) else None, error=error)
        add(Status.KEEP)
        add(Status.REJECTED, "agent failed: the server said 503")
        add(Status.DISCARD)
        assert failures_in_a_row(store.experiments("t")) == 0
        add(Status.REJECTED, "agent failed: the server said 503")
        add(Status.REJECTED, "empty proposal: no file changed")
        assert failures_in_a_row(store.experiments("t")) == 2
        add(Status.REJECTED, "already measured: comments and layout aside, this is the same code as #1")
        assert failures_in_a_row(store.experiments("t")) == 3  # stuck on code already measured counts too
        add(Status.CRASH, "Traceback: boom")  # it ran: the agent proposed something new
        assert failures_in_a_row(store.experiments("t")) == 0


@dataclasses.dataclass
class Flaky(Agent):
    """Fails its first `failures` proposals, then edits RATE."""

    failures: int
    name: str = "flaky"
    calls: int = 0

    def propose(self, workdir: Path, context: ProposalContext) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise AgentError("the server said 503 Service Unavailable")
        path = workdir / "solve.py"
        path.write_text(path.read_text().replace("RATE = 0.1", f"RATE = 0.1{self.calls}"))
        return f"RATE 0.1 -> 0.1{self.calls}"


def _loop(task: Path, agent, *, retry: float = 10.0, stop: int = 20, check: int = 5, **kw) -> Loop:
    config = load_config(task)
    config = dataclasses.replace(config, loop=dataclasses.replace(
        config.loop, agent_retry_seconds=retry, stop_after_agent_failures=stop,
        check_best_after_crashes=check)).validate()
    return Loop(task, config, None, agent, tag="t", **kw)


def test_a_failing_agent_is_waited_for_and_the_run_goes_on_when_it_recovers(tmp_path):
    task = generic_task_folder(tmp_path, SOLVE_PY)
    events = []
    loop = _loop(task, Flaky(failures=3), retry=0.05, stop=5, limits=Limits(max_experiments=5),
                 on_event=events.append)
    try:
        assert loop.run() == "reached 5 experiments"
        history = loop.store.experiments("t")
    finally:
        loop.close()
    assert [e.status for e in history] == [Status.KEEP] + [Status.REJECTED] * 3 + [Status.KEEP]
    waits = [e for e in events if e["event"] == "agent_retry"]
    assert [(w["failures"], w["seconds"]) for w in waits] == [(3, 0.05)]
    assert "503 Service Unavailable" in waits[0]["error"]


def test_an_agent_that_keeps_failing_stops_the_run_with_the_reason(tmp_path):
    task = generic_task_folder(tmp_path, SOLVE_PY)
    loop = _loop(task, Flaky(failures=100), retry=0.0, stop=4)
    try:
        reason = loop.run()
        history = loop.store.experiments("t")
    finally:
        loop.close()
    assert len(history) == 5 and reason.startswith("4 proposals in a row did not run")
    assert "503 Service Unavailable" in reason and "--resume" in reason


def test_the_cli_says_why_it_stopped_and_bad_settings_are_named(tmp_path):
    task = generic_task_folder(tmp_path, SOLVE_PY)
    toml = task / "autoresearch.toml"
    toml.write_text(toml.read_text().replace("stop_after_agent_failures = 20", "stop_after_agent_failures = 2")
                    .replace("agent_retry_seconds = 10.0", "agent_retry_seconds = 0.0"))
    # a coding agent whose command changes nothing: each proposal is empty
    done = cli("run", "--agent", "cmd:true", "--tag", "c", cwd=task)
    assert "2 proposals in a row did not run (the last: empty proposal: no file changed)" in \
        done.stdout.replace("\n", " ")
    toml.write_text(toml.read_text().replace("agent_retry_seconds = 0.0", "agent_retry_seconds = -1.0"))
    with pytest.raises(ConfigError, match="agent_retry_seconds"):
        load_config(task)


def test_crashes_in_a_row_pass_over_proposals_that_never_ran(tmp_path):
    with Store.open(tmp_path) as store:
        def add(status):
            store.record(status=status, tag="t", parent_commit="a" * 40, diff="", description="x", agent="a",
                         seed=0, metric=0.5 if status in (Status.KEEP, Status.DISCARD) else None, error="e")
        for status in (Status.KEEP, Status.CRASH, Status.DISCARD, Status.CRASH, Status.REJECTED, Status.TIMEOUT):
            add(status)
        assert [e.seq for e in crashes_in_a_row(store.experiments("t"))] == [5, 3]
        add(Status.TAMPERED)
        assert crashes_in_a_row(store.experiments("t")) == []


# The machine "breaks" when the file BROKEN appears beside the task: every run fails from then on.
BREAKABLE_PY = """\
import os, sys
RATE = 0.1
if os.path.exists(os.environ["BREAKABLE"]):
    sys.exit("CUDA error: an illegal memory access was encountered")
print(f'score: {1.0 - (RATE - 0.3) ** 2:.6f}')
"""


@dataclasses.dataclass
class Proposer(Agent):
    """Proposes RATE edits; from proposal `breaks_at` on, breaks the machine (or, with `own_fault`, proposes
    code that fails by itself)."""

    breaks_at: int
    sentinel: Path
    own_fault: bool = False
    name: str = "proposer"
    calls: int = 0

    def propose(self, workdir: Path, context: ProposalContext) -> str:
        self.calls += 1
        path = workdir / "solve.py"
        text = path.read_text()
        if self.calls >= self.breaks_at:
            if self.own_fault:
                path.write_text(text.replace("RATE = ", f"RATE = 1 / 0 + {self.calls} * ", 1))
                return f"divide by zero {self.calls}"
            self.sentinel.touch()
        rate = text.split("RATE = ")[1].split("\n")[0]
        path.write_text(text.replace(f"RATE = {rate}", f"RATE = {float(rate) + 0.01:.2f}"))
        return f"RATE {rate} -> {float(rate) + 0.01:.2f}"


def _breakable(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """The task, and the file whose presence breaks the machine (in a folder the candidate's box shows)."""
    machine = tmp_path / "machine"
    machine.mkdir()
    monkeypatch.setenv("BREAKABLE", str(machine / "BROKEN"))
    task = generic_task_folder(tmp_path, BREAKABLE_PY)
    toml = task / "autoresearch.toml"
    toml.write_text(toml.read_text().replace("env = []", 'env = ["BREAKABLE"]')
                    .replace("read = []", f'read = ["{machine}"]'))
    return task, machine / "BROKEN"


def test_a_machine_that_breaks_stops_the_run_once_the_best_fails_too(tmp_path, monkeypatch):
    task, sentinel = _breakable(tmp_path, monkeypatch)
    events = []
    loop = _loop(task, Proposer(breaks_at=2, sentinel=sentinel), check=3, limits=Limits(max_experiments=12),
                 on_event=events.append)
    try:
        reason = loop.run()
        history = loop.store.experiments("t")
    finally:
        loop.close()
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP, Status.CRASH, Status.CRASH, Status.CRASH]
    assert reason.startswith("3 experiments in a row failed, and the best (#1) failed too when it ran again")
    assert "illegal memory access" in reason and "--resume" in reason
    assert [e["event"] for e in events if e["event"] in ("check_machine", "machine_ok")] == ["check_machine"]


def test_proposals_that_fail_on_a_sound_machine_do_not_stop_the_run(tmp_path, monkeypatch):
    task, sentinel = _breakable(tmp_path, monkeypatch)
    events = []
    loop = _loop(task, Proposer(breaks_at=2, sentinel=sentinel, own_fault=True), check=2,
                 limits=Limits(max_experiments=7), on_event=events.append)
    try:
        assert loop.run() == "reached 7 experiments"
        history = loop.store.experiments("t")
        best = loop.store.incumbent("t")
        assert best.seq == 1 and len(loop.store.remeasured_runs(best)) == 3  # one run per check, each fine
    finally:
        loop.close()
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP] + [Status.CRASH] * 5
    checks = [e["event"] for e in events if e["event"] in ("check_machine", "machine_ok")]
    assert checks == ["check_machine", "machine_ok"] * 2  # after the 2nd and the 4th crash in a row
