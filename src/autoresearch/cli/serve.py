"""`autoresearch serve`: the live, read-only web dashboard over a task folder (autoresearch.serve)."""

from __future__ import annotations

import secrets
from pathlib import Path

import typer

from autoresearch.cli.common import app, fail, out, task_config

SERVE_EXTRA = "pip install 'autoresearch[serve]'"


@app.command()
def serve(task_dir: Path = typer.Option(Path("."), "--dir", help="Task folder."),
          host: str = typer.Option("127.0.0.1", help="Address to listen on. Any but a loopback one needs --token."),
          port: int = typer.Option(8765, help="Port to listen on."),
          token: str = typer.Option(None, help="Required on every request (?token=... or an Authorization: Bearer "
                                                "header); 'generate' makes one and prints it."),
          poll: float = typer.Option(1.0, help="Seconds between looks at the store for live updates.")):
    """A web dashboard of the folder's runs, live: progress charts, every experiment's diff and verdict, the
    running training curve. It only reads the store."""
    from autoresearch.serve.app import is_loopback

    config = task_config(task_dir)
    loopback = is_loopback(host)
    if not loopback and not token:
        fail(f"--host {host} is not a loopback address: anyone who can reach it could read the runs, the code and "
             "the agents' prompts. Give --token SECRET (or --token generate to have one made and printed), or "
             "keep the default --host 127.0.0.1")
    if token == "generate":
        token = secrets.token_urlsafe(24)
    if token is not None and len(token) < 16:
        fail("--token is shorter than 16 characters: use a longer secret, or --token generate")
    try:
        import uvicorn

        from autoresearch.serve.app import make_app
    except ImportError as e:
        fail(f"autoresearch serve needs its extra ({e.name} is missing): {SERVE_EXTRA}")
    from autoresearch.store import StoreError

    try:
        application = make_app(task_dir, config, token=token, loopback=loopback, poll=poll)
    except StoreError as e:
        fail(str(e))
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/" + (f"?token={token}" if token else "")
    out.print(f"dashboard of {task_dir.resolve()} at {url} (read-only; Ctrl-C stops)", highlight=False, soft_wrap=True)
    uvicorn.run(application, host=host, port=port, log_level="warning")
