"""What a run is started with: its device (`resolve_device`), its command line (`command_argv`), the variables
of its environment (`static_env`, `experiment_env`; docs/contract.md), its box (`candidate_box`) and the
evaluation workers that wait for its model (`spare_workers`).

Invariants: what a prestarted interpreter is started with (`static_env`, `candidate_box`) is the same for every
experiment of a task; of the prepared data, a run's box shows the train split only (besides what the task's
`sandbox.read` names); a leading `python`/`python3` of a command is the interpreter autoresearch itself runs on.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from autoresearch.config import TaskConfig
from autoresearch.data.prepare import Dataset
from autoresearch.run import sandbox
from autoresearch.run.evaluate import SpareWorkers
from autoresearch.run.folders import compile_cache, model_dir


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    return device


def command_argv(config: TaskConfig, script: Path) -> list[str]:
    """The experiment's command line: `train.command` split like a shell would (without running a shell),
    or `python <script>`. A leading `python`/`python3` is the interpreter autoresearch itself runs on."""
    return split_command(config.train.command) if config.train.command else [sys.executable, str(script)]


def split_command(command: str) -> list[str]:
    """`command` split like a shell would (no shell runs it); a leading python/python3 is this interpreter."""
    argv = shlex.split(command)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def static_env(task_dir: Path, config: TaskConfig) -> dict[str, str]:
    """The part of a run's environment that is the same for every experiment of a task: what a
    prestarted interpreter (`sandbox.prestart_python`) is started with, before it knows its experiment."""
    cache = compile_cache(task_dir)
    env = {"TORCHINDUCTOR_CACHE_DIR": str(cache), "TRITON_CACHE_DIR": str(cache / "triton"),
           "AUTORESEARCH_OUTPUT_DIR": str(model_dir(task_dir))}
    if config.evaluated:
        env["AUTORESEARCH_DEVICE"] = resolve_device(config.train.device)
    return env


def experiment_env(task_dir: Path, config: TaskConfig, dataset: Dataset | None, budget: float,
                   seed: int) -> dict[str, str]:
    """The variables an experiment's run is given, beyond the allow-listed environment (docs/contract.md)."""
    env = {
        "AUTORESEARCH_TIME_BUDGET": repr(float(budget)),
        "AUTORESEARCH_SEED": str(seed),
    }
    if config.evaluated:
        assert dataset is not None, "the built-in contract needs the prepared dataset"
        env.update({
            "AUTORESEARCH_TRAIN_TOKENS": str(dataset.tokens_path("train")),
            "AUTORESEARCH_VOCAB_SIZE": str(dataset.vocab_size),
            "AUTORESEARCH_BOS_ID": str(dataset.bos_id),
            "AUTORESEARCH_EVAL_SEQ_LEN": str(config.eval.seq_len),
        })
        if config.train.profile != "auto":
            env["AUTORESEARCH_PROFILE"] = config.train.profile
    env.update(static_env(task_dir, config))
    return env


def candidate_box(task_dir: Path, config: TaskConfig, dataset: Dataset | None) -> sandbox.Box:
    """What train.py (or the task's command) may see and touch: its folder, the train split (not val or
    test), its model folder and its copy of the compile cache (`compile_cache`)."""
    env = static_env(task_dir, config)
    writable = [model_dir(task_dir), Path(env["TORCHINDUCTOR_CACHE_DIR"])]
    for folder in writable:
        folder.mkdir(parents=True, exist_ok=True)
    read = [dataset.tokens_path("train")] if config.evaluated and dataset is not None else []
    read += [path for path in _settings_paths(config.sandbox.read) if path.exists()]
    writable += [path for path in _settings_paths(config.sandbox.write) if path.is_dir()]
    return sandbox.Box(workdir=task_dir, read=tuple(read), write=tuple(writable),
                       gpu=config.evaluated and env.get("AUTORESEARCH_DEVICE", "").startswith("cuda"),
                       network=config.sandbox.network, env=tuple(config.sandbox.env),
                       max_memory_gb=config.sandbox.max_memory_gb)


def _settings_paths(entries: list[str]) -> list[Path]:
    return [Path(os.path.expandvars(entry)).expanduser().resolve() for entry in entries]


def spare_workers(task_dir: Path, config: TaskConfig, size: int = 2) -> SpareWorkers:
    """Evaluation workers for the runs in `task_dir`, started ahead of time (see `SpareWorkers`)."""
    device = resolve_device(config.train.device)
    return SpareWorkers(model_dir(task_dir), device=device, cwd=task_dir, env={"AUTORESEARCH_DEVICE": device},
                        size=size)


def can_prestart(config: TaskConfig) -> bool:
    """Runs of the built-in contract (`python <script>`) can use a prestarted interpreter."""
    return config.evaluated and not config.train.command
