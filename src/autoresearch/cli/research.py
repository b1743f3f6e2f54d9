"""`autoresearch run`: the research loop, one or several at once (--parallel), and the lines it prints."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import typer
from rich.markup import escape

from autoresearch.agents.registry import describe_backends
from autoresearch.cli.common import app, err, fail, open_store, out, task_config
from autoresearch.cli.look import line_summaries
from autoresearch.cli.task import dataset_for, live_view
from autoresearch.config import (
    ConfigError,
    TaskConfig,
)
from autoresearch.safe_text import for_markup, for_terminal
from autoresearch.workspace import GitError, Workspace


@app.command()
def run(agent: list[str] = typer.Option(["tune"], help=f"Agent: {describe_backends()}. Given more than once, the "
                                                      "agents take turns (one listed twice gets twice the turns)."),
        budget: float = typer.Option(None, help="Seconds of training per experiment (default: the task's)."),
        max_experiments: int = typer.Option(None, help="Stop when the run has this many experiments."),
        max_runs: int = typer.Option(None, help="Stop when the run has made this many training runs (confirmations "
                                                "and the best's re-runs included)."),
        max_hours: float = typer.Option(None, help="Stop after this many hours."),
        max_cost: float = typer.Option(None, help="Stop once the agent has spent this many dollars in the run "
                                                  "(as the agent reports it)."),
        tag: str = typer.Option(None, help="Run tag; the branch is autoresearch/<tag> (default: today, e.g. nov27)."),
        resume: bool = typer.Option(False, help="Continue the run of this tag after a stop or a crash."),
        recalibrate: bool = typer.Option(False, help="Measure the best again before the next experiment: "
                                                     "keep.noise_seeds more runs, for the noise."),
        base_url: str = typer.Option(None, help="openai:/anthropic: agents: the API's address, e.g. "
                                                "http://localhost:8000/v1 for vLLM or Ollama."),
        pipeline: bool = typer.Option(None, "--pipeline/--no-pipeline",
                                      help="Let the agent draft the next proposal while an experiment trains "
                                           "(default: loop.pipeline, auto: on for API agents on another machine)."),
        turns: str = typer.Option(None, help="With several agents: fixed (each as often as it is listed) or "
                                             "adaptive (more turns to those whose proposals get kept) "
                                             "(default: loop.turns)."),
        adopt_from: str = typer.Option(None, help="Take up the best of these other runs of the folder (tags, "
                                                  "comma-separated; '*': all) when it beats this run's by more "
                                                  "than the noise (default: loop.adopt_from)."),
        adopt_after: int = typer.Option(None, help="Take another run's best up only after this many experiments "
                                                   "without a keep (default: loop.adopt_after, 0: at once)."),
        exchange: str = typer.Option(None, help="A folder shared by machines where this run writes its best and "
                                                "reads the others' (default: loop.exchange)."),
        parallel: str = typer.Option(None, help="Run this many loops at once, each its own run <tag>-0, <tag>-1, "
                                                "...: one per GPU ('all': one per visible GPU), or on a machine "
                                                "without one, each on its share of the cores. They take up each "
                                                "other's bests unless --adopt-from says otherwise."),
        executor: str = typer.Option(None, help="Where runs train: local (this machine) or ray (tasks on a Ray "
                                                "cluster, docs/ray.md) (default: executor.kind)."),
        ray_address: str = typer.Option(None, help="With --executor ray: the cluster, auto, host:6379 or "
                                                   "ray://host:10001 (default: executor.address)."),
        runs_at_once: int = typer.Option(None, help="With --executor ray: how many runs of a loop may train at "
                                                    "once, each on a GPU of its own: the baseline's seeds, a "
                                                    "candidate's confirmations, the best's re-runs "
                                                    "(default: executor.runs_at_once)."),
        task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Run the research loop: propose, commit, train, evaluate, keep or discard, record; repeat."""
    import time

    config = _with_loop_options(task_config(task_dir), adopt_from=adopt_from, adopt_after=adopt_after,
                                exchange=exchange, turns=turns)
    config = _with_executor_options(config, kind=executor, address=ray_address, runs_at_once=runs_at_once)
    if parallel is not None:
        options = [word for name in agent for word in ("--agent", name)]
        for flag, value in (("--budget", budget), ("--max-experiments", max_experiments), ("--max-runs", max_runs),
                            ("--max-hours", max_hours),
                            ("--max-cost", max_cost), ("--base-url", base_url), ("--adopt-from", adopt_from),
                            ("--adopt-after", adopt_after), ("--exchange", exchange), ("--turns", turns),
                            ("--executor", executor), ("--ray-address", ray_address),
                            ("--runs-at-once", runs_at_once)):
            if value is not None:
                options += [flag, str(value)]
        options += ["--recalibrate"] * recalibrate
        if pipeline is not None:
            options.append("--pipeline" if pipeline else "--no-pipeline")
        _run_parallel(parallel, tag or time.strftime("%b%d").lower(), options + ["--dir", str(task_dir.resolve())],
                      config, resume=resume, share=adopt_from is None and not config.loop.adopt_from,
                      task_dir=task_dir)
        return
    from autoresearch.loop import Limits

    loop, watchers = _open_loop(task_dir, config, agent, tag=tag or time.strftime("%b%d").lower(), resume=resume,
                                budget=budget, limits=Limits(max_experiments, max_hours, max_cost, max_runs),
                                base_url=base_url, pipeline=pipeline, recalibrate=recalibrate)
    _turn(loop, watchers)


