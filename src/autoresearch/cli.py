"""Command line: a thin layer over the package. Each command maps onto one module's entry point."""

from __future__ import annotations

import collections
import dataclasses
import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoresearch.agents.registry import describe_backends
from autoresearch.config import (
    CONFIG_NAME,
    ConfigError,
    TaskConfig,
    default_config,
    generic_config,
    is_reference_layout,
    load_config,
    reference_config,
    render_config,
)
from autoresearch.data.prepare import SPLITS, open_dataset, prepare
from autoresearch.data.spec import DataError, parse_data_spec
from autoresearch.decide.measured import measured
from autoresearch.report.safe_text import for_markup, for_terminal
from autoresearch.run.diskguard import DiskSpaceError
from autoresearch.run.outcome import Outcome
from autoresearch.run.runner import run_experiment
from autoresearch.workspace import GitError, Workspace

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Autonomous ML research: the harness owns the loop, the clock and the metric.")
out = Console(emoji=False)  # an agent's `:warning:` shows as written, like its markup (report/safe_text.py)
err = Console(stderr=True, emoji=False)


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {for_markup(message)}")
    raise typer.Exit(2)


def _task(task_dir: Path):
    try:
        return load_config(task_dir)
    except ConfigError as e:
        _fail(str(e))


def _accelerated() -> bool:
    import torch

    return torch.cuda.is_available()


INIT_HELP = ("Create a task folder: the built-in task, a reference-layout folder, or a generic task.\n\n"
             "The built-in task gets the baseline train.py, program.md, autoresearch.toml and git. A folder in "
             "the reference layout (prepare.py, train.py, program.md) gets only the settings. A generic task "
             "runs --command and reads its metric with --metric-regex or --metric-json.")


@app.command(help=INIT_HELP)
def init(directory: Path = typer.Argument(Path("."), help="Task folder to create or fill."),
         force: bool = typer.Option(False, help="Overwrite the files init writes if present."),
         command: str = typer.Option(None, help="A generic task: the command one experiment runs, "
                                                "e.g. 'python solve.py'."),
         metric_regex: str = typer.Option(None, help="Generic task: read the metric from the output, e.g. "
                                                     "'^score:\\s*(\\S+)' (group 1 is the number)."),
         metric_json: str = typer.Option(None, help="Generic task: read the metric from FILE:KEY, e.g. "
                                                    "metrics.json:score."),
         metric_name: str = typer.Option("score", help="Generic task: the metric's name."),
         maximize: bool = typer.Option(False, help="Generic task: higher is better."),
         editable: list[str] = typer.Option(None, help="Generic task: a file (or glob) the agent may edit; "
                                                       "repeat for several.")):
    """Create a task folder (see INIT_HELP)."""
    directory.mkdir(parents=True, exist_ok=True)
    template = resources.files("autoresearch") / "template"
    if command is not None:
        if not editable:
            _fail("a generic task needs --editable FILE: the files the agent may change")
        try:
            config = generic_config(command, editable=list(editable), metric_name=metric_name, maximize=maximize,
                                    regex=metric_regex or "", json_spec=metric_json or "")
        except ConfigError as e:
            _fail(str(e))
        files = {CONFIG_NAME: render_config(config)}
        if not (directory / "program.md").exists():
            files["program.md"] = (template / "program_generic.md").read_text()
        kind = f"generic task: `{command}`, {metric_name} ({config.metric.direction})"
    elif is_reference_layout(directory) and not force:
        config = reference_config(uv=shutil.which("uv") is not None and (directory / "pyproject.toml").exists())
        files = {CONFIG_NAME: render_config(config)}
        kind = f"reference layout: `{config.train.command}`, val_bpb read from its output"
    else:
        config = default_config(_accelerated())
        files = {"train.py": (template / "train.py").read_text(),
                 "program.md": (template / "program.md").read_text(), CONFIG_NAME: render_config(config)}
        device = "CUDA" if config.train.budget_seconds >= 300 else "CPU"
        kind = f"{device} defaults: {config.train.budget_seconds:.0f} s budget, vocab {config.data.vocab_size}"
    existing = [name for name in files if (directory / name).exists()]
    if existing and not force:
        _fail(f"{directory} already has {', '.join(existing)}: use --force to overwrite, or pick another folder")
    for name, text in files.items():
        (directory / name).write_text(text)
    gitignore = directory / ".gitignore"
    if "__pycache__/" not in (gitignore.read_text() if gitignore.exists() else ""):
        with open(gitignore, "a") as f:
            f.write("__pycache__/\n")
    try:
        Workspace.ensure(directory, nested=True)
    except GitError as e:
        _fail(str(e))
    out.print(f"Created task in [bold]{escape(str(directory))}[/] ({kind}). Next: [bold]cd {escape(str(directory))} && "
              "autoresearch prepare[/]")


