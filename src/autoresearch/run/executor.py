"""Where the loop's runs train (`[executor]`): on this machine (`LocalRunner`), or as tasks on a Ray cluster
(`RayRunner`, ray_runner.py). `make_runner` builds the one the settings name; the loop only sees the
`Runner` seam (seam.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.config import TaskConfig
    from autoresearch.data.prepare import Dataset
    from autoresearch.run.seam import Runner
    from autoresearch.workspace import Worktree

KINDS = ("local", "ray")


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "local"  # local: this machine; ray: tasks on a Ray cluster (docs/ray.md)
    # The cluster: "" (RAY_ADDRESS, else a Ray started here), "auto" (the one running here), "host:6379",
    # or "ray://host:10001" (Ray Client).
    address: str = ""
    gpus: float = 1.0  # GPUs each run needs; 0 on a CPU cluster
    cpus: float = 1.0  # CPUs each run needs
    resources: dict = field(default_factory=dict)  # custom Ray resources each run needs, e.g. {"a100": 1}
    max_retries: int = 3  # a run whose node died is run again elsewhere, at most this many times
    # Where each node keeps its copies of the task and of the data; "" is the node's own autoresearch cache.
    node_cache: str = ""
    # How many runs of one loop may train at once (the baseline's seeds, a candidate's confirmations, the
    # best's re-runs, each on a GPU of its own: loop/flights.py); 1: one after another. Ray only.
    runs_at_once: int = 1


def check(settings: ExecutorSettings) -> str | None:
    """What is wrong with `settings`, as the message of a `ConfigError`; None if nothing."""
    s = settings
    if s.kind not in KINDS:
        return f"executor.kind = {s.kind!r}: use local (this machine) or ray (a Ray cluster)"
    if not (s.gpus >= 0 and s.cpus >= 0) or s.gpus + s.cpus <= 0:
        return (f"executor.gpus = {s.gpus!r} and executor.cpus = {s.cpus!r}: each run needs some of a node, "
                "e.g. gpus = 1 (a GPU cluster) or gpus = 0 and cpus = 4 (a CPU cluster)")
    if not all(isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
               for k, v in s.resources.items()):
        return f'executor.resources = {s.resources!r}: give names and positive amounts, e.g. {{ a100 = 1 }}'
    if not (isinstance(s.runs_at_once, int) and 1 <= s.runs_at_once <= 64):
        return f"executor.runs_at_once = {s.runs_at_once!r}: use 1 (one run after another) to 64"
    if s.runs_at_once > 1 and s.kind != "ray":
        return (f"executor.runs_at_once = {s.runs_at_once}: this machine trains one run at a time; runs at once "
                "need kind = ray (a Ray cluster, which may be this machine alone: docs/ray.md)")
    if not 0 <= s.max_retries <= 100:
        return f"executor.max_retries = {s.max_retries}: use 0 (never run again) to 100"
    return None


def run_device(config: TaskConfig) -> str:
    """The kind of device the task's runs train on: `train.device`, and for "auto" what the runs will find:
    on a Ray cluster, a GPU if each run asks Ray for one (the driver may have none), else the CPU; here,
    what this machine has. "-" for a task of its own command (the harness evaluates nothing)."""
    if not config.evaluated:
        return "-"
    if config.train.device != "auto":
        return config.train.device
    if config.executor.kind == "ray":
        return "cuda" if config.executor.gpus > 0 else "cpu"
    from autoresearch.run.environment import resolve_device

    return resolve_device("auto")


def make_runner(task_dir: Path, worktree: Worktree, config: TaskConfig, dataset: Dataset | None, tag: str) -> Runner:
    """The runner `config.executor` names, for the loop of `tag` on `worktree`."""
    if config.executor.kind == "ray":
        from autoresearch.run.ray_runner import RayRunner

        return RayRunner(task_dir, worktree, config, dataset, tag)
    from autoresearch.run.local import LocalRunner

    return LocalRunner(task_dir, worktree, config, dataset)