def _with_loop_options(config: TaskConfig, **given) -> TaskConfig:
    """The task's settings with the [loop] settings given on the command line; a clear error if they are bad."""
    if given["adopt_from"] is not None:
        given["adopt_from"] = [t.strip() for t in given["adopt_from"].split(",") if t.strip()]
    try:
        return dataclasses.replace(config, loop=dataclasses.replace(
            config.loop, **{k: v for k, v in given.items() if v is not None})).validate()
    except ConfigError as e:
        fail(str(e))


def _with_executor_options(config: TaskConfig, **given) -> TaskConfig:
    """The task's settings with the [executor] settings given on the command line."""
    try:
        return dataclasses.replace(config, executor=dataclasses.replace(
            config.executor, **{k: v for k, v in given.items() if v is not None})).validate()
    except ConfigError as e:
        fail(str(e))


def _open_loop(task_dir: Path, config: TaskConfig, agent: list[str], *, tag: str, resume: bool, budget, limits,
               base_url, pipeline, recalibrate: bool):
    """The agents made and checked, the loop opened (or resumed) on `tag`; a clear error if either cannot be."""
    from autoresearch.agents import AgentConfigError, make_agents
    from autoresearch.loop import Loop, LoopError, request_recalibration
    from autoresearch.loop.drafts import wants_pipeline
    from autoresearch.observe import ObserverError, Observers, observers_for
    from autoresearch.run.executor import run_device
    from autoresearch.run.seam import RunnerUnavailable

    profile = config.train.profile
    if profile == "auto":  # a task of its own command runs no profile of the baseline: torch is not needed here
        profile = "h100" if run_device(config).startswith("cuda") else "cpu"  # where the runs train
    dataset = dataset_for(config)
    try:
        chosen = make_agents(agent, task_dir.resolve(), profile, base_url=base_url, turns=config.loop.turns)
        chosen.preflight()  # a refused key or an unreachable server fails now, not at the first proposal
        loop = Loop(task_dir, config, dataset, chosen, tag=tag, resume=resume, budget=budget, limits=limits,
                    pipeline=wants_pipeline(config.loop.pipeline if pipeline is None else pipeline, chosen),
                    on_event=_loop_events())
    except (AgentConfigError, LoopError, GitError, RunnerUnavailable) as e:
        fail(str(e))
    try:
        watchers = Observers(observers_for(config, task_dir.resolve(), loop.store, loop.tag),
                             warn=lambda text: err.print(f"[yellow]{for_markup(text)}[/]", highlight=False))
    except ObserverError as e:
        loop.close()
        fail(str(e))
    if watchers:
        printer = loop.on_event

        def on_event(event: dict) -> None:
            printer(event)
            watchers.on_event(event)
        loop.on_event = on_event
    if recalibrate:
        request_recalibration(loop.store, loop.tag)
    return loop, watchers


def _turn(loop, watchers) -> None:
    """Run the loop until it stops; the first Ctrl-C stops it after this experiment, a second aborts that.
    `watchers` (`observe.Observers`) are told how it stopped, a crash included."""
    import signal

    def on_interrupt(signum, frame):
        if loop.stop_requested:  # second Ctrl-C: abort the running experiment; --resume runs it again
            raise KeyboardInterrupt
        loop.stop_requested = True
        err.print("stopping after this experiment (Ctrl-C again to abort it)")

    signal.signal(signal.SIGINT, on_interrupt)
    from autoresearch.run.seam import RunnerUnavailable

    crashed = True
    reason = "crashed"
    try:
        reason = loop.run()
        crashed = False
    except KeyboardInterrupt:
        reason, crashed = "aborted; the interrupted experiment runs again with --resume", False
    except RunnerUnavailable as e:
        reason = str(e)
    except BaseException as e:
        reason = f"crashed: {type(e).__name__}: {e}"
        raise
    finally:
        watchers.on_stop(reason, crashed=crashed)
        loop.close()
    out.print(f"loop stopped: {for_markup(reason)}. Results: {escape(str(loop.results_path))}")


