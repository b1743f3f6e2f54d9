"""An agent that fails to propose (an API down, a key expired, a command that changes nothing) is asked again
after a wait that grows, and after `loop.stop_after_agent_failures` failures in a row the run stops, instead
of filling the night with rejected records."""

import dataclasses
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder

from autoresearch.agents import AgentError, ProposalContext
from autoresearch.config import ConfigError, load_config
from autoresearch.loop import Limits, Loop, failures_in_a_row, retry_wait
from autoresearch.store import Status, Store

SOLVE_PY = "RATE = 0.1\nprint(f'score: {1.0 - (RATE - 0.3) ** 2:.6f}')\n"


def test_the_wait_doubles_from_the_second_failure_up_to_a_cap():
    assert [retry_wait(n, 10.0) for n in range(0, 9)] == [0, 0, 10, 20, 40, 80, 160, 320, 600]
    assert retry_wait(30, 10.0) == 600 and retry_wait(5, 0.0) == 0


def test_only_the_latest_failures_to_propose_count(tmp_path):
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
        add(Status.REJECTED, "edits outside the editable files ['solve.py']: prepare.py")  # it proposed
        assert failures_in_a_row(store.experiments("t")) == 0


@dataclasses.dataclass
class Flaky:
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


def _loop(task: Path, agent, *, retry: float, stop: int, **kw) -> Loop:
    config = load_config(task)
    config = dataclasses.replace(config, loop=dataclasses.replace(
        config.loop, agent_retry_seconds=retry, stop_after_agent_failures=stop)).validate()
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
    assert [(w["failures"], w["seconds"]) for w in waits] == [(2, 0.05), (3, 0.1)]
    assert "503 Service Unavailable" in waits[0]["error"]


def test_an_agent_that_keeps_failing_stops_the_run_with_the_reason(tmp_path):
    task = generic_task_folder(tmp_path, SOLVE_PY)
    loop = _loop(task, Flaky(failures=100), retry=0.0, stop=4)
    try:
        reason = loop.run()
        history = loop.store.experiments("t")
    finally:
        loop.close()
    assert len(history) == 5 and reason.startswith("the agent failed to propose 4 times in a row")
    assert "503 Service Unavailable" in reason and "--resume" in reason


def test_the_cli_says_why_it_stopped_and_bad_settings_are_named(tmp_path):
    task = generic_task_folder(tmp_path, SOLVE_PY)
    toml = task / "autoresearch.toml"
    toml.write_text(toml.read_text().replace("stop_after_agent_failures = 20", "stop_after_agent_failures = 2")
                    .replace("agent_retry_seconds = 10.0", "agent_retry_seconds = 0.0"))
    # a coding agent whose command changes nothing: each proposal is empty
    done = cli("run", "--agent", "cmd:true", "--tag", "c", cwd=task)
    assert "the agent failed to propose 2 times in a row (the last: empty proposal: no file changed)" in \
        done.stdout.replace("\n", " ")
    toml.write_text(toml.read_text().replace("agent_retry_seconds = 0.0", "agent_retry_seconds = -1.0"))
    with pytest.raises(ConfigError, match="agent_retry_seconds"):
        load_config(task)
