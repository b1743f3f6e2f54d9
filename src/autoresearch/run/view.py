"""The file system every layer of the sandbox shows a candidate, in the terms the layers share: the system
folders (read-only), the system files that are hidden in them, the parts of a working folder that are hidden
(`.git`, `.autoresearch/`), and the folders Python needs (`python_paths`). The bubblewrap box (`bwrap.py`) mounts
this view and the Landlock layer (`landlock_rules.py`) grants it as rights; what differs between them is theirs.

Invariant: no folder that holds the working folder is ever shown (`shown`): it would show the hidden parts of a
task folder around the working folder. Also here: `say_once`, the sandbox's warnings that are logged only once
per process.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.run.sandbox import Box

log = logging.getLogger(__name__)

SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/nix")
HIDDEN_SYSTEM_FILES = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers",
                       "/etc/ssh", "/etc/ssl/private")
HIDDEN_IN_WORKDIR = (".git", ".autoresearch")  # the repository, and the harness's folder (store, logs)


def python_paths() -> list[str]:
    """Where this interpreter and its packages live: what a candidate needs to read to run Python. Not the
    first entry of the harness's own `sys.path`: that is the folder it was started from (with `python -m`,
    often the task folder, whose store and repository must stay hidden) or its script's."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    search = sys.path if getattr(sys.flags, "safe_path", False) else sys.path[1:]
    paths.update(p for p in search if p and os.path.isabs(p))
    return sorted(os.path.realpath(p) for p in paths if os.path.exists(p))


def shown(box: Box, python_paths: Iterable[str]) -> list[str]:
    """The folders and files shown read-only besides the system folders: Python's and `box.read`, without
    any that holds the working folder (it would show the hidden parts of a task folder around it)."""
    workdir = str(box.workdir.resolve())
    paths = outermost([p for p in (*python_paths, *map(str, box.read)) if os.path.exists(p)])
    dropped = [p for p in paths if p != workdir and under(workdir, (p,))]
    if dropped:
        log.info("not shown to candidates, because they hold the working folder: %s", ", ".join(dropped))
    return [p for p in paths if p not in dropped]


def outermost(paths: Iterable[str]) -> list[str]:
    """`paths` without those inside another one (binding a folder binds what is in it)."""
    kept: list[str] = []
    for path in sorted(set(os.path.realpath(p) for p in paths), key=len):
        if not under(path, kept):
            kept.append(path)
    return kept


def under(path: str, folders: Iterable[str]) -> bool:
    """Whether `path` is one of `folders` or inside one of them (by name: no links are followed)."""
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


_said: set[str] = set()


def say_once(logger: logging.Logger, level: int, message: str, *args: object) -> None:
    """Log `message % args` at `level` to `logger`, unless this very text was logged before (by any part of the
    sandbox)."""
    text = message % args if args else message
    if text not in _said:
        _said.add(text)
        logger.log(level, text)
