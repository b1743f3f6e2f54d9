"""What an experiment measures now: the decision side's reading of the runs the store recorded.

The store records every run of a piece of code; which of them describe the machine as it is now is a
judgement (`speed.groups` with the line's `keep.speed_tolerance`), made here. A best that ran again is
shown, in status, the report and results.tsv, at the mean of its runs made at about the latest run's machine
speed: a best first kept on a lucky run, or measured while the machine was busy, is not shown at that.
"""

from __future__ import annotations

import dataclasses

from autoresearch.decide import speed
from autoresearch.decide.rule import current
from autoresearch.store import Experiment, Store


def speed_tolerance(store: Store, tag: str) -> float:
    """`keep.speed_tolerance` as the loop of `tag` last ran with it (the default before it first ran)."""
    tolerance = store.line(tag).speed_tolerance
    return speed.DEFAULT_TOLERANCE if tolerance is None else tolerance


def current_runs(store: Store, experiment: Experiment) -> list[float]:
    """The metrics of `experiment`'s runs made at about the machine speed of its latest one: its code as
    measured on the machine as it is now. All of them when the speed did not move."""
    return [r.metric for r in current(store.runs(experiment), speed_tolerance(store, experiment.tag))]


def measured(store: Store, tag: str) -> list[Experiment]:
    """`store.experiments(tag)`, each one whose code ran again later at the mean of its `current_runs`."""
    out = []
    for e in store.experiments(tag):
        if e.metric is not None and any(r.of_best for r in store.runs(e)):
            runs = current_runs(store, e)
            e = dataclasses.replace(e, metric=sum(runs) / len(runs))
        out.append(e)
    return out
