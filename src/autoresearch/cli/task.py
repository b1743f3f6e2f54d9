"""Commands on one task folder: init, prepare, train (one experiment), bench (throughput)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from autoresearch.cli.common import accelerated, app, err, fail, out, task_config
from autoresearch.config import (
    CONFIG_NAME,
    ConfigError,
    TaskConfig,
    default_config,
    generic_config,
    is_reference_layout,
    reference_config,
    render_config,
)
from autoresearch.data.prepare import SPLITS, open_dataset, prepare
from autoresearch.data.spec import DataError, parse_data_spec
from autoresearch.run.diskguard import DiskSpaceError
from autoresearch.run.outcome import Outcome
from autoresearch.run.runner import run_experiment
from autoresearch.safe_text import for_markup, for_terminal
from autoresearch.workspace import GitError, Workspace

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
            fail("a generic task needs --editable FILE: the files the agent may change")
        try:
            config = generic_config(command, editable=list(editable), metric_name=metric_name, maximize=maximize,
                                    regex=metric_regex or "", json_spec=metric_json or "")
        except ConfigError as e:
            fail(str(e))
        files = {CONFIG_NAME: render_config(config)}
        if not (directory / "program.md").exists():
            files["program.md"] = (template / "program_generic.md").read_text()
        kind = f"generic task: `{command}`, {metric_name} ({config.metric.direction})"
    elif is_reference_layout(directory) and not force:
        config = reference_config(uv=shutil.which("uv") is not None and (directory / "pyproject.toml").exists())
        files = {CONFIG_NAME: render_config(config)}
        kind = f"reference layout: `{config.train.command}`, val_bpb read from its output"
    else:
        config = default_config(accelerated())
        files = {"train.py": (template / "train.py").read_text(),
                 "program.md": (template / "program.md").read_text(), CONFIG_NAME: render_config(config)}
        device = "CUDA" if config.train.budget_seconds >= 300 else "CPU"
        kind = f"{device} defaults: {config.train.budget_seconds:.0f} s budget, vocab {config.data.vocab_size}"
    existing = [name for name in files if (directory / name).exists()]
    if existing and not force:
        fail(f"{directory} already has {', '.join(existing)}: use --force to overwrite, or pick another folder")
    for name, text in files.items():
        (directory / name).write_text(text)
    gitignore = directory / ".gitignore"
    if "__pycache__/" not in (gitignore.read_text() if gitignore.exists() else ""):
        with open(gitignore, "a") as f:
            f.write("__pycache__/\n")
    try:
        Workspace.ensure(directory, nested=True)
    except GitError as e:
        fail(str(e))
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
            fail(str(e))
        task_config(task_dir)
        _set_source(task_dir, data)
    config = task_config(task_dir)
    if not config.evaluated:
        _prepare_command(task_dir, config)
        return
    try:
        with err.status("preparing data") as status:
            result = prepare(config.data, force=force, progress=lambda msg: status.update(msg))
    except DataError as e:
        fail(str(e))
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
        fail(f"could not run train.prepare_command {command!r}: {e}")
    if code != 0:
        fail(f"train.prepare_command {command!r} exited with code {code}")


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


def live_view(as_json: bool):
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


def dataset_for(config: TaskConfig):
    """The prepared data of a task the harness evaluates; None for a task that reads its own metric."""
    if not config.evaluated:
        return None
    try:
        return open_dataset(config.data)
    except DataError as e:
        fail(str(e))


def _experiment(task_dir: Path, budget: float | None, seed: int, as_json: bool, evaluate_model: bool) -> Outcome:
    config = task_config(task_dir)
    dataset = dataset_for(config)
    try:
        return run_experiment(task_dir.resolve(), config, dataset, budget=budget, seed=seed,
                              evaluate_model=evaluate_model, on_event=live_view(as_json))
    except DiskSpaceError as e:
        fail(str(e))


@app.command()
def train(budget: float = typer.Option(None, help="Seconds of training (default: the task's budget)."),
          seed: int = typer.Option(0, help="Seed passed to train.py."),
          as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object."),
          task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Run one experiment: train.py under the budget, then the harness's own evaluation."""
    if budget is not None and budget <= 0:
        fail("--budget must be a positive number of seconds")
    outcome = _experiment(task_dir, budget, seed, as_json, evaluate_model=True)
    _print_outcome(outcome, as_json)
    if outcome.status != "ok":
        raise typer.Exit(1)


@app.command()
def bench(budget: float = typer.Option(None, help="Seconds of timed training (default 20 on CPU, 60 on GPU)."),
          as_json: bool = typer.Option(False, "--json", help="Print the figures as one JSON object."),
          task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Throughput of train.py's model on this device: tokens/s, MFU, peak memory, start-up time."""
    budget = budget or (60.0 if accelerated() else 20.0)
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


