"""How big and how tangled the editable code is, and how many lines of code a change adds. Pure: texts in,
figures out (docs/keep.md, "The price of complexity").

An agent that rewrites train.py hundreds of times can leave code no one can read, one small gain at a time.
These figures make that visible (status, report, the agent's prompt) and, with `[keep] complexity_cost`,
priced: a change must gain more than the noise asks plus the price of the code lines it adds.

What is counted:

- a *code line* is a line that is not blank and, in a Python file, does not start with `#` (after its
  indentation). Docstrings and other strings count: they are code the reader has to read. The rule looks
  at one line at a time, so the same count comes out of a file (`measure_code`) and out of a diff of it
  (`changed_code_lines`): a file's code lines after a change are those before plus the diff's added minus
  its removed. (A line inside a multi-line string that starts with `#` is taken for a comment, both ways.)
  Files that are not Python (`.py`) count their non-blank lines; binary files count nothing.
- *functions* are `def` and `async def` statements, methods and nested ones included; a `lambda` is an
  expression, not counted as a function (its branches count towards the code around it).
- *complexity* is McCabe's cyclomatic complexity, summed over every function and the module level: each
  of them 1, plus one per decision point in it: `if` and `elif`, a conditional expression (`a if c else
  b`), `for`, `async for` and `while` (and one more for a loop's `else`), each `except` clause, each
  operand of `and`/`or` beyond the first, each `for` and each `if` in a comprehension, each `case` of a
  `match` but a final catch-all `case _:` (and one more per guard), and `assert` (a conditional raise).
  `with`, `try`'s `else` and `finally`, and `lambda` itself add nothing. This is the standard definition
  (the one radon and flake8's mccabe count, give or take the loop's `else`), computed with `ast`.

A Python file that does not parse still counts its lines; its functions and complexity are unknown, and so
are the totals (`Complexity.functions` and `.complexity` are None, `unparsed` names the files).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass

# the keys under which an experiment's metrics record its code's figures
LINES, FUNCTIONS, COMPLEXITY, UNPARSED = "code_lines", "code_functions", "code_complexity", "code_unparsed"


@dataclass(frozen=True)
class Complexity:
    """The size and complexity of a set of files (see the module docstring for what is counted)."""

    lines: int  # code lines: not blank, not comments
    functions: int | None  # def and async def; None when a Python file did not parse
    complexity: int | None  # McCabe's, summed over functions and module levels; None when one did not parse
    unparsed: tuple[str, ...] = ()  # the Python files that did not parse

    def metrics(self) -> dict:
        """The figures as an experiment's metrics record them (unknown ones left out)."""
        figures = {LINES: self.lines, FUNCTIONS: self.functions, COMPLEXITY: self.complexity,
                   UNPARSED: list(self.unparsed) or None}
        return {key: value for key, value in figures.items() if value is not None}


def is_python(path: str) -> bool:
    return path.endswith(".py")


def is_code_line(text: str, python: bool) -> bool:
    """Whether one line is a line of code: not blank, and in Python not a comment."""
    stripped = text.strip()
    return bool(stripped) and not (python and stripped.startswith("#"))


def code_lines(text: str, python: bool = True) -> int:
    """The code lines of one file's text."""
    return sum(is_code_line(line, python) for line in text.splitlines())


def measure_code(files: Mapping[str, str | bytes]) -> Complexity:
    """The figures of `files` (path -> text, or bytes as stored: decoded as UTF-8, binary files skipped)."""
    lines, functions, complexity, unparsed = 0, 0, 0, []
    for path, content in sorted(files.items()):
        if isinstance(content, bytes):
            if b"\0" in content:
                continue  # binary: no lines to read
            content = content.decode("utf-8", errors="replace")
        python = is_python(path)
        lines += code_lines(content, python)
        if not python:
            continue
        figures = python_figures(content)
        if figures is None:
            unparsed.append(path)
        else:
            functions += figures[0]
            complexity += figures[1]
    if unparsed:
        return Complexity(lines, None, None, tuple(unparsed))
    return Complexity(lines, functions, complexity)


