"""Pipelining: the next proposal is drafted while an experiment trains, rebased when that experiment is kept,
asked again when it no longer applies, held back for a fix, and recorded (not run) when the loop stops."""

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import cli, edit_solve, git, processes_with

from autoresearch.agents import Agent, ProposalContext
from autoresearch.agents.api import ApiAgent, is_local
from autoresearch.agents.command import CommandAgent
from autoresearch.agents.prompt import build_prompt
from autoresearch.agents.replay import ReplayAgent
from autoresearch.config import ConfigError, config_from_dict, load_config
from autoresearch.loop import Limits, Loop
from autoresearch.loop.drafts import wants_pipeline
from autoresearch.store import Status

# A generic task whose "training" takes a moment, so that a draft is written while it runs. The score peaks
# at RATE = 0.3 and WIDTH = 6; the two constants sit far enough apart for git to merge edits of each.
SOLVE_PY = """\
import time

RATE = 0.1

# (the width is set further down, so that edits of the two merge cleanly)
#
#

WIDTH = 4

time.sleep(1.0)
score = 1.0 - (RATE - 0.3) ** 2 - 0.01 * (WIDTH - 6) ** 2
print(f"score: {score:.6f}")
"""



@pytest.fixture
def task(tmp_path: Path) -> Path:
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "solve.py").write_text(SOLVE_PY)
    cli("init", str(folder), "--command", "python solve.py", "--metric-regex", r"^score:\s*(\S+)",
        "--metric-name", "score", "--maximize", "--editable", "solve.py", cwd=tmp_path)
    return folder


@dataclass
class Call:
    kind: str  # propose or fix
    at: float  # unix time of the call
    context: ProposalContext


@dataclass
class ScriptedAgent(Agent):
    """Replaces text in solve.py, one (description, old, new) step per call, and notes every call."""

    steps: list[tuple[str, ...]]  # (description, old, new, old, new, ...)
    fixes: list[tuple[str, ...]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    name: str = "scripted"
    pipelines_by_default: bool = True

    def propose(self, workdir: Path, context: ProposalContext) -> str:
        self.calls.append(Call("propose", time.time(), context))
        return edit_solve(workdir, self.steps.pop(0))

    def fix(self, workdir: Path, context: ProposalContext) -> str | None:
        self.calls.append(Call("fix", time.time(), context))
        return edit_solve(workdir, self.fixes.pop(0)) if self.fixes else None



def make_loop(task: Path, agent, **kw) -> Loop:
    return Loop(task, load_config(task), None, agent, tag="p", pipeline=True, **kw)


def test_the_next_proposal_is_drafted_during_training_and_rebased_or_redone(task):
    agent = ScriptedAgent([
        ("RATE 0.1 -> 0.2", "RATE = 0.1", "RATE = 0.2"),  # drafted while the baseline runs
        ("WIDTH 4 -> 5", "WIDTH = 4", "WIDTH = 5"),  # drafted on the baseline while #1 runs; #1 kept: rebased
        ("WIDTH 4 -> 7", "WIDTH = 4", "WIDTH = 7"),  # drafted on #1 while #2 runs; #2 kept: conflicts
        ("RATE 0.2 -> 0.3", "RATE = 0.2", "RATE = 0.3"),  # asked again, on #2, with nothing training
    ])
    loop = make_loop(task, agent, limits=Limits(max_experiments=5))
    assert loop.run() == "reached 5 experiments"
    history = loop.store.experiments("p")
    loop.close()
    assert [(e.status, e.description) for e in history] == [
        (Status.KEEP, "baseline"), (Status.KEEP, "RATE 0.1 -> 0.2"), (Status.KEEP, "WIDTH 4 -> 5"),
        (Status.REJECTED, "WIDTH 4 -> 7"), (Status.KEEP, "RATE 0.2 -> 0.3")]

    # each draft was written while the experiment before it trained, and knew that one was still running
    drafted = agent.calls[:3]
    assert [c.context.pending.seq for c in drafted] == [0, 1, 2]
    for call in drafted:
        running = history[call.context.pending.seq]
        assert running.started_at <= call.at <= running.ended_at
        assert "# Still training" in build_prompt(call.context)
    assert agent.calls[3].context.pending is None and agent.calls[3].context.history[-1].status is Status.REJECTED

    # #2 was written on the baseline and rebased onto the kept #1: one change on #1, both edits in its files
    second = history[2]
    assert second.parent_commit == history[1].commit
    assert second.metrics["drafted_ahead"] == 1 and second.metrics["rebased"] == 1
    assert "+WIDTH = 5" in second.diff and "+RATE" not in second.diff and "-RATE" not in second.diff
    assert "@@ RATE = 0.2" in second.diff  # the hunk's context is #1's code
    assert history[1].metrics["rebased"] == 0
    # #3 no longer applied on #2: rejected with the reason and its change kept in the store
    assert "stale draft" in history[3].error and "solve.py" in history[3].error
    assert "+WIDTH = 7" in history[3].diff
    final = git(task, "show", "autoresearch/p:solve.py")
    assert "RATE = 0.3" in final and "WIDTH = 5" in final
    assert git(task, "log", "--format=%s", "autoresearch/p").splitlines()[:3] == [
        "RATE 0.2 -> 0.3", "WIDTH 4 -> 5", "RATE 0.1 -> 0.2"]


def test_a_fix_waits_for_the_draft_and_the_draft_runs_after_it(task):
    agent = ScriptedAgent(
        steps=[("RATE 0.1 -> 0.2, with a typo", "RATE = 0.1", "RATE = 0.2", "{score:", "{scor:"),
               ("WIDTH 4 -> 6", "WIDTH = 4", "WIDTH = 6")],
        fixes=[("typo fixed", "{scor:", "{score:")])
    loop = make_loop(task, agent, limits=Limits(max_experiments=4))
    loop.run()
    history = loop.store.experiments("p")
    loop.close()
    assert [(e.status, e.description) for e in history] == [
        (Status.KEEP, "baseline"), (Status.CRASH, "RATE 0.1 -> 0.2, with a typo"),
        (Status.KEEP, "RATE 0.1 -> 0.2, with a typo; fix: typo fixed"), (Status.KEEP, "WIDTH 4 -> 6")]
    assert [c.kind for c in agent.calls] == ["propose", "propose", "fix"]
    assert agent.calls[1].context.pending.seq == 1  # the draft was written while the crash ran
    assert agent.calls[2].at >= history[1].ended_at  # the fix came after it, with the crash known
    assert history[3].parent_commit == history[2].commit and history[3].metrics["rebased"] == 1


def test_a_draft_written_when_the_loop_stops_is_recorded_not_run(task):
    agent = ScriptedAgent([("RATE 0.1 -> 0.2", "RATE = 0.1", "RATE = 0.2"),
                           ("WIDTH 4 -> 6", "WIDTH = 4", "WIDTH = 6")])
    loop = make_loop(task, agent)

    def stop_after_the_first_proposal(event: dict) -> None:
        if event.get("event") == "decided" and event.get("seq") == 1:
            loop.stop_requested = True

    loop.on_event = stop_after_the_first_proposal
    assert loop.run() == "stopped on request"
    history = loop.store.experiments("p")
    loop.close()
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP, Status.REJECTED]
    assert history[2].description == "WIDTH 4 -> 6" and "+WIDTH = 6" in history[2].diff
    assert history[2].error == "not run: the loop stopped (stopped on request) before its turn"


