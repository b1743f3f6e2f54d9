"""What the agent may change: which paths its `editable` entries cover, and the harness's own folder.

Pure: runs no git and reads no file. `matches_scope` decides, for a path relative to the task folder,
whether an `editable` entry (an exact path, a folder ending in `/`, or a glob anchored at the task
folder) covers it; an entry that is empty, absolute or contains `..` is refused with ValueError.
`Worktree.out_of_scope`, `editable_files`, `files_at` and `put_files` apply it to what git lists.

The harness folder `.autoresearch/` (`HARNESS_DIR`) is never committed, listed, diffed or cleaned:
listings and cleaning exclude it by the pathspec `_NOT_HARNESS`, staging unstages it again, and the
repository ignores it (`Workspace.ensure`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

HARNESS_DIR = ".autoresearch"
# Listing and cleaning exclude the harness's own folder by pathspec (`git add` refuses such a pathspec
# when the folder is ignored: staging unstages it afterwards instead).
_NOT_HARNESS = f":(top,exclude){HARNESS_DIR}"


def _normalise(path: str) -> str:
    path = path.replace("\\", "/") if os.sep == "\\" else path
    while path.startswith("./"):
        path = path[2:]
    return path


def _check_pattern(pattern: str) -> str:
    pattern = _normalise(pattern.strip())
    parts = pattern.rstrip("/").split("/")
    if not pattern or pattern.startswith("/") or ".." in parts or "" in parts:
        raise ValueError(f"editable entry {pattern!r} must be a path relative to the task folder, "
                         "like 'train.py', 'src/*.py', '**/*.py' or 'configs/'")
    return pattern


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "["
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches_scope(path: str, editable: Sequence[str]) -> bool:
    """Whether `path` (relative to the task folder, with '/') is covered by the `editable` entries.

    An entry is one of:
    - an exact path: `train.py` covers only `train.py`;
    - a folder, ending in `/`: `configs/` covers everything below `configs`;
    - a glob, anchored at the task folder: `*` and `?` never cross a `/`, `**/` spans any number
      of folders (also none), `[abc]` / `[!abc]` are character classes. `src/*.py` covers
      `src/a.py` but not `src/x/a.py` nor `a.py`; `**/*.py` covers every `.py` file.
    Matching is case-sensitive. A leading `./` is ignored. Raises ValueError for an entry that is
    empty, absolute or contains `..`.
    """
    path = _normalise(path)
    for entry in editable:
        pattern = _check_pattern(entry)
        if pattern.endswith("/") and not any(ch in pattern for ch in "*?["):
            if path.startswith(pattern) or path == pattern.rstrip("/"):
                return True
        elif any(ch in pattern for ch in "*?["):
            if _glob_regex(pattern).match(path):
                return True
        elif path == pattern:
            return True
    return False