def python_figures(source: str) -> tuple[int, int] | None:
    """(functions, cyclomatic complexity) of one Python module; None if it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    functions, decisions = 0, 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions += 1
        decisions += _decisions(node)
    return functions, 1 + functions + decisions  # 1 for the module level, 1 for each function


def _decisions(node: ast.AST) -> int:
    """The decision points `node` itself adds (not those of the nodes inside it)."""
    if isinstance(node, (ast.If, ast.IfExp, ast.Assert, ast.ExceptHandler)):
        return 1  # an elif is an If inside the orelse of another
    if isinstance(node, (ast.For, ast.AsyncFor, ast.While)):
        return 1 + bool(node.orelse)
    if isinstance(node, ast.BoolOp):
        return len(node.values) - 1
    if isinstance(node, ast.comprehension):
        return 1 + len(node.ifs)
    if isinstance(node, ast.Match):
        cases = node.cases
        last = cases[-1] if cases else None
        catch_all = last is not None and last.guard is None and isinstance(last.pattern, ast.MatchAs) \
            and last.pattern.pattern is None
        return len(cases) - catch_all + sum(c.guard is not None for c in cases)
    return 0


# ---------------------------------------------------------------------- a change, from its diff

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def changed_code_lines(diff: str) -> tuple[int, int]:
    """Code lines (as `code_lines` counts them, by each file's kind) added and removed by a unified diff.
    Hunks are read by their line counts, so a removed line that reads `-- x` is not taken for a header;
    binary files and renames without changes add nothing. A text without any hunk header (a hand-written
    change) is read line by line, as Python."""
    if not any(_HUNK.match(line) for line in diff.splitlines()):
        return _loose_changes(diff)
    added = removed = 0
    old_path = new_path = ""
    old_left = new_left = 0
    for line in diff.splitlines():
        if old_left > 0 or new_left > 0:
            if line.startswith("\\"):  # "\ No newline at end of file"
                continue
            python = is_python(new_path if new_path != "/dev/null" else old_path)
            tag, text = line[:1], line[1:]
            if tag == "+":
                new_left -= 1
                added += is_code_line(text, python)
            elif tag == "-":
                old_left -= 1
                removed += is_code_line(text, python)
            else:  # context (a blank context line may have lost its leading space)
                old_left, new_left = old_left - 1, new_left - 1
            continue
        if line.startswith("diff --git "):
            old_path = new_path = ""
        elif line.startswith("--- "):
            old_path = _diff_path(line[4:])
        elif line.startswith("+++ "):
            new_path = _diff_path(line[4:])
        elif (hunk := _HUNK.match(line)) is not None:
            old_left = int(hunk.group(1)) if hunk.group(1) is not None else 1
            new_left = int(hunk.group(2)) if hunk.group(2) is not None else 1
    return added, removed


def _loose_changes(diff: str) -> tuple[int, int]:
    """Code lines of `+` and `-` lines, file headers aside: for a change that is not a unified diff."""
    lines = [line for line in diff.splitlines() if not line.startswith(("+++ ", "--- "))]
    return (sum(line.startswith("+") and is_code_line(line[1:], True) for line in lines),
            sum(line.startswith("-") and is_code_line(line[1:], True) for line in lines))


def net_added_lines(diff: str) -> int:
    """Code lines a change adds minus those it removes (negative: it shrinks the code). What
    `[keep] complexity_cost` prices."""
    added, removed = changed_code_lines(diff)
    return added - removed


def _diff_path(header: str) -> str:
    """The path of a `---`/`+++` header, without git's a/ or b/ prefix (or `/dev/null`)."""
    path = header.split("\t")[0].strip().strip('"')
    return path[2:] if path[:2] in ("a/", "b/") else path


# ---------------------------------------------------------------------- the figures as recorded, in words


def recorded(metrics: Mapping) -> Complexity | None:
    """The figures an experiment's metrics recorded (`Complexity.metrics`); None for one that recorded none
    (older stores, a proposal whose files were never read)."""
    lines = metrics.get(LINES)
    if not isinstance(lines, int):
        return None
    functions, complexity = metrics.get(FUNCTIONS), metrics.get(COMPLEXITY)
    return Complexity(lines, functions if isinstance(functions, int) else None,
                      complexity if isinstance(complexity, int) else None, tuple(metrics.get(UNPARSED) or ()))


def describe(code: Complexity) -> str:
    """`120 lines, 8 functions, complexity 14` (`?` for what is unknown)."""
    functions = "?" if code.functions is None else code.functions
    complexity = "?" if code.complexity is None else code.complexity
    return f"{_count(code.lines, 'line')}, {_count(functions, 'function')}, complexity {complexity}"


def describe_change(code: Complexity, since: Complexity | None) -> str:
    """How `code` differs from `since`: `+20 lines, +1 function, complexity +3` (a figure unknown on either
    side is left out); empty when there is nothing to compare with."""
    if since is None:
        return ""
    parts = [_count(code.lines - since.lines, "line", signed=True)]
    if code.functions is not None and since.functions is not None:
        parts.append(_count(code.functions - since.functions, "function", signed=True))
    if code.complexity is not None and since.complexity is not None:
        parts.append(f"complexity {code.complexity - since.complexity:+d}")
    return ", ".join(parts)


def _count(n: int | str, what: str, *, signed: bool = False) -> str:
    """`1 line`, `3 lines`, `+1 line`, `-2 lines`, `? functions`."""
    shown = f"{n:+d}" if signed and isinstance(n, int) else str(n)
    return f"{shown} {what}" + ("" if isinstance(n, int) and abs(n) == 1 else "s")


def complexity_delta(code: Complexity | None, before: Complexity | None) -> int | None:
    """How much the complexity grew from `before` to `code`; None when either is unknown."""
    if code is None or before is None or code.complexity is None or before.complexity is None:
        return None
    return code.complexity - before.complexity


def change_cell(diff: str, delta: int | None = None) -> str:
    """A change's cost in a table cell: `+12/-3` code lines, and `, complexity +2` when `delta` is known;
    `-` for no change (the baseline)."""
    if not diff:
        return "-"
    added, removed = changed_code_lines(diff)
    return f"+{added}/-{removed}" + ("" if delta is None else f", complexity {delta:+d}")


def summary_text(best: Mapping, baseline: Mapping | None = None) -> str | None:
    """The best's code in words, and how it changed since the baseline (`best`, `baseline`: their
    metrics; `baseline` None or the best's own when the best is the baseline): `120 lines, 8 functions,
    complexity 14 (+20 lines, +1 function, complexity +3 since the baseline)`. None when the best recorded
    no figures."""
    code = recorded(best)
    if code is None:
        return None
    change = describe_change(code, recorded(baseline)) if baseline is not None and baseline is not best else ""
    return describe(code) + (f" ({change} since the baseline)" if change else "")
