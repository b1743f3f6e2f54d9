"""The node's side of a run on a Ray cluster: `run_order` runs one `NodeOrder` exactly as a local run does.

Each Ray worker process that takes runs of a line keeps a copy of the task of its own (`NodeCopy`): a git
repository made from the commit's files, with the line's branch in a worktree, and a warm `LocalRunner` on
it (its prestarted interpreter and evaluation workers wait between runs, as on one machine). A run's
editable files are put into that worktree and committed there, the `LocalRunner` trains and measures them
in this node's sandbox, and what it wrote (log, outcome, model) goes back to the driver, which keeps git, the
store and every decision.

The data: the driver names its prepared dataset (folder and manifest). A node uses that folder if it sees
the same manifest there (a shared file system), else its own copy, made once from files sent through Ray's
object store; either is checked against the manifest's SHA-256 once per process before any run uses it.
The split key of the built-in corpus never travels: a node gets the prepared files (docs/ray.md).

Invariants: the copies of a line live under `<node cache>/ray/<line>/slot-N`, each held by one process (an
advisory lock) so that two runs on one node never share a worktree; nothing here decides anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from autoresearch.config import TaskConfig, cache_root
from autoresearch.data.prepare import MANIFEST, Dataset, sha256_file
from autoresearch.run.seam import Outcome, RunRequest

ALL_FILES = ("**/*",)  # what a copy's base holds: every committed file


@dataclass(frozen=True)
class DataOffer:
    """The driver's prepared dataset: its folder there, its folder's name, its manifest."""

    root: str
    name: str
    manifest: dict


@dataclass(frozen=True)
class NodeOrder:
    """One run for a node: the request (its files the editable ones), the commit's other files, the settings."""

    line: str  # names the driver's line (task folder and tag), for the node's copies
    tag: str
    base: dict  # path -> content: every file of the commit, the editable ones included
    request: RunRequest
    config: TaskConfig
    data: DataOffer | None


@dataclass(frozen=True)
class NodeResult:
    outcome: Outcome | None = None
    files: dict | None = None  # what the run left in its folder: relative path -> content
    events: tuple = ()
    node: str = ""
    need_data: bool = False  # this node has no copy of the data: send it (through the object store)


def run_order(order: NodeOrder, data_files: dict | None = None, events=None, run_id: str = "") -> NodeResult:
    """Run `order` here (a Ray task's body). `data_files`: the dataset's files, name -> content, if sent.
    `events`: a Ray queue that gets `(run_id, event)` for each progress event as it comes (the driver shows
    them live); they are in the result too."""
    node = describe_node()
    dataset = None
    if order.data is not None:
        dataset = node_dataset(order.data, data_files, _node_cache(order.config))
        if dataset is None:
            return NodeResult(need_data=True, node=node)
    copy = NodeCopy.for_order(order, dataset)
    events_seen: list[dict] = []

    def on_event(event: dict) -> None:
        events_seen.append(event)
        if events is not None:
            try:
                events.put_nowait((run_id, event))
            except Exception:  # noqa: BLE001 (a full or lost queue: the result still has every event)
                pass

    outcome = copy.run(order.request, on_event)
    files = run_files(copy.run_dir)
    if not model_may_stay(order.request.index, order.config.loop.keep_models):
        files = {rel: content for rel, content in files.items() if not rel.startswith("model/")}
    return NodeResult(outcome=replace(outcome, node=node), files=files, events=tuple(events_seen), node=node)


def model_may_stay(index: int, keep_models: str) -> bool:
    """Whether the model of run `index` of an experiment can outlive its decision (`loop.keep_models`): all
    models with "all"; with "kept", only a first run's (that of a kept experiment stays); none with "none".
    The others are not sent over the network only to be deleted."""
    return keep_models == "all" or keep_models == "kept" and index == 0


def run_files(folder: Path) -> dict[str, bytes]:
    """What a run left in `folder`, to send to the driver: its regular files, by path within it. A link is
    not followed, to a file or to a folder (a candidate could point one at any file this node's worker may
    read: credentials, the other lines' copies), and what is not a plain file is left out."""
    files = {}
    for root, _dirs, names in os.walk(folder):  # never into a linked folder
        for name in sorted(names):
            path = Path(root) / name
            try:
                regular = stat.S_ISREG(path.lstat().st_mode)
            except OSError:
                continue
            if regular:
                files[str(path.relative_to(folder))] = path.read_bytes()
    return files


def describe_node() -> str:
    """This node as status and reports show it: its address and the start of its Ray node id."""
    try:
        import ray

        return f"{ray.util.get_node_ip_address()} ({ray.get_runtime_context().get_node_id()[:8]})"
    except Exception:  # noqa: BLE001 (outside a Ray worker: this machine)
        return os.uname().nodename


def _node_cache(config: TaskConfig) -> Path:
    return Path(config.executor.node_cache).expanduser() if config.executor.node_cache else cache_root()


# -- the data ---------------------------------------------------------------------------------------

