"""The decided experiments of a line, read from the store and the run logs, as `ExperimentExport`s.

This is the reading half of the export (the store, the task's settings, each run's train.log); what to make
of the records is `export.py`'s. One source serves every tracker of a loop, so that three trackers read an
experiment's logs once (`ExportSource` keeps the last few exports it made).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path

from autoresearch.config import ConfigError, MetricConfig, load_config
from autoresearch.decide.measured import measured
from autoresearch.observe.track.export import (
    CurvePoint,
    ExperimentExport,
    curve_of,
    experiment_export,
    key_of,
)
from autoresearch.report.progress import parse_event
from autoresearch.report.summary import running_best
from autoresearch.run.supervise import run_folder
from autoresearch.store import Experiment, Status, Store

_REMEMBERED = 32  # exports kept for the other trackers of the loop


class ExportSource:
    """The exports of `tag`'s decided experiments, in seq order."""

    def __init__(self, store: Store, tag: str, metric: MetricConfig, task_dir: Path) -> None:
        self.store, self.tag, self.metric, self.task_dir = store, tag, metric, task_dir
        self._made: OrderedDict[tuple[int, str], ExperimentExport] = OrderedDict()
        self._keep_rule: str | None = None
        self._keep_rule_read = False

    def exports(self, skip: Collection[str] = ()) -> list[ExperimentExport]:
        """The exports of the line's decided experiments whose key is not in `skip`."""
        history = measured(self.store, self.tag)
        decided = [e for e in history if e.status is not Status.RUNNING]
        bests = running_best([(e.status, e.metric) for e in decided], metric=self.metric)
        out = []
        for i, e in enumerate(decided):
            if key_of(e.tag, e.seq) not in skip:
                out.append(self._export(e, bests[i], bests[i - 1] if i else None))
        return out

    def _export(self, e: Experiment, best_so_far: float | None, best_before: float | None) -> ExperimentExport:
        remembered = self._made.get((e.id, e.status.value))
        if remembered is not None:
            return remembered
        runs = [r for r in self.store.runs(e) if not r.of_best]  # the later runs of a best are not its own
        made = experiment_export(e, runs=runs, curves=self._curves(e, len(runs)), best_so_far=best_so_far,
                                 best_before=best_before, line=self.store.line(self.tag), metric=self.metric,
                                 keep_rule=self.keep_rule())
        self._made[(e.id, e.status.value)] = made
        while len(self._made) > _REMEMBERED:
            self._made.popitem(last=False)
        return made

    def keep_rule(self) -> str | None:
        """The task's `keep.rule` as its settings say now (None if they cannot be read)."""
        if not self._keep_rule_read:
            self._keep_rule_read = True
            try:
                self._keep_rule = load_config(self.task_dir).keep.rule
            except (ConfigError, OSError):
                self._keep_rule = None
        return self._keep_rule

    def _curves(self, e: Experiment, recorded_runs: int) -> list[tuple[CurvePoint, ...]]:
        """The curve of each run that left a log: run 1 at the experiment's train.log, run n in `run-<n>/`
        (`run.supervise.run_folder`); the run after the recorded ones too, if the experiment failed in it."""
        if not e.log_path:
            return []
        failed_run = 0 if e.status in (Status.KEEP, Status.DISCARD, Status.REJECTED) else 1
        first = Path(e.log_path)
        curves = []
        for index in range(recorded_runs + failed_run or 1):
            log = first if index == 0 else run_folder(first.parent, index) / first.name
            curves.append(read_curve(log))
        while curves and not curves[-1]:
            curves.pop()
        return curves


def read_curve(log: Path) -> tuple[CurvePoint, ...]:
    """The curve of one run's log, read a line at a time (logs can be large); empty if there is no log."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            return curve_of(event for event in map(parse_event, f) if event is not None)
    except OSError:
        return ()
