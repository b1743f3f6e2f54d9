"""Local data for ``--data <path>``: a file or a folder of files, split by a hash of each document.

:func:`local_splits` collects the supported files at a path (a folder is walked recursively, hidden
names skipped, files sorted by relative path), reads their documents with
:mod:`autoresearch.data.readers`, and assigns every document to train, val or test by a 63-bit key of its
content.

Invariants: identical documents always land in the same split, and the split does not depend on file
order or on the file system; all files are read once up front, so every input error is raised before
any split is iterated. The split rules are documented in ``docs/data.md`` ("Real data").
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from autoresearch.data.readers import DOC_SEPARATOR, iter_files
from autoresearch.data.spec import ACCEPTED_FORMS, SUPPORTED_SUFFIXES, DataError, SourceSplits, check_suffix

__all__ = ["local_splits"]

_KEY_BITS = 63  # document keys are non-negative int64 values


def _collect_files(path: Path) -> list[Path]:
    """The supported files at ``path``: the file itself, or a folder's files found recursively.

    A folder is walked recursively; hidden names (starting with ``.``) are skipped, as are files of other
    types. Files are sorted by their path relative to the folder, so the order does not depend on the
    file system.
    """
    if path.is_file():
        check_suffix(path)
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


def _check_split_settings(val_fraction: float, test_fraction: float, min_eval_docs: int) -> None:
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise DataError(
            f"invalid split fractions val={val_fraction}, test={test_fraction}: each must be in [0, 1) and "
            f"their sum below 1"
        )
    if min_eval_docs < 0:
        raise DataError(f"invalid min_eval_docs={min_eval_docs}: must be 0 or more")


def _split_counts(keys: np.ndarray, c_val: int, c_test: int) -> tuple[int, int, int]:
    """``(train, val, test)`` document counts of the sorted ``keys`` under the cutoffs."""
    n_val = int(np.searchsorted(keys, c_val, side="right")) if c_val >= 0 else 0
    n_test = int(np.searchsorted(keys, c_test, side="right")) - n_val
    return len(keys) - n_val - n_test, n_val, n_test


def _too_little_data(
    path: Path, files: list[Path], keys: np.ndarray, counts: tuple[int, int, int], need: int
) -> DataError:
    n_train, n_val, n_test = counts
    distinct = len(np.unique(keys))
    return DataError(
        f"too little data in {path}: {len(keys)} non-empty documents ({distinct} distinct) cannot fill "
        f"train, val and test (val and test need {need} each, train at least 1; got "
        f"train={n_train}, val={n_val}, test={n_test}); add more documents"
        + (
            f", or separate the documents of a .txt file with lines that are exactly {DOC_SEPARATOR}"
            if any(f.suffix.lower() == ".txt" for f in files)
            else ""
        )
    )


def _key_range(files: list[Path], lo: int, hi: int | None) -> Callable[[], Iterator[str]]:
    """A split: a fresh iterator, on each call, over the documents with ``lo < key <= hi`` (no upper bound
    when ``hi`` is None), in file order."""

    def iterate() -> Iterator[str]:
        for doc in iter_files(files):
            k = _doc_key(doc)
            if k > lo and (hi is None or k <= hi):
                yield doc

    return iterate


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
    _check_split_settings(val_fraction, test_fraction, min_eval_docs)
    path = Path(path).expanduser().resolve()
    files = _collect_files(path)

    keys = np.fromiter((_doc_key(doc) for doc in iter_files(files)), dtype=np.int64)
    keys.sort()
    c_val, c_test = _split_cutoffs(keys, val_fraction, test_fraction, min_eval_docs)
    n_train, n_val, n_test = counts = _split_counts(keys, c_val, c_test)
    need = max(min_eval_docs, 1)
    if n_val < need or n_test < need or n_train < 1:
        raise _too_little_data(path, files, keys, counts, need)

    where = str(path) if len(files) == 1 else f"{path} ({len(files)} files)"
    return SourceSplits(
        train=_key_range(files, c_test, None),
        val=_key_range(files, -1, c_val),
        test=_key_range(files, c_val, c_test),
        files=list(files),
        description=(
            f"local {where}: {len(keys)} documents split by content hash "
            f"(train {n_train}, val {n_val}, test {n_test})"
        ),
        details={"documents": {"train": n_train, "val": n_val, "test": n_test}},
    )