_VERIFIED: set[tuple[str, str]] = set()  # (folder, manifest hash) checked in full by this process


def node_dataset(offer: DataOffer, files: dict | None, cache: Path) -> Dataset | None:
    """The offered dataset on this node: the driver's folder if this node sees it with the same manifest, else
    this node's copy (made from `files` if given). None if neither is here and no files came."""
    digest = hashlib.sha256(json.dumps(offer.manifest, sort_keys=True).encode()).hexdigest()
    own = cache / "datasets" / offer.name
    for root in (Path(offer.root), own):
        manifest_path = root / MANIFEST
        try:
            same = json.loads(manifest_path.read_text()) == offer.manifest
        except (OSError, ValueError):
            continue
        if same:
            dataset = Dataset(root, offer.manifest)
            if (str(root), digest) not in _VERIFIED:
                dataset.verify(full=True)  # a DataError names the file; the run's task fails with it
                _VERIFIED.add((str(root), digest))
            return dataset
    if files is None:
        return None
    scratch = own.with_name(f"{own.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        for name, content in files.items():
            (scratch / name).write_bytes(content)
        (scratch / MANIFEST).write_text(json.dumps(offer.manifest, indent=2))
        Dataset(scratch, offer.manifest).verify(full=True)  # what arrived is what the manifest names
        if own.exists():
            shutil.rmtree(own)
        os.replace(scratch, own)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _VERIFIED.add((str(own), digest))
    return Dataset(own, offer.manifest)


def dataset_files(dataset: Dataset) -> dict[str, bytes]:
    """The files a node needs to hold `dataset`: every file its manifest lists (the split key is not one)."""
    files = {}
    for name, entry in dataset.manifest["files"].items():
        path = dataset.root / name
        if sha256_file(path) != entry["sha256"]:
            raise ValueError(f"{path} differs from its manifest: run `autoresearch prepare --force`")
        files[name] = path.read_bytes()
    return files


# -- the copy of the task -----------------------------------------------------------------------------

_COPIES: dict[str, NodeCopy] = {}  # this process's copy of each line it runs


class NodeCopy:
    """This process's copy of a line's task (see the module's docstring), with its warm `LocalRunner`."""

    def __init__(self, folder: Path, lock, base_id: str, order: NodeOrder, dataset: Dataset | None) -> None:
        from autoresearch.loop.line import branch_name
        from autoresearch.run.local import LocalRunner
        from autoresearch.workspace import Workspace

        self.folder, self._lock, self.base_id = folder, lock, base_id
        self.key = _runner_key(order, dataset)
        task = folder / "task"
        if task.exists():
            shutil.rmtree(task)
        task.mkdir(parents=True)
        for rel, content in order.base.items():
            (task / rel).parent.mkdir(parents=True, exist_ok=True)
            (task / rel).write_bytes(content)
        workspace = Workspace.ensure(task)
        branch = branch_name(order.tag)
        workspace.create_branch(branch, workspace.head())
        self.worktree = workspace.open_worktree(task / ".autoresearch" / "worktrees" / order.tag, branch)
        self.editable = list(order.config.loop.editable)
        self.run_dir = folder / "run"
        self.runner = LocalRunner(task, self.worktree, order.config, dataset)

    @classmethod
    def for_order(cls, order: NodeOrder, dataset: Dataset | None) -> NodeCopy:
        """This process's copy for `order`'s line, made (or made again) if it has none with the same files,
        settings, data and visible GPUs."""
        editable = order.config.loop.editable
        from autoresearch.workspace import matches_scope

        fixed = sorted((rel, content) for rel, content in order.base.items() if not matches_scope(rel, editable))
        base_id = hashlib.sha256(repr(fixed).encode()).hexdigest()[:16]
        copy = _COPIES.get(order.line)
        if copy is not None and copy.base_id == base_id and copy.key == _runner_key(order, dataset):
            return copy
        if copy is not None:
            copy.close()
        folder, lock = _take_slot(_node_cache(order.config) / "ray" / order.line)
        copy = _COPIES[order.line] = cls(folder, lock, base_id, order, dataset)
        return copy

    def run(self, request: RunRequest, on_event) -> Outcome:
        from autoresearch.workspace import NothingToCommit

        self.worktree.discard_changes()
        self.worktree.put_files(request.files, self.editable)
        try:
            commit = self.worktree.commit(f"run {request.seq}.{request.index}")
        except NothingToCommit:
            commit = self.worktree.head()
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        return self.runner.run(replace(request, commit=commit, run_dir=self.run_dir), on_event)

    def close(self) -> None:
        self.runner.close()
        self._lock.close()


def _runner_key(order: NodeOrder, dataset: Dataset | None) -> str:
    return repr((order.config, dataset.root if dataset else None, os.environ.get("CUDA_VISIBLE_DEVICES")))


def _take_slot(line_dir: Path):
    """The first copy folder of the line that no other process holds, and its held lock."""
    line_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        lock = open(line_dir / f"slot-{n}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            n += 1
            continue
        return line_dir / f"slot-{n}", lock
