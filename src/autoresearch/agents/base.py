"""The agent interface: what the loop asks of an agent, and the hooks it may answer.

An agent gets a working folder (the harness's git worktree) and a `ProposalContext`, edits files in the
folder, and returns a `Proposal` (or just its one-line description). It never runs the experiment, commits,
or decides: the harness does all three. Only `propose` is required; every other hook has a default that does
nothing, so a backend overrides what it needs and the loop calls every hook on every agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.store import Experiment

if TYPE_CHECKING:
    from autoresearch.agents import ProposalContext


NOTES = "agent_notes"  # the key of a proposal's `notes` in its experiment's metrics


@dataclass(frozen=True)
class Proposal:
    """What an agent made of a request: its change is in the working folder; this says what it is."""

    description: str  # one line: what changed
    usage: Mapping[str, float] = field(default_factory=dict)  # what making it cost: tokens_in, tokens_out,
    #                                                             seconds, requests, cost_usd (each if known)
    notes: Mapping[str, object] = field(default_factory=dict)  # kept with the experiment's record, for the agent
    #                                                             to find it again (`tune`: its trial's number)
    # What the agent was asked and what it answered, as text ({"prompt": ..., "answer": ...}; either may be
    # missing): kept beside the experiment's record for people to read (`autoresearch serve`), never for the loop.
    transcript: Mapping[str, str] = field(default_factory=dict)
    # Why the agent expects its change to help, in its own words (a paragraph at most): kept with the record,
    # and shown beside what was measured (distill.md). None: it said nothing beyond the description.
    rationale: str | None = None


RATIONALE_CHARS = 600  # of an agent's rationale, kept


def rationale_in(text: str, *, skip: tuple[str, ...] = ()) -> str | None:
    """The paragraph an agent wrote after its description line, as one line: the first block of text after
    the first non-blank line (a `Description:` line counts as that line). Lines in `skip` (the names of the
    files it edited, written before their edit blocks) are left out; None when there is no such text."""
    lines = [line.strip() for line in (text or "").splitlines()]
    start = next((i for i, line in enumerate(lines) if line.lower().startswith("description:")), None)
    if start is None:
        start = next((i for i, line in enumerate(lines) if line), None)
    if start is None:
        return None
    paragraph: list[str] = []
    for line in lines[start + 1:]:
        if line.startswith(("```", "<<<<<<<")):  # an edit begins: the prose is over
            break
        if not line or line in skip:
            if paragraph:
                break
            continue
        paragraph.append(line)
    said = " ".join(paragraph).strip()
    return said[:RATIONALE_CHARS] or None


def as_proposal(answer: Proposal | str) -> Proposal:
    """An agent's answer as a `Proposal`: a plain string is the description of a proposal without usage."""
    return answer if isinstance(answer, Proposal) else Proposal(str(answer))


class Agent:
    """The base of every agent. `name` (each agent sets it) is what its proposals are recorded under."""

    name: str
    # Whether the loop drafts this agent's next proposal while an experiment trains, unless the user says
    # otherwise (`loop.pipeline`, `--pipeline/--no-pipeline`).
    pipelines_by_default: bool = False

    def propose(self, workdir: Path, context: ProposalContext) -> Proposal | str:
        """Edit files under `workdir`; return the proposal (or its description). Raises `AgentError` when it
        cannot, `AgentExhausted` when it has nothing more to propose."""
        raise NotImplementedError

    def fix(self, workdir: Path, context: ProposalContext) -> Proposal | str | None:
        """After a crash the loop checks out the crashed change and asks for a fix (`context.failure` holds the
        crash); None declines, as the default does."""
        return None

    @property
    def can_fix(self) -> bool:
        """Whether this agent answers `fix` at all (the loop asks for fixes only then)."""
        return type(self).fix is not Agent.fix

    def choose(self, context: ProposalContext) -> str:
        """Called before each proposal; agents taking turns pick the member whose turn it is (`name` then names
        it). Returns the name the proposal is recorded under."""
        return self.name

    def observe(self, experiment: Experiment) -> None:
        """Told each experiment the loop has decided or rejected, as soon as it is recorded (the record holds
        the proposal's `notes`). A loop that dies before telling does not tell again: history is in
        `ProposalContext.history` at the next proposal."""

    def preflight(self) -> None:
        """Check, before the loop starts, what would make every proposal fail (a refused key, a missing
        program); raise `AgentConfigError` with the fix."""

    def cancel(self) -> None:
        """Stop a proposal being made in another thread (a draft being written when the loop stops)."""
