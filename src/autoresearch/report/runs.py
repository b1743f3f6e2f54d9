"""All the runs of a task folder (`status --all`): the table with one row per run, and the line that says
whether a run's loop lives and, when it does not, how to continue it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table
from rich.text import Text

from autoresearch.config import MetricConfig
from autoresearch.report.text import format_duration, or_dash
from autoresearch.safe_text import for_terminal

if TYPE_CHECKING:  # report.summary re-exports this module's names, so it is not imported at run time
    from autoresearch.report.summary import Summary

_COLUMNS = (("tag", "left"), ("loop", "left"), ("experiments", "right"), ("kept", "right"), ("crashes", "right"),
            ("baseline", "right"), ("best", "right"), ("change", "right"), ("last", "right"))


def runs_table(summaries: Sequence[Summary], alive: dict[str, bool | None], *, now: float | None = None,
               metric: MetricConfig = MetricConfig(), doing: dict[str, str] | None = None) -> Table:
    """All the runs of a task folder, one row each (`status --all`): tag, whether its loop lives (`alive`:
    tag -> True, False, or None where unknown), experiments, keeps, crashes, baseline and best under
    `metric`'s direction, the best's change, and how long ago the run last finished an experiment; with
    `doing` (tag -> a short text), a last column of what each live loop is doing now."""
    now = time.time() if now is None else now
    table = Table(title="runs", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for name, justify in (*_COLUMNS, *((("now", "left"),) if doing is not None else ())):
        table.add_column(name, justify=justify, no_wrap=True)
    for summary in summaries:
        live = alive.get(summary.tag)
        now_cell = () if doing is None else (Text(for_terminal(doing.get(summary.tag, "") if live else "")),)
        table.add_row(*_run_row(summary, live, now, metric), *now_cell)
    return table


def _run_row(summary: Summary, live: bool | None, now: float, metric: MetricConfig) -> list:
    """The cells of one run's row of `runs_table`, up to (not including) its `now` column."""
    loop = Text("running", style="bold cyan") if live else Text("?" if live is None else "stopped", style="dim")
    change = "-"
    if summary.improvement_pct is not None:
        change = f"{'+' if metric.maximize else '-'}{summary.improvement_pct:.2f}%"
    last = "-" if summary.last_ended is None else format_duration(max(0.0, now - summary.last_ended)) + " ago"
    crashes = summary.counts["crash"] + summary.counts["timeout"]
    return [summary.tag, loop, str(summary.total), str(summary.kept), str(crashes),
            or_dash(summary.baseline.metric if summary.baseline else None, "{:.6f}"),
            or_dash(summary.best.metric if summary.best else None, "{:.6f}"), change, last]


def loop_state(task_dir, tag: str) -> dict:
    """Whether the loop of `tag` is alive (None: unknown here), who runs it, and the other live tags."""
    from autoresearch.runlock import holder, live_tags

    who = holder(task_dir, tag)
    state = {"alive": None if who is None else bool(who), "others": [t for t in live_tags(task_dir) if t != tag]}
    if who:
        state.update(pid=who.pid, host=who.host, since=who.started_at, holder=who.describe())
    return state


def loop_line(tag: str, alive: bool | None, running_seq: int | None, holder: str | None = None,
              others: Sequence[str] = ()) -> str:
    """Whether the loop of `tag` lives, said so that a dead one's next step is plain. `alive` None: unknown
    (no file locks on this system); `running_seq`: the experiment the store has as RUNNING; `holder`: who
    runs it (e.g. `pid 123, since ...`); `others`: tags of live loops beside it in the task folder."""
    if alive is None:
        text = "loop: liveness unknown on this system"
    elif alive:
        text = f"loop: running ({holder})" if holder else "loop: running"
        if running_seq is None:
            text += ", between experiments (the agent is proposing, or the best is being measured)"
    elif running_seq is not None:
        text = (f"loop: not running (stopped or killed), so #{running_seq} was interrupted; it runs again with "
                f"`autoresearch run --resume --tag {tag}`")
    else:
        text = f"loop: not running; continue with `autoresearch run --resume --tag {tag}`"
    if others:
        text += f". Also running in this folder: {', '.join(others)}"
    return text
