"""Agents propose changes. Each backend is one module behind the interface of `base.Agent`, named in the
table of `registry.BACKENDS`. This module holds what they share: the context of a request, the errors, the
guard around a session, and the pricing of what it cost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from autoresearch.agents.base import Agent, Proposal, as_proposal
from autoresearch.agents.registry import BACKENDS, AgentConfigError, describe_backends, make_agent
from autoresearch.store import Experiment

if TYPE_CHECKING:
    from autoresearch.workspace import ConfigSnapshot, Workspace

T = TypeVar("T")


class AgentError(Exception):
    """The agent could not make a proposal; the loop records it as rejected, with this reason. `usage`: what
    the attempt cost all the same (as `Proposal.usage`)."""

    def __init__(self, message: str = "", *, usage: dict[str, float] | None = None) -> None:
        super().__init__(message)
        self.usage = dict(usage or {})


class AgentExhausted(Exception):
    """The agent has nothing more to propose; the loop stops cleanly."""


@dataclass(frozen=True)
class ProposalContext:
    program: str  # the human's program.md
    editable: list[str]  # paths or globs the agent may change
    history: list[Experiment]  # this tag's experiments so far, oldest first
    best: Experiment | None  # the current best (the branch head)
    failure: Experiment | None = None  # set when asking for a fix: the crashed experiment (diff, error tail)
    budget_seconds: float | None = None  # the training budget of each experiment
    noise: float | None = None  # the run-to-run standard deviation of the metric, as measured (None: not yet)
    keep_margin: float | None = None  # how much better than the best a first run must be to be kept at once
    pending: Experiment | None = None  # set when drafting ahead: the experiment still training, its result
    #                                    not known; the proposal is applied on top of it if it is kept
    best_measured: tuple[float, ...] = ()  # every run of the best's code: its own and its re-measurements
    others: tuple[Experiment, ...] = ()  # the latest experiments of the runs this one shares with (adopt_from),
    #                                      oldest first: what the agents beside this one tried
    shared_runs: tuple[str, ...] = ()  # the tags of those runs that trained for this run's budget: their
    #                                    metrics compare with this run's (`tune` learns from their trials)
    complexity_cost: float = 0.0  # `keep.complexity_cost`: the metric a change must gain per line it adds


def guard_git_config(workspace: Workspace, session: Callable[[], T]) -> T:
    """Run `session` (one agent session: its `propose` or `fix`) and, right after it, before the harness runs any
    git command over what it left, put back what it changed of the repository's git configuration
    (`Workspace.config_snapshot`: a filter, an fsmonitor, a hook, an include would run outside the agent's box,
    as the harness). A change fails the proposal (AgentError), so it is rejected."""
    before = workspace.config_snapshot()
    try:
        result = session()
    except Exception as err:
        _config_restored(workspace, before, err)
        raise
    except BaseException:  # Ctrl-C, the loop's end: the configuration is put back all the same
        workspace.restore_config(before)
        raise
    _config_restored(workspace, before, None)
    return result


def _config_restored(workspace: Workspace, before: ConfigSnapshot, cause: Exception | None) -> None:
    changed = workspace.restore_config(before)
    if changed:
        raise AgentError(f"the agent changed the repository's git configuration ({', '.join(changed)}): "
                         "restored; proposal rejected") from cause


def priced(usage: dict[str, float], price_in: float, price_out: float) -> dict[str, float]:
    """`usage` with `cost_usd` added from its token counts and prices per million tokens, unless the agent
    reported a cost itself or no price is set."""
    if "cost_usd" in usage or not (price_in or price_out):
        return usage
    cost = usage.get("tokens_in", 0.0) * price_in / 1e6 + usage.get("tokens_out", 0.0) * price_out / 1e6
    return {**usage, "cost_usd": cost}


def make_agents(specs: list[str], task_dir: Path | None = None, profile: str = "cpu", *,
                base_url: str | None = None, turns: str = "fixed") -> Agent:
    """The agent named by `specs`, or with several names, the agents taking turns (`rotation.Rotation`; an
    agent named n times gets n times the turns of one named once; `turns`: "fixed", or "adaptive": more turns
    to those whose proposals get kept)."""
    if not specs:
        raise AgentConfigError("no agent given: name one, e.g. --agent tune")
    if len(set(specs)) == 1:
        return make_agent(specs[0], task_dir, profile, base_url=base_url)
    from autoresearch.agents.rotation import Rotation

    return Rotation.of(specs, lambda spec: make_agent(spec, task_dir, profile, base_url=base_url), turns)


__all__ = ["BACKENDS", "Agent", "AgentConfigError", "AgentError", "AgentExhausted", "Proposal", "ProposalContext",
           "as_proposal", "describe_backends", "guard_git_config", "make_agent", "make_agents", "priced"]
