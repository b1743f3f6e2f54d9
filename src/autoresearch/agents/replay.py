"""`replay`: applies a fixed list of proposals, in order. For tests, demos and re-running a history.

The file is JSON: a list of proposals, each

    {"description": "...",
     "files": {"train.py": "whole new content", ...},                       (optional)
     "edits": [{"file": "train.py", "search": "exact text", "replace": "new text"}, ...]}   (optional)

An edit's search text must occur exactly once in its file. The n-th proposal is used for the n-th
experiment this agent proposes in the run (after the baseline; with other agents taking turns, its own
only), so a resumed loop carries on where it stopped. A proposal marked
`"fix": true` is a fix: it is used only when the loop asks for one after a crash (and then it edits the
crashed change); an ordinary proposal is never used as a fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from autoresearch.agents import AgentConfigError, AgentError, AgentExhausted, ProposalContext
from autoresearch.agents.base import Agent


@dataclass
class ReplayAgent(Agent):
    proposals: list[dict]
    name: str = "replay"
    pipelines_by_default: bool = False

    @classmethod
    def from_file(cls, path: Path) -> ReplayAgent:
        try:
            proposals = json.loads(path.read_text())
        except OSError as err:
            raise AgentConfigError(f"cannot read replay file {path} ({err.strerror}): give replay:<file.json>") from err
        except json.JSONDecodeError as err:
            raise AgentConfigError(f"replay file {path} is not valid JSON ({err})") from err
        if not isinstance(proposals, list) or not all(isinstance(p, dict) for p in proposals):
            raise AgentConfigError(f"replay file {path} must hold a JSON list of proposals (objects)")
        return cls(proposals)

    def _next(self, context: ProposalContext) -> int:
        """The index of the next proposal: how many this agent has made in the run so far."""
        return sum(1 for e in context.history if e.seq > 0 and e.agent == self.name)

    def propose(self, workdir: Path, context: ProposalContext) -> str:
        index = self._next(context)
        if index >= len(self.proposals):
            raise AgentExhausted(f"all {len(self.proposals)} replay proposals used")
        return self._apply(workdir, index)

    def fix(self, workdir: Path, context: ProposalContext) -> str | None:
        index = self._next(context)
        if index >= len(self.proposals) or not self.proposals[index].get("fix"):
            return None
        return self._apply(workdir, index)

    def _apply(self, workdir: Path, index: int) -> str:
        proposal = self.proposals[index]
        for name, content in proposal.get("files", {}).items():
            target = workdir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        for edit in proposal.get("edits", []):
            path = workdir / edit["file"]
            text = path.read_text() if path.exists() else ""
            count = text.count(edit["search"])
            if count != 1:
                raise AgentError(f"edit for {edit['file']}: search text found {count} times, expected exactly once")
            path.write_text(text.replace(edit["search"], edit["replace"]))
        return str(proposal.get("description", "")).strip() or f"replay proposal {index + 1}"


def make(arg: str, task) -> ReplayAgent:
    """`replay:<patches.json>` (registry.py)."""
    return ReplayAgent.from_file(Path(arg))
