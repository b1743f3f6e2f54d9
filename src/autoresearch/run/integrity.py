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
  committed file means what ran is not what was committed (`Worktree.changed_tracked_files`);
- Python's start-up code: every `.pth` file in the interpreter's site folders and every `sitecustomize.py` and
  `usercustomize.py` on its path, by content. Python runs them in every later interpreter, the harness's and
  the next candidate's, so one planted there would outlive the run; the loop puts them back as they were
  (`restore_startup_code`) as well as voiding the run.
"""

from __future__ import annotations

import hashlib
import os
import site
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import autoresearch
from autoresearch.data.prepare import MANIFEST, Dataset

TASK_FILES = ("autoresearch.toml", "program.md")


@dataclass(frozen=True)
class Snapshot:
    fingerprints: dict[str, str]  # path -> fingerprint ("missing" for an absent file)
    startup_code: dict[str, bytes] = field(default_factory=dict)  # Python's start-up files: path -> content

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
    code = startup_code()
    for path, content in code.items():
        prints[path] = hashlib.sha256(content).hexdigest()
    return Snapshot(prints, code)


STARTUP_MODULES = ("sitecustomize.py", "usercustomize.py")


def startup_folders() -> tuple[list[str], list[str]]:
    """(the site folders, whose `.pth` files Python runs at start-up; every folder on its path, where it looks
    for `sitecustomize` and `usercustomize`)."""
    sites = [*site.getsitepackages(), site.getusersitepackages()] if hasattr(site, "getsitepackages") else []
    folders = [p for p in sys.path if p and os.path.isdir(p)]
    return [p for p in dict.fromkeys(sites) if os.path.isdir(p)], list(dict.fromkeys([*folders, *sites]))


def startup_code() -> dict[str, bytes]:
    """Python's start-up files as they are now: path -> content."""
    sites, folders = startup_folders()
    found: dict[str, bytes] = {}
    candidates = [os.path.join(d, name) for d in sites for name in _listing(d) if name.endswith(".pth")]
    candidates += [os.path.join(d, name) for d in folders for name in STARTUP_MODULES]
    for path in candidates:
        try:
            found[path] = Path(path).read_bytes()
        except OSError:
            continue
    return found


def restore_startup_code(before: Snapshot) -> list[str]:
    """Put Python's start-up files back as they were in `before`: new ones removed, changed ones rewritten.
    Returns the paths it mended."""
    mended = []
    now = startup_code()
    for path in sorted(set(now) - set(before.startup_code)):
        try:
            os.unlink(path)
            mended.append(path)
        except OSError:
            continue
    for path, content in sorted(before.startup_code.items()):
        if now.get(path) != content:
            try:
                Path(path).write_bytes(content)
                mended.append(path)
            except OSError:
                continue
    return mended


def _listing(folder: str) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError:
        return []


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
