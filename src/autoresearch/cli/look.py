"""Commands that read what happened: status, recalibrate, show, report, compare."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import typer

from autoresearch.cli.common import app, fail, latest_tag, open_store, out, task_config
from autoresearch.config import (
    TaskConfig,
)
from autoresearch.decide.measured import measured
from autoresearch.safe_text import for_terminal


@app.command()
def status(tag: str = typer.Option(None, help="Run tag (default: the latest)."),
           as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
           watch: bool = typer.Option(False, help="Refresh every 2 s until Ctrl-C (with --all too)."),
           all_runs: bool = typer.Option(False, "--all", help="One line per run of the task folder instead."),
           task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """The experiments of a run, the best so far, and live progress of the running one."""
    import time

    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from autoresearch.report import read_progress, running_line, running_view, status_data, status_table
    from autoresearch.report.noise import noise_data, noise_line, speed_data, speed_text
    from autoresearch.report.runs import loop_line
    from autoresearch.report.status import cluster_line, cluster_of

    config = task_config(task_dir)
    with open_store(task_dir) as store:
        if all_runs and (as_json or not watch):
            _print_runs(store, task_dir, config, as_json)
            return
        tag = None if all_runs else latest_tag(store, tag)
        if as_json:
            print(json.dumps({**status_data(store, tag, metric=config.metric), "loop": _loop_state(task_dir, tag)}))
            return

        def view():
            if all_runs:  # --watch: the runs side by side, with what each live loop is doing
                return _runs_view(store, task_dir, config)
            running = store.running(tag)
            loop = _loop_state(task_dir, tag)
            line = Text(loop_line(tag, loop["alive"], running[-1].seq if running else None, loop.get("holder"),
                                  loop["others"]), style="dim" if loop["alive"] is not False else "yellow")
            speed = speed_data(store, tag)
            parts = [status_table(store, tag, last=40, metric=config.metric),
                     Text(noise_line(noise_data(store, tag), config.metric), style="dim")]
            if speed["runs"]:
                parts.append(Text(f"machine speed: {speed_text(speed)}", style="yellow" if speed["shifts"] else "dim"))
            cluster = cluster_of(store, measured(store, tag))
            if cluster is not None:
                parts.append(Text(cluster_line(cluster), style="dim"))
            parts.append(line)
            if loop["alive"] is not False:  # a dead loop's RUNNING experiment makes no progress: no bar for it
                progress = read_progress(running[-1].log_path) if running and running[-1].log_path else None
                parts.append(running_view(running_line(store, tag), progress,
                                          store.line(tag).budget_seconds or config.train.budget_seconds))
            return Group(*parts)

        if not watch:
            out.print(view())
            return
        with Live(view(), console=out, refresh_per_second=1) as live:
            try:
                while True:
                    time.sleep(2)
                    live.update(view())
            except KeyboardInterrupt:
                pass


def line_summaries(store, task_dir: Path, config: TaskConfig, tags: list[str] | None = None) -> tuple[list, dict]:
    """The summary of every run of the folder (or of `tags`), and whether its loop is alive."""
    from autoresearch.report.summary import summarize

    tags = store.tags() if tags is None else tags
    if not tags:
        fail("no experiments yet: start a run with `autoresearch run`")
    alive = {tag: _loop_state(task_dir, tag)["alive"] for tag in tags}
    return [summarize(tag, measured(store, tag), metric=config.metric) for tag in tags], alive


def _print_runs(store, task_dir: Path, config: TaskConfig, as_json: bool) -> None:
    from autoresearch.report.runs import runs_table
    from autoresearch.report.summary import summary_data

    summaries, alive = line_summaries(store, task_dir, config)
    if as_json:
        print(json.dumps([{**summary_data(s), "loop_alive": alive[s.tag]} for s in summaries]))
    else:
        out.print(runs_table(summaries, alive, metric=config.metric))


def _runs_view(store, task_dir: Path, config: TaskConfig):
    """`status --all --watch`: the runs table with a column of what each live loop is doing (its running
    experiment and how far its training has come)."""
    from autoresearch.report import read_progress
    from autoresearch.report.progress import progress_text
    from autoresearch.report.runs import runs_table

    summaries, alive = line_summaries(store, task_dir, config)
    doing = {}
    for summary in summaries:
        running = store.running(summary.tag)
        doing[summary.tag] = "between experiments"  # the agent proposing, or the loop at git and the store
        if running:
            budget = store.line(summary.tag).budget_seconds or config.train.budget_seconds
            doing[summary.tag] = (f"#{running[-1].seq} {running[-1].description[:40]}: "
                                  f"{progress_text(read_progress(running[-1].log_path), budget)}")
    return runs_table(summaries, alive, metric=config.metric, doing=doing)


def _loop_state(task_dir: Path, tag: str) -> dict:
    from autoresearch.report.runs import loop_state

    return loop_state(task_dir, tag)


RECALIBRATE_HELP = ("Ask a run to measure its best again, for the noise, before its next experiment.\n\n"
                    "That is keep.noise_seeds more runs of the best. A running loop does it next, a stopped "
                    "one when it is resumed.")


@app.command(help=RECALIBRATE_HELP)
def recalibrate(tag: str = typer.Option(None, help="Run tag (default: the latest)."),
                task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Ask a run to measure its best again (see RECALIBRATE_HELP)."""
    from autoresearch.loop import request_recalibration

    config = task_config(task_dir)
    with open_store(task_dir) as store:
        tag = latest_tag(store, tag)
        request_recalibration(store, tag)
    alive = _loop_state(task_dir, tag)["alive"]
    when = ("before its next experiment" if alive
            else f"when it is resumed (autoresearch run --resume --tag {tag})" if alive is False
            else "before its next experiment, or when it is resumed")
    out.print(f"run {tag}: the best will be measured again, {config.keep.noise_seeds} more runs, {when}",
              highlight=False)