def test_a_draft_still_being_written_when_the_loop_stops_is_cancelled(task, tmp_path):
    marker = f"slow-agent-{uuid.uuid4().hex}"  # its process is found by this (in a box, $$ is not the host's pid)
    started = tmp_path / "started"
    slow = CommandAgent(f"touch {started}; exec python3 -c 'import time; time.sleep(300)' {marker}", task,
                        editable=["solve.py"])
    loop = Loop(task, load_config(task), None, slow, tag="p", pipeline=True)

    def stop_after_the_baseline(event: dict) -> None:
        if event.get("event") == "decided":
            loop.stop_requested = True

    loop.on_event = stop_after_the_baseline
    assert loop.run() == "stopped on request"
    history = loop.store.experiments("p")
    loop.close()
    assert [e.status for e in history] == [Status.KEEP]  # the unfinished draft is dropped
    assert started.exists()  # the agent did start drafting
    alive = processes_with(marker)
    assert not alive  # and its process is gone


def test_the_cli_drafts_ahead_with_pipeline_and_not_by_default_for_replay(task, tmp_path):
    patches = tmp_path / "patches.json"
    patches.write_text('[{"description": "RATE 0.1 -> 0.3", "edits": [{"file": "solve.py", "search": "RATE = 0.1",'
                       ' "replace": "RATE = 0.3"}]}]')
    plain = cli("run", "--agent", f"replay:{patches}", "--tag", "off", cwd=task)
    assert "drafts the next proposal" not in plain.stdout
    piped = cli("run", "--agent", f"replay:{patches}", "--tag", "on", "--pipeline", cwd=task)
    assert "replay drafts the next proposal while this one trains" in piped.stdout
    assert git(task, "log", "-1", "--format=%s", "autoresearch/on").strip() == "RATE 0.1 -> 0.3"


def test_who_drafts_ahead_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    pytest.importorskip("openai")
    remote = ApiAgent("openai", "m", tmp_path)
    local = ApiAgent("openai", "m", tmp_path, base_url="http://127.0.0.1:8000/v1")
    assert wants_pipeline("auto", remote) and not wants_pipeline("auto", local)
    assert wants_pipeline("on", local) and not wants_pipeline("off", remote)
    assert not wants_pipeline("auto", ReplayAgent([]))
    assert not wants_pipeline("auto", CommandAgent("true", tmp_path))
    for url, expected in [("http://localhost:11434/v1", True), ("http://127.0.0.2:8080", True),
                          ("http://[::1]:8000/v1", True), ("https://api.openai.com/v1", False),
                          ("http://gpu-box.lan:8000/v1", False), (None, False)]:
        assert is_local(url) is expected, url


def test_the_pipeline_setting_is_checked():
    assert config_from_dict({"loop": {"pipeline": True}}).loop.pipeline == "on"
    assert config_from_dict({"loop": {"pipeline": False}}).loop.pipeline == "off"
    with pytest.raises(ConfigError, match="loop.pipeline = 'sometimes': use auto"):
        config_from_dict({"loop": {"pipeline": "sometimes"}}).validate()
