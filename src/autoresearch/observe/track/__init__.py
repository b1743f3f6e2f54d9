"""Trackers: each experiment's metrics, config and curves exported to MLflow, TensorBoard or Weights & Biases.

Teams already look at their training in one of these; the loop's own report (`autoresearch report`) is not
where they look. So each decided experiment (kept, discarded, crashed, rejected...) is sent to the trackers
the `[track]` settings name, as one run of that tracker: its params (who proposed what, on which commit,
under which protocol), its metrics (the task's metric, each run's, tokens/s, MFU, memory, cost) and its
training curves, plus the line's progress (the best so far, over experiments). docs/trackers.md shows
what goes where and how to open it.

The store stays the record; a tracker is a copy for people to look at, and never required:
- each tracker is an extra (`pip install 'autoresearch[mlflow]'`) imported only when its setting is on,
  and the loop refuses to start with a setting whose library is missing (`ObserverError`, naming the fix);
- everything is written locally and offline: MLflow to a folder (or a URI the person gives), TensorBoard
  event files, W&B offline runs that `wandb sync` uploads later;
- a tracker that fails mid-run is dropped with a warning (`observe.Observers`); the research goes on;
- a resumed loop, or one whose tracker was turned on later, sends what the tracker lacks and nothing twice:
  each tracker is asked what it holds already (`Tracker.exported_keys`).

Modules: `settings` (the table, checked), `export` (what to send, computed from store records: pure),
`source` (reading those records and the run logs), `observer` (when to send), and one per tracker
(`to_mlflow`, `to_tensorboard`, `to_wandb`: the tracker's calls, nothing else).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.observe.track.settings import TrackSettings, check

if TYPE_CHECKING:
    from autoresearch.config import MetricConfig
    from autoresearch.observe import Observer
    from autoresearch.store import Store

__all__ = ["TrackSettings", "check", "observers"]


def observers(settings: TrackSettings, *, task_dir: Path, store: Store, tag: str, metric: MetricConfig) -> list[Observer]:
    """An observer per tracker the settings turn on, for the loop of `tag`; none when none is on. Raises
    `ObserverError` when a tracker's library is missing or its place cannot be written."""
    if not (settings.mlflow or settings.tensorboard or settings.wandb):
        return []
    from autoresearch.observe.track.observer import TrackerObserver
    from autoresearch.observe.track.source import ExportSource

    source = ExportSource(store, tag, metric, task_dir)
    made = []
    try:
        if settings.mlflow:
            from autoresearch.observe.track.to_mlflow import MlflowTracker
            made.append(MlflowTracker(settings.mlflow, task_dir=task_dir, tag=tag))
        if settings.tensorboard:
            from autoresearch.observe.track.to_tensorboard import TensorBoardTracker
            made.append(TensorBoardTracker(settings.tensorboard, task_dir=task_dir, tag=tag))
        if settings.wandb:
            from autoresearch.observe.track.to_wandb import WandbTracker
            made.append(WandbTracker(settings.wandb, task_dir=task_dir, tag=tag, project=settings.wandb_project))
    except BaseException:
        for tracker in made:
            tracker.close()
        raise
    return [TrackerObserver(tracker, source) for tracker in made]
