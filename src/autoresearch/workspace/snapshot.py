"""The repository's configuration files, fingerprinted and put back around an agent session (`ConfigSnapshot`).

Git reads only the repository's own configuration (`.git/config`, `config.worktree`, `info/attributes`;
see `git`): out of reach of candidate code, and of a boxed agent (read-only in its box). An agent
without a box could write it: `Workspace.config_snapshot` and `restore_config` let the loop check it
around each agent session, before any git command runs over the agent's edits.

What is fingerprinted (`config_paths`): every file inside the git folder through which git could be
made to run a program or to see other files (its config, config.worktree, info/attributes,
info/exclude, the hooks folder and its entries, each worktree entry's records), and the `.git` files
of the checkouts that are links. A file up to `_SNAPSHOT_MAX_BYTES` is kept whole (it can be put
back); a bigger one only by its digest (it is only named). Restoring deletes only new files inside the
git folder. Runs no git: reads and writes files only.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The repository's files through which git could be made to run a program or to see other files.
_CONFIG_FILES = ("config", "config.worktree", "info/attributes", "info/exclude")
_ADMIN_FILES = ("config.worktree", "commondir", "gitdir")  # of each worktree's entry
_SNAPSHOT_MAX_BYTES = 1 << 20  # a bigger file is fingerprinted by its digest (it cannot be put back)


@dataclass(frozen=True)
class ConfigSnapshot:
    """The repository's configuration files at one moment (`Workspace.config_snapshot`): path -> (kind, content,
    mode), kind "file" (content: its bytes), "digest" (a big file: the SHA-256 of its bytes), "link" (content:
    its target) or "folder" (no content); a missing file has no entry."""

    files: Mapping[str, tuple[str, bytes, int]]


def config_changes(before: ConfigSnapshot, after: ConfigSnapshot) -> list[str]:
    """The paths whose entry differs between two snapshots: changed, added or removed; sorted."""
    return sorted(p for p in {*before.files, *after.files} if before.files.get(p) != after.files.get(p))


def _file_entry(path: Path) -> tuple[str, bytes, int] | None:
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            return ("link", os.fsencode(os.readlink(path)), 0)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            return ("folder", b"", mode)
        if not stat.S_ISREG(info.st_mode):
            return ("other", b"", mode)
        with open(path, "rb") as f:
            if info.st_size <= _SNAPSHOT_MAX_BYTES:
                return ("file", f.read(), mode)
            digest = hashlib.sha256()
            while chunk := f.read(1 << 20):
                digest.update(chunk)
            return ("digest", digest.digest(), mode)
    except OSError:
        return None


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _put_entry(path: Path, entry: tuple[str, bytes, int]) -> None:
    kind, content, mode = entry
    if kind == "folder" and path.is_dir() and not path.is_symlink():
        os.chmod(path, mode)
        return
    if kind in ("digest", "other"):
        return  # its content was not kept: it is only named
    _remove_entry(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "link":
        os.symlink(os.fsdecode(content), path)
    elif kind == "folder":
        path.mkdir(mode=mode)
    else:
        path.write_bytes(content)
        os.chmod(path, mode)


def config_paths(git_dir: Path, own_git_dir: Path, root: Path,
                 records: Sequence[tuple[Path, Path | None]]) -> tuple[list[Path], list[Path]]:
    """The files through which git could be made to run something or to see other files: inside the git
    folder (its config, config.worktree files, info/attributes, info/exclude, the hooks folder's entries,
    each worktree entry's records), and the `.git` files of the checkouts that are links.

    `git_dir` is the repository's common git folder, `own_git_dir` the main checkout's, `root` the task
    folder, `records` the repository's worktree entries (`Workspace._worktree_records`)."""
    common = git_dir
    inside = [common / name for name in _CONFIG_FILES] + [common / "hooks"]
    try:
        inside += sorted((common / "hooks").iterdir()) if (common / "hooks").is_dir() else []
    except OSError:
        pass
    links = [root / ".git"] if own_git_dir != common else []
    if own_git_dir != common:
        inside += [own_git_dir / name for name in _ADMIN_FILES]
    for admin, link in records:
        inside += [admin / name for name in _ADMIN_FILES]
        if link is not None:
            links.append(link)
    return inside, links


def take_snapshot(inside: Sequence[Path], links: Sequence[Path]) -> ConfigSnapshot:
    """What the files `inside` the git folder and the `links` (`config_paths`) hold now."""
    return ConfigSnapshot({str(p): entry for p in (*inside, *links) if (entry := _file_entry(p)) is not None})


def restore_snapshot(before: ConfigSnapshot, inside: Sequence[Path], links: Sequence[Path], *, git_dir: Path,
                     root: Path) -> list[str]:
    """Put back what changed since `before` among its files and the files `inside` and `links` (`config_paths`)
    now: see `Workspace.restore_config`. Only a new file inside `git_dir` is deleted. Returns the changed paths
    relative to the task folder `root`, sorted."""
    now = ConfigSnapshot({p: entry for p in {*map(str, inside), *map(str, links), *before.files}
                          if (entry := _file_entry(Path(p))) is not None})
    changed = config_changes(before, now)
    for name in sorted(changed, key=len):  # a folder before what is in it
        path = Path(name)
        if name in before.files:
            _put_entry(path, before.files[name])
        elif git_dir in path.parents:
            _remove_entry(path)
    if changed:
        log.warning("git configuration changed in %s, put back: %s", root, ", ".join(changed))
    return [os.path.relpath(p, root) for p in changed]