def _run_parallel(count: str, base_tag: str, options: list[str], config: TaskConfig, *, resume: bool, share: bool,
                  task_dir: Path) -> None:
    """`run --parallel`: a loop per GPU or share of the cores (parallel.py), their lines shown with their tags,
    then a line per run. `resume`: continue the loops that have runs, and start the others (at least one must
    have a run). `share`: the loops take up each other's bests (no adopt_from was given)."""
    from autoresearch.loop import branch_name
    from autoresearch.loop import parallel as par
    from autoresearch.report.runs import runs_table

    cluster = config.executor.kind == "ray"
    gpus = [] if config.train.device == "cpu" or cluster else par.visible_gpus()
    try:
        places = par.plan(count, base_tag, gpus, par.usable_cpus(), cluster=cluster)
        workspace = Workspace(task_dir)
        existing = {p.tag for p in places if workspace.branch_exists(branch_name(p.tag))}
    except (par.ParallelError, GitError) as e:
        fail(str(e))
    if existing and not resume:
        named = ", ".join(p.tag for p in places if p.tag in existing)
        fail(f"{named} already {'have runs' if len(existing) > 1 else 'has a run'}: continue with --resume (loops "
             f"without a run are then started), or start new ones with --tag NEW")
    if resume and not existing:
        fail(f"nothing to resume: none of {', '.join(p.tag for p in places)} has a run; start them without --resume")
    if share and len(places) > 1:
        options = options + ["--adopt-from", ",".join(p.tag for p in places)]
    lines = _PrefixedLines(places)
    log_dir = task_dir / ".autoresearch" / "logs" / "parallel"
    for place in places:
        out.print(f"{place.tag}: {place.where}, output in {par.log_file(log_dir, place.tag)}",
                  style=lines.style[place.tag], highlight=False)

    def argv(place, again: bool) -> list[str]:  # a loop started again resumes once it has made its branch
        resumes = place.tag in existing or (again and workspace.branch_exists(branch_name(place.tag)))
        return par.loop_argv(place, options + ["--resume"] * resumes)

    codes = par.run_all(places, argv, log_dir, lines.line, lines.stopping, lines.restart,
                        env={"COLUMNS": lines.columns})
    with open_store(task_dir) as store:
        tags = [p.tag for p in places if p.tag in store.tags()]
        if tags:
            out.print(runs_table(*line_summaries(store, task_dir, config, tags), metric=config.metric))
    failed = {tag: code for tag, code in codes.items() if code != 0}
    if failed:
        fail("; ".join(f"the loop {tag} ended with exit status {code} (its lines above say why)"
                        for tag, code in failed.items()))


class _PrefixedLines:
    """How `run --parallel` shows its loops' output: each line after its tag, in the tag's colour."""

    COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")

    def __init__(self, places) -> None:
        self.width = max(len(p.tag) for p in places) + 3
        self.columns = str(max(80, shutil.get_terminal_size().columns - self.width))
        self.style = {p.tag: self.COLOURS[i % len(self.COLOURS)] for i, p in enumerate(places)}

    def line(self, tag: str, line: str) -> None:
        from rich.text import Text

        text = Text(f"[{tag}]".ljust(self.width), style=self.style[tag])
        text.append(for_terminal(line))
        out.print(text, highlight=False, soft_wrap=True)

    def stopping(self, presses: int) -> None:
        err.print("stopping every loop after its experiment (Ctrl-C again to abort them)" if presses == 1 else
                  "aborting the running experiments; --resume runs them again")

    def restart(self, tag: str, code: int, ran: float, wait: float) -> None:
        from rich.text import Text

        from autoresearch.report.text import format_duration

        how = f"was killed by signal {-code}" if code < 0 else f"ended with exit status {code}"
        err.print(Text(f"[{tag}]".ljust(self.width), style=self.style[tag]) + Text(
            f"the loop {how} after {format_duration(ran)}: it starts again with --resume in {wait:.0f} s"),
                  highlight=False, soft_wrap=True)


def _decided_line(event: dict) -> str:
    detail = (f"{event['metric_name']} {event['metric']:.6f}" if event.get("metric") is not None
              else for_markup(event.get("reason") or ""))
    if event.get("metric") is not None and (event.get("runs") or 0) > 1:
        detail += f" (mean of {event['runs']} runs)"
    if event.get("metric") is not None and event.get("reason"):
        detail += f": {for_markup(event['reason'])}"
    return f"  -> {event['status']} {detail}"


def _recalibrate_line(event: dict) -> str:
    from autoresearch.report.text import noun

    why = {"requested": "as asked", "settle": "as it was kept on fewer runs than keep.best_runs"}.get(
        event.get("why", ""), "for the noise")
    return f"  [dim]the best (#{event['seq']}) is measured again: {noun(event['runs'], 'more run')}, {why}[/]"