def _set_source(task_dir: Path, source: str) -> None:
    path = task_dir / CONFIG_NAME
    text = path.read_text()
    line = f"source = {json.dumps(source)}"
    new, count = re.subn(r'(?m)^source\s*=.*$', line.replace("\\", "\\\\"), text, count=1)
    if not count:
        new = re.sub(r"(?m)^\[data\]\s*$", f"[data]\n{line}", text, count=1)
    path.write_text(new)


@app.command("prepare")
def prepare_cmd(data: str = typer.Option(None, "--data", help="builtin | hf:<owner/name>[@rev] | <path>. "
                                           "Saved to autoresearch.toml."),
                force: bool = typer.Option(False, help="Rebuild even if a verified copy is cached."),
                task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Build (or verify and reuse) the data: document splits, tokenizer, token arrays."""
    if data is not None:
        try:
            parse_data_spec(data)
        except DataError as e:
            _fail(str(e))
        _task(task_dir)
        _set_source(task_dir, data)
    config = _task(task_dir)
    if not config.evaluated:
        _prepare_command(task_dir, config)
        return
    try:
        with err.status("preparing data") as status:
            result = prepare(config.data, force=force, progress=lambda msg: status.update(msg))
    except DataError as e:
        _fail(str(e))
    dataset = result.dataset
    how = "reused verified cache" if result.cached else "built"
    out.print(f"{how} in {result.seconds:.1f} s: {dataset.root}", markup=False)
    out.print(f"source: {escape(dataset.manifest['description'])}; vocabulary {dataset.vocab_size} ids "
              f"({dataset.manifest['vocab_size']} BPE + BOS)")
    table = Table("split", "documents", "MB", "tokens", "bytes/token", "unigram bpb", "floor bpb")
    for split in SPLITS:
        s = dataset.split_stats(split)
        floor = f"{s.floor_bpb:.4f}" if s.floor_bpb is not None else "-"
        table.add_row(split, f"{s.docs:,}", f"{s.bytes / 1e6:.2f}", f"{s.tokens:,}", f"{s.bytes / s.tokens:.2f}",
                      f"{s.unigram_bpb:.4f}", floor)
    out.print(table)


def _prepare_command(task_dir: Path, config: TaskConfig) -> None:
    """A task that reads its own metric prepares with its own command, if it has one."""
    command = config.train.prepare_command
    if not command:
        out.print("nothing to prepare: this task sets no train.prepare_command")
        return
    out.print(f"running {command}", markup=False)
    from autoresearch.run.environment import split_command

    try:
        code = subprocess.call(split_command(command), cwd=task_dir)
    except OSError as e:
        _fail(f"could not run train.prepare_command {command!r}: {e}")
    if code != 0:
        _fail(f"train.prepare_command {command!r} exited with code {code}")


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps(outcome.summary()))
        return
    rows = [
        ("status", outcome.status),
        (outcome.metric_name, _metric_text(outcome)),
        ("training_seconds", _fmt(outcome.training_seconds, "{:.1f}")),
        ("total_seconds", f"{outcome.total_seconds:.1f}"),
        ("startup_seconds", _fmt(outcome.startup_seconds, "{:.1f}")),
        ("eval_seconds", _fmt(outcome.eval_seconds, "{:.1f}")),
        ("peak_memory_mb", _fmt(outcome.peak_memory_bytes and outcome.peak_memory_bytes / 2**20, "{:.0f}")),
        ("mfu_percent", _fmt(outcome.mfu and 100 * outcome.mfu, "{:.1f}")),
        ("tokens_per_s", _fmt(outcome.tokens_per_s, "{:,.0f}")),
        ("tokens", _fmt(outcome.tokens, "{:,}")),
        ("steps", _fmt(outcome.steps, "{}")),
        ("params", _fmt(outcome.params, "{:,}")),
        ("device", outcome.device or "-"),
        ("log", outcome.log_path),
    ]
    out.print("---")
    for key, value in rows:
        out.print(f"{key + ':':<18} {for_terminal(value)}", highlight=False, markup=False)
    if outcome.error:
        err.print(f"[bold red]{outcome.status}:[/] {for_markup(outcome.error)}")


def _metric_text(outcome: Outcome) -> str:
    if outcome.metric is None:
        return "-"
    if outcome.val_bpb_stderr is not None:
        return f"{outcome.metric:.6f} ± {outcome.val_bpb_stderr:.6f}"
    return f"{outcome.metric:.6f} (reported by the run)"


def _fmt(value, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)


def _live(as_json: bool):
    console = err if as_json else out

    def show(event: dict) -> None:
        kind = event.get("event")
        if kind == "start":
            console.print(f"started: {event.get('params', 0):,} params on {for_markup(event.get('device'))} "
                          f"({for_markup(event.get('profile'))}), start-up {event.get('startup_seconds', 0):.1f} s",
                          highlight=False)
        elif kind == "step":
            console.print(f"step {event.get('step', '?'):>6} | {event.get('elapsed', 0):7.1f} s | "
                          f"loss {event.get('train_loss', float('nan')):.4f} | "
                          f"{event.get('tokens_per_s', 0):,.0f} tok/s", highlight=False)
        elif kind == "eval":
            console.print(f"evaluated in {event['seconds']:.1f} s", highlight=False)
    return show


def _dataset(config: TaskConfig):
    """The prepared data of a task the harness evaluates; None for a task that reads its own metric."""
    if not config.evaluated:
        return None
    try:
        return open_dataset(config.data)
    except DataError as e:
        _fail(str(e))


def _experiment(task_dir: Path, budget: float | None, seed: int, as_json: bool, evaluate_model: bool) -> Outcome:
    config = _task(task_dir)
    dataset = _dataset(config)
    try:
        return run_experiment(task_dir.resolve(), config, dataset, budget=budget, seed=seed,
                              evaluate_model=evaluate_model, on_event=_live(as_json))
    except DiskSpaceError as e:
        _fail(str(e))


@app.command()
def train(budget: float = typer.Option(None, help="Seconds of training (default: the task's budget)."),
          seed: int = typer.Option(0, help="Seed passed to train.py."),
          as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
          task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Run one experiment: train.py under the budget, then the harness's own evaluation."""
    if budget is not None and budget <= 0:
        _fail("--budget must be a positive number of seconds")
    outcome = _experiment(task_dir, budget, seed, as_json, evaluate_model=True)
    _print_outcome(outcome, as_json)
    if outcome.status != "ok":
        raise typer.Exit(1)


@app.command()
def bench(budget: float = typer.Option(None, help="Seconds of timed training (default 20 on CPU, 60 on GPU)."),
          as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
          task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Throughput of train.py's model on this device: tokens/s, MFU, peak memory, start-up time."""
    budget = budget or (60.0 if _accelerated() else 20.0)
    outcome = _experiment(task_dir, budget, 0, as_json, evaluate_model=False)
    figures = {
        "status": outcome.status, "device": outcome.device, "tokens_per_s": outcome.tokens_per_s,
        "mfu": outcome.mfu, "peak_memory_bytes": outcome.peak_memory_bytes,
        "startup_seconds": outcome.startup_seconds, "params": outcome.params,
        "flops_per_token": outcome.flops_per_token, "training_seconds": outcome.training_seconds,
        "error": outcome.error,
    }
    if as_json:
        print(json.dumps(figures))
    else:
        for key, value in figures.items():
            if value is not None:
                out.print(f"{key + ':':<20} {value:,.4g}" if isinstance(value, float)
                          else f"{key + ':':<20} {for_terminal(value)}", highlight=False, markup=False)
    if outcome.status != "ok":
        raise typer.Exit(1)


@app.command()
def run(agent: list[str] = typer.Option(["tune"], help=f"Agent: {describe_backends()}. Given more than once, the "
                                                      "agents take turns (one listed twice gets twice the turns)."),
        budget: float = typer.Option(None, help="Seconds of training per experiment (default: the task's)."),
        max_experiments: int = typer.Option(None, help="Stop when the run has this many experiments."),
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
        task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Run the research loop: propose, commit, train, evaluate, keep or discard, record; repeat."""
    import signal
    import time

    from autoresearch.agents import AgentConfigError, make_agents
    from autoresearch.loop import Limits, Loop, LoopError, request_recalibration
    from autoresearch.loop.drafts import wants_pipeline
    from autoresearch.run.environment import resolve_device

    config = _task(task_dir)
    given = {"adopt_from": None if adopt_from is None else [t.strip() for t in adopt_from.split(",") if t.strip()],
             "adopt_after": adopt_after, "exchange": exchange, "turns": turns}  # options for [loop] settings
    try:
        config = dataclasses.replace(config, loop=dataclasses.replace(
            config.loop, **{k: v for k, v in given.items() if v is not None})).validate()
    except ConfigError as e:
        _fail(str(e))
    if parallel is not None:
        base_tag = tag or time.strftime("%b%d").lower()
        options = [word for name in agent for word in ("--agent", name)]
        for flag, value in (("--budget", budget), ("--max-experiments", max_experiments), ("--max-hours", max_hours),
                            ("--max-cost", max_cost), ("--base-url", base_url), ("--adopt-from", adopt_from),
                            ("--adopt-after", adopt_after), ("--exchange", exchange), ("--turns", turns)):
            if value is not None:
                options += [flag, str(value)]
        options += ["--recalibrate"] * recalibrate
        if pipeline is not None:
            options.append("--pipeline" if pipeline else "--no-pipeline")
        _run_parallel(parallel, base_tag, options + ["--dir", str(task_dir.resolve())], config, resume=resume,
                      share=adopt_from is None and not config.loop.adopt_from, task_dir=task_dir)
        return
    profile = config.train.profile
    if profile == "auto":  # a task of its own command runs no profile of the baseline: torch is not needed here
        profile = "h100" if config.evaluated and resolve_device(config.train.device) == "cuda" else "cpu"
    dataset = _dataset(config)
    try:
        chosen = make_agents(agent, task_dir.resolve(), profile, base_url=base_url, turns=config.loop.turns)
        chosen.preflight()  # a refused key or an unreachable server fails now, not at the first proposal
        loop = Loop(task_dir, config, dataset, chosen, tag=tag or time.strftime("%b%d").lower(), resume=resume,
                    budget=budget, limits=Limits(max_experiments, max_hours, max_cost),
                    pipeline=wants_pipeline(config.loop.pipeline if pipeline is None else pipeline, chosen),
                    on_event=_loop_events())
    except (AgentConfigError, LoopError, GitError) as e:
        _fail(str(e))
    if recalibrate:
        request_recalibration(loop.store, loop.tag)

    def on_interrupt(signum, frame):
        if loop.stop_requested:  # second Ctrl-C: abort the running experiment; --resume runs it again
            raise KeyboardInterrupt
        loop.stop_requested = True
        err.print("stopping after this experiment (Ctrl-C again to abort it)")

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        reason = loop.run()
    except KeyboardInterrupt:
        reason = "aborted; the interrupted experiment runs again with --resume"
    finally:
        loop.close()
    out.print(f"loop stopped: {for_markup(reason)}. Results: {escape(str(loop.results_path))}")


def _run_parallel(count: str, base_tag: str, options: list[str], config: TaskConfig, *, resume: bool, share: bool,
                  task_dir: Path) -> None:
    """`run --parallel`: a loop per GPU or share of the cores (parallel.py), their lines shown with their tags,
    then a line per run. `resume`: continue the loops that have runs, and start the others (at least one must
    have a run). `share`: the loops take up each other's bests (no adopt_from was given)."""
    from rich.text import Text

    from autoresearch.loop import branch_name
    from autoresearch.loop import parallel as par
    from autoresearch.report.summary import format_duration, runs_table

    gpus = [] if config.train.device == "cpu" else par.visible_gpus()
    try:
        places = par.plan(count, base_tag, gpus, par.usable_cpus())
        workspace = Workspace(task_dir)
        existing = {p.tag for p in places if workspace.branch_exists(branch_name(p.tag))}
    except (par.ParallelError, GitError) as e:
        _fail(str(e))
    if existing and not resume:
        named = ", ".join(p.tag for p in places if p.tag in existing)
        _fail(f"{named} already {'have runs' if len(existing) > 1 else 'has a run'}: continue with --resume (loops "
              f"without a run are then started), or start new ones with --tag NEW")
    if resume and not existing:
        _fail(f"nothing to resume: none of {', '.join(p.tag for p in places)} has a run; start them without --resume")
    if share and len(places) > 1:
        options = options + ["--adopt-from", ",".join(p.tag for p in places)]
    width = max(len(p.tag) for p in places) + 3
    columns = str(max(80, shutil.get_terminal_size().columns - width))
    colours = ("cyan", "magenta", "green", "yellow", "blue", "red")
    style = {p.tag: colours[i % len(colours)] for i, p in enumerate(places)}
    log_dir = task_dir / ".autoresearch" / "logs" / "parallel"
    for place in places:
        out.print(f"{place.tag}: {place.where}, output in {par.log_file(log_dir, place.tag)}", style=style[place.tag],
                  highlight=False)

    def on_line(tag: str, line: str) -> None:
        text = Text(f"[{tag}]".ljust(width), style=style[tag])
        text.append(for_terminal(line))
        out.print(text, highlight=False, soft_wrap=True)

    def on_stopping(presses: int) -> None:
        err.print("stopping every loop after its experiment (Ctrl-C again to abort them)" if presses == 1 else
                  "aborting the running experiments; --resume runs them again")

    def on_restart(tag: str, code: int, ran: float, wait: float) -> None:
        how = f"was killed by signal {-code}" if code < 0 else f"ended with exit status {code}"
        err.print(Text(f"[{tag}]".ljust(width), style=style[tag]) + Text(
            f"the loop {how} after {format_duration(ran)}: it starts again with --resume in {wait:.0f} s"),
                  highlight=False, soft_wrap=True)

    def argv(place, again: bool) -> list[str]:  # a loop started again resumes once it has made its branch
        resumes = place.tag in existing or (again and workspace.branch_exists(branch_name(place.tag)))
        return par.loop_argv(place, options + ["--resume"] * resumes)

    codes = par.run_all(places, argv, log_dir, on_line, on_stopping, on_restart, env={"COLUMNS": columns})
    with _store(task_dir) as store:
        tags = [p.tag for p in places if p.tag in store.tags()]
        if tags:
            out.print(runs_table(*_runs(store, task_dir, config, tags), metric=config.metric))
    failed = {tag: code for tag, code in codes.items() if code != 0}
    if failed:
        _fail("; ".join(f"the loop {tag} ended with exit status {code} (its lines above say why)"
                        for tag, code in failed.items()))


def _store(task_dir: Path):
    """The task's experiment store, opened after the settings are checked; a clear error if it cannot be."""
    from autoresearch.store import Store, StoreError

    _task(task_dir)
    try:
        return Store.open(task_dir)
    except StoreError as e:
        _fail(str(e))


def _latest_tag(store, tag: str | None) -> str:
    tag = tag or (store.tags() or [None])[-1]
    if tag is None:
        _fail("no experiments yet: start a run with `autoresearch run`")
    return tag


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
    from autoresearch.report.summary import loop_line, noise_data, noise_line, speed_data, speed_text

    config = _task(task_dir)
    with _store(task_dir) as store:
        if all_runs and (as_json or not watch):
            _print_runs(store, task_dir, config, as_json)
            return
        tag = None if all_runs else _latest_tag(store, tag)
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


def _runs(store, task_dir: Path, config: TaskConfig, tags: list[str] | None = None) -> tuple[list, dict]:
    """The summary of every run of the folder (or of `tags`), and whether its loop is alive."""
    from autoresearch.report.summary import summarize

    tags = store.tags() if tags is None else tags
    if not tags:
        _fail("no experiments yet: start a run with `autoresearch run`")
    alive = {tag: _loop_state(task_dir, tag)["alive"] for tag in tags}
    return [summarize(tag, measured(store, tag), metric=config.metric) for tag in tags], alive


def _print_runs(store, task_dir: Path, config: TaskConfig, as_json: bool) -> None:
    from autoresearch.report.summary import runs_table, summary_data

    summaries, alive = _runs(store, task_dir, config)
    if as_json:
        print(json.dumps([{**summary_data(s), "loop_alive": alive[s.tag]} for s in summaries]))
    else:
        out.print(runs_table(summaries, alive, metric=config.metric))


def _runs_view(store, task_dir: Path, config: TaskConfig):
    """`status --all --watch`: the runs table with a column of what each live loop is doing (its running
    experiment and how far its training has come)."""
    from autoresearch.report import read_progress
    from autoresearch.report.progress import progress_text
    from autoresearch.report.summary import runs_table

    summaries, alive = _runs(store, task_dir, config)
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
    """Whether the loop of `tag` is alive (None: unknown here), who runs it, and the other live tags."""
    from autoresearch.runlock import holder, live_tags

    who = holder(task_dir, tag)
    state = {"alive": None if who is None else bool(who), "others": [t for t in live_tags(task_dir) if t != tag]}
    if who:
        state.update(pid=who.pid, host=who.host, since=who.started_at, holder=who.describe())
    return state


RECALIBRATE_HELP = ("Ask a run to measure its best again, for the noise, before its next experiment.\n\n"
                    "That is keep.noise_seeds more runs of the best. A running loop does it next, a stopped "
                    "one when it is resumed.")


@app.command(help=RECALIBRATE_HELP)
def recalibrate(tag: str = typer.Option(None, help="Run tag (default: the latest)."),
                task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Ask a run to measure its best again (see RECALIBRATE_HELP)."""
    from autoresearch.loop import request_recalibration

    config = _task(task_dir)
    with _store(task_dir) as store:
        tag = _latest_tag(store, tag)
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

    config = _task(task_dir)
    with _store(task_dir) as store:
        tag = _latest_tag(store, tag)
        history = measured(store, tag)
        if not history:
            _fail(f"run {tag!r} has no experiments yet")
        wanted = len(history) - 1 if seq is None else seq
        if not 0 <= wanted < len(history):
            _fail(f"run {tag!r} has experiments #0 to #{len(history) - 1}: there is no #{seq}")
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

    config = _task(task_dir)
    with _store(task_dir) as store:
        tag = _latest_tag(store, tag)
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

    config = _task(task_dir)
    with _store(task_dir) as store:
        known = store.tags()
        tags = list(tags or known)
        unknown = [t for t in tags if t not in known]
        if unknown:
            _fail(f"no run with tag {', '.join(map(repr, unknown))} in {task_dir}: the runs here are "
                  f"{', '.join(known) or 'none yet'}")
        if not tags:
            _fail("no experiments yet: start a run with `autoresearch run`")
        found, tolerance = contenders(store, tags, config.metric), tolerance_of(store, tags)
    if as_json:
        print(json.dumps(compare_data(found, config.metric, tolerance=tolerance)))
        return
    for line in findings(found, config.metric, tolerance=tolerance):
        out.print(f"- {for_terminal(line)}", highlight=False, markup=False)
    for path in write_compare(found, out_dir or task_dir, config.metric, tolerance=tolerance):
        out.print(str(path))


def _decided_line(event: dict) -> str:
    detail = (f"{event['metric_name']} {event['metric']:.6f}" if event.get("metric") is not None
              else for_markup(event.get("reason") or ""))
    if event.get("metric") is not None and (event.get("runs") or 0) > 1:
        detail += f" (mean of {event['runs']} runs)"
    if event.get("metric") is not None and event.get("reason"):
        detail += f": {for_markup(event['reason'])}"
    return f"  -> {event['status']} {detail}"


def _recalibrate_line(event: dict) -> str:
    from autoresearch.report.summary import noun

    why = {"requested": "as asked", "settle": "as it was kept on fewer runs than keep.best_runs"}.get(
        event.get("why", ""), "for the noise")
    return f"  [dim]the best (#{event['seq']}) is measured again: {noun(event['runs'], 'more run')}, {why}[/]"


def _speed_line(event: dict) -> str:
    from autoresearch.report.summary import noun

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
    show = _live(False)

    def on_event(event: dict) -> None:
        kind = event.get("event")
        if kind in ("start", "eval"):
            show(event)
        elif kind in _LOOP_EVENT_LINES:
            out.print(_LOOP_EVENT_LINES[kind](event), highlight=False)
    return on_event


if __name__ == "__main__":
    app()
