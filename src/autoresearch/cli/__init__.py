"""Command line: a thin layer over the package. Each command maps onto one module's entry point.

- `task.py`: init, prepare, train, bench (one task folder, one experiment);
- `research.py`: run (the loop, or several with --parallel);
- `look.py`: status, recalibrate, show, report, compare (what happened);
- `serve.py`: serve (the web dashboard);
- `distill.py`: distill (the kept changes that matter, as a branch);
- `common.py`: the typer app and what the commands share.
"""

from autoresearch.cli import distill, look, research, serve, task  # noqa: F401 (each registers its commands on the app)
from autoresearch.cli.common import app

__all__ = ["app"]
