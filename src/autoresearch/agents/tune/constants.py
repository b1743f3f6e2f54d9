"""The numeric constants of a train.py: finding them in its source, and rewriting their values.

What counts as a constant (`find_constants`), for the profile the harness runs:

- a module-level ``NAME = <number>`` assignment: an UPPER_CASE name, its value an int/float literal or a
  constant arithmetic expression such as ``8 * 256`` or ``2**19`` (booleans, strings and anything else are
  skipped);
- the same inside a module-level profile block, ``if PROFILE == "h100":`` (also ``"h100" == PROFILE``,
  ``PROFILE in ("a", "b")``, and ``elif``/``else`` chains of such tests), for the block that runs under the
  active profile; the blocks of other profiles are never touched;
- in an older train.py, the entries of the active profile in ``PROFILES = {"cpu": dict(KEY=<number>, ...)}``
  (``dict(...)`` calls or ``{...}`` literals).

Invariants:

- The assignment that runs last for the profile is the constant, as Python would execute the module: a
  profile block's ``DEPTH = 8`` replaces the module-level ``DEPTH = 1`` above it, which is then not a
  constant of that profile (editing it would change nothing there). A later assignment whose value is not a
  number removes the name.
- A constant is named after its variable; only an entry of an old ``PROFILES`` dict whose key repeats a
  module-level name is named ``<profile>.<KEY>``.
- A constant's `start`/`end` are the UTF-8 byte span of its value expression, and `apply_values` replaces
  exactly those spans: comments, layout and every other byte of the file stay as they were.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import numpy as np

_CONSTANT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
PROFILE_VARIABLE = "PROFILE"  # the module-level name a profile block tests
PROFILES_VARIABLE = "PROFILES"  # the profiles a train.py knows: a tuple of names (or, in older files, a dict)


@dataclass(frozen=True)
class Constant:
    """A numeric constant of train.py: its value and the byte span of its value expression in the source."""

    name: str  # the key in descriptions, [tune] and Optuna params
    value: int | float
    start: int  # byte offset (UTF-8) of the value expression
    end: int
    profile: str | None = None  # the profile block (or old PROFILES entry) it is set in; None for module level


def _number(node: ast.expr) -> int | float | None:
    """The value of a numeric literal or constant arithmetic expression (``2**19``, ``8 * 256``); else None."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _number(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.BinOp):
        left, right = _number(node.left), _number(node.right)
        if left is None or right is None:
            return None
        return _arithmetic(node.op, left, right)
    return None


def _arithmetic(op: ast.operator, left: int | float, right: int | float) -> int | float | None:
    try:
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return left * right
        if isinstance(op, ast.Div):
            return left / right
        if isinstance(op, ast.FloorDiv):
            return left // right
        if isinstance(op, ast.Pow) and abs(right) <= 64:
            return left**right
    except (ArithmeticError, ValueError):
        return None
    return None


def _line_starts(source: str) -> list[int]:
    starts, offset = [], 0
    for line in source.encode("utf-8").splitlines(keepends=True):
        starts.append(offset)
        offset += len(line)
    starts.append(offset)
    return starts


def _span(line_starts: list[int], node: ast.expr) -> tuple[int, int]:
    assert node.end_lineno is not None and node.end_col_offset is not None
    return line_starts[node.lineno - 1] + node.col_offset, line_starts[node.end_lineno - 1] + node.end_col_offset


def _assignment(stmt: ast.stmt) -> tuple[str, ast.expr] | None:
    """(name, value node) of ``NAME = value`` or ``NAME: type = value``; None for any other statement."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id, stmt.value
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return stmt.target.id, stmt.value
    return None


def _string(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _tested_profiles(test: ast.expr) -> set[str] | None:
    """The profiles for which `test` holds when it is ``PROFILE == "x"``, ``"x" == PROFILE`` or
    ``PROFILE in ("x", ...)``; None for any other test."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]

    def is_profile(node: ast.expr) -> bool:
        return isinstance(node, ast.Name) and node.id == PROFILE_VARIABLE

    if isinstance(op, ast.Eq):
        name = _string(right) if is_profile(left) else _string(left) if is_profile(right) else None
        return None if name is None else {name}
    if isinstance(op, ast.In) and is_profile(left) and isinstance(right, (ast.Tuple, ast.List, ast.Set)):
        names = [_string(element) for element in right.elts]
        return None if any(n is None for n in names) else {n for n in names if n is not None}
    return None


