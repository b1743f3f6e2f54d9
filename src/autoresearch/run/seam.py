"""The seam between the loop and training: the loop hands a `Runner` a `RunRequest`, data only, and gets an
`Outcome` back. What trains, where, and how it is contained is the runner's business (`LocalRunner`: this
machine, in the sandbox; `FakeRunner`: scripted outcomes, for tests of the loop's decisions)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autoresearch.decide.prune import Pruner
from autoresearch.decide.rule import Purpose
from autoresearch.run.outcome import Outcome

__all__ = ["Outcome", "Purpose", "RunRequest", "Runner", "RunnerUnavailable"]


class RunnerUnavailable(Exception):
    """The runner cannot run anything now (a cluster that cannot be reached, or that has no node for a run):
    the loop stops, and the experiment it was measuring runs again with --resume. The message names the fix."""


@dataclass(frozen=True)
class RunRequest:
    """One training run of one experiment's code, as data: nothing in it assumes the worktree is on the
    machine that trains."""

    experiment_id: int
    seq: int
    index: int  # which run of this code in its experiment's log folder (0: the first; `supervise.run_folder`)
    commit: str  # the commit whose editable files run
    files: Mapping[str, bytes] = field(repr=False)  # those files: path -> content
    seed: int
    budget: float  # training seconds
    run_dir: Path  # where the run's log, outcome and model go
    purpose: Purpose = Purpose.OWN
    keep_bar: float | None = None  # the best's mean: the causality probe (eval.probe = "keeps") runs for a
    # metric better than it; None: for every metric (there is no best yet)
    pruner: Pruner | None = field(default=None, repr=False)  # stops a hopeless first run early (prune.py)
    startup_allowance: float | None = None  # seconds from launch to train.py's `start` line (clock.py)
    finish_allowance: float | None = None  # seconds from its `done` line to its exit
    trusted: bool = False  # the task's own code (the baseline), never a candidate's

    @property
    def key(self) -> tuple[int, int, int]:
        """(experiment id, index, seed): which run this is, wherever and whenever it trains."""
        return self.experiment_id, self.index, self.seed


class Runner(Protocol):
    """Runs what the loop asks for. Never raises for a candidate's failure: that is the outcome's status
    (crash, timeout, pruned, void). May raise `diskguard.DiskSpaceError` before anything runs, and
    `RunnerUnavailable` when it cannot run at all.

    `runs_at_once`: how many runs it can train at the same time (1: one after another). With more, the loop
    calls `run` from several threads at once (loop/flights.py), and `cancel` for a run it no longer wants."""

    runs_at_once: int

    def run(self, request: RunRequest, on_event: Callable[[dict], None]) -> Outcome:
        """Train and measure `request`; `on_event` gets its progress events as they come."""
        ...

    def cancel(self, request: RunRequest) -> None:
        """Stop `request`'s run if it is in flight (its `run` then raises or returns, and what it returns is
        thrown away); nothing if it is not, or if the runner runs one at a time."""
        ...

    def drop_models(self, experiment_dir: Path, *, keep_first: bool) -> None:
        """Delete the models an experiment's runs saved (all, or all but its first run's)."""
        ...

    def close(self) -> None:
        """Stop whatever the runner keeps running between runs."""
        ...
