"""Live progress of a running experiment, from the `@autoresearch {json}` lines train.py writes to its log.

The log (`Experiment.log_path`, a train.log) mixes free-form output with progress lines (docs/contract.md):
`start` once, `step` every few steps, `done` once. Parsing takes text (`parse_events`, `progress_from_text`)
so it can be tested without files; `read_progress` is the one function that reads a file. Nothing here
imports torch or the runner.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from autoresearch.report.text import format_duration
from autoresearch.safe_text import for_terminal

PROGRESS_PREFIX = "@autoresearch "
HEAD_BYTES = 256 * 1024  # of a large log, the head (where `start` is) and the tail (the latest `step`) are read
TAIL_BYTES = 256 * 1024


def parse_event(line: str) -> dict | None:
    """The event of one progress line, or None for free-form text and malformed or partial lines.

    Leading/trailing whitespace (and a carriage return) is ignored; the JSON must be an object whose
    `event` is a string.
    """
    line = line.strip()
    if not line.startswith(PROGRESS_PREFIX.strip()):
        return None
    payload = line[len(PROGRESS_PREFIX.strip()):].strip()
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


def parse_events(text: str) -> list[dict]:
    """All progress events of a log text, in order; every other line is skipped."""
    return [e for e in (parse_event(line) for line in text.splitlines()) if e is not None]


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def progress_from_text(text: str) -> dict | None:
    """The progress a log text shows, or None if it has neither a `start` nor a `step` event yet.

    Returns a dict with:
    `started` (bool: a start event was seen), `start` (the start event, or None), `step`, `elapsed`
    (training seconds), `train_loss`, `tokens`, `tokens_per_s` (from the latest step event; None before
    the first, and each None where missing or not a finite number), `done` (bool) and `done_event` (the
    done event, or None). After a `done` event, `step`/`elapsed`/`tokens` fall back on its `steps`,
    `training_seconds` and `tokens` where no step event gave them.
    """
    start = step = done = None
    for event in parse_events(text):
        kind = event["event"]
        if kind == "start":
            start = event
        elif kind == "step":
            step = event
        elif kind == "done":
            done = event
    if start is None and step is None and done is None:
        return None
    s = step or {}
    out = {
        "started": start is not None,
        "start": start,
        "step": _number(s.get("step")),
        "elapsed": _number(s.get("elapsed")),
        "train_loss": _number(s.get("train_loss")),
        "tokens": _number(s.get("tokens")),
        "tokens_per_s": _number(s.get("tokens_per_s")),
        "done": done is not None,
        "done_event": done,
    }
    if done is not None:
        for key, source in (("step", "steps"), ("elapsed", "training_seconds"), ("tokens", "tokens")):
            if out[key] is None:
                out[key] = _number(done.get(source))
    for key in ("step", "tokens"):
        if out[key] is not None:
            out[key] = int(out[key])
    return out


def _read_log(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= HEAD_BYTES + TAIL_BYTES:
            data = f.read()
        else:  # the middle holds only older step lines; keep both ends, joined on a line break
            head = f.read(HEAD_BYTES)
            f.seek(size - TAIL_BYTES)
            data = head + b"\n" + f.read(TAIL_BYTES)
    return data.decode("utf-8", "replace")


def read_progress(log_path: str | Path | None) -> dict | None:
    """`progress_from_text` of the log file at `log_path`; None if there is no path, no file (yet), the
    file cannot be read, or it has no progress event yet. Never raises for a missing or partial log."""
    if log_path is None:
        return None
    try:
        text = _read_log(Path(log_path))
    except OSError:
        return None
    return progress_from_text(text)


def remaining_seconds(progress: dict | None, budget_seconds: float) -> float | None:
    """Training seconds left of the budget (never negative), or None before the first step."""
    if progress is None or progress.get("elapsed") is None:
        return None
    return max(0.0, budget_seconds - progress["elapsed"])


def progress_text(progress: dict | None, budget_seconds: float) -> str:
    """One plain line: `step 120 | loss 3.2101 | 45s / 300s | 4m 15s left | 52,000 tok/s`, or a
    state (`waiting for train.py`, `starting: compiling, no step yet`, `training done ...`)."""
    if progress is None:
        return "waiting for train.py (no progress yet)"
    if progress["done"]:
        return (f"training done: {progress['step'] if progress['step'] is not None else '?'} steps in "
                f"{format_duration(progress['elapsed'])}; evaluating")
    if progress["elapsed"] is None:
        return "started: no step yet (start-up / compilation)"
    parts = [f"step {progress['step'] if progress['step'] is not None else '?'}"]
    if progress["train_loss"] is not None:
        parts.append(f"loss {progress['train_loss']:.4f}")
    parts.append(f"{progress['elapsed']:.0f}s / {budget_seconds:.0f}s")
    parts.append(f"{format_duration(remaining_seconds(progress, budget_seconds))} left")
    if progress["tokens_per_s"] is not None:
        parts.append(f"{progress['tokens_per_s']:,.0f} tok/s")
    return " | ".join(parts)


def fraction_done(progress: dict | None, budget_seconds: float) -> float:
    """Share of the training budget spent, in [0, 1] (1 once train.py reported done)."""
    if progress is None or budget_seconds <= 0:
        return 0.0
    if progress["done"]:
        return 1.0
    if progress["elapsed"] is None:
        return 0.0
    return min(1.0, max(0.0, progress["elapsed"] / budget_seconds))


def render_progress(progress: dict | None, budget_seconds: float, width: int = 40) -> RenderableType:
    """A rich renderable: a bar of the training budget spent, then `progress_text`."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=width)
    grid.add_column(justify="right", width=5)
    grid.add_column()
    fraction = fraction_done(progress, budget_seconds)
    grid.add_row(ProgressBar(total=1.0, completed=fraction, width=width), f"{100 * fraction:.0f}%",
                 Text(progress_text(progress, budget_seconds)))
    return grid


def running_view(description: str | None, progress: dict | None, budget_seconds: float) -> RenderableType:
    """`description` (e.g. `running_line`) above `render_progress`; just `Text("nothing running")` when
    `description` is None."""
    if description is None:
        return Text("nothing running", style="dim")
    return Group(Text(for_terminal(description), style="bold cyan"), render_progress(progress, budget_seconds))
