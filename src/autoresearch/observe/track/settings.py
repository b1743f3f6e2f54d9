"""The `[track]` table of autoresearch.toml, checked, and where each setting points once resolved.

One setting per tracker, empty (the default) for none, so that a task that never asks for a tracker never
imports one. A folder is relative to the task folder, as every other path of the settings is, so that a
loop started from anywhere writes to the same place; MLflow also takes a tracking URI (a server, a
database), passed through as given. Pure: nothing here touches the disk or imports a tracker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TrackSettings:
    mlflow: str = ""  # an MLflow tracking URI ("http://host:5000", "sqlite:///x.db") or a local folder; ""
    tensorboard: str = ""  # a folder for TensorBoard event files; ""
    wandb: str = ""  # a folder for Weights & Biases offline runs (`wandb sync` uploads them later); ""
    wandb_project: str = ""  # the W&B project the offline runs belong to; "" is "autoresearch"


DEFAULT_WANDB_PROJECT = "autoresearch"
MLFLOW_DATABASE = "mlflow.db"  # in a local MLflow folder: the runs, params and metrics (SQLite)
MLFLOW_ARTIFACTS = "artifacts"  # ...and the files of the runs (the diffs)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")  # a URI's scheme; two letters at least, so not "C:"
_WANDB_PROJECT_FORBIDDEN = re.compile(r"[/\\#?%:\x00-\x1f]")
_WANDB_NAME_MAX = 128  # W&B's limit on project, group and run names


def is_uri(value: str) -> bool:
    """Does an MLflow setting name a tracking URI (a scheme, or MLflow's bare "databricks"), not a folder?"""
    return value == "databricks" or bool(_SCHEME.match(value))


def check(settings: TrackSettings) -> str | None:
    """What is wrong with the `[track]` settings, as the fix to make; None when nothing is."""
    for name in ("mlflow", "tensorboard", "wandb", "wandb_project"):
        value = getattr(settings, name)
        if value and not value.strip():
            return f'track.{name} is blank: give a value (e.g. "{_example(name)}") or leave it out'
        if "\x00" in value:
            return f"track.{name} holds a NUL character"
    for name in ("tensorboard", "wandb"):
        value = getattr(settings, name)
        if value and is_uri(value):
            return (f"track.{name} = {value!r} looks like a URI: give a local folder (e.g. \"{_example(name)}\"); "
                    + ("TensorBoard reads it with `tensorboard --logdir`" if name == "tensorboard"
                       else "`wandb sync` uploads the offline runs from there"))
    project = settings.wandb_project
    if project:
        if not settings.wandb:
            return 'track.wandb_project is set but track.wandb is not: give the offline runs a folder, e.g. "wandb"'
        if _WANDB_PROJECT_FORBIDDEN.search(project) or len(project) > _WANDB_NAME_MAX:
            return (f"track.wandb_project = {project!r}: W&B project names are at most {_WANDB_NAME_MAX} "
                    "characters, without / \\ # ? % : or control characters")
    return None


def _example(name: str) -> str:
    return {"mlflow": "mlruns", "tensorboard": "tensorboard", "wandb": "wandb",
            "wandb_project": DEFAULT_WANDB_PROJECT}[name]


def folder(value: str, task_dir: Path) -> Path:
    """A folder setting as an absolute path: relative ones are relative to the task folder (`~` expanded)."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else task_dir / path


@dataclass(frozen=True)
class MlflowTarget:
    """Where MLflow runs go: `uri` for MlflowClient; for a local folder, the folder too (`local`), which
    holds an SQLite database and the artifacts, and `artifacts`, the artifact location of new experiments."""

    uri: str
    local: Path | None = None

    @property
    def artifacts(self) -> str | None:
        return (self.local / MLFLOW_ARTIFACTS).as_uri() if self.local is not None else None


def mlflow_target(value: str, task_dir: Path) -> MlflowTarget:
    """The `track.mlflow` setting resolved: a URI as given; a folder as an SQLite store in it (MLflow's own
    file store is in maintenance mode and refuses to open by default from MLflow 3 on)."""
    if is_uri(value):
        return MlflowTarget(uri=value)
    local = folder(value, task_dir)
    return MlflowTarget(uri=f"sqlite:///{local / MLFLOW_DATABASE}", local=local)
