"""Hugging Face datasets for ``--data hf:owner/name[@revision]``: download parquet shards, split by file.

:func:`hf_splits` resolves the revision to a commit, lists the repo's parquet files there, downloads the
chosen ones with the real ``huggingface_hub`` client and builds the splits. Around it:
:mod:`autoresearch.data.hub_retry` classifies Hub failures and retries the transient ones;
:mod:`autoresearch.data.hub_cache` verifies downloads and remembers each repo/revision's plan for
offline use.

Invariants: the split is by file: the last parquet file in sorted path order is the pinned evaluation
shard (even rows val, odd rows test) and the first ``train_shards`` of the others are train; listing and downloads use the same commit; every file is verified before use;
without the Hub (``HF_HUB_OFFLINE`` or unreachable) only a complete copy of the same repo/revision
downloaded before is used. The split rules are documented in ``docs/data.md`` ("Real data").
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from autoresearch.data.hub_cache import RemoteFile, cached_file, cached_plan, save_plan, verify
from autoresearch.data.hub_retry import HubContext, UnreachableError, with_retries
from autoresearch.data.readers import is_empty, iter_parquet, iter_parquet_rows, open_parquet
from autoresearch.data.spec import DataError, SourceSplits

__all__ = ["DEFAULT_ENDPOINT", "hf_splits"]

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"


def _resolve_endpoint(endpoint: str | None) -> str:
    """The Hub URL to use: ``endpoint``, else ``$HF_ENDPOINT`` (read now), else huggingface.co."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hf_splits(
    repo: str,
    *,
    revision: str | None,
    cache_dir: Path,
    train_shards: int = 2,
    endpoint: str | None = None,
    max_retries: int = 5,
    backoff_s: float = 1.0,
) -> SourceSplits:
    """Download a Hugging Face dataset's parquet shards and split them by file.

    The repo's ``.parquet`` files (anywhere in the repo) are listed at ``revision`` (``None`` = default
    branch, resolved to a commit first so listing and downloads agree) and sorted by path. The **last**
    one is the pinned evaluation shard: its rows with even index (0, 2, ...) are val, odd index test. The
    first ``train_shards`` of the other files are train (fewer if the repo has fewer; at least one is
    required). Rows whose ``text`` is null, empty or whitespace are skipped.

    Files are fetched with ``huggingface_hub.hf_hub_download`` into ``cache_dir`` (resumable, atomic,
    cached: a second call downloads nothing). Transient failures (connection errors, timeouts, HTTP
    408/429/5xx, interrupted transfers) are retried up to ``max_retries`` times, waiting
    ``backoff_s * 2**attempt`` seconds. Each file's size and SHA-256 (LFS) or git object id is verified
    against the listing; a corrupt file is deleted. ``endpoint`` defaults to ``$HF_ENDPOINT``, then
    https://huggingface.co. When the Hub cannot be reached or ``HF_HUB_OFFLINE`` is set, a copy
    downloaded before for the same ``repo``/``revision`` is used if it is complete.

    Raises:
        DataError: repo/revision not found, gated/private without token, no parquet files, no training
            shard besides the evaluation shard, shards without a ``text`` column, checksum mismatch,
            or the endpoint unreachable after retries (without a usable cached copy).
    """
    if train_shards < 1:
        raise DataError(f"train_shards must be at least 1 (got {train_shards})")
    cache_dir = Path(cache_dir).expanduser().resolve()
    ctx = HubContext(repo=repo, revision=revision, endpoint=_resolve_endpoint(endpoint), cache_dir=cache_dir)

    if _offline():
        plan = cached_plan(ctx, train_shards)
        if plan is None:
            raise DataError(
                f"HF_HUB_OFFLINE is set and {ctx.where} has not been downloaded to {cache_dir} before: unset "
                f"HF_HUB_OFFLINE to download it, or use --data <path> with a local copy"
            )
        return _build_hf_splits(ctx, *plan, offline=True, max_retries=max_retries, backoff_s=backoff_s)

    try:
        commit, listing = _list_parquet(ctx, max_retries=max_retries, backoff_s=backoff_s)
    except UnreachableError as exc:
        plan = cached_plan(ctx, train_shards)
        if plan is None:
            raise
        logger.warning("%s; using the copy of %s downloaded before", exc, ctx.where)
        return _build_hf_splits(ctx, *plan, offline=True, max_retries=max_retries, backoff_s=backoff_s)

    train_files, eval_file = _choose_files(ctx, listing, train_shards)
    return _build_hf_splits(
        ctx, commit, train_files, eval_file, offline=False, max_retries=max_retries, backoff_s=backoff_s
    )


def _choose_files(
    ctx: HubContext, listing: list[RemoteFile], train_shards: int
) -> tuple[list[RemoteFile], RemoteFile]:
    """The train files and the evaluation file of a sorted listing (the last file is the evaluation one)."""
    if not listing:
        raise DataError(
            f"{ctx.where} has no .parquet files; use a dataset stored as parquet (many have a parquet "
            f"conversion: try hf:{ctx.repo}@refs/convert/parquet), or download it and pass --data <path>"
        )
    *others, eval_file = listing
    if not others:
        raise DataError(
            f"{ctx.where} has a single parquet file ({eval_file.path}) but needs at least two: the last one "
            f"(sorted by path) is held out for validation and at least one other is used for training; use "
            f"a dataset with more shards, or pass --data <path> with a local copy to split by document"
        )
    train_files = others[:train_shards]
    if len(train_files) < train_shards:
        logger.warning(
            "%s has %d training shard(s) besides the validation shard; %d requested, using %d",
            ctx.where,
            len(others),
            train_shards,
            len(train_files),
        )
    return train_files, eval_file


