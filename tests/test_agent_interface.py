"""The declared agent interface (agents/base.py) and the backends' table (agents/registry.py), as the loop
uses them: every hook called on every agent, what a proposal cost recorded even when it failed, its notes
kept with its experiment, the agent told of each record."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import cli
from loopkit import fake_loop, make_task, settings

from autoresearch.agents import (
    BACKENDS,
    Agent,
    AgentConfigError,
    AgentError,
    AgentExhausted,
    Proposal,
    ProposalContext,
    make_agent,
)
from autoresearch.agents.base import NOTES
from autoresearch.loop import Limits
from autoresearch.store import Status


@dataclass
class Recorder(Agent):
    """Proposes LOSS values in turn; the third proposal fails, having spent tokens."""

    losses: list[str]
    name: str = "recorder"
    observed: list = field(default_factory=list)
    chosen: int = 0

    def choose(self, context: ProposalContext) -> str:
        self.chosen += 1
        return self.name

    def propose(self, workdir: Path, context: ProposalContext) -> Proposal:
        if not self.losses:
            raise AgentExhausted("done")
        loss = self.losses.pop(0)
        if loss == "fail":
            raise AgentError("the model said nothing useful", usage={"tokens_in": 7.0})
        (workdir / "train.py").write_text(f"LOSS = {loss}\n")
        return Proposal(f"LOSS {loss}", usage={"tokens_in": 100.0, "tokens_out": 5.0}, notes={"idea": loss})

    def observe(self, experiment) -> None:
        self.observed.append((experiment.seq, experiment.status))


def test_the_loop_calls_the_hooks_records_cost_and_notes_and_tells_the_agent(tmp_path):
    task = make_task(tmp_path)
    agent = Recorder(["0.9", "1.1", "fail", "1.0"])
    config = settings(keep={"rule": "strict"}, agent={"price_in_per_mtok": 2.0, "price_out_per_mtok": 10.0})
    loop, _ = fake_loop(task, agent=agent, config=config)
    try:
        assert loop.run() == "done"
        history = loop.store.experiments("t")
    finally:
        loop.close()
    base, kept, dropped, failed, again = history
    assert [e.status for e in history[1:]] == [Status.KEEP, Status.DISCARD, Status.REJECTED, Status.REJECTED]
    assert kept.metrics[NOTES] == {"idea": "0.9"} and kept.metrics["agent_tokens_in"] == 100.0
    assert kept.metrics["agent_cost_usd"] == pytest.approx(100 * 2e-6 + 5 * 10e-6)
    assert failed.metrics["agent_tokens_in"] == 7.0 and "nothing useful" in failed.error  # the failure's cost too
    assert again.metrics["same_code_as"] == base.seq  # the baseline's code again
    assert agent.observed == [(1, Status.KEEP), (2, Status.DISCARD), (3, Status.REJECTED), (4, Status.REJECTED)]
    assert agent.chosen == 5  # before every proposal, the last one (exhausted) included


def test_an_agent_without_fix_is_not_asked_for_fixes_and_the_defaults_do_nothing(tmp_path):
    agent = Recorder([])
    assert not agent.can_fix and agent.fix(tmp_path, None) is None
    assert agent.preflight() is None and agent.cancel() is None and not agent.pipelines_by_default

    class Fixer(Recorder):
        def fix(self, workdir, context):
            return "fixed"

    assert Fixer([]).can_fix


def test_every_backend_is_in_the_table_and_an_unknown_one_is_named_with_them(tmp_path):
    assert set(BACKENDS) == {"tune", "claude", "codex", "aider", "cmd", "openai", "anthropic", "replay"}
    with pytest.raises(AgentConfigError) as refused:
        make_agent("wizard")
    for backend in BACKENDS.values():
        assert backend.forms in str(refused.value)
    with pytest.raises(AgentConfigError, match="needs the task folder"):
        make_agent("cmd:true")
    task = make_task(tmp_path)
    (task / "autoresearch.toml").write_text("")
    assert make_agent("cmd:true", task).name == "cmd"
    assert make_agent("claude:opus", task).name == "claude:opus"
    help_text = cli("run", "--help", cwd=tmp_path).stdout
    assert "openai:<model>" in " ".join(help_text.split()) and "replay:<patches.json>" in " ".join(help_text.split())


def test_a_limit_on_cost_counts_what_failed_proposals_spent(tmp_path):
    task = make_task(tmp_path)
    agent = Recorder(["fail", "fail", "0.5"])
    config = settings(keep={"rule": "strict"}, agent={"price_in_per_mtok": 1e6}, loop={"stop_after_agent_failures": 0})
    loop, _ = fake_loop(task, agent=agent, config=config, limits=Limits(max_cost=10.0))
    try:
        reason = loop.run()
    finally:
        loop.close()
    assert reason.startswith("reached the cost limit ($14.00")  # 7 tokens at $1 each, twice