@app.command()
def show(seq: int = typer.Argument(None, help="The experiment's number in its run (default: the latest)."),
         tag: str = typer.Option(None, help="Run tag (default: the latest)."),
         as_json: bool = typer.Option(False, "--json", help="Print it as JSON."),
         diff: bool = typer.Option(True, "--diff/--no-diff", help="Show its change."),
         log: int = typer.Option(0, help="Show the last N lines of its training log (of each of its runs)."),
         task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """One experiment in full: its change, who proposed it, what it measured against the best of its time, why
    it was kept or not, what it cost, and its log. Discarded changes are shown too: the store keeps them."""
    from rich.syntax import Syntax

    from autoresearch.report.experiment import experiment_data, experiment_lines

    config = task_config(task_dir)
    with open_store(task_dir) as store:
        tag = latest_tag(store, tag)
        history = measured(store, tag)
        if not history:
            fail(f"run {tag!r} has no experiments yet")
        wanted = len(history) - 1 if seq is None else seq
        if not 0 <= wanted < len(history):
            fail(f"run {tag!r} has experiments #0 to #{len(history) - 1}: there is no #{seq}")
        data = experiment_data(history[wanted], history, metric=config.metric)
    logs = [(path, _log_tail(path, log)) for path in _run_logs(data["log_path"])] if log > 0 else []
    tail = logs[0][1] if logs else None
    if as_json:
        print(json.dumps({**data, "log_tail": tail, "run_logs": [{"path": p, "tail": t} for p, t in logs]}))
        return
    for line in experiment_lines(data, metric=config.metric):
        out.print(for_terminal(line), highlight=False, markup=False)
    if diff and data["diff"]:
        out.print()
        out.print(Syntax(for_terminal(data["diff"]), "diff", theme="ansi_dark", background_color="default", word_wrap=True))
    runs = sum(1 for path, _ in logs if path.endswith("train.log"))
    number = 0
    for path, lines in logs:
        number += path.endswith("train.log")
        run = f"run {number} of {runs}, " if runs > 1 else ""
        if path.endswith("eval.log"):
            run += "its evaluation worker's output (kept out of the agent's prompt), "
        out.print()
        out.print(f"{run}last {log} lines of {path}:" if lines else f"{run}no log at {path}", highlight=False,
                  markup=False)
        out.print(for_terminal("\n".join(lines)), highlight=False, markup=False)


def _run_logs(first: str | None) -> list[str]:
    """The logs of an experiment's runs: the first run's, then those of its further runs (seeds, confirmations,
    re-measurements), which the loop writes beside it as run-2/train.log, run-3/train.log, ..."""
    if not first:
        return []
    folder = Path(first).parent
    more = [p for p in folder.glob("run-*/train.log") if p.parent.name.removeprefix("run-").isdigit()]
    runs = [Path(first)] + sorted(more, key=lambda p: int(p.parent.name.removeprefix("run-")))
    # what an evaluation worker wrote when it failed: for you only, never in the agent's prompt (docs/security.md)
    return [str(p) for run in runs for p in (run, run.parent / "eval.log") if p == run or p.is_file()]


def _log_tail(path: str | None, lines: int) -> list[str]:
    """The last `lines` lines of a log file; empty when it is gone (logs of old runs may have been cleared)."""
    try:
        with open(path or "", errors="replace") as handle:
            return [line.rstrip("\n") for line in collections.deque(handle, maxlen=lines)]
    except OSError:
        return []


@app.command()
def report(tag: str = typer.Option(None, help="Run tag (default: the latest)."),
           out_dir: Path = typer.Option(None, "--out", help="Folder for the report (default: the task folder)."),
           task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Write results.tsv, progress.png, report.md and report.html (every experiment with its change)."""
    from autoresearch.report import write_report

    config = task_config(task_dir)
    with open_store(task_dir) as store:
        tag = latest_tag(store, tag)
        for path in write_report(store, tag, out_dir or task_dir, metric=config.metric):
            out.print(str(path))


@app.command()
def compare(tags: list[str] = typer.Argument(None, help="Run tags to compare (default: every run of the folder)."),
            out_dir: Path = typer.Option(None, "--out", help="Folder for compare.png and compare.md (default: the "
                                                               "task folder)."),
            as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON instead."),
            task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Compare runs: which got further, for equal effort, and whether the difference is more than the noise."""
    from autoresearch.report.compare import compare_data, contenders, findings, tolerance_of, write_compare

    config = task_config(task_dir)
    with open_store(task_dir) as store:
        known = store.tags()
        tags = list(tags or known)
        unknown = [t for t in tags if t not in known]
        if unknown:
            fail(f"no run with tag {', '.join(map(repr, unknown))} in {task_dir}: the runs here are "
                 f"{', '.join(known) or 'none yet'}")
        if not tags:
            fail("no experiments yet: start a run with `autoresearch run`")
        found, tolerance = contenders(store, tags, config.metric), tolerance_of(store, tags)
    if as_json:
        print(json.dumps(compare_data(found, config.metric, tolerance=tolerance)))
        return
    for line in findings(found, config.metric, tolerance=tolerance):
        out.print(f"- {for_terminal(line)}", highlight=False, markup=False)
    for path in write_compare(found, out_dir or task_dir, config.metric, tolerance=tolerance):
        out.print(str(path))


