"""`RayRunner`: each run of the loop is a Ray task on a cluster node (docs/ray.md); the driver keeps the
agents, git, the store and every decision.

A run's task asks for `[executor]`'s GPUs, CPUs and custom resources, and Ray places it; the loop never
names a node or a GPU. The task (ray_node.py) gets the commit's files, the request and the settings, runs
them in that node's sandbox as a local run does, sends its progress events as they come (through a Ray
queue), and returns the `Outcome` (with the node that ran it) and what the run wrote: its log, its outcome
and its model, put into the run's folder here.
A node that dies mid-run has its task run again elsewhere by Ray (`max_retries`); the loop sees one outcome.
When no node can run it, `RunnerUnavailable` stops the loop, and `--resume` runs the experiment again.

Install with `pip install 'autoresearch[ray]'`.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from autoresearch.config import TaskConfig
from autoresearch.data.prepare import Dataset
from autoresearch.run.folders import remove_models
from autoresearch.run.ray_node import ALL_FILES, DataOffer, NodeOrder, NodeResult, dataset_files, run_order
from autoresearch.run.seam import Outcome, RunnerUnavailable, RunRequest
from autoresearch.workspace import Worktree

INSTALL_HINT = "pip install 'autoresearch[ray]'"
EVENT_POLL_SECONDS = 0.2  # how often the driver passes on the progress events of a run in flight


def connect(address: str):
    """The `ray` module, connected to the cluster at `address` ("" : RAY_ADDRESS, else a Ray started here)."""
    try:
        import ray
    except ImportError as err:
        raise RunnerUnavailable(f"executor.kind = ray needs Ray: {INSTALL_HINT}") from err
    if not ray.is_initialized():
        try:
            ray.init(address=address or None, logging_level="ERROR", log_to_driver=False,
                     configure_logging=False, include_dashboard=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise RunnerUnavailable(f"cannot reach the Ray cluster at {address or 'RAY_ADDRESS'}: {err}. Start "
                                    "one with `ray start --head` (docs/ray.md), or set [executor] address") from err
    return ray


def inside(folder: Path, rel: str) -> Path | None:
    """`folder / rel` if that names a file within `folder` (no absolute path, no `..`); else None."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or any(part in ("..", "") for part in parts):
        return None
    return folder.joinpath(*parts)


