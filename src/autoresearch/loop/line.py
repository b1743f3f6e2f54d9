"""A line of research: one tag's sequence of experiments on its own branch, and what every part of the loop
reads of it (the best, the commit proposals build on, the measured noise) or writes to it (results.tsv)."""

from __future__ import annotations

import fnmatch
import math
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.config import TaskConfig
from autoresearch.decide import same_code
from autoresearch.decide.measured import measured
from autoresearch.decide.rule import KeepRule, measured_noise
from autoresearch.decide.stats import Noise
from autoresearch.report.noise import latest_speed
from autoresearch.store import Experiment, Run, Status, Store
from autoresearch.store.export import export_results_tsv
from autoresearch.workspace import Worktree

BASELINE = "baseline"  # the description of a line's first experiment: the task's own code, run as it is

FAULT_POINTS = ("after-commit", "after-begin", "after-run", "after-finish", "after-reset", "after-reject")


def fault_point(name: str) -> None:
    """Fault injection for the crash-safety tests: AUTORESEARCH_FAULT=<name> kills the loop right here."""
    if os.environ.get("AUTORESEARCH_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def branch_name(tag: str) -> str:
    return f"autoresearch/{tag}"


def named(name: str, patterns: list[str]) -> bool:
    """Whether a line's name matches one of `loop.adopt_from`'s entries (a tag, or a pattern such as `gpu*`)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class LoopError(Exception):
    """The loop cannot start; the message names the fix."""


@dataclass
class Line:
    """What the parts of a running loop share: the tag's records, its worktree, its settings and rule."""

    tag: str
    task_dir: Path
    config: TaskConfig
    store: Store
    worktree: Worktree
    rule: KeepRule
    budget: float  # training seconds per run, fixed for the line
    results_path: Path
    on_event: Callable[[dict], None]
    stop_requested: bool = False
    # A tie within the noise goes to every candidate, not only to one that removes more lines than it adds:
    # in a distillation (distill/), each candidate is the best with one change taken out, less of the
    # night's code whatever its line count.
    ties_to_candidate: bool = False

    def experiments(self) -> list[Experiment]:
        return self.store.experiments(self.tag)

    def incumbent(self) -> Experiment | None:
        """The best: the latest kept experiment, whose commit the branch holds."""
        return self.store.incumbent(self.tag)

    def anchor(self) -> str | None:
        """The commit proposals build on: the incumbent's, or before any keep, the baseline's."""
        incumbent = self.incumbent()
        if incumbent is not None:
            return incumbent.commit
        history = self.experiments()
        return history[0].parent_commit if history else None

    def export(self) -> None:
        export_results_tsv(measured(self.store, self.tag), self.results_path, self.config.metric.name)

    def history(self) -> tuple[list[Run], ...]:
        """The runs of each piece of code measured to a result so far: what the noise is measured on."""
        return tuple(self.store.runs(e) for e in self.experiments() if e.status in (Status.KEEP, Status.DISCARD))

    def speed_now(self) -> float | None:
        """The machine's speed at the line's latest run that measured it."""
        return latest_speed(self.store, self.tag)

    def noise(self) -> Noise:
        """The run-to-run noise measured so far, at the machine's latest speed."""
        return measured_noise(self.history(), speed_now=self.speed_now(), tolerance=self.rule.speed_tolerance)

    def named_runs(self) -> list[str]:
        """This folder's other lines that `loop.adopt_from` names (their tags or patterns)."""
        wanted = self.config.loop.adopt_from
        return [tag for tag in self.store.tags() if tag != self.tag and named(tag, wanted)] if wanted else []

    def same_budget(self, tag: str) -> bool:
        """Whether line `tag` trains for this line's budget, so that its metrics compare with this one's."""
        theirs = self.store.line(tag).budget_seconds
        return theirs is not None and math.isclose(float(theirs), self.budget, rel_tol=1e-9)

    def code_hash(self) -> str:
        """What code the worktree holds now: its editable files, as `same_code` compares them."""
        return same_code.code_hash(self.worktree.editable_files(self.config.loop.editable))

    def program(self) -> str:
        path = self.task_dir / "program.md"
        return path.read_text() if path.exists() else ""

    def log_path(self) -> str:
        """The train.log of the experiment `Store.begin` is about to number."""
        seq = len(self.experiments())
        return str(self.task_dir / ".autoresearch" / "logs" / self.tag / f"{seq:04d}" / "train.log")
