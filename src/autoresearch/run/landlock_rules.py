"""The Landlock layer's rules (`landlock_ruleset`): what the bubblewrap box would show a candidate
(`view.py`), as Landlock rights, for a kernel that has Landlock where bubblewrap cannot run. The kernel
interface itself, and restricting a process with these rules, is `landlock.py`.

Invariant: Landlock grants rights beneath a path and cannot take them back further down, so a folder that
holds something hidden never gets rights as a whole (`_rights_except`): it may only be listed, and each of its
entries but the hidden ones gets the rights. Rules name files by what they are when the rules are made.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.run import landlock, view
from autoresearch.run.view import HIDDEN_IN_WORKDIR, HIDDEN_SYSTEM_FILES, SYSTEM_DIRS, under

if TYPE_CHECKING:
    from autoresearch.run.sandbox import Box


def landlock_ruleset(box: Box, *, python_paths: Iterable[str] = (), scratch: Path | None = None) -> landlock.Ruleset:
    """The Landlock rules for `box`: what the box would show, as rights. Landlock grants rights beneath a
    path and cannot take them back further down, so a folder holding something hidden is split: the folder
    itself may only be listed, and each of its entries but the hidden ones gets the rights."""
    rules: list[tuple[str, int]] = []
    workdir = str(box.workdir.resolve())
    for folder in SYSTEM_DIRS:
        if os.path.isdir(folder):
            rules += _rights_except(os.path.realpath(folder), landlock.READ, HIDDEN_SYSTEM_FILES)
    rules += [("/proc", landlock.READ_FILE | landlock.READ_DIR), ("/sys", landlock.READ_FILE | landlock.READ_DIR),
              ]
    rules += _rights_except("/dev", landlock.DEVICES, ("/dev/shm",))
    # No /dev/shm: under Landlock it is the host's, shared by every candidate and evaluation worker, so it would
    # carry whatever one leaves there to the next (POSIX shared memory and semaphores, e.g. multiprocessing's
    # locks and DataLoader workers, are therefore not available in this layer; the box has a private one).
    for path in view.shown(box, python_paths):
        if not under(path, (workdir,)):
            rules.append((path, landlock.READ))
    hidden = tuple(os.path.join(workdir, name) for name in HIDDEN_IN_WORKDIR)
    rules += _rights_except(workdir, landlock.WRITE if box.writable else landlock.READ, hidden)
    rules += [(os.path.realpath(p), landlock.READ) for p in map(str, box.read)
              if under(os.path.realpath(p), (workdir,)) and os.path.exists(p)]
    rules += [(os.path.realpath(folder), landlock.WRITE) for folder in box.write]
    if scratch is not None:
        rules.append((str(scratch), landlock.WRITE))
    return landlock.Ruleset(rules=tuple(rules), network=box.network)


def _rights_except(folder: str, rights: int, hidden: Sequence[str]) -> list[tuple[str, int]]:
    """Rules granting `rights` on `folder` and everything in it except the paths in `hidden` (and except
    symbolic links among the entries of a split folder: a link would grant its target)."""
    inside = [h for h in hidden if under(h, (folder,))]
    if not inside:
        return [(folder, rights)]
    if folder in inside:
        return []
    rules = [(folder, landlock.READ_DIR)]
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return rules
    for name in entries:
        path = os.path.join(folder, name)
        if not os.path.islink(path):
            rules += _rights_except(path, rights, inside)
    return rules

