"""`autoresearch distill`: a run's kept changes, each measured by removing it from the end result, and a
branch of only those that matter (autoresearch.distill, docs/distill.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from autoresearch.cli.common import app, fail, latest_tag, open_store, out, task_config
from autoresearch.cli.research import _loop_events, _with_executor_options
from autoresearch.cli.task import dataset_for
from autoresearch.safe_text import for_markup


@app.command()
def distill(tag: str = typer.Option(None, help="Run tag to distil (default: the latest)."),
            resume: bool = typer.Option(False, "--resume", help="Continue a distillation that stopped."),
            budget: float = typer.Option(None, help="Training seconds per run (default: train.budget_seconds)."),
            max_runs: int = typer.Option(None, help="Stop after this many training runs of the distillation."),
            max_hours: float = typer.Option(None, help="Stop after this many hours."),
            executor: str = typer.Option(None, help="Where runs train: local or ray (default: executor.kind)."),
            ray_address: str = typer.Option(None, help="The Ray cluster (with --executor ray)."),
            out_dir: Path = typer.Option(None, "--out", help="Folder for distill.md (default: the task folder)."),
            task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder.")):
    """Measure what each kept change of a run is worth at the end, by removing it from the final best; drop those
    worth nothing beyond the noise; write the branch autoresearch/<tag>-distilled and distill.md."""
    from autoresearch.distill import DistillError
    from autoresearch.distill import distill as run_distill
    from autoresearch.loop import Limits, LoopError
    from autoresearch.run.seam import RunnerUnavailable
    from autoresearch.workspace import GitError

    config = _with_executor_options(task_config(task_dir), kind=executor, address=ray_address)
    with open_store(task_dir) as store:
        tag = latest_tag(store, tag)
    if tag.endswith(("-distill",)):
        fail(f"{tag} is a distillation itself: name the run it distils, {tag.removesuffix('-distill')}")
    try:
        done = run_distill(task_dir, config, dataset_for(config), tag, resume=resume, budget=budget,
                           limits=Limits(max_hours=max_hours, max_runs=max_runs), on_event=_loop_events(),
                           out_dir=out_dir)
    except (DistillError, LoopError, GitError, RunnerUnavailable) as e:
        fail(str(e))
    metric = config.metric
    out.print(f"distillation of {tag}: {for_markup(done.stopped)}", highlight=False)
    for r in sorted(done.results, key=lambda r: r.change.seq):
        worth = "" if r.worth is None else f" worth {r.worth:+.6f}" + (f" ± {r.stderr:.6f}" if r.stderr else "")
        out.print(f"  #{r.change.seq} {for_markup(r.change.description[:60])}:{worth} {r.why}", highlight=False)
    if done.check is not None:
        out.print(f"check: {for_markup(done.check.text(metric))}", highlight=False,
                  style=None if done.check.passed else "bold red")
    out.print(f"branch {done.branch}" + (" (one commit: the kept changes no longer apply one by one)"
                                         if done.squashed else "") + f"; {done.report}", highlight=False)
    if not done.finished:
        out.print(f"not finished: continue with `autoresearch distill --tag {tag} --resume`", style="yellow")
