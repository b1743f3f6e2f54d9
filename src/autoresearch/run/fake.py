"""`FakeRunner`: a runner whose outcomes a test scripts (metric, machine speed, status, training curve), with
no training. The loop's decisions (keep, confirmation, speed shifts, re-measurement, pruning, resume) are
tested through it in-process, in milliseconds and deterministically.

It behaves as a runner does where the loop can see it: it writes each run's train.log (the progress lines
of its curve, which the pruner reads back for the best's runs) and outcome.json, reports the events, and
feeds the request's pruner, which may stop the run."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.run.folders import remove_models
from autoresearch.run.seam import Outcome, RunRequest
from autoresearch.run.supervise import PROGRESS_PREFIX


@dataclass(frozen=True)
class Scripted:
    """What one fake run measures. `curve`: its (seconds of training, train loss) points, as step events."""

    metric: float | None = None
    status: str = "ok"  # ok | crash | timeout | pruned | tampered (`Status` values)
    speed: float | None = None  # the machine's speed (GFLOP/s) the run reports
    curve: Sequence[tuple[float, float]] = ()
    error: str | None = None


Script = Callable[[RunRequest], "Scripted | float"]


class FakeRunner:
    """Answers each request with `script(request)`: a `Scripted`, or just a metric. Keeps every request it
    got in `requests`, in order. With `runs_at_once` > 1 the loop runs that many at once, from threads; each
    run then lasts `seconds` (so that several overlap), and `cancelled` lists the requests the loop called
    off."""

    def __init__(self, script: Script, *, runs_at_once: int = 1, seconds: float = 0.0) -> None:
        self.script, self.runs_at_once, self.seconds = script, runs_at_once, seconds
        self.requests: list[RunRequest] = []
        self.cancelled: list[RunRequest] = []
        self.most_at_once = 0  # the most runs that were in flight together
        self.spans: dict[tuple[int, int, int], tuple[float, float]] = {}  # each run's (start, end), by its key
        self._lock = threading.Lock()
        self._running = 0
        self.dropped: list[tuple[Path, bool]] = []
        self.closed = False

    def run(self, request: RunRequest, on_event: Callable[[dict], None]) -> Outcome:
        with self._lock:
            self.requests.append(request)
            self._running += 1
            self.most_at_once = max(self.most_at_once, self._running)
        start = time.monotonic()
        try:
            time.sleep(self.seconds)
            return self._run(request, on_event)
        finally:
            with self._lock:
                self._running -= 1
                self.spans[request.key] = (start, time.monotonic())

    def _run(self, request: RunRequest, on_event: Callable[[dict], None]) -> Outcome:
        answer = self.script(request)
        scripted = answer if isinstance(answer, Scripted) else Scripted(metric=float(answer))
        request.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = request.run_dir / "train.log"
        events: list[dict] = []
        status, error = scripted.status, scripted.error
        pruner = request.pruner
        if scripted.speed is not None:
            on_event({"event": "machine_speed", "gflops": scripted.speed})
            if pruner is not None:
                pruner.observe({"event": "machine_speed", "gflops": scripted.speed})
        with open(log_path, "w") as log:
            for step, (seconds, loss) in enumerate(scripted.curve, 1):
                event = {"event": "step", "step": step, "elapsed": seconds, "train_loss": loss}
                log.write(PROGRESS_PREFIX + json.dumps(event) + "\n")
                events.append(event)
                on_event(event)
                reason = pruner.observe(event) if pruner is not None else None
                if reason is not None:
                    status, error = "pruned", reason
                    break
        ok = status == "ok"
        if ok and scripted.metric is None:
            raise ValueError("a scripted run that ends ok needs a metric")
        if ok:
            on_event({"event": "eval", "val_bpb": scripted.metric, "seconds": 0.0})
        outcome = Outcome(status=status, metric=scripted.metric if ok else None,
                          val_bpb=scripted.metric if ok else None, training_seconds=request.budget,
                          total_seconds=request.budget, startup_seconds=1.0, finish_seconds=0.1,
                          machine_speed=scripted.speed, isolation="fake", seed=request.seed,
                          budget_seconds=request.budget, log_path=str(log_path),
                          error=error if not ok else None, events=tuple(events))
        (request.run_dir / "outcome.json").write_text(json.dumps(outcome.summary(), indent=2))
        if ok:  # what a run leaves for the person: its model, in the run's folder
            (request.run_dir / "model").mkdir(exist_ok=True)
            (request.run_dir / "model" / "model.pt").write_bytes(b"fake")
        return outcome

    def cancel(self, request: RunRequest) -> None:
        with self._lock:
            self.cancelled.append(request)

    def drop_models(self, experiment_dir: Path, *, keep_first: bool) -> None:
        self.dropped.append((experiment_dir, keep_first))
        remove_models(experiment_dir, keep_first=keep_first)

    def close(self) -> None:
        self.closed = True


def code_text(request: RunRequest) -> str:
    """The request's editable files as one text, in path order."""
    return "\n".join(request.files[path].decode("utf-8", "replace") for path in sorted(request.files))


def scored(score: Callable[[str], float], *, sigma: float = 0.0, speed: float | None = None) -> Script:
    """A script whose metric is `score(code_text(request))` plus run-to-run noise: `sigma` times a normal
    draw that the run's seed and code fix (the same code and seed always give the same metric)."""
    def script(request: RunRequest) -> Scripted:
        text = code_text(request)
        noise = random.Random(f"{request.seed}:{text}").gauss(0.0, 1.0) if sigma else 0.0
        return Scripted(metric=score(text) + sigma * noise, speed=speed)

    return script
