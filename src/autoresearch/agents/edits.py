"""Edits in a model's answer: SEARCH/REPLACE blocks and whole files, parsed and applied exactly (pure).

The answer form the API agents ask for::

    train.py
    <<<<<<< SEARCH
    (exact lines to find)
    =======
    (replacement lines)
    >>>>>>> REPLACE

The last non-blank line before `<<<<<<< SEARCH` names the file (a Markdown fence around the block is
allowed). A whole file is also accepted: a fenced block whose fence names the path (```train.py) or
whose line right above is the path alone.
An empty SEARCH creates a file (or fills an empty one).

Applying is all or nothing and never guesses: each SEARCH text must occur exactly once in its file, or
the whole answer is refused with an `EditError` that says which block, what was searched, and where
the nearest similar lines are, so the model can be asked again with that message.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

SEARCH, DIVIDER, REPLACE = "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE"
_FENCE = re.compile(r"^\s*```")
_PATH = re.compile(r"^[\w./\-]+\.[\w]+$")


class EditError(Exception):
    """The answer's edits cannot be applied exactly; the message is meant for the model."""


@dataclass(frozen=True)
class Edit:
    path: str
    search: str  # "" for a new file
    replace: str


@dataclass(frozen=True)
class WholeFile:
    path: str
    content: str


def parse(answer: str) -> tuple[list[Edit | WholeFile], str]:
    """The edits of an answer in order, and the answer's prose (its text outside the edits). Raises
    EditError for a malformed block (a SEARCH without its divider or end, or without a file name)."""
    lines = answer.splitlines()
    edits: list[Edit | WholeFile] = []
    prose: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.strip() == SEARCH:
            path = _path_before(prose)
            if path is None:
                raise EditError(f"the SEARCH block at line {i + 1} has no file name: put the path alone on the "
                                "line before <<<<<<< SEARCH")
            try:
                middle = _index(lines, DIVIDER, i + 1)
                end = _index(lines, REPLACE, middle + 1)
            except ValueError:
                raise EditError(f"the SEARCH block for {path} at line {i + 1} is not closed: it needs a "
                                f"'{DIVIDER}' line and a '{REPLACE}' line") from None
            edits.append(Edit(path, _text(lines[i + 1:middle]), _text(lines[middle + 1:end])))
            i = end + 1
            continue
        whole = _whole_file(lines, i, prose)
        if whole is not None:
            edit, i = whole
            edits.append(edit)
            continue
        prose.append(line)
        i += 1
    text = "\n".join(line for line in prose if not _FENCE.match(line) and not _PATH.match(line.strip()))
    return edits, text.strip()


def apply(files: dict[str, str | None], edits: list[Edit | WholeFile]) -> dict[str, str]:
    """The new contents of the files the edits touch. `files` maps a path to its current text (None for a
    file that does not exist). Edits to one file apply in order. Raises EditError, changing nothing."""
    out: dict[str, str] = {}
    for number, edit in enumerate(edits, start=1):
        current = out.get(edit.path, files.get(edit.path))
        if isinstance(edit, WholeFile):
            out[edit.path] = edit.content
            continue
        if edit.search == "":
            if current:
                raise EditError(f"block {number}: an empty SEARCH creates a file, but {edit.path} exists and is "
                                "not empty; quote the lines to replace")
            out[edit.path] = edit.replace
            continue
        if current is None:
            raise EditError(f"block {number}: {edit.path} does not exist; to create it, leave SEARCH empty")
        count = current.count(edit.search)
        if count == 1:
            out[edit.path] = current.replace(edit.search, edit.replace, 1)
        elif count == 0:
            raise EditError(f"block {number}: the SEARCH text was not found in {edit.path}.\n"
                            f"{_nearest(current, edit.search)}\nSEARCH must match the file exactly, including "
                            "whitespace and comments. Nothing was applied.")
        else:
            starts = _line_numbers(current, edit.search)
            raise EditError(f"block {number}: the SEARCH text occurs {count} times in {edit.path} (at lines "
                            f"{', '.join(map(str, starts))}); include more lines so it occurs once. "
                            "Nothing was applied.")
    return out


def _nearest(text: str, search: str) -> str:
    """Where the file has the lines most like `search`, with their line numbers."""
    file_lines, wanted = text.splitlines(), search.splitlines() or [""]
    size = len(wanted)
    best, best_at = 0.0, 0
    for start in range(max(1, len(file_lines) - size + 1)):
        window = file_lines[start:start + size]
        ratio = difflib.SequenceMatcher(None, "\n".join(window), "\n".join(wanted), autojunk=False).ratio()
        if ratio > best:
            best, best_at = ratio, start
    if best < 0.5:
        return "No similar lines were found."
    shown = "\n".join(f"{best_at + k + 1:>5}| {line}" for k, line in enumerate(file_lines[best_at:best_at + size]))
    return f"The most similar lines ({best:.0%} alike) are lines {best_at + 1}-{best_at + size}:\n{shown}"


def _line_numbers(text: str, search: str) -> list[int]:
    found, start = [], 0
    while (at := text.find(search, start)) != -1:
        found.append(text.count("\n", 0, at) + 1)
        start = at + 1
    return found


def _whole_file(lines: list[str], i: int, prose: list[str]) -> tuple[WholeFile, int] | None:
    """A fenced block that is a whole file: ```path or a path line then ```lang; None otherwise."""
    opening = lines[i].strip()
    if not opening.startswith("```"):
        return None
    label = opening[3:].strip()
    before = prose[-1].strip().strip("`*:") if prose else ""
    path = label if _PATH.match(label) else before if _PATH.match(before) else None
    if path is None:  # a code block in the prose, not a file: only a path right above or on the fence counts
        return None
    try:
        end = next(k for k in range(i + 1, len(lines)) if lines[k].strip() == "```")
    except StopIteration:
        return None
    body = lines[i + 1:end]
    if any(line.strip() in (SEARCH, DIVIDER, REPLACE) for line in body):
        return None  # a fence around SEARCH/REPLACE blocks, not a file
    return WholeFile(path, _text(body)), end + 1


def _path_before(prose: list[str]) -> str | None:
    for line in reversed(prose):
        stripped = line.strip().strip("`*:")
        if not stripped or _FENCE.match(line):
            continue
        return stripped if _PATH.match(stripped) else None
    return None


def _index(lines: list[str], marker: str, start: int) -> int:
    for k in range(start, len(lines)):
        if lines[k].strip() == marker:
            return k
    raise ValueError(marker)


def _text(lines: list[str]) -> str:
    return "\n".join(lines) + "\n" if lines else ""