def _list_parquet(ctx: HubContext, *, max_retries: int, backoff_s: float) -> tuple[str, list[RemoteFile]]:
    """Resolve the revision to a commit and list the repo's parquet files there, sorted by path."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=ctx.endpoint)

    def info() -> str:
        data = api.dataset_info(ctx.repo, revision=ctx.revision, timeout=30)
        return data.sha or ctx.revision or "main"

    commit = with_retries(
        info, action=f"looking up {ctx.where}", ctx=ctx, max_retries=max_retries, backoff_s=backoff_s
    )

    def tree() -> list[RemoteFile]:
        out = []
        for entry in api.list_repo_tree(ctx.repo, repo_type="dataset", revision=commit, recursive=True):
            if not hasattr(entry, "size") or not entry.path.lower().endswith(".parquet"):
                continue  # folders and other files
            lfs = getattr(entry, "lfs", None)
            out.append(
                RemoteFile(
                    path=entry.path,
                    size=int(lfs.size if lfs is not None else entry.size),
                    sha256=(lfs.sha256 if lfs is not None else None),
                    blob_id=getattr(entry, "blob_id", None),
                )
            )
        return sorted(out, key=lambda f: f.path)

    listing = with_retries(
        tree,
        action=f"listing the files of {ctx.where}",
        ctx=ctx,
        max_retries=max_retries,
        backoff_s=backoff_s,
    )
    return commit, listing


def _fetch(
    ctx: HubContext, commit: str, remote: RemoteFile, *, offline: bool, max_retries: int, backoff_s: float
) -> Path:
    """The verified local copy of ``remote``: from the cache when offline, else downloaded (or found cached)."""
    from huggingface_hub import hf_hub_download

    if offline:
        local = cached_file(ctx, commit, remote.path)
        if local is None:
            raise DataError(
                f"{remote.path} of {ctx.where} is no longer in the cache {ctx.cache_dir}; reconnect "
                f"(unset HF_HUB_OFFLINE) and rerun to download it"
            )
    else:
        local = Path(
            with_retries(
                lambda: hf_hub_download(
                    ctx.repo,
                    remote.path,
                    repo_type="dataset",
                    revision=commit,
                    cache_dir=str(ctx.cache_dir),
                    endpoint=ctx.endpoint,
                ),
                action=f"downloading {remote.path} from {ctx.where}",
                ctx=ctx,
                max_retries=max_retries,
                backoff_s=backoff_s,
            )
        )
    verify(local, remote, cache_dir=ctx.cache_dir, ctx=ctx)
    _check_text_column(local, remote.path, ctx)
    return local


def _check_text_column(path: Path, name: str, ctx: HubContext) -> None:
    try:
        open_parquet(path)
    except DataError as exc:
        raise DataError(
            f"{ctx.where}: shard {name} cannot be used: {exc}. This harness reads the 'text' column of "
            f"parquet shards; choose a dataset that has one, or convert it and pass --data <path>"
        ) from None


def _hf_documents(files: list[Path]) -> Iterator[str]:
    for path in files:
        yield from iter_parquet(path)


def _hf_eval_documents(path: Path, parity: int) -> Iterator[str]:
    for row, value in iter_parquet_rows(path):
        if row % 2 == parity and not is_empty(value):
            yield value  # type: ignore[misc]


def _build_hf_splits(
    ctx: HubContext,
    commit: str,
    train_files: list[RemoteFile],
    eval_file: RemoteFile,
    *,
    offline: bool,
    max_retries: int,
    backoff_s: float,
) -> SourceSplits:
    """Download (or find in the cache) and verify the chosen files, and build the splits."""
    ctx.cache_dir.mkdir(parents=True, exist_ok=True)

    def fetch(remote: RemoteFile) -> Path:
        return _fetch(ctx, commit, remote, offline=offline, max_retries=max_retries, backoff_s=backoff_s)

    train_paths = [fetch(f) for f in train_files]
    eval_path = fetch(eval_file)
    if not offline:
        save_plan(ctx, commit, train_files, eval_file)

    names = ", ".join(f.path for f in train_files)
    return SourceSplits(
        train=lambda: _hf_documents(train_paths),
        val=lambda: _hf_eval_documents(eval_path, 0),
        test=lambda: _hf_eval_documents(eval_path, 1),
        files=[*train_paths, eval_path],
        description=(
            f"hf:{ctx.repo}@{commit[:12]}"
            + (f" (from {ctx.revision})" if ctx.revision and ctx.revision != commit else "")
            + f" via {ctx.endpoint}: train = {names}; val/test = even/odd rows of {eval_file.path}"
            + (" [offline: cached copy]" if offline else "")
        ),
        details={
            "repo": ctx.repo,
            "revision": ctx.revision,
            "commit": commit,
            "endpoint": ctx.endpoint,
            "train_files": [f.to_json() for f in train_files],
            "eval_file": eval_file.to_json(),
        },
    )
