"""What every command shares: the typer app, the consoles, the way to fail, the task's settings and store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from autoresearch.config import (
    ConfigError,
    load_config,
)
from autoresearch.safe_text import for_markup

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="Autonomous ML research: the harness owns the loop, the clock and the metric.")
out = Console(emoji=False)  # an agent's `:warning:` shows as written, like its markup (safe_text.py)
err = Console(stderr=True, emoji=False)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {for_markup(message)}")
    raise typer.Exit(2)


def task_config(task_dir: Path):
    try:
        return load_config(task_dir)
    except ConfigError as e:
        fail(str(e))


def accelerated() -> bool:
    """Whether torch sees a CUDA GPU; without a GPU driver's device node, answered without importing torch."""
    from autoresearch.run.gpus import may_have_gpu

    if not may_have_gpu():
        return False
    import torch

    return torch.cuda.is_available()


def open_store(task_dir: Path):
    """The task's experiment store, opened after the settings are checked; a clear error if it cannot be."""
    from autoresearch.store import Store, StoreError

    task_config(task_dir)
    try:
        return Store.open(task_dir)
    except StoreError as e:
        fail(str(e))


def latest_tag(store, tag: str | None) -> str:
    tag = tag or (store.tags() or [None])[-1]
    if tag is None:
        fail("no experiments yet: start a run with `autoresearch run`")
    return tag


