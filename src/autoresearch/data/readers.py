"""Reading documents out of ``.txt``, ``.jsonl`` and ``.parquet`` files.

* ``.txt``: UTF-8 text; a line that is exactly :data:`DOC_SEPARATOR` ends a document.
* ``.jsonl``: one JSON object per line, the document in its string field ``text``.
* ``.parquet``: the string column ``text``, streamed in record batches.

Invariants: the readers yield only non-empty documents (empty or whitespace-only ones are skipped) in
file order, and every malformed or unreadable input raises :class:`~autoresearch.data.spec.DataError`
naming the file (and, for ``.jsonl``, the line). Both :mod:`autoresearch.data.local` and
:mod:`autoresearch.data.hub` read files through this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from autoresearch.data.spec import SUPPORTED_SUFFIXES, DataError

__all__ = [
    "DOC_SEPARATOR",
    "is_empty",
    "iter_files",
    "iter_parquet",
    "iter_parquet_rows",
    "open_parquet",
]

#: A line consisting of exactly this text separates documents in a ``.txt`` file.
DOC_SEPARATOR = "<|endoftext|>"

_JSONL_FIX = 'each line of a .jsonl file must be one JSON object with a string field "text"'


def is_empty(text: object) -> bool:
    """True for anything that is not a document: a non-string, or a string of only whitespace."""
    return not isinstance(text, str) or not text.strip()


def _read_error(path: Path, exc: OSError) -> DataError:
    reason = exc.strerror or str(exc)
    return DataError(f"cannot read {path}: {reason}; check that the file exists and is readable")


def _not_utf8(path: Path, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{path} is not valid UTF-8 text ({exc.reason}); convert it to UTF-8")


def _iter_txt(path: Path) -> Iterator[str]:
    """Documents of a ``.txt`` file: split on lines that are exactly ``<|endoftext|>``."""
    try:
        with path.open("r", encoding="utf-8-sig") as f:
            lines: list[str] = []
            for line in f:
                if line.rstrip("\r\n") == DOC_SEPARATOR:
                    doc = "".join(lines).strip("\r\n")
                    lines = []
                    if not is_empty(doc):
                        yield doc
                else:
                    lines.append(line)
            doc = "".join(lines).strip("\r\n")
            if not is_empty(doc):
                yield doc
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except OSError as exc:
        raise _read_error(path, exc) from exc


def _jsonl_text(path: Path, lineno: int, line: str) -> str:
    """The ``text`` field of one ``.jsonl`` line, or a DataError naming the line and the problem."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg}); {_JSONL_FIX}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{lineno}: a JSON {type(obj).__name__}, not an object; {_JSONL_FIX}")
    if "text" not in obj:
        keys = ", ".join(sorted(map(str, obj))) or "none"
        raise DataError(f'{path}:{lineno}: no "text" field (fields: {keys}); {_JSONL_FIX}')
    value = obj["text"]
    if not isinstance(value, str):
        raise DataError(f'{path}:{lineno}: "text" is a {type(value).__name__}, not a string; {_JSONL_FIX}')
    return value


def _iter_jsonl(path: Path) -> Iterator[str]:
    """Documents of a ``.jsonl`` file: the string field ``text`` of each JSON object line."""
    try:
        with path.open("r", encoding="utf-8-sig") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                value = _jsonl_text(path, lineno, line)
                if not is_empty(value):
                    yield value
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc) from exc
    except OSError as exc:
        raise _read_error(path, exc) from exc


def open_parquet(path: Path) -> Any:
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


def iter_parquet_rows(path: Path, batch_size: int = 1024) -> Iterator[tuple[int, object]]:
    """``(row_index, text_value)`` for every row of the ``text`` column, streamed in record batches."""
    import pyarrow as pa

    pf = open_parquet(path)
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


def iter_parquet(path: Path) -> Iterator[str]:
    """Documents of a ``.parquet`` file: the non-empty values of its ``text`` column."""
    for _, value in iter_parquet_rows(path):
        if not is_empty(value):
            yield value  # type: ignore[misc]


_READERS: dict[str, Callable[[Path], Iterator[str]]] = {
    ".txt": _iter_txt,
    ".jsonl": _iter_jsonl,
    ".parquet": iter_parquet,
}
assert set(_READERS) == set(SUPPORTED_SUFFIXES)


def iter_files(files: Iterable[Path]) -> Iterator[str]:
    """The documents of ``files`` in order, each read by the reader of its (lower-cased) suffix."""
    for path in files:
        yield from _READERS[path.suffix.lower()](path)
