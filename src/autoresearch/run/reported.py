"""Metrics a run reports about itself: read from its output (a regex) or from a JSON file it writes.

This is how tasks outside the built-in contract are measured: a reference-layout folder whose train.py
prints `val_bpb: 0.9979`, or any command that prints or writes a score. The harness only reads what the
run says, so such a metric is weaker than the built-in evaluation (docs/tasks.md).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from pathlib import Path


class MetricNotFound(Exception):
    """The run finished but did not report its metric in the expected form; the message says where it looked."""


def from_output(lines: Iterable[str], pattern: str) -> float:
    """The number captured by the first group of `pattern` in the last line that matches it."""
    regex = re.compile(pattern)
    found: str | None = None
    for line in lines:
        match = regex.search(line.rstrip("\r\n"))
        if match is not None:
            found = match.group(1)
    if found is None:
        raise MetricNotFound(f"no line of the output matches {pattern!r}")
    return _number(found, f"the text {found!r} captured by {pattern!r}")


def from_json(path: Path, key: str) -> float:
    """The number at `key` (a dotted path such as `eval.score`) in the JSON file at `path`."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MetricNotFound(f"the run wrote no {path.name} (expected at {path})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MetricNotFound(f"{path} is not readable JSON: {err}") from None
    value = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise MetricNotFound(f"{path.name} has no key {key!r}")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MetricNotFound(f"{path.name}: {key} is {json.dumps(value)[:60]}, not a number")
    return _number(str(value), f"{path.name}: {key}")


def _number(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MetricNotFound(f"{where} is not a number") from None
    if not math.isfinite(value):
        raise MetricNotFound(f"{where} is {value}: the run diverged or failed")
    return value
