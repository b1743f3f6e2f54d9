"""When two versions of the editable files are the same code: the loop does not run a change whose code was
measured already (docs/loop.md, "Changes already measured"). Pure: no I/O.

- A Python file is compared by its syntax tree, so comments, blank lines, line breaks, spacing and the
  quoting of strings do not count; a name, a number, an operator or a docstring does.
- A Python file that does not parse, and any other file, is compared byte for byte.
- The set of files counts too: adding or removing a file, even an empty one, is a change.

A program that reads its own source text or line numbers could behave differently in two versions that
hash alike. Training scripts do not do that; the price of counting them alike is one missed re-run.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Mapping


def normalised(path: str, content: bytes) -> bytes:
    """What of one file counts as its code: the syntax tree of a Python file that parses, else the bytes."""
    if path.endswith(".py"):
        try:
            tree = ast.parse(content)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return b"bytes:" + content
        return b"ast:" + ast.dump(tree, annotate_fields=False, include_attributes=False).encode()
    return b"bytes:" + content


def code_hash(files: Mapping[str, bytes]) -> str:
    """SHA-256 over `files` (path -> content), each as `normalised`, in path order."""
    digest = hashlib.sha256()
    for path in sorted(files):
        body = normalised(path, files[path])
        name = path.encode("utf-8", "surrogateescape")
        digest.update(b"%d:%s:%d:" % (len(name), name, len(body)))
        digest.update(body)
    return digest.hexdigest()