def _profile_branch(stmt: ast.If, profile: str | None) -> list[ast.stmt]:
    """The statements of a profile block (an ``if PROFILE == ...`` chain) that run under `profile`; [] for
    any other ``if``, and for every block when `profile` is None."""
    node = stmt
    while profile is not None:
        tested = _tested_profiles(node.test)
        if tested is None:
            return []
        if profile in tested:
            return node.body
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            node = node.orelse[0]
            continue
        return node.orelse
    return []


def _dict_entries(node: ast.expr) -> list[tuple[str, ast.expr]]:
    """(key, value node) pairs of ``dict(KEY=...)`` or ``{"KEY": ...}``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return [(kw.arg, kw.value) for kw in node.keywords if kw.arg is not None]
    if isinstance(node, ast.Dict):
        return [(key, value) for k, value in zip(node.keys, node.values, strict=False)
                if k is not None and (key := _string(k)) is not None]
    return []


def _old_profile_entries(profiles: ast.Dict, profile: str | None, starts: list[int]) -> list[Constant]:
    """The numeric entries of `profile` in an older train.py's ``PROFILES = {"cpu": dict(...), ...}``."""
    found = []
    for key, entry in zip(profiles.keys, profiles.values, strict=False):
        if profile is None or key is None or _string(key) != profile:
            continue
        for name, value_node in _dict_entries(entry):
            value = _number(value_node)
            if value is not None:
                found.append(Constant(name, value, *_span(starts, value_node), profile=profile))
    return found


def find_constants(source: str, profile: str | None) -> list[Constant]:
    """The numeric constants of a train.py source under `profile`, in source order (see the module docstring).

    Raises `SyntaxError` if the source does not parse.
    """
    starts = _line_starts(source)
    current: dict[str, Constant] = {}  # name -> the assignment that has run last so far
    old_entries: list[Constant] = []

    def assign(stmt: ast.stmt, in_profile: str | None) -> None:
        found = _assignment(stmt)
        if found is None or not _CONSTANT_NAME.match(found[0]):
            return
        name, value_node = found
        value = _number(value_node)
        current.pop(name, None)
        if value is not None:
            current[name] = Constant(name, value, *_span(starts, value_node), profile=in_profile)

    for stmt in ast.parse(source).body:
        if isinstance(stmt, ast.If):
            for inner in _profile_branch(stmt, profile):
                assign(inner, profile)
            continue
        found = _assignment(stmt)
        if found is not None and found[0] == PROFILES_VARIABLE and isinstance(found[1], ast.Dict):
            old_entries += _old_profile_entries(found[1], profile, starts)
            continue
        assign(stmt, None)
    module_names = set(current)
    renamed = [Constant(f"{c.profile}.{c.name}", c.value, c.start, c.end, c.profile) if c.name in module_names
               else c for c in old_entries]
    return sorted([*current.values(), *renamed], key=lambda c: c.start)


def profiles_of(source: str) -> list[str]:
    """The profiles a train.py source names in ``PROFILES``: the strings of a tuple, list or set, or the keys
    of an older file's dict; empty if it has none. Raises `SyntaxError` if the source does not parse."""
    for stmt in ast.parse(source).body:
        found = _assignment(stmt)
        if found is None or found[0] != PROFILES_VARIABLE:
            continue
        node = found[1]
        if isinstance(node, ast.Dict):
            return [name for k in node.keys if k is not None and (name := _string(k)) is not None]
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return [name for e in node.elts if (name := _string(e)) is not None]
    return []


# ---------------------------------------------------------------------------------------------- editing


def format_value(value: int | float) -> str:
    """Compact display: ints as is, floats with 4 significant digits, positional unless tiny or huge
    (``10000.0`` -> ``10000``, ``13702.5`` -> ``13700``, ``0.012345`` -> ``0.01235``, ``1e-07`` stays)."""
    if isinstance(value, int):
        return str(value)
    if value != 0 and not 1e-4 <= abs(value) < 1e9:
        return f"{value:.4g}"
    return np.format_float_positional(float(f"{value:.4g}"), trim="-")


def _literal(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def apply_values(source: str, changes: list[tuple[Constant, int | float]]) -> str:
    """`source` with each constant's value expression replaced by the new value's literal; nothing else moves."""
    data = source.encode("utf-8")
    for constant, value in sorted(changes, key=lambda c: c[0].start, reverse=True):
        data = data[:constant.start] + _literal(value).encode("utf-8") + data[constant.end:]
    return data.decode("utf-8")


def describe(changes: list[tuple[Constant, int | float]]) -> str:
    """``NAME old -> new, ...`` in source order."""
    return ", ".join(f"{c.name} {format_value(c.value)} -> {format_value(v)}"
                     for c, v in sorted(changes, key=lambda c: c[0].start))
