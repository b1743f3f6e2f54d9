"""The agent backends by kind: `--agent KIND[:ARG]`. The CLI's help and the error for an unknown agent are
made from this table. A new backend is one module with a factory `make(arg, task) -> Agent`, and one entry
here; its module is imported only when it is used (tune's imports Optuna, the API agents their SDKs)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.agents.base import Agent


class AgentConfigError(Exception):
    """The agent cannot be set up at all (unknown name, missing file); the message names the fix."""


@dataclass(frozen=True)
class TaskInfo:
    """What a backend may need to know of the task: its folder, train.py's profile, an API server."""

    task_dir: Path | None
    profile: str = "cpu"
    base_url: str | None = None


@dataclass(frozen=True)
class Backend:
    kind: str
    forms: str  # how it is named, e.g. "openai:<model>"
    summary: str  # what it is, for the help
    factory: str  # "module:function", called with (arg, TaskInfo)
    needs_task: bool = True

    def make(self, arg: str, task: TaskInfo) -> Agent:
        if self.needs_task and task.task_dir is None:
            raise AgentConfigError(f"the {self.kind} agent needs the task folder: make_agent(spec, task_dir, profile)")
        module, _, function = self.factory.partition(":")
        make: Callable[[str, TaskInfo], Agent] = getattr(importlib.import_module(module), function)
        return make(arg, task)


BACKENDS: dict[str, Backend] = {b.kind: b for b in (
    Backend("tune", "tune, tune:random", "Optuna TPE (or random search) over train.py's constants",
            "autoresearch.agents.tune:make"),
    Backend("claude", "claude[:model]", "the Claude Code program", "autoresearch.agents.coding:make_claude"),
    Backend("codex", "codex[:model]", "the Codex program", "autoresearch.agents.coding:make_codex"),
    Backend("aider", "aider[:model]", "the aider program", "autoresearch.agents.coding:make_aider"),
    Backend("cmd", "cmd:<command>", "any command that edits the files", "autoresearch.agents.command:make"),
    Backend("openai", "openai:<model>", "an OpenAI-compatible API (--base-url for a local server)",
            "autoresearch.agents.api:make_openai"),
    Backend("anthropic", "anthropic:<model>", "the Anthropic API", "autoresearch.agents.api:make_anthropic"),
    Backend("replay", "replay:<patches.json>", "recorded proposals, one per experiment",
            "autoresearch.agents.replay:make", needs_task=False),
)}


def describe_backends() -> str:
    """The backends in a line each: `tune, tune:random: Optuna TPE ...`."""
    return "; ".join(f"{b.forms} ({b.summary})" for b in BACKENDS.values())


def make_agent(spec: str, task_dir: Path | None = None, profile: str = "cpu", *,
               base_url: str | None = None) -> Agent:
    """The agent named by `spec` (`BACKENDS`). `task_dir` is the task folder and `profile` the profile of
    train.py the harness runs ("cpu" or "h100", resolved, not "auto"); `base_url` points an API agent at
    another server."""
    kind, _, arg = spec.partition(":")
    backend = BACKENDS.get(kind)
    if backend is None:
        raise AgentConfigError(f"unknown agent {spec!r}: available agents are "
                               f"{', '.join(b.forms for b in BACKENDS.values())}")
    return backend.make(arg, TaskInfo(Path(task_dir) if task_dir is not None else None, profile, base_url))
