"""Text that comes from candidate code or from an agent, made safe for the place it is shown.

Descriptions, logs, errors made from a log's tail, the text fields of train.py's progress events and the
names agents give are written by whoever wrote the change: they must show as what they say, never act.

- `for_terminal(text)`: no control character reaches the terminal. C0 controls (ESC, BEL, \\r, ...) but
  \\n and \\t, DEL, C1 (0x80-0x9f; 0x9b is a CSI on its own) and the Unicode bidirectional controls become
  visible escapes (`\\x1b`, `\\u202e`); a \\r\\n line end is a plain \\n;
- `for_markup(text)`: `for_terminal`, then rich's own markup escape, for text put into a string that rich
  renders as markup (`[bold]` stays literal);
- `for_markdown(text)`: one line for report.md's tables and lists: `for_terminal`, line breaks and runs of
  white space made one space, `&`, `<`, `>` as entities (no raw HTML, no autolink), and the characters that
  open links, images, code spans, emphasis or cells (`\\ ` * _ ~ [ ] ! |`) backslash-escaped;
- `markdown_code(text)`: `text` as an inline code span it cannot close;
- `for_html(text)`: `for_terminal`, then `html.escape` (quotes too, so it is safe in attributes).

Pure functions, nothing else: every output spot calls one of them on the text it did not write itself.
"""

from __future__ import annotations

import html
import re

from rich.markup import escape as _escape_markup

# C0 but \t and \n, DEL, C1; the bidirectional embeddings, overrides and isolates (they reorder what is shown)
_CONTROL = re.compile("\r\n|[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_~\[\]!|])")


def _visible(match: re.Match) -> str:
    char = match.group()
    if char == "\r\n":
        return "\n"
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


def for_terminal(text: object) -> str:
    """`text` (None: empty) with every control character but \\n and \\t made a visible escape."""
    return "" if text is None else _CONTROL.sub(_visible, str(text))


def for_markup(text: object) -> str:
    """`for_terminal(text)` escaped for rich markup: put into a markup string, it shows as written."""
    return _escape_markup(for_terminal(text))


def for_markdown(text: object) -> str:
    """`text` as literal inline markdown on one line: safe in a table cell or a list item."""
    line = " ".join(for_terminal(text).split())
    return _MARKDOWN_SPECIAL.sub(r"\\\1", html.escape(line, quote=False))


def markdown_code(text: object) -> str:
    """`text` on one line as an inline code span, fenced by more backticks than its longest run of them."""
    line = " ".join(for_terminal(text).split())
    fence = "`" * (1 + max((len(run) for run in re.findall("`+", line)), default=0))
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def for_html(text: object) -> str:
    """`text` escaped for HTML text and attribute values."""
    return html.escape(for_terminal(text), quote=True)
