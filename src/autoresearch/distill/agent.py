"""The distill line's agent: each proposal removes one kept change from the distilled code so far.

It reverts the change's commit in the worktree with git's three-way merge, so a change that later ones
moved around is still removed cleanly. Where a later kept change rewrote the same lines (a learning rate
tuned twice), those lines stay as the later change left them (`-X ours`): what is removed is what is left
of the change in the code. A change none of whose lines are left is superseded: there is nothing of it to
remove, the proposal fails with `SUPERSEDED` (recorded as rejected), and the change lives on in the later
ones. The removals come in `plan.removal_order`; the next is the one after as many as this agent has
proposed in the line, so a resumed distillation goes on where it stopped.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from autoresearch.agents import Agent, AgentError, AgentExhausted, Proposal, ProposalContext
from autoresearch.distill.plan import AGENT, SUPERSEDED, KeptChange, removal_description


class DistillAgent(Agent):
    name = AGENT

    def __init__(self, order: Sequence[KeptChange]):
        self.order = list(order)

    def propose(self, workdir: Path, context: ProposalContext) -> Proposal:
        index = sum(1 for e in context.history if e.seq > 0 and e.agent == self.name)
        if index >= len(self.order):
            raise AgentExhausted(f"every one of the {len(self.order)} kept changes was tried for removal")
        change = self.order[index]
        revert = _git(workdir, "revert", "--no-commit", "--no-edit", "--strategy-option=ours", change.commit)
        if revert.returncode != 0:
            _git(workdir, "revert", "--abort")
            _git(workdir, "reset", "-q", "--hard", "HEAD")
            raise AgentError(f"#{change.seq} cannot be removed alone: reverting it fails "
                             f"({_first_line(revert.stdout + revert.stderr)})")
        _git(workdir, "revert", "--quit")  # the removal stays as uncommitted changes, which the loop commits
        if _git(workdir, "diff", "--quiet", "HEAD").returncode == 0:
            raise AgentError(f"{SUPERSEDED}: every line #{change.seq} changed was changed again by the kept changes "
                             "after it, so nothing of it is left to remove")
        return Proposal(removal_description(change), notes={"distill_of": change.seq})


def _git(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost",
                           *args], cwd=workdir, capture_output=True, text=True)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else "no message"
