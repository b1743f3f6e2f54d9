"""The distill line's agent: each proposal removes one kept change from the distilled code so far.

It reverts the change's commit in the worktree with git's three-way merge, so a change that later ones
moved around is still removed cleanly. A change next to lines that later ones edited (a block of
hyperparameters) conflicts there, and is reverted line by line instead, without context. Where a later kept
change rewrote the same lines (a learning rate tuned twice), those lines stay as the later change left them
(`-X ours`): what is removed is what is left of the change in the code. A change none of whose lines are left is superseded: there is nothing of it to
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
        if not (_revert(workdir, change.commit) or _revert_exact_lines(workdir, change.commit)
                or _revert(workdir, change.commit, keep_later=True)):
            raise AgentError(f"#{change.seq} cannot be removed alone: reverting it fails")
        if _git(workdir, "diff", "--quiet", "HEAD").returncode == 0:
            raise AgentError(f"{SUPERSEDED}: every line #{change.seq} changed was changed again by the kept changes "
                             "after it, so nothing of it is left to remove")
        return Proposal(removal_description(change), notes={"distill_of": change.seq})


def _revert(workdir: Path, commit: str, *, keep_later: bool = False) -> bool:
    """Revert `commit` in the files, uncommitted, by git's three-way merge. `keep_later`: where later changes
    rewrote its lines, keep theirs (`-X ours`), so only what is left of it is taken out. False (and the files
    as they were) when it conflicts."""
    strategy = ["--strategy-option=ours"] if keep_later else []
    if _git(workdir, "revert", "--no-commit", "--no-edit", *strategy, commit).returncode == 0:
        _git(workdir, "revert", "--quit")  # the removal stays as uncommitted changes, which the loop commits
        return True
    _git(workdir, "revert", "--abort")
    _git(workdir, "reset", "-q", "--hard", "HEAD")
    return False


def _revert_exact_lines(workdir: Path, commit: str) -> bool:
    """Revert `commit` line by line, without context: a change next to lines that later changes edited (a
    block of hyperparameters, each tuned on its own) conflicts in a three-way merge, but its own lines are
    still there to put back. False (and the files as they were) when one of them is not."""
    patch = _git(workdir, "diff", "--no-color", "--no-ext-diff", "-U0", f"{commit}^", commit)
    if patch.returncode != 0 or not patch.stdout.strip():
        return False
    applied = subprocess.run(["git", "apply", "--reverse", "--unidiff-zero", "--whitespace=nowarn", "-"],
                             cwd=workdir, input=patch.stdout, capture_output=True, text=True)
    if applied.returncode != 0:
        _git(workdir, "reset", "-q", "--hard", "HEAD")
        return False
    return True


def _git(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-c", "user.name=autoresearch", "-c", "user.email=autoresearch@localhost",
                           *args], cwd=workdir, capture_output=True, text=True)


