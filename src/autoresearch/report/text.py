"""Short wording shared by the reports: durations, counts with their noun, text cut to one line, the line
that says why an experiment failed, and figures that may be missing (shown as `-`).

Pure functions of plain values: no store, no metric, no rich.
"""

from __future__ import annotations

import re


def format_duration(seconds: float | None) -> str:
    """A short human duration: `-` for None, `42s`, `3m 05s`, `2h 03m`, `1d 04h`."""
    if seconds is None:
        return "-"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


def truncate(text: str, width: int) -> str:
    """`text` on one line, cut to at most `width` characters (an ellipsis marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def first_line(text: str | None) -> str:
    """The first non-blank line of a text, stripped; empty for None or blank text."""
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


_ERROR_LINE = re.compile(r"(?i)\b\w*(error|exception)\b|\bout of memory\b|\bkilled\b")


def error_line(text: str | None) -> str:
    """The line that best says why an experiment failed, stripped; empty for None or blank text.

    The first line that names an error (`...Error`, `...Exception`, `error`, `out of memory`, `killed`),
    skipping traceback headers and frames (`Traceback ...`, `File "..."`); failing that, the first non-blank
    line, or, when that is a traceback header, the last non-blank line (where Python puts the exception).
    """
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("Traceback", "File ")):
            continue
        if _ERROR_LINE.search(line):
            return line
    if not lines:
        return ""
    return lines[-1] if lines[0].startswith("Traceback") else lines[0]


def noun(n: int, singular: str) -> str:
    """`1 run`, `2 runs`: a count with its noun."""
    return f"{n} {singular}{'' if n == 1 else 's'}"


def or_dash(value: float | None, pattern: str) -> str:
    """`value` formatted with `pattern` (a `str.format` pattern such as `{:.6f}`), or `-` for None."""
    return "-" if value is None else pattern.format(value)


def gigabytes(n: int | None) -> float | None:
    """A number of bytes in GB (GiB: 1024**3 bytes); None stays None."""
    return None if n is None else n / 1024**3
