"""Real-data sources for ``autoresearch prepare --data``.

This module turns the ``--data`` argument into three document streams (train, val, test):

* :func:`parse_data_spec` parses ``builtin``, ``hf:owner/name[@revision]`` or a local path.
* :func:`local_splits` reads ``.txt`` / ``.jsonl`` / ``.parquet`` files (or a folder of them) and assigns
  every document to a split by a hash of its content.
* :func:`hf_splits` downloads parquet shards of a Hugging Face dataset repo (with retries and checksum
  verification) and splits them by file: the last shard in sorted order is the pinned evaluation shard.

Every failure a user can cause or fix raises :class:`DataError`, whose message says what went wrong and
what to do about it. The split rules are documented in ``docs/data.md`` ("Real data").
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "DOC_SEPARATOR",
    "SUPPORTED_SUFFIXES",
    "DataError",
    "DataSpec",
    "SourceSplits",
    "hf_splits",
    "local_splits",
    "parse_data_spec",
]

logger = logging.getLogger(__name__)

#: A line consisting of exactly this text separates documents in a ``.txt`` file.
DOC_SEPARATOR = "<|endoftext|>"
#: File types read by :func:`local_splits` (matched case-insensitively).
SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".parquet")

DEFAULT_ENDPOINT = "https://huggingface.co"

ACCEPTED_FORMS = (
    "accepted forms: 'builtin' (the built-in corpus); 'hf:owner/name' or 'hf:owner/name@revision' "
    "(a Hugging Face dataset repo of parquet files with a 'text' column); or the path of a .txt, .jsonl "
    "or .parquet file, or of a folder holding such files"
)

_T = TypeVar("_T")


class DataError(Exception):
    """A data-source failure the user can act on. The message names the problem and the fix."""


class _UnreachableError(DataError):
    """Internal: the Hub could not be reached after retries (a cached copy may still be used)."""


# --------------------------------------------------------------------------------------------------
# The --data argument
# --------------------------------------------------------------------------------------------------

_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
_URL_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def _short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _safe_name(text: str) -> str:
    """Filesystem-safe rendering of ``text``; a short hash is appended when characters were replaced."""
    safe = _UNSAFE_KEY_CHARS.sub("_", text).strip("._") or "_"
    if safe != text:
        safe = f"{safe}-{_short_hash(text, 6)}"
    return safe


@dataclass(frozen=True)
class DataSpec:
    """Parsed form of the ``--data`` argument (see :func:`parse_data_spec`).

    ``kind`` is ``"builtin"``, ``"hf"`` or ``"local"``. ``repo``/``revision`` are set for ``hf`` only
    (``revision=None`` means the repo's default branch); ``path`` (absolute, resolved) for ``local`` only.
    """

    kind: str
    repo: str | None = None
    revision: str | None = None
    path: Path | None = None

    def key(self) -> str:
        """Short, stable, filesystem-safe string identifying the source, for cache folder names.

        ``builtin`` -> ``"builtin"``; ``hf:owner/name@rev`` -> ``"hf-owner--name@rev"`` (the revision part
        only when given); a local path -> ``"local-<name>-<hash of the absolute path>"``. The key names
        the source, not its content: edited local files keep their key.
        """
        if self.kind == "builtin":
            return "builtin"
        if self.kind == "hf":
            assert self.repo is not None
            key = "hf-" + self.repo.replace("/", "--")
            if self.revision:
                key += "@" + _safe_name(self.revision)
            return key
        if self.kind == "local":
            assert self.path is not None
            name = _UNSAFE_KEY_CHARS.sub("_", self.path.name).strip("._")[:40] or "root"
            return f"local-{name}-{_short_hash(str(self.path))}"
        raise ValueError(f"unknown DataSpec kind {self.kind!r}")


def parse_data_spec(text: str) -> DataSpec:
    """Parse the ``--data`` argument.

    * ``"builtin"`` -> ``DataSpec("builtin")``.
    * ``"hf:owner/name"`` or ``"hf:owner/name@revision"`` -> ``DataSpec("hf", repo, revision)``.
    * anything else is a local path (``~`` expanded) that must exist: a file ending in ``.txt``,
      ``.jsonl`` or ``.parquet``, or a folder (its contents are checked by :func:`local_splits`).
      A local folder literally named ``builtin`` can be given as ``./builtin``.

    Raises:
        DataError: for an empty value, a URL (``s3://...``), a malformed ``hf:`` form, a missing path or
            an unsupported file type; the message lists the accepted forms.
    """
    raw = text.strip()
    if not raw:
        raise DataError(f"--data is empty; {ACCEPTED_FORMS}")
    if raw == "builtin":
        return DataSpec(kind="builtin")
    if raw[:3].lower() == "hf:":
        body = raw[3:]
        repo, sep, revision = body.partition("@")
        if (
            not _REPO_RE.match(repo)
            or "--" in repo
            or ".." in repo
            or (sep and (not revision or re.search(r"\s", revision)))
        ):
            raise DataError(
                f"invalid Hugging Face dataset {raw!r}: expected hf:owner/name or hf:owner/name@revision "
                f"(for example hf:roneneldan/TinyStories); {ACCEPTED_FORMS}"
            )
        return DataSpec(kind="hf", repo=repo, revision=revision if sep else None)
    if _URL_SCHEME_RE.match(raw):
        raise DataError(
            f"unsupported data source {raw!r}: URLs are not read directly (download the files first); "
            f"{ACCEPTED_FORMS}"
        )
    path = Path(raw).expanduser().resolve()
    if not path.exists():
        raise DataError(f"no such file or folder: {path}; {ACCEPTED_FORMS}")
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise DataError(f"unsupported file type {path.suffix or '(none)'!r} for {path}; {ACCEPTED_FORMS}")
    elif not path.is_dir():
        raise DataError(f"{path} is neither a regular file nor a folder; {ACCEPTED_FORMS}")
    return DataSpec(kind="local", path=path)


@dataclass(frozen=True)
class SourceSplits:
    """The three document streams of a data source.

    ``train``/``val``/``test`` each return a *fresh* iterator over document texts (non-empty strings)
    on every call, in a deterministic order. ``files`` are the source files read (absolute paths, in
    reading order) and ``description`` is one human-readable line about where the data came from.
    """

    train: Callable[[], Iterator[str]]
    val: Callable[[], Iterator[str]]
    test: Callable[[], Iterator[str]]
    files: list[Path]
    description: str
    #: Extra facts for a manifest (document counts, commit, checksums); informational only.
    details: dict[str, Any] = field(default_factory=dict, compare=False)


# --------------------------------------------------------------------------------------------------
# Reading documents from files
# --------------------------------------------------------------------------------------------------


def _is_empty(text: object) -> bool:
    return not isinstance(text, str) or not text.strip()


def _read_error(path: Path, exc: OSError) -> DataError:
    reason = exc.strerror or str(exc)
    return DataError(f"cannot read {path}: {reason}; check that the file exists and is readable")


def _iter_txt(path: Path) -> Iterator[str]:
    """Documents of a ``.txt`` file: split on lines that are exactly ``<|endoftext|>``."""
    try:
        with path.open("r", encoding="utf-8-sig") as f:
            lines: list[str] = []
            for line in f:
                if line.rstrip("\r\n") == DOC_SEPARATOR:
                    doc = "".join(lines).strip("\r\n")
                    lines = []
                    if not _is_empty(doc):
                        yield doc
                else:
                    lines.append(line)
            doc = "".join(lines).strip("\r\n")
            if not _is_empty(doc):
                yield doc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not valid UTF-8 text ({exc.reason}); convert it to UTF-8") from exc
    except OSError as exc:
        raise _read_error(path, exc) from exc


def _iter_jsonl(path: Path) -> Iterator[str]:
    """Documents of a ``.jsonl`` file: the string field ``text`` of each JSON object line."""
    fix = 'each line of a .jsonl file must be one JSON object with a string field "text"'
    try:
        with path.open("r", encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}); {fix}") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{lineno}: a JSON {type(obj).__name__}, not an object; {fix}")
                if "text" not in obj:
                    keys = ", ".join(sorted(map(str, obj))) or "none"
                    raise DataError(f'{path}:{lineno}: no "text" field (fields: {keys}); {fix}')
                value = obj["text"]
                if not isinstance(value, str):
                    raise DataError(
                        f'{path}:{lineno}: "text" is a {type(value).__name__}, not a string; {fix}'
                    )
                if not _is_empty(value):
                    yield value
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not valid UTF-8 text ({exc.reason}); convert it to UTF-8") from exc
    except OSError as exc:
        raise _read_error(path, exc) from exc


def _open_parquet(path: Path) -> Any:
    """Open ``path`` with pyarrow and check that it has a string column ``text``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except OSError as exc:  # FileNotFoundError, PermissionError
        if exc.errno is not None:
            raise _read_error(path, exc) from exc
        raise DataError(
            f"{path} is not a readable parquet file ({exc}); re-create or re-download it"
        ) from exc
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(
            f"{path} is not a readable parquet file ({exc}); re-create or re-download it"
        ) from exc
    schema = pf.schema_arrow
    if "text" not in schema.names:
        columns = ", ".join(schema.names) or "none"
        raise DataError(
            f"{path} has no 'text' column (columns: {columns}); put each document's text in a string "
            f"column named 'text'"
        )
    col_type = schema.field("text").type
    if not (
        pa.types.is_string(col_type) or pa.types.is_large_string(col_type) or str(col_type) == "string_view"
    ):
        raise DataError(
            f"{path}: column 'text' has type {col_type}, not string; store the documents as strings"
        )
    return pf


def _iter_parquet_rows(path: Path, batch_size: int = 1024) -> Iterator[tuple[int, object]]:
    """``(row_index, text_value)`` for every row of the ``text`` column, streamed in record batches."""
    import pyarrow as pa

    pf = _open_parquet(path)
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_size, columns=["text"]):
            for value in batch.column(0).to_pylist():
                yield row, value
                row += 1
    except (pa.ArrowException, OSError) as exc:
        raise DataError(
            f"{path}: error while reading parquet data ({exc}); re-create or re-download it"
        ) from exc


def _iter_parquet(path: Path) -> Iterator[str]:
    for _, value in _iter_parquet_rows(path):
        if not _is_empty(value):
            yield value  # type: ignore[misc]


_READERS: dict[str, Callable[[Path], Iterator[str]]] = {
    ".txt": _iter_txt,
    ".jsonl": _iter_jsonl,
    ".parquet": _iter_parquet,
}


def _iter_files(files: Iterable[Path]) -> Iterator[str]:
    for path in files:
        yield from _READERS[path.suffix.lower()](path)


def _collect_files(path: Path) -> list[Path]:
    """The supported files at ``path``: the file itself, or a folder's files found recursively.

    A folder is walked recursively; hidden names (starting with ``.``) are skipped, as are files of other
    types. Files are sorted by their path relative to the folder, so the order does not depend on the
    file system.
    """
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise DataError(f"unsupported file type {path.suffix or '(none)'!r} for {path}; {ACCEPTED_FORMS}")
        return [path]
    if not path.is_dir():
        raise DataError(f"no such file or folder: {path}; {ACCEPTED_FORMS}")
    found: list[tuple[tuple[str, ...], Path]] = []
    others: list[str] = []
    for root, dirs, names in os.walk(path, onerror=None):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in names:
            if name.startswith("."):
                continue
            full = Path(root) / name
            rel = full.relative_to(path)
            if full.suffix.lower() in SUPPORTED_SUFFIXES:
                found.append((rel.parts, full))
            else:
                others.append(rel.as_posix())
    if not found:
        seen = (
            f" (found only: {', '.join(sorted(others)[:5])}{', ...' if len(others) > 5 else ''})"
            if others
            else ""
        )
        raise DataError(
            f"no .txt, .jsonl or .parquet files in {path}{seen}; put the documents in files of those types"
        )
    return [full for _, full in sorted(found)]


# --------------------------------------------------------------------------------------------------
# Local data: content-hash split
# --------------------------------------------------------------------------------------------------

_KEY_BITS = 63  # document keys are non-negative int64 values


def _doc_key(text: str) -> int:
    """Stable 63-bit key of a document's content (blake2b of its UTF-8 bytes)."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _KEY_BITS)


def _split_cutoffs(
    keys: np.ndarray, val_fraction: float, test_fraction: float, min_eval_docs: int
) -> tuple[int, int]:
    """Key cutoffs ``(c_val, c_test)``: val is ``key <= c_val``, test ``c_val < key <= c_test``, train the rest.

    The fractions give thresholds on the uniform key; each evaluation split is then widened to the
    ``min_eval_docs`` lowest keys it can take if the threshold alone gives it fewer documents.
    ``keys`` must be sorted. Returns cutoffs only; the caller checks the resulting counts.
    """
    scale = 2**_KEY_BITS
    c_val = int(val_fraction * scale) - 1
    c_test = int((val_fraction + test_fraction) * scale) - 1
    m = max(min_eval_docs, 1)
    if len(keys) >= m:
        c_val = max(c_val, int(keys[m - 1]))
    n_val = int(np.searchsorted(keys, c_val, side="right")) if c_val >= 0 else 0
    rest = keys[n_val:]
    c_test = max(c_test, c_val)
    if len(rest) >= m:
        c_test = max(c_test, int(rest[m - 1]))
    return c_val, c_test


def local_splits(
    path: Path,
    *,
    val_fraction: float = 0.01,
    test_fraction: float = 0.01,
    min_eval_docs: int = 1,
) -> SourceSplits:
    """Split local documents into train/val/test by a hash of each document's content.

    ``path`` is a ``.txt``, ``.jsonl`` or ``.parquet`` file or a folder of such files (see
    ``docs/data.md`` for how each type is cut into documents). Documents that are empty or only
    whitespace are skipped. A document goes to val if its content key (a 63-bit blake2b hash, read as a
    fraction of the key space) is below ``val_fraction``, to test if below
    ``val_fraction + test_fraction``, else to train. If that leaves val (then test) with fewer than
    ``min_eval_docs`` documents (at least 1), it takes the documents with the lowest keys instead.
    Identical documents therefore always land in the same split, and the result does not depend on file
    order. Each split iterates documents in file order (files sorted by relative path).

    All files are read once here, so every input error is raised now rather than mid-stream.

    Raises:
        DataError: unreadable file, malformed ``.jsonl`` line (file and line number named), parquet
            without a string ``text`` column (its columns named), a folder without supported files,
            invalid fractions, or too few documents to give train, val and test each at least
            one document (``min_eval_docs`` for val and test).
    """
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise DataError(
            f"invalid split fractions val={val_fraction}, test={test_fraction}: each must be in [0, 1) and "
            f"their sum below 1"
        )
    if min_eval_docs < 0:
        raise DataError(f"invalid min_eval_docs={min_eval_docs}: must be 0 or more")
    path = Path(path).expanduser().resolve()
    files = _collect_files(path)

    keys = np.fromiter((_doc_key(doc) for doc in _iter_files(files)), dtype=np.int64)
    keys.sort()
    n_docs = len(keys)
    c_val, c_test = _split_cutoffs(keys, val_fraction, test_fraction, min_eval_docs)
    n_val = int(np.searchsorted(keys, c_val, side="right")) if c_val >= 0 else 0
    n_test = int(np.searchsorted(keys, c_test, side="right")) - n_val
    n_train = n_docs - n_val - n_test
    need = max(min_eval_docs, 1)
    if n_val < need or n_test < need or n_train < 1:
        distinct = len(np.unique(keys))
        raise DataError(
            f"too little data in {path}: {n_docs} non-empty documents ({distinct} distinct) cannot fill "
            f"train, val and test (val and test need {need} each, train at least 1; got "
            f"train={n_train}, val={n_val}, test={n_test}); add more documents"
            + (
                f", or separate the documents of a .txt file with lines that are exactly {DOC_SEPARATOR}"
                if any(f.suffix.lower() == ".txt" for f in files)
                else ""
            )
        )

    def make(lo: int, hi: int | None) -> Callable[[], Iterator[str]]:
        def iterate() -> Iterator[str]:
            for doc in _iter_files(files):
                k = _doc_key(doc)
                if k > lo and (hi is None or k <= hi):
                    yield doc

        return iterate

    where = str(path) if len(files) == 1 else f"{path} ({len(files)} files)"
    return SourceSplits(
        train=make(c_test, None),
        val=make(-1, c_val),
        test=make(c_val, c_test),
        files=list(files),
        description=(
            f"local {where}: {n_docs} documents split by content hash "
            f"(train {n_train}, val {n_val}, test {n_test})"
        ),
        details={"documents": {"train": n_train, "val": n_val, "test": n_test}},
    )


# --------------------------------------------------------------------------------------------------
# Hugging Face datasets
# --------------------------------------------------------------------------------------------------

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_TRANSIENT_NAMES = {
    "TransportError",
    "NetworkError",
    "TimeoutException",
    "RemoteProtocolError",
    "ProtocolError",
    "ChunkedEncodingError",
    "Timeout",
    "ReadTimeoutError",
}
_MAX_BACKOFF_S = 60.0


def _resolve_endpoint(endpoint: str | None) -> str:
    """The Hub URL to use: ``endpoint``, else ``$HF_ENDPOINT`` (read now), else huggingface.co."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes/contexts, nearest first."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(out) < 16:
        e = todo.pop(0)
        if e is None or any(e is o for o in out):
            continue
        out.append(e)
        todo += [e.__cause__, e.__context__]
    return out


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _summary(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return first[:200]


@dataclass
class _HubContext:
    """What a Hub error message needs to name."""

    repo: str
    revision: str | None
    endpoint: str
    cache_dir: Path

    @property
    def where(self) -> str:
        return f"hf:{self.repo}" + (f"@{self.revision}" if self.revision else "")


class _Transient(Exception):
    """Internal: a failure worth retrying; ``reason`` says what it was."""

    def __init__(self, reason: str, connection: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.connection = connection


class _NeverRaised(Exception):
    """Stand-in for an exception class that the installed huggingface_hub does not define."""


def _hub_errors() -> dict[str, type[BaseException]]:
    """huggingface_hub's exception classes, wherever this version defines them."""
    import huggingface_hub.utils as hf_utils

    try:
        import huggingface_hub.errors as hf_errors
    except ImportError:  # huggingface_hub < 0.23
        hf_errors = hf_utils  # type: ignore[assignment]
    names = (
        "OfflineModeIsEnabled",
        "GatedRepoError",
        "DisabledRepoError",
        "RevisionNotFoundError",
        "RepositoryNotFoundError",
        "RemoteEntryNotFoundError",
        "EntryNotFoundError",
        "HfHubHTTPError",
    )
    found: dict[str, type[BaseException]] = {}
    for name in names:
        found[name] = getattr(hf_errors, name, None) or getattr(hf_utils, name, None) or _NeverRaised
    if found["RemoteEntryNotFoundError"] is _NeverRaised:  # older versions: one EntryNotFoundError
        found["RemoteEntryNotFoundError"] = found["EntryNotFoundError"]
    return found


def _classify(exc: BaseException, ctx: _HubContext, action: str) -> DataError | _Transient | None:
    """Map a huggingface_hub / HTTP failure to a final DataError, a retryable _Transient, or None (a bug)."""
    errs = _hub_errors()
    OfflineModeIsEnabled = errs["OfflineModeIsEnabled"]  # noqa: N806
    GatedRepoError = errs["GatedRepoError"]  # noqa: N806
    DisabledRepoError = errs["DisabledRepoError"]  # noqa: N806
    RevisionNotFoundError = errs["RevisionNotFoundError"]  # noqa: N806
    RepositoryNotFoundError = errs["RepositoryNotFoundError"]  # noqa: N806
    _EntryMissing = errs["RemoteEntryNotFoundError"]  # noqa: N806
    HfHubHTTPError = errs["HfHubHTTPError"]  # noqa: N806

    page = f"{ctx.endpoint}/datasets/{ctx.repo}"
    chain = _chain(exc)
    for e in chain:
        if isinstance(e, OfflineModeIsEnabled):
            return DataError(
                f"HF_HUB_OFFLINE is set and {ctx.where} is not fully in the cache {ctx.cache_dir}: unset "
                f"HF_HUB_OFFLINE to download it, or use --data <path> with a local copy"
            )
        if isinstance(e, GatedRepoError):
            return DataError(
                f"{ctx.where} is a gated dataset: accept its terms at {page} while logged in, then set "
                f"HF_TOKEN to an access token of that account"
            )
        if isinstance(e, DisabledRepoError):
            return DataError(f"{ctx.where} is disabled on the Hub; use another dataset or --data <path>")
        if isinstance(e, RevisionNotFoundError):
            return DataError(
                f"revision {ctx.revision or 'main'!r} not found in {ctx.where}: check the part after '@' "
                f"(a branch, tag or commit), or leave it out to use the default branch"
            )
        if isinstance(e, RepositoryNotFoundError):
            return DataError(
                f"dataset not found: {ctx.where} does not exist at {ctx.endpoint} or is private; check the "
                f"repo name (owner/name, as in {page}); for a private or gated dataset set HF_TOKEN"
            )
        if isinstance(e, _EntryMissing) and _status(e) == 404:
            return DataError(
                f"{action}: the file is missing from {ctx.where} (HTTP 404); the repo may have changed "
                f"since it was listed: rerun the command"
            )
        if isinstance(e, HfHubHTTPError):
            status = _status(e)
            if status in (401, 403):
                return DataError(
                    f"access to {ctx.where} refused (HTTP {status}) while {action}: set HF_TOKEN to an access "
                    f"token that can read it"
                )
            if status is not None and (status in _RETRY_STATUS or status >= 500):
                return _Transient(f"HTTP {status}", connection=False)
            if status == 404:
                return DataError(
                    f"dataset not found: {ctx.where} at {ctx.endpoint} (HTTP 404 while {action}); check the "
                    f"repo name and HF_ENDPOINT"
                )
    for e in chain:
        if type(e).__name__ == "FileMetadataError":
            return DataError(
                f"{ctx.endpoint} does not answer like a Hugging Face Hub ({_summary(e)}); fix HF_ENDPOINT "
                f"or use --data <path>"
            )
        names = {cls.__name__ for cls in type(e).__mro__}
        if names & {"ConnectError", "ConnectTimeout", "NameResolutionError", "NewConnectionError"}:
            return _Transient(_summary(e), connection=True)
        if names & _TRANSIENT_NAMES or isinstance(e, (ConnectionError, TimeoutError)):
            return _Transient(_summary(e), connection=isinstance(e, ConnectionError))
        if isinstance(e, OSError) and "Consistency check failed" in str(e):
            return _Transient("incomplete download", connection=False)
    return None


def _with_retries(
    fn: Callable[[], _T], *, action: str, ctx: _HubContext, max_retries: int, backoff_s: float
) -> _T:
    """Call ``fn``; retry transient failures with exponential backoff (``backoff_s * 2**attempt``).

    404/auth-type failures become a :class:`DataError` at once. After ``max_retries`` retries a transient
    failure becomes a DataError saying the endpoint could not be reached.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except DataError:
            raise
        except Exception as exc:
            verdict = _classify(exc, ctx, action)
            if verdict is None:
                raise
            if isinstance(verdict, DataError):
                raise verdict from exc
            if attempt >= max_retries:
                raise _UnreachableError(
                    f"could not reach {ctx.endpoint} while {action}: {verdict.reason} "
                    f"({attempt + 1} attempt{'s' if attempt else ''}); check the network, set HF_ENDPOINT to a "
                    f"reachable Hub mirror, set HF_HUB_OFFLINE=1 to use a copy downloaded before, or use "
                    f"--data <path> with a local copy"
                ) from exc
            delay = min(backoff_s * (2**attempt), _MAX_BACKOFF_S)
            logger.warning(
                "%s: %s; retrying in %.1fs (%d/%d)", action, verdict.reason, delay, attempt + 1, max_retries
            )
            time.sleep(delay)
            attempt += 1


@dataclass(frozen=True)
class _RemoteFile:
    """One parquet file of the listing, with what is needed to verify it."""

    path: str
    size: int
    sha256: str | None  # LFS sha256 (None for a file stored in plain git)
    blob_id: str | None  # git object id

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "blob_id": self.blob_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _RemoteFile:
        return cls(
            path=data["path"], size=int(data["size"]), sha256=data.get("sha256"), blob_id=data.get("blob_id")
        )


def _state_dir(cache_dir: Path) -> Path:
    return cache_dir / "autoresearch-sources"


def _record_path(cache_dir: Path, repo: str, revision: str | None) -> Path:
    return _state_dir(cache_dir) / f"{DataSpec('hf', repo=repo, revision=revision).key()}.json"


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


def _delete_download(local: Path, remote: _RemoteFile, cache_dir: Path, repo: str) -> None:
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


def _verify(local: Path, remote: _RemoteFile, *, cache_dir: Path, ctx: _HubContext) -> None:
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
    marker = _state_dir(cache_dir) / "verified" / f"{expected or _short_hash(remote.path, 16)}.json"
    stamp = {"path": str(Path(os.path.realpath(local))), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        if json.loads(marker.read_text()) == stamp:
            return
    except (OSError, ValueError):
        pass

    size, sha256, git_oid = _file_digests(local)
    problem = None
    if size != remote.size:
        problem = f"size {size} bytes, expected {remote.size}"
    elif remote.sha256 and sha256 != remote.sha256:
        problem = f"sha256 {sha256}, expected {remote.sha256}"
    elif not remote.sha256 and remote.blob_id and git_oid != remote.blob_id:
        problem = f"git object id {git_oid}, expected {remote.blob_id}"
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


def _check_text_column(path: Path, name: str, ctx: _HubContext) -> None:
    try:
        _open_parquet(path)
    except DataError as exc:
        raise DataError(
            f"{ctx.where}: shard {name} cannot be used: {exc}. This harness reads the 'text' column of "
            f"parquet shards; choose a dataset that has one, or convert it and pass --data <path>"
        ) from None


def _hf_documents(files: list[Path]) -> Iterator[str]:
    for path in files:
        yield from _iter_parquet(path)


def _hf_eval_documents(path: Path, parity: int) -> Iterator[str]:
    for row, value in _iter_parquet_rows(path):
        if row % 2 == parity and not _is_empty(value):
            yield value  # type: ignore[misc]


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
    ctx = _HubContext(repo=repo, revision=revision, endpoint=_resolve_endpoint(endpoint), cache_dir=cache_dir)

    if _offline():
        plan = _cached_plan(ctx, train_shards)
        if plan is None:
            raise DataError(
                f"HF_HUB_OFFLINE is set and {ctx.where} has not been downloaded to {cache_dir} before: unset "
                f"HF_HUB_OFFLINE to download it, or use --data <path> with a local copy"
            )
        return _build_hf_splits(ctx, *plan, offline=True, max_retries=max_retries, backoff_s=backoff_s)

    try:
        commit, listing = _list_parquet(ctx, max_retries=max_retries, backoff_s=backoff_s)
    except _UnreachableError as exc:
        plan = _cached_plan(ctx, train_shards)
        if plan is None:
            raise
        logger.warning("%s; using the copy of %s downloaded before", exc, ctx.where)
        return _build_hf_splits(ctx, *plan, offline=True, max_retries=max_retries, backoff_s=backoff_s)

    if not listing:
        raise DataError(
            f"{ctx.where} has no .parquet files; use a dataset stored as parquet (many have a parquet "
            f"conversion: try hf:{repo}@refs/convert/parquet), or download it and pass --data <path>"
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
    return _build_hf_splits(
        ctx, commit, train_files, eval_file, offline=False, max_retries=max_retries, backoff_s=backoff_s
    )


def _list_parquet(ctx: _HubContext, *, max_retries: int, backoff_s: float) -> tuple[str, list[_RemoteFile]]:
    """Resolve the revision to a commit and list the repo's parquet files there, sorted by path."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=ctx.endpoint)

    def info() -> str:
        data = api.dataset_info(ctx.repo, revision=ctx.revision, timeout=30)
        return data.sha or ctx.revision or "main"

    commit = _with_retries(
        info, action=f"looking up {ctx.where}", ctx=ctx, max_retries=max_retries, backoff_s=backoff_s
    )

    def tree() -> list[_RemoteFile]:
        out = []
        for entry in api.list_repo_tree(ctx.repo, repo_type="dataset", revision=commit, recursive=True):
            if not hasattr(entry, "size") or not entry.path.lower().endswith(".parquet"):
                continue  # folders and other files
            lfs = getattr(entry, "lfs", None)
            out.append(
                _RemoteFile(
                    path=entry.path,
                    size=int(lfs.size if lfs is not None else entry.size),
                    sha256=(lfs.sha256 if lfs is not None else None),
                    blob_id=getattr(entry, "blob_id", None),
                )
            )
        return sorted(out, key=lambda f: f.path)

    listing = _with_retries(
        tree,
        action=f"listing the files of {ctx.where}",
        ctx=ctx,
        max_retries=max_retries,
        backoff_s=backoff_s,
    )
    return commit, listing


def _cached_plan(ctx: _HubContext, train_shards: int) -> tuple[str, list[_RemoteFile], _RemoteFile] | None:
    """The plan of a previous successful call for this repo/revision, if all its files are still cached."""
    from huggingface_hub import try_to_load_from_cache

    try:
        record = json.loads(_record_path(ctx.cache_dir, ctx.repo, ctx.revision).read_text())
        commit = record["commit"]
        train = [_RemoteFile.from_json(d) for d in record["train"]][:train_shards]
        eval_file = _RemoteFile.from_json(record["eval"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if record.get("repo") != ctx.repo or not train:
        return None
    for f in [*train, eval_file]:
        hit = try_to_load_from_cache(
            ctx.repo, f.path, cache_dir=str(ctx.cache_dir), revision=commit, repo_type="dataset"
        )
        if not isinstance(hit, str):
            return None
    return commit, train, eval_file


def _build_hf_splits(
    ctx: _HubContext,
    commit: str,
    train_files: list[_RemoteFile],
    eval_file: _RemoteFile,
    *,
    offline: bool,
    max_retries: int,
    backoff_s: float,
) -> SourceSplits:
    """Download (or find in the cache) and verify the chosen files, and build the splits."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    def fetch(remote: _RemoteFile) -> Path:
        if offline:
            hit = try_to_load_from_cache(
                ctx.repo, remote.path, cache_dir=str(ctx.cache_dir), revision=commit, repo_type="dataset"
            )
            if not isinstance(hit, str):
                raise DataError(
                    f"{remote.path} of {ctx.where} is no longer in the cache {ctx.cache_dir}; reconnect "
                    f"(unset HF_HUB_OFFLINE) and rerun to download it"
                )
            local = Path(hit)
        else:
            local = Path(
                _with_retries(
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
        _verify(local, remote, cache_dir=ctx.cache_dir, ctx=ctx)
        _check_text_column(local, remote.path, ctx)
        return local

    ctx.cache_dir.mkdir(parents=True, exist_ok=True)
    train_paths = [fetch(f) for f in train_files]
    eval_path = fetch(eval_file)

    if not offline:
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