def _speed_line(event: dict) -> str:
    from autoresearch.report.text import noun

    return (f"  [yellow]the machine is {abs(event['shift']):.0%} {'faster' if event['shift'] > 0 else 'slower'} "
            f"than when the best (#{event['best_seq']}) was measured ({event['then']:,.0f} -> "
            f"{event['now']:,.0f} GFLOP/s): the best runs again ({noun(event['runs'], 'run')}), so "
            "both are compared at this speed[/]")


def _task_edited_lines(event: dict) -> str:
    lines = []
    for name in map(for_markup, event["files"]):
        then = ("the next proposal follows it" if name == "program.md" else "this loop keeps the settings "
                "it started with; yours apply at the next autoresearch run --resume")
        if event["boxed"]:
            lines.append(f"  [cyan]{name} was edited during the run, not by the run (the box keeps it out of "
                         f"reach): {then}[/]")
        else:
            lines.append(f"  [yellow]{name} changed during the run: {then}. With no box the run could have "
                         "written it too: check that it says what you wrote[/]")
    return "\n".join(lines)


# What the loop's events print (rich markup), by kind; kinds not listed print nothing.
_LOOP_EVENT_LINES = {
    "experiment": lambda e: f"[bold]experiment {e['seq']}[/]: {for_markup(e['description'])}",
    "decided": _decided_line,
    "confirm": lambda e: f"  [dim]{for_markup(e['reason'])} (run {e['run']})[/]",
    "recalibrate": _recalibrate_line,
    "speed": _speed_line,
    "task_edited": _task_edited_lines,
    "budget_kept": lambda e: (
        f"[cyan]this run keeps its budget of {e['budget']:g} s per experiment (the task's settings now say "
        f"{e['configured']:g} s): its best was measured so. Start a new run (--tag NEW) to use the new budget.[/]"),
    "adopt": lambda e: (
        f"[cyan]{for_markup(e['source'])}'s best (#{e['seq']}, {e['metric_name']} {e['metric']:.6f}) beats this run's by more "
        "than the noise: it is run here, and judged like any change[/]"),
    "adopt_refused": lambda e: f"  [yellow]{for_markup(e['source'])}'s best is not taken up: {for_markup(e['error'])}[/]",
    "exchange_failed": lambda e: (
        f"  [yellow]the exchange folder {for_markup(e['folder'])} cannot be written ({for_markup(e['error'])}): other machines do not see "
        "this run's best; the loop goes on[/]"),
    "cache_frozen": lambda e: (
        f"  [dim]the baseline's compile cache ({e['bytes'] / 2**20:.0f} MB) is frozen: each run starts from a copy of it[/]"),
    "cache_not_frozen": lambda e: (
        f"  [yellow]the baseline's compile cache is over sandbox.compile_cache_gb = {e['limit_gb']:g}: it is not kept, "
        "and every run compiles from scratch[/]"),
    "startup_code_restored": lambda e: (
        f"  [yellow]the run planted start-up code in Python's folders; put back as it was: "
        f"{for_markup(', '.join(e['files']))}[/]"),
    "in_flight": lambda e: (
        "  [dim]" + ", ".join(f"experiment {seq} run {run}" for seq, run in e["started"])
        + f" started ({e['busy']} in flight)[/]"),
    "checks": lambda e: f"  [dim]#{e['seq']} would be kept: the checks run ({for_markup(', '.join(e['commands']))})[/]",
    "called_off": lambda e: f"  [dim]experiment {e['seq']} run {e['run']} called off: the rule decided without it[/]",
    "drafting": lambda e: f"  [dim]{for_markup(e['agent'])} drafts the next proposal while this one trains[/]",
    "check_machine": lambda e: (
        f"  [yellow]{e['crashes']} experiments in a row failed: the best (#{e['seq']}) runs once more, to tell a "
        "broken machine from broken proposals[/]"),
    "machine_ok": lambda e: f"  [dim]the best (#{e['seq']}) still runs: the failures are the proposals'[/]",
    "agent_retry": lambda e: (
        f"  [yellow]{e['failures']} proposals in a row did not run (the last: {for_markup(e['error'])}): the agent is "
        f"asked again in {e['seconds']:.0f} s (Ctrl-C stops)[/]"),
}


def _loop_events():
    show = live_view(False)

    def on_event(event: dict) -> None:
        kind = event.get("event")
        if kind in ("start", "eval"):
            show(event)
        elif kind in _LOOP_EVENT_LINES:
            out.print(_LOOP_EVENT_LINES[kind](event), highlight=False)
    return on_event


if __name__ == "__main__":
    app()
