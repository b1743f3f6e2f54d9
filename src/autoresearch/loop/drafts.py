"""Pipelining: the agent drafts the next proposal while an experiment trains, so the accelerator does not
wait for the agent to think.

A draft is made in a second worktree (`.autoresearch/drafts/<tag>`, branch `autoresearch-drafts/<tag>`),
on a background thread, from the commit that was the best when the draft began. It is committed there, and
the loop later applies that commit's change to the experiment worktree (`Worktree.apply_change`, a
three-way merge). If the experiment that trained meanwhile was kept, the draft is thereby rebased onto it;
if it no longer applies, the loop records it as rejected and asks the agent again.

The agent is used by one thread at a time: the loop waits for a draft before it asks for a fix. Only the
loop's thread touches the store and the experiment worktree; the drafting thread touches only its own
worktree and the agent.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from autoresearch.agents import (
    Agent,
    AgentError,
    AgentExhausted,
    ProposalContext,
    as_proposal,
    guard_git_config,
)
from autoresearch.workspace import Workspace, Worktree

DRAFT_BRANCH_PREFIX = "autoresearch-drafts/"


@dataclass
class Draft:
    base: str  # the commit the draft was written on
    pending_seq: int | None  # the experiment that trained while it was written
    description: str = ""
    commit: str | None = None  # the draft as a commit in the draft worktree; None when it failed
    diff: str = ""
    error: str | None = None  # why it failed (the agent failed, or changed nothing)
    exhausted: AgentExhausted | None = None  # the agent has nothing more to propose
    crash: BaseException | None = None  # an unexpected exception: the loop raises it again
    usage: dict[str, float] = field(default_factory=dict)  # what the agent reported spending on it
    notes: dict[str, object] = field(default_factory=dict)  # the proposal's notes (`Proposal.notes`)
    transcript: dict[str, str] = field(default_factory=dict)  # what the agent was asked and answered
    rationale: str | None = None  # why the agent expects it to help (`Proposal.rationale`)
    seconds: float = 0.0
    program: str = ""  # the program.md the agent was given for it
    agent: str = ""  # who wrote it (of agents taking turns, the member whose turn it was)


def wants_pipeline(setting: str | bool | None, agent: Agent) -> bool:
    """Whether to draft ahead: `setting` is "on"/True, "off"/False, or "auto"/None (the agent's default)."""
    if setting in (True, "on"):
        return True
    if setting in (False, "off"):
        return False
    return bool(agent.pipelines_by_default)


class Drafter:
    """Holds at most one draft: in progress, or finished and not yet taken."""

    def __init__(self, workspace: Workspace, task_dir: Path, tag: str, agent: Agent, start: str) -> None:
        branch = DRAFT_BRANCH_PREFIX + tag
        if not workspace.branch_exists(branch):
            workspace.create_branch(branch, start)
        self.worktree: Worktree = workspace.open_worktree(task_dir / ".autoresearch" / "drafts" / tag, branch)
        self.agent = agent
        self._thread: threading.Thread | None = None
        self._result: list[Draft] = []  # the current thread's draft, once written

    @property
    def pending(self) -> bool:
        """A draft is being written or waits to be taken."""
        return self._thread is not None

    def start(self, base: str, context: ProposalContext) -> None:
        if self._thread is not None:
            raise RuntimeError("a draft is already pending: take it first")
        self._result = []
        pending_seq = context.pending.seq if context.pending is not None else None
        self._thread = threading.Thread(target=self._write, args=(base, pending_seq, context, self._result),
                                        name="autoresearch-draft", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until the draft is written (the agent is free again); the draft stays to be taken."""
        if self._thread is not None:
            self._thread.join()

    def take(self) -> Draft | None:
        """The draft, once written (None if there is none). Raises what the agent raised when it has nothing
        more to propose, or an unexpected error of the drafting thread."""
        if self._thread is None:
            return None
        self._thread.join()
        draft, self._thread = self._result[0], None
        if draft.crash is not None:
            raise draft.crash
        if draft.exhausted is not None:
            raise draft.exhausted
        return draft

    def stop(self, grace: float = 10.0) -> Draft | None:
        """End drafting: a draft already written is returned (the caller records it); one still being
        written is cancelled (the agent's `cancel()`, where it has one) and dropped."""
        if self._thread is None:
            return None
        thread, self._thread = self._thread, None
        if thread.is_alive():
            self.agent.cancel()
            thread.join(grace)
            return None  # whatever it still writes goes nowhere
        draft = self._result[0]
        return draft if draft.crash is None and draft.exhausted is None else None

    # -- the drafting thread ------------------------------------------------------------------

    def _write(self, base: str, pending_seq: int | None, context: ProposalContext, result: list[Draft]) -> None:
        started = time.perf_counter()
        draft = Draft(base=base, pending_seq=pending_seq, program=context.program, agent=self.agent.name)
        try:
            self.worktree.reset_hard(base)
            draft.agent = self.agent.choose(context)
            proposal = as_proposal(guard_git_config(self.worktree.workspace,
                                                    lambda: self.agent.propose(self.worktree.path, context)))
            draft.description, draft.usage, draft.notes = proposal.description, dict(proposal.usage), dict(proposal.notes)
            draft.transcript, draft.rationale = dict(proposal.transcript), proposal.rationale
            draft.agent = self.agent.name  # a member that had nothing more to propose passed the turn on
            draft.diff = self.worktree.diff()
            if not self.worktree.changed_files():
                draft.error = "empty proposal: no file changed"
            else:
                draft.commit = self.worktree.commit(draft.description or "(no description)")
        except AgentError as err:
            draft.agent, draft.usage, draft.error = self.agent.name, err.usage, f"agent failed: {err}"
            draft.description = draft.description or "(no description)"
            draft.diff = _safe_diff(self.worktree)
        except AgentExhausted as err:
            draft.exhausted = err
        except BaseException as err:  # noqa: BLE001 - handed to the loop's thread, which raises it
            draft.crash = err
        draft.seconds = time.perf_counter() - started
        result.append(draft)


def _safe_diff(worktree: Worktree) -> str:
    try:
        return worktree.diff()
    except Exception:  # noqa: BLE001 - the diff of a failed draft is a courtesy
        return ""
