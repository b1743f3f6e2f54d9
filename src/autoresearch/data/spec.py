"""The ``--data`` argument and the types every data source shares.

* :func:`parse_data_spec` parses ``builtin``, ``hf:owner/name[@revision]`` or a local path into a
  :class:`DataSpec`, whose :meth:`DataSpec.key` names the source in cache folder names.
* :class:`SourceSplits` is what a real-data source returns: three document streams (train, val, test).
  Local files are read by :mod:`autoresearch.data.local`, Hugging Face datasets by
  :mod:`autoresearch.data.hub`.

Invariants: every failure a user can cause or fix raises :class:`DataError`, whose message says what went
wrong and what to do about it; a spec's key is stable (it names the source, not its content) and safe as
a file name. The split rules are documented in ``docs/data.md`` ("Real data").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ACCEPTED_FORMS",
    "SUPPORTED_SUFFIXES",
    "DataError",
    "DataSpec",
    "SourceSplits",
    "check_suffix",
    "parse_data_spec",
    "short_hash",
]

#: File types read by :func:`autoresearch.data.local.local_splits` (matched case-insensitively).
SUPPORTED_SUFFIXES = (".txt", ".jsonl", ".parquet")

ACCEPTED_FORMS = (
    "accepted forms: 'builtin' (the built-in corpus); 'hf:owner/name' or 'hf:owner/name@revision' "
    "(a Hugging Face dataset repo of parquet files with a 'text' column); or the path of a .txt, .jsonl "
    "or .parquet file, or of a folder holding such files"
)


class DataError(Exception):
    """A data-source failure the user can act on. The message names the problem and the fix."""


_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_RE = re.compile(rf"^{_REPO_PART}/{_REPO_PART}$")
_URL_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def short_hash(text: str, n: int = 8) -> str:
    """The first ``n`` hex digits of the SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:n]


def _safe_name(text: str) -> str:
    """Filesystem-safe rendering of ``text``; a short hash is appended when characters were replaced."""
    safe = _UNSAFE_KEY_CHARS.sub("_", text).strip("._") or "_"
    if safe != text:
        safe = f"{safe}-{short_hash(text, 6)}"
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
            return f"local-{name}-{short_hash(str(self.path))}"
        raise ValueError(f"unknown DataSpec kind {self.kind!r}")


def parse_data_spec(text: str) -> DataSpec:
    """Parse the ``--data`` argument.

    * ``"builtin"`` -> ``DataSpec("builtin")``.
    * ``"hf:owner/name"`` or ``"hf:owner/name@revision"`` -> ``DataSpec("hf", repo, revision)``.
    * anything else is a local path (``~`` expanded) that must exist: a file ending in ``.txt``,
      ``.jsonl`` or ``.parquet``, or a folder (its contents are checked by ``local_splits``).
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
        return _parse_hf(raw)
    if _URL_SCHEME_RE.match(raw):
        raise DataError(
            f"unsupported data source {raw!r}: URLs are not read directly (download the files first); "
            f"{ACCEPTED_FORMS}"
        )
    path = Path(raw).expanduser().resolve()
    if not path.exists():
        raise DataError(f"no such file or folder: {path}; {ACCEPTED_FORMS}")
    if path.is_file():
        check_suffix(path)
    elif not path.is_dir():
        raise DataError(f"{path} is neither a regular file nor a folder; {ACCEPTED_FORMS}")
    return DataSpec(kind="local", path=path)


def _parse_hf(raw: str) -> DataSpec:
    """``hf:owner/name[@revision]`` (``raw`` starts with ``hf:`` in any case)."""
    repo, sep, revision = raw[3:].partition("@")
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


def check_suffix(path: Path) -> None:
    """Raise :class:`DataError` unless the file ``path`` has one of :data:`SUPPORTED_SUFFIXES`."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(f"unsupported file type {path.suffix or '(none)'!r} for {path}; {ACCEPTED_FORMS}")


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
