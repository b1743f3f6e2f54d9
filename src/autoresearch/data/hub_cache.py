"""The download cache of Hugging Face datasets: verified files and the plan of each repo/revision.

Files live in a huggingface_hub cache folder (``cache_dir``); beside it, under
``cache_dir/autoresearch-sources/``, this module keeps

* ``<spec key>.json``: the plan of the last successful download of a repo/revision (its commit, the
  train files and the evaluation file, each with size and checksums), so that a later run without the
  Hub (offline, or unreachable) can use the same files: see :func:`cached_plan` and :func:`save_plan`;
* ``verified/<checksum>.json``: a stamp (path, size, mtime) of each file whose checksum was checked, so
  cached files are not re-hashed on every run.

Invariants: a file is used only after :func:`verify` has matched its size and SHA-256 (LFS) or git
object id against the listing; a mismatching file is deleted from the cache (snapshot entry and blob)
before the error is raised. Failing to write a stamp or a plan only costs a re-hash or the offline
fallback, never a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoresearch.data.hub_retry import HubContext
from autoresearch.data.spec import DataError, DataSpec, short_hash

__all__ = ["RemoteFile", "cached_file", "cached_plan", "save_plan", "verify"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteFile:
    """One parquet file of the listing, with what is needed to verify it."""

    path: str
    size: int
    sha256: str | None  # LFS sha256 (None for a file stored in plain git)
    blob_id: str | None  # git object id

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "blob_id": self.blob_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RemoteFile:
        return cls(
            path=data["path"], size=int(data["size"]), sha256=data.get("sha256"), blob_id=data.get("blob_id")
        )


Plan = tuple[str, list[RemoteFile], RemoteFile]  # commit, train files, evaluation file


def _state_dir(cache_dir: Path) -> Path:
    return cache_dir / "autoresearch-sources"


def _record_path(cache_dir: Path, repo: str, revision: str | None) -> Path:
    return _state_dir(cache_dir) / f"{DataSpec('hf', repo=repo, revision=revision).key()}.json"


def cached_file(ctx: HubContext, commit: str, path: str) -> Path | None:
    """The local copy of ``path`` at ``commit`` in the huggingface_hub cache, or None if it is not there."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(ctx.repo, path, cache_dir=str(ctx.cache_dir), revision=commit, repo_type="dataset")
    return Path(hit) if isinstance(hit, str) else None


def cached_plan(ctx: HubContext, train_shards: int) -> Plan | None:
    """The plan of a previous successful call for this repo/revision, if all its files are still cached."""
    try:
        record = json.loads(_record_path(ctx.cache_dir, ctx.repo, ctx.revision).read_text())
        commit = record["commit"]
        train = [RemoteFile.from_json(d) for d in record["train"]][:train_shards]
        eval_file = RemoteFile.from_json(record["eval"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.get("repo") != ctx.repo or not train:
        return None
    for f in [*train, eval_file]:
        if cached_file(ctx, commit, f.path) is None:
            return None
    return commit, train, eval_file


def save_plan(ctx: HubContext, commit: str, train_files: list[RemoteFile], eval_file: RemoteFile) -> None:
    """Record the files of a successful download for :func:`cached_plan` (atomically; a failure is logged)."""
    record = {
        "repo": ctx.repo,
        "revision": ctx.revision,
        "commit": commit,
        "endpoint": ctx.endpoint,
        "train": [f.to_json() for f in train_files],
        "eval": eval_file.to_json(),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = _record_path(ctx.cache_dir, ctx.repo, ctx.revision)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        logger.warning("could not save %s: %s", path, exc)


def _file_digests(path: Path) -> tuple[int, str, str]:
    """``(size, sha256, git blob sha1)`` of a file, read in 1 MiB chunks."""
    sha = hashlib.sha256()
    size = path.stat().st_size
    git = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            git.update(chunk)
    return size, sha.hexdigest(), git.hexdigest()


def _delete_download(local: Path, remote: RemoteFile, cache_dir: Path, repo: str) -> None:
    """Remove a bad download from the huggingface_hub cache: the snapshot entry and the blob it points to."""
    targets = {Path(os.path.realpath(local)), local}
    if remote.sha256:
        targets.add(cache_dir / f"datasets--{repo.replace('/', '--')}" / "blobs" / remote.sha256)
    for target in targets:
        try:
            target.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            logger.warning("could not delete %s: %s", target, exc)


def _mismatch(local: Path, remote: RemoteFile) -> str | None:
    """What differs between the file and the listing (size, then the checksum the listing gives), if anything."""
    size, sha256, git_oid = _file_digests(local)
    if size != remote.size:
        return f"size {size} bytes, expected {remote.size}"
    if remote.sha256 and sha256 != remote.sha256:
        return f"sha256 {sha256}, expected {remote.sha256}"
    if not remote.sha256 and remote.blob_id and git_oid != remote.blob_id:
        return f"git object id {git_oid}, expected {remote.blob_id}"
    return None


def verify(local: Path, remote: RemoteFile, *, cache_dir: Path, ctx: HubContext) -> None:
    """Check a downloaded file's size and checksum against the listing; delete it and raise on mismatch.

    The LFS sha256 is checked when the listing gives one, else the git blob id. A successful check is
    remembered (keyed by checksum, path, size and mtime) so cached files are not re-hashed on every run.
    """
    try:
        stat = local.stat()
    except OSError as exc:
        raise DataError(
            f"downloaded file {local} is not readable ({exc}); delete {cache_dir} and rerun"
        ) from exc
    expected = remote.sha256 or remote.blob_id
    marker = _state_dir(cache_dir) / "verified" / f"{expected or short_hash(remote.path, 16)}.json"
    stamp = {"path": str(Path(os.path.realpath(local))), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        if json.loads(marker.read_text()) == stamp:
            return
    except (OSError, ValueError):
        pass

    problem = _mismatch(local, remote)
    if problem:
        _delete_download(local, remote, cache_dir, ctx.repo)
        raise DataError(
            f"downloaded {remote.path} from {ctx.where} is corrupt ({problem}); the bad copy was deleted: "
            f"rerun the command to download it again"
        )
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(stamp))
    except OSError:
        pass
