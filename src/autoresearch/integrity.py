"""Tamper detection: what the harness owns is fingerprinted before and after each run, and any change
voids the experiment (status `tampered`).

The box (`sandbox.py`) makes most of these files unreachable or read-only; this is the check that
holds where the box is missing, and the evidence where it fails. Fingerprinted:

- the harness's own code: SHA-256 of every file of the installed `autoresearch` package;
- the task's settings and program in the user's folder: SHA-256;
- the prepared data (every split, the tokenizer, the byte table, the manifest): size, inode and the
  change time, which every write moves and no call can set back (hashing gigabytes each run would
  cost seconds; the content is checked against the manifest's SHA-256 when the loop starts);
- the committed files of the run's worktree: the candidate may add files there, but a change to a
  committed file means what ran is not what was committed (`Worktree.changed_tracked_files`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import autoresearch
from autoresearch.data.prepare import MANIFEST, Dataset

TASK_FILES = ("autoresearch.toml", "program.md")


@dataclass(frozen=True)
class Snapshot:
    fingerprints: dict[str, str]  # path -> fingerprint ("missing" for an absent file)

    def changed_since(self, before: Snapshot) -> list[str]:
        """The paths whose fingerprint differs from `before` (appeared, changed or gone), sorted."""
        paths = set(before.fingerprints) | set(self.fingerprints)
        return sorted(p for p in paths if before.fingerprints.get(p, "missing") != self.fingerprints.get(p, "missing"))


def snapshot(task_dir: Path, dataset: Dataset | None) -> Snapshot:
    prints: dict[str, str] = {}
    for path in harness_files():
        prints[str(path)] = _sha256(path)
    for name in TASK_FILES:
        path = task_dir / name
        prints[str(path)] = _sha256(path)
    if dataset is not None:
        for path in data_files(dataset):
            prints[str(path)] = _stat_print(path)
    return Snapshot(prints)


def harness_files() -> list[Path]:
    package = Path(autoresearch.__file__).resolve().parent
    return sorted(p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def data_files(dataset: Dataset) -> list[Path]:
    return sorted({dataset.root / name for name in dataset.manifest.get("files", {})} | {dataset.root / MANIFEST})


def describe(changed: Iterable[str], task_dir: Path) -> str:
    shown = [os.path.relpath(p, task_dir) if p.startswith(str(task_dir)) else p for p in changed]
    more = f" and {len(shown) - 8} more" if len(shown) > 8 else ""
    return ", ".join(shown[:8]) + more


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"unreadable ({err.strerror})"


def _stat_print(path: Path) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    return f"{st.st_size}:{st.st_ino}:{st.st_ctime_ns}:{st.st_mtime_ns}"