class RayRunner:
    def __init__(self, task_dir: Path, worktree: Worktree, config: TaskConfig, dataset: Dataset | None,
                 tag: str) -> None:
        self.worktree, self.config, self.dataset, self.tag = worktree, config, dataset, tag
        settings = config.executor
        self.ray = connect(settings.address)
        self._check_cluster()
        where = f"{socket.gethostname()}:{Path(task_dir).resolve()}:{tag}"
        self.line = hashlib.sha256(where.encode()).hexdigest()[:16]
        self.offer = None if dataset is None else DataOffer(str(dataset.root), dataset.root.name, dataset.manifest)
        self._task = self.ray.remote(run_order).options(
            num_gpus=settings.gpus, num_cpus=settings.cpus, resources=dict(settings.resources) or None,
            max_retries=settings.max_retries, retry_exceptions=False)
        self._data_ref = None  # the dataset's files in the object store, once a node asked for them
        self._events = None  # the queue of the runs' progress events (a Ray actor), made at the first run
        self.runs_at_once = settings.runs_at_once  # runs go from the loop's threads (loop/flights.py), so:
        self._lock = threading.Lock()  # guards the data, the queue, the mailboxes and the tasks in flight
        self._mail: dict[str, list[dict]] = {}  # progress events taken from the queue, by run, not passed on yet
        self._tasks: dict[tuple[int, int, int], object] = {}  # the Ray task of each run in flight
        self._bases: dict[str, dict] = {}  # the files of the latest commits run (each run sends its commit's)

    def _check_cluster(self) -> None:
        """A run must fit on some node: say so now, not by waiting for ever."""
        settings = self.config.executor
        needed = {"GPU": settings.gpus, "CPU": settings.cpus, **settings.resources}
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        if not any(all(have.get(name, 0) >= amount for name, amount in needed.items() if amount)
                   for have in nodes):
            shown = ", ".join(f"{k} {v:g}" for k, v in needed.items() if v)
            raise RunnerUnavailable(f"no node of the Ray cluster has what a run needs ({shown}); set [executor] "
                                    "gpus, cpus and resources to what a node has (a CPU cluster: gpus = 0)")

    def run(self, request: RunRequest, on_event: Callable[[dict], None]) -> Outcome:
        order = NodeOrder(line=self.line, tag=self.tag, base=self._base(request.commit), request=request,
                          config=self.config, data=self.offer)
        result = self._submit(order, on_event)
        if result.need_data:
            with self._lock:
                if self._data_ref is None:
                    self._data_ref = self.ray.put(dataset_files(self.dataset))
            result = self._submit(order, on_event)
        request.run_dir.mkdir(parents=True, exist_ok=True)
        for rel, content in result.files.items():
            path = inside(request.run_dir, rel)
            if path is None:
                continue  # a node's answer never writes outside the run's folder
            path.parent.mkdir(parents=True, exist_ok=True)
            path.unlink(missing_ok=True)  # a link left there is replaced, never written through
            path.write_bytes(content)
        outcome = replace(result.outcome, log_path=str(request.run_dir / "train.log"))
        (request.run_dir / "outcome.json").write_text(json.dumps(outcome.summary(), indent=2))
        return outcome

    def _submit(self, order: NodeOrder, on_event: Callable[[dict], None]) -> NodeResult:
        """Run `order` on the cluster, its progress events passed on as they come (those of an attempt on a
        node that died included: they are for the eye; the outcome is the last attempt's)."""
        run_id, key = uuid.uuid4().hex, order.request.key
        with self._lock:
            self._mail[run_id] = []
            ref = self._tasks[key] = self._task.remote(order, self._data_ref, self._event_queue(), run_id)
        try:
            while not self.ray.wait([ref], timeout=EVENT_POLL_SECONDS)[0]:
                self._pass_events(run_id, on_event)
            result = self.ray.get(ref)
            self._pass_events(run_id, on_event)
            return result
        except self.ray.exceptions.RayError as err:
            raise RunnerUnavailable(f"the run of experiment {order.request.seq} failed on the Ray cluster "
                                    f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); "
                                    "it runs again with --resume") from err
        finally:
            with self._lock:
                self._mail.pop(run_id, None)
                if self._tasks.get(key) is ref:
                    del self._tasks[key]

    def cancel(self, request: RunRequest) -> None:
        """Call off a run no longer wanted: Ray interrupts its task on the node, whose local runner stops the
        training as at Ctrl-C; its `run` here then raises `RunnerUnavailable`, which nobody waits for."""
        with self._lock:
            ref = self._tasks.get(request.key)
        if ref is not None:
            self.ray.cancel(ref)

    def _base(self, commit: str) -> dict:
        """The commit's files (its task folder), read from git once for the few latest commits."""
        with self._lock:
            files = self._bases.get(commit)
        if files is None:
            files = self.worktree.files_at(commit, ALL_FILES)
            with self._lock:
                self._bases = {**dict(list(self._bases.items())[-3:]), commit: files}
        return files

    def _event_queue(self):
        if self._events is None:
            from ray.util.queue import Queue

            self._events = Queue(maxsize=10_000, actor_options={"num_cpus": 0})
        return self._events

    def _pass_events(self, run_id: str, on_event: Callable[[dict], None]) -> None:
        """Hand on the events of `run_id` that came: from the queue, the runs' mailboxes filled on the way."""
        with self._lock:
            while True:
                try:
                    batch = self._events.get_nowait_batch(min(self._events.qsize(), 1000))
                except Exception:  # noqa: BLE001 (nothing waiting, or the queue is gone: the result has the events)
                    break
                if not batch:
                    break
                for run, event in batch:
                    if run in self._mail:  # the events of a run already over are for nobody
                        self._mail[run].append(event)
            mine, self._mail[run_id] = self._mail.get(run_id, []), []
        for event in mine:
            on_event(event)

    def drop_models(self, experiment_dir: Path, *, keep_first: bool) -> None:
        remove_models(experiment_dir, keep_first=keep_first)

    def close(self) -> None:
        """Nothing to stop here: the nodes' warm interpreters end with their Ray workers, and the connection
        to the cluster with this process."""
