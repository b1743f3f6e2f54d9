"""The loop in-process with a `FakeRunner`: decision logic tested in milliseconds, deterministically.

A task here is a git folder whose train.py is a line `LOSS = <value>` (and whatever else a proposal adds);
the fake runner's metric is that value, plus seeded noise if asked, so a proposal's change of the number is
its true effect."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from autoresearch.agents.replay import ReplayAgent
from autoresearch.config import config_from_dict
from autoresearch.loop import Loop
from autoresearch.run.fake import FakeRunner, Scripted, code_text, scored

TRAIN_PY = "LOSS = 1.0\n"


def loss_of(text: str) -> float:
    """The value of the code's `LOSS = ...` line."""
    return float(re.search(r"^LOSS = (\S+)", text, re.M).group(1))


def make_task(parent: Path, name: str = "task", train_py: str = TRAIN_PY) -> Path:
    """A committed task folder with `train_py`, made in-process."""
    task = parent / name
    task.mkdir()
    (task / "train.py").write_text(train_py)
    (task / "program.md").write_text("Lower the loss.\n")
    (task / ".gitignore").write_text("__pycache__/\n")
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "task"]):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=task, check=True,
                       capture_output=True)
    return task


def settings(**sections: dict) -> object:
    """A validated TaskConfig: the tests' defaults (CPU, confirm rule, no pruning, no waits), with `sections`
    ({"keep": {...}, "loop": {...}}) laid over them."""
    base = {"train": {"device": "cpu", "budget_seconds": 10.0},
            "keep": {"rule": "confirm", "speed_tolerance": 0.0},
            "prune": {"enabled": False},
            "loop": {"agent_retry_seconds": 0.0}}
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return config_from_dict(base).validate()


def proposals(*changes: str | tuple[str, str]) -> list[dict]:
    """Replay proposals: each a new train.py text, or (description, text)."""
    out = []
    for i, change in enumerate(changes):
        description, text = change if isinstance(change, tuple) else (f"change {i + 1}", change)
        out.append({"description": description, "files": {"train.py": text}})
    return out


def fake_loop(task: Path, script: Callable | None = None, agent=None, *, config=None, tag: str = "t",
              runs_at_once: int = 1, seconds: float = 0.0, **kw) -> tuple[Loop, FakeRunner]:
    """A loop on `task` whose runs `script` answers (default: the code's LOSS, no noise); `runs_at_once` of
    them at a time, each lasting `seconds`."""
    runner = FakeRunner(script or scored(loss_of), runs_at_once=runs_at_once, seconds=seconds)
    loop = Loop(task, config or settings(), None, agent if agent is not None else ReplayAgent([]), tag=tag,
                runner=runner, **kw)
    return loop, runner


def run_loop(task: Path, script: Callable | None = None, changes: list[dict] = (), **kw) -> tuple[list, FakeRunner,
                                                                                                    str]:
    """Run a loop over the replay `changes` to its end: (its experiments, the runner, why it stopped)."""
    loop, runner = fake_loop(task, script, ReplayAgent(list(changes)), **kw)
    try:
        reason = loop.run()
        return loop.store.experiments(loop.tag), runner, reason
    finally:
        loop.close()


__all__ = ["Scripted", "code_text", "fake_loop", "loss_of", "make_task", "proposals", "run_loop", "scored", "settings"]
