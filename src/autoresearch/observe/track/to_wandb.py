"""Experiments to Weights & Biases, offline: a W&B run per experiment, grouped by tag, uploaded later.

The loop must not need a network, an account or a login, so runs are made in offline mode only (whatever
WANDB_MODE says) and land in `<track.wandb>/wandb/offline-run-<time>-<id>/`; `wandb sync` uploads them
when the person wants (docs/trackers.md). Each run, in the project `track.wandb_project` (default
"autoresearch") and the group `<tag>`, is named `#<seq> <description>` and holds:
- config: the params (`export_params`), cut to CONFIG_CHARS;
- summary: the figures (`export_metrics`: the metric, `best_so_far`, tokens/s, MFU, memory, cost) and each
  run's metric and seed (`run-<n>/<metric>`, `run-<n>/seed`); W&B plots them over `seq` across the group;
- history: the training curves, `train/loss`, `train/seconds`, `train/tokens_per_s` against `train/step`
  (a confirmation run's as `run-<n>/train/...` against its own `run-<n>/train/step`);
- tags: its status.

W&B is told nothing of the machine (no code, git, requirements, system metrics or console capture): the
harness records those itself. The run id is made of the tag, the seq and the task folder, so an experiment
whose offline run folder exists is there already and is not sent twice.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from autoresearch.observe import ObserverError
from autoresearch.observe.track.export import ExperimentExport, cut, key_of, plain
from autoresearch.observe.track.libraries import tracker_library
from autoresearch.observe.track.settings import DEFAULT_WANDB_PROJECT, folder

CONFIG_CHARS = 4000  # of a config value (a description, an error)
NAME_CHARS = 128  # W&B's limit on run and group names
TAG_CHARS = 64  # ...and on tags
_ID_FORBIDDEN = re.compile(r"[^A-Za-z0-9_-]")


def run_id(tag: str, seq: int, task: str) -> str:
    """The W&B run id of experiment `seq` of `tag` in the task folder `task`: readable, unique, and the same
    every time it is made."""
    return f"{_id_prefix(tag)}-{seq:04d}-{_id_digest(tag, task)}"


def _id_prefix(tag: str) -> str:
    return _ID_FORBIDDEN.sub("_", tag)[:40]


def _id_digest(tag: str, task: str) -> str:
    return hashlib.sha256(f"{task}\0{tag}".encode()).hexdigest()[:8]


class WandbTracker:
    def __init__(self, value: str, *, task_dir: Path, tag: str, project: str = "") -> None:
        self.name = f"track.wandb ({value})"
        self.tag, self.task = tag, str(task_dir)
        self.project = project or DEFAULT_WANDB_PROJECT
        self.wandb = tracker_library("wandb", setting="wandb", extra="wandb", value=value)
        self.root = folder(value, task_dir)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ObserverError(f"track.wandb = {value!r}: cannot write the folder {self.root}: {e}") from e
        self.runs_folder = self.root / "wandb"  # where W&B puts its run folders under `dir`

    def exported_keys(self) -> set[str]:
        found = re.compile(rf"^offline-run-[0-9_]+-{re.escape(_id_prefix(self.tag))}-(\d+)-"
                           rf"{_id_digest(self.tag, self.task)}$")
        keys = set()
        for child in self.runs_folder.glob("offline-run-*") if self.runs_folder.is_dir() else ():
            match = found.match(child.name)
            if match and any(child.glob("*.wandb")):
                keys.add(key_of(self.tag, int(match.group(1))))
        return keys

    def write(self, export: ExperimentExport) -> None:
        wandb = self.wandb
        settings = wandb.Settings(mode="offline", console="off", save_code=False, disable_git=True,
                                  disable_job_creation=True, x_disable_stats=True, x_disable_meta=True,
                                  x_save_requirements=False, silent=True)
        run = wandb.init(dir=str(self.root), project=self.project, group=cut(plain(self.tag), NAME_CHARS),
                         name=cut(export.name, NAME_CHARS), id=run_id(export.tag, export.seq, self.task),
                         job_type="experiment", tags=[cut(export.status, TAG_CHARS)], mode="offline",
                         config={k: cut(v, CONFIG_CHARS) for k, v in export.params.items()},
                         reinit="create_new", settings=settings)
        try:
            summary: dict[str, float] = {"seq": export.seq, **export.metrics}  # seq: the x of the group's plots
            for r in export.runs:
                summary[f"run-{r.number}/seed"] = r.seed
                if r.metric is not None:
                    summary[f"run-{r.number}/{export.metric_name}"] = r.metric
            for r in export.runs:
                prefix = "train/" if r.number == 1 else f"run-{r.number}/train/"
                if not r.curve:
                    continue
                run.define_metric(f"{prefix}step")
                run.define_metric(f"{prefix}*", step_metric=f"{prefix}step")
                for p in r.curve:
                    run.log({f"{prefix}{name}": value for name, value in
                             (("step", p.step), ("loss", p.loss), ("seconds", p.seconds),
                              ("tokens_per_s", p.tokens_per_s)) if value is not None})
            run.summary.update(summary)
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish(exit_code=1 if export.failed else 0)

    def close(self) -> None:
        """W&B's service process ends with the loop (it would with the interpreter otherwise)."""
        teardown = getattr(self.wandb, "teardown", None)
        if teardown is not None:
            teardown()
