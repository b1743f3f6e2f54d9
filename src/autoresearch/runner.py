"""One experiment: run train.py under the budget, then the trusted evaluation -> `Outcome`.

train.py reports progress as `@autoresearch {json}` lines (docs/contract.md). They drive the live
display and the throughput figures; the metric comes from `evaluate.py` alone.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from autoresearch import sandbox
from autoresearch.config import TaskConfig
from autoresearch.data.prepare import Dataset
from autoresearch.evaluate import EvaluationError, evaluate
from autoresearch.flops import mfu

PROGRESS_PREFIX = "@autoresearch "


def parse_progress(line: str) -> dict | None:
    """The event of a progress line, or None for free-form output and malformed lines."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        event = json.loads(line[len(PROGRESS_PREFIX):])
    except json.JSONDecodeError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


@dataclass
class Outcome:
    status: str  # ok | crash | timeout
    val_bpb: float | None = None
    val_bpb_stderr: float | None = None
    training_seconds: float | None = None
    total_seconds: float = 0.0
    startup_seconds: float | None = None
    eval_seconds: float | None = None
    peak_memory_bytes: int | None = None
    tokens: int | None = None
    steps: int | None = None
    params: int | None = None
    flops_per_token: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    device: str | None = None
    seed: int = 0
    budget_seconds: float = 0.0
    log_path: str = ""
    error: str | None = None
    events: list[dict] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "events"}


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


def run_experiment(task_dir: Path, config: TaskConfig, dataset: Dataset, *, budget: float | None = None,
                   seed: int = 0, evaluate_model: bool = True, run_dir: Path | None = None,
                   on_event: Callable[[dict], None] = lambda _: None) -> Outcome:
    """Train the task's train.py once and (optionally) evaluate it. Never raises for candidate failures."""
    started = time.perf_counter()
    budget = config.train.budget_seconds if budget is None else budget
    device = resolve_device(config.train.device)
    run_dir = run_dir or task_dir / ".autoresearch" / "logs" / "train" / f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
    model_dir = run_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / "train.log"
    outcome = Outcome(status="ok", seed=seed, budget_seconds=budget, log_path=str(log_path), device=device)
    script = (task_dir / config.train.script).resolve()
    if not script.exists():
        outcome.status, outcome.error = "crash", f"{script} does not exist"
        return outcome

    env = {
        "AUTORESEARCH_TIME_BUDGET": repr(float(budget)),
        "AUTORESEARCH_SEED": str(seed),
        "AUTORESEARCH_TRAIN_TOKENS": str(dataset.tokens_path("train")),
        "AUTORESEARCH_VOCAB_SIZE": str(dataset.vocab_size),
        "AUTORESEARCH_BOS_ID": str(dataset.bos_id),
        "AUTORESEARCH_EVAL_SEQ_LEN": str(config.eval.seq_len),
        "AUTORESEARCH_OUTPUT_DIR": str(model_dir),
        "AUTORESEARCH_DEVICE": device,
    }
    if config.train.profile != "auto":
        env["AUTORESEARCH_PROFILE"] = config.train.profile
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", os.environ.get("TORCHINDUCTOR_CACHE_DIR",
                                                             str(task_dir / ".autoresearch" / "compile-cache")))

    deadline = budget + config.train.startup_allowance_seconds
    proc = sandbox.start_python([str(script)], cwd=task_dir, env=env)
    timed_out = threading.Event()

    def expire() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(deadline, expire)
    timer.start()
    tail: list[str] = []
    try:
        with open(log_path, "w") as log:
            for raw in iter(proc.popen.stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                log.write(line)
                log.flush()
                tail.append(line)
                del tail[:-60]
                event = parse_progress(line.rstrip("\n"))
                if event is not None:
                    outcome.events.append(event)
                    _absorb(outcome, event)
                    on_event(event)
        code = proc.wait()
    finally:
        timer.cancel()
        proc.kill()

    if timed_out.is_set():
        outcome.status = "timeout"
        outcome.error = f"train.py ran past budget + start-up allowance ({deadline:.0f} s) and was killed"
    elif code != 0:
        outcome.status = "crash"
        outcome.error = "".join(tail[-30:]).strip() or f"train.py exited with code {code}"
    elif not any(e.get("event") == "done" for e in outcome.events):
        outcome.status = "crash"
        outcome.error = "train.py exited without its final progress line (see docs/contract.md)"

    if outcome.status == "ok" and outcome.flops_per_token and outcome.tokens_per_s:
        outcome.mfu = mfu(outcome.tokens_per_s, outcome.flops_per_token, device_name(device))

    if outcome.status == "ok" and evaluate_model:
        try:
            result = evaluate(script, model_dir / "model.pt", dataset.tokens("val"), dataset.token_bytes(),
                              seq_len=config.eval.seq_len, n_tokens=config.eval.tokens,
                              batch_size=config.eval.batch_size, device=device, cwd=task_dir,
                              timeout=max(120.0, budget), env={"AUTORESEARCH_DEVICE": device})
            outcome.val_bpb, outcome.val_bpb_stderr = result.bpb, result.bpb_stderr
            outcome.eval_seconds = result.seconds
            on_event({"event": "eval", "val_bpb": result.bpb, "seconds": result.seconds})
        except EvaluationError as err:
            outcome.status, outcome.error = "crash", f"evaluation failed: {err}"
    outcome.total_seconds = time.perf_counter() - started
    (run_dir / "outcome.json").write_text(json.dumps(outcome.summary(), indent=2))
    return outcome


def _absorb(outcome: Outcome, event: dict) -> None:
    kind = event["event"]
    if kind == "start":
        outcome.params = event.get("params")
        outcome.flops_per_token = event.get("flops_per_token")
        outcome.startup_seconds = event.get("startup_seconds")
    elif kind == "step":
        outcome.steps, outcome.tokens = event.get("step"), event.get("tokens")
    elif kind == "done":
        outcome.steps = event.get("steps", outcome.steps)
        outcome.tokens = event.get("tokens", outcome.tokens)
        outcome.training_seconds = event.get("training_seconds")
        outcome.peak_memory_bytes = event.get("peak_memory_bytes")
        if outcome.tokens and outcome.training_seconds:
            outcome.tokens_per_s = outcome.tokens / outcome.training_seconds
