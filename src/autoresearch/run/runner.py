"""One experiment: run train.py under the budget, then the trusted evaluation -> `Outcome`.

Tasks outside the built-in contract run their own command instead, and their metric is read from what
the run reports (`reported.py`).

`run_experiment` goes through the phases of `_Run`: prepare (the folders, the cache), launch (a prestarted
interpreter or a fresh box), supervise (the output, the clock, the disk), classify (how it ended), evaluate
(the trusted metric, the causality probe, the floor), finish (the model kept, outcome.json). Beside it:
`outcome.py` (what it measures), `environment.py` (what a run is started with), `folders.py` (the model folder
and the compile cache), `supervise.py` (reading the output, progress lines, the clock's watch).

Invariants: a candidate's failure never raises, it is an `Outcome` that says so; the metric comes from the
trusted evaluation (or, outside the built-in contract, from what the run reports), never from progress lines.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from autoresearch.config import TaskConfig
from autoresearch.data.prepare import Dataset
from autoresearch.decide import speed
from autoresearch.run import diskguard, floor, reported, sandbox
from autoresearch.run.clock import Clock
from autoresearch.run.environment import (
    can_prestart,
    candidate_box,
    command_argv,
    device_name,
    experiment_env,
    resolve_device,
    spare_workers,
)
from autoresearch.run.evaluate import (
    EvalResult,
    EvaluationError,
    EvaluationVoid,
    SpareWorkers,
    evaluate,
    verify,
)
from autoresearch.run.flops import mfu
from autoresearch.run.folders import empty, keep_model, model_dir, reset_compile_cache
from autoresearch.run.outcome import Outcome, OutcomeBuilder, absorb
from autoresearch.run.supervise import LOG_LIMIT_BYTES, Watch, output_lines, parse_progress
from autoresearch.run.view import HIDDEN_IN_WORKDIR

ERROR_CHARS = 4000  # of a crashed run's output, at most, in its error


def capped(text: str, limit: int = ERROR_CHARS) -> str:
    """The end of `text`, at most `limit` characters: what of a run's own output may go into its error (which
    reaches the agent)."""
    return text if len(text) <= limit else "[... cut]\n" + text[-limit:]


def run_experiment(task_dir: Path, config: TaskConfig, dataset: Dataset | None, *, budget: float | None = None,
                   seed: int = 0, evaluate_model: bool = True, run_dir: Path | None = None,
                   on_event: Callable[[dict], None] = lambda _: None,
                   prestarted: sandbox.CandidateProcess | None = None,
                   probe: Callable[[float], bool] | None = None, spares: SpareWorkers | None = None,
                   stop_when: Callable[[dict], str | None] | None = None, startup_allowance: float | None = None,
                   finish_allowance: float | None = None) -> Outcome:
    """Run one experiment in `task_dir` and measure it. Never raises for candidate failures; raises
    diskguard.DiskSpaceError, before anything runs, when the disk has too little free space.

    With the built-in contract (`metric.source = "evaluator"`), train.py trains under the budget and the
    harness evaluates the model it saved (skipped with `evaluate_model=False`); `dataset` is required.
    Otherwise the task's command runs and the metric is read from its output or its JSON file.
    `prestarted`, if given and still waiting, is an interpreter from `sandbox.prestart_python` (started in
    `task_dir` with `static_env`) that runs train.py instead of a fresh one; it is used up either way.
    `spares`: evaluation workers for `task_dir` (`spare_workers`), filled while train.py starts and drawn
    from to evaluate; without it, the run starts and ends its own. `stop_when` is given each progress event
    (the harness's machine-speed reading too); a reason it returns stops the run there, unevaluated, as
    `pruned` (prune.py). `startup_allowance` and `finish_allowance` bound the run's untimed phases (clock.py;
    default: the task's `train.startup_allowance_seconds` and `train.finish_allowance_seconds`)."""
    run = _Run(task_dir, config, dataset, budget=config.train.budget_seconds if budget is None else budget,
               seed=seed, run_dir=run_dir, on_event=on_event, probe=probe, stop_when=stop_when,
               evaluating=evaluate_model and config.evaluated)
    run.prepare(prestarted)
    if run.outcome.status == "ok":
        proc = run.launch(prestarted)
        if proc is not None:
            code, ended = run.supervise(proc, spares, startup_allowance, finish_allowance)
            run.classify(proc, code, ended)
            run.evaluate()
            run.close_spares()
    return run.finish()


class _Run:
    """One run of `run_experiment`, in its phases: prepare (the folders, the cache), launch (a prestarted
    interpreter or a fresh box), supervise (the output, the clock, the disk), classify (how it ended), evaluate
    (the trusted metric, the causality probe, the floor), finish (the model kept, outcome.json)."""

    def __init__(self, task_dir: Path, config: TaskConfig, dataset: Dataset | None, *, budget: float, seed: int,
                 run_dir: Path | None, on_event: Callable[[dict], None], probe: Callable[[float], bool] | None,
                 stop_when: Callable[[dict], str | None] | None, evaluating: bool) -> None:
        self.task_dir, self.config, self.dataset, self.budget = task_dir, config, dataset, budget
        self.on_event, self.probe, self.stop_when, self.evaluating = on_event, probe, stop_when, evaluating
        self.started = time.perf_counter()
        self.device = resolve_device(config.train.device) if config.evaluated else "-"
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-seed{seed}"
        self.run_dir = run_dir or task_dir / ".autoresearch" / "logs" / "train" / stamp
        self.log_path = self.run_dir / "train.log"
        self.output_dir = model_dir(task_dir)
        self.script = (task_dir / config.train.script).resolve()
        self.json_path = task_dir / config.metric.json_file if config.metric.source == "json" else None
        self.what = "train.py" if config.evaluated else "the command"
        self.outcome = OutcomeBuilder(status="ok", seed=seed, budget_seconds=budget, log_path=str(self.log_path),
                                      device=self.device, metric_name=config.metric.name)
        self.spares: SpareWorkers | None = None
        self.own_spares = False
        self.pruned: str | None = None  # why `stop_when` stopped the run
        self.tail: list[str] = []

    def prepare(self, prestarted: sandbox.CandidateProcess | None) -> None:
        """The disk checked, the run's folder made, the model folder emptied, the compile cache reset."""
        try:
            diskguard.check_free(self.task_dir, self.config.sandbox.min_free_gb)
        except diskguard.DiskSpaceError:
            if prestarted is not None:
                prestarted.kill()
            raise
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.box = candidate_box(self.task_dir, self.config, self.dataset)
        empty(self.output_dir)
        reset_compile_cache(self.task_dir)
        if self.config.evaluated and not self.script.exists():
            if prestarted is not None:
                prestarted.kill()
            self.outcome.status, self.outcome.error = "crash", f"{self.script} does not exist"
            return
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            if self.json_path.is_file():
                self.json_path.unlink()  # a stale file from an earlier run must not count

    def launch(self, prestarted: sandbox.CandidateProcess | None) -> sandbox.CandidateProcess | None:
        """Start train.py (or the task's command): in `prestarted` if it still waits, else in a fresh box. None
        if it could not start (the outcome says why)."""
        config, outcome = self.config, self.outcome
        env = experiment_env(self.task_dir, config, self.dataset, self.budget, outcome.seed)
        self.files_before = diskguard.files_in(self.task_dir, HIDDEN_IN_WORKDIR)
        self.since = time.time()
        device = self.device
        self.speed_probe = device if device in ("cpu", "cuda", "mps") or device.startswith("cuda:") else None
        proc = _launch_prestarted(prestarted, self.script, env, self.speed_probe) if can_prestart(config) else None
        if prestarted is not None and proc is None:
            prestarted.kill()
        outcome.prestarted = proc is not None
        if proc is None:
            try:
                proc = sandbox.start(command_argv(config, self.script), self.box, env, stdin=subprocess.PIPE)
            except OSError as err:
                outcome.status = "crash"
                outcome.error = f"could not start {config.train.command or self.script}: {err}"
                return None
            if not config.evaluated:
                proc.popen.stdin.close()  # a task's own command gets no stop line: its deadline is a kill
        outcome.isolation = proc.isolation
        return proc

    def _clock(self, startup_allowance: float | None, finish_allowance: float | None) -> Clock:
        """The harness's clock (clock.py): train.py's own `start` and `done` lines mark the phases, but only as
        the harness reads them; a task's own command is killed at budget + start-up allowance from its launch."""
        train = self.config.train
        self.startup = train.startup_allowance_seconds if startup_allowance is None else startup_allowance
        if self.config.evaluated:
            finish = train.finish_allowance_seconds if finish_allowance is None else finish_allowance
            return Clock(budget=self.budget, startup=self.startup, launched=time.monotonic(), finish=finish)
        run_clock = Clock(budget=self.budget + self.startup, startup=0.0, finish=float("inf"),
                          launched=time.monotonic(), overrun=0.0)
        run_clock.started(run_clock.launched)
        return run_clock

    def supervise(self, proc: sandbox.CandidateProcess, spares: SpareWorkers | None,
                  startup_allowance: float | None, finish_allowance: float | None) -> tuple[int, float]:
        """Read the run's output to its end under the clock and the disk watch; its exit code, and when it ended."""
        config = self.config
        self.run_clock = self._clock(startup_allowance, finish_allowance)
        self.watch = watch = Watch(self.run_clock, proc, stops=config.evaluated)
        watch.start()
        confined = proc.isolation in sandbox.WRITE_CONFINED  # it writes only in its folders: told apart
        self.disk = disk = diskguard.DiskWatch(self.task_dir, lambda _: proc.kill(),
                                               max_write_gb=config.sandbox.max_write_gb,
                                               min_free_gb=config.sandbox.min_free_gb,
                                               own_folders=(self.task_dir, *self.box.write) if confined else None)
        disk.start()
        self.own_spares = spares is None and self.evaluating
        self.spares = spare_workers(self.task_dir, config, size=1 if self.probe is not None else 2) \
            if self.own_spares else spares
        # The evaluation workers import Python and torch alongside train.py's start-up (mostly one core's work
        # on a CPU; on a GPU machine the CPU cores are idle anyway), so the evaluation need not wait for them;
        # when the machine's speed is measured first, only once that is done, so that they do not slow the probe.
        self.speed_line_due = self.outcome.prestarted and self.speed_probe is not None
        if self.evaluating and not self.speed_line_due:
            self.spares.fill()
        try:
            self._read(proc)
            code = proc.wait()
            if self.pruned is not None:
                with open(self.log_path, "a") as log:
                    log.write(f"\n[autoresearch: {self.pruned}]\n")
        except BaseException:
            self.close_spares()
            raise
        finally:
            ended = time.monotonic()
            watch.stop()
            disk.stop()
            proc.kill()
        self._probe_again()
        return code, ended

    def _read(self, proc: sandbox.CandidateProcess) -> None:
        """The run's output, line by line: into train.log (capped), the harness's speed line, progress events."""
        outcome, logged = self.outcome, 0
        with open(self.log_path, "w") as log:
            for raw in output_lines(proc.popen):
                line = raw.decode("utf-8", "replace")
                if self.speed_line_due and line.startswith(speed.SPEED_PREFIX):
                    self._speed_line(line)
                if logged < LOG_LIMIT_BYTES:  # a flood of output is drained, not kept
                    logged += len(raw)
                    log.write(line if logged < LOG_LIMIT_BYTES else
                              line + f"\n[autoresearch: the log stops here, at {LOG_LIMIT_BYTES >> 20} MB; the run "
                                     "went on]\n")
                    log.flush()
                self.tail.append(line[:2000])
                del self.tail[:-60]
                event = parse_progress(line.rstrip("\n"))
                if event is None:
                    continue
                if self.config.evaluated and event["event"] in ("start", "done"):
                    self.watch.saw(event["event"])
                outcome.events.append(event)
                absorb(outcome, event)
                self.on_event(event)
                if self.stop_when is not None and self.pruned is None:
                    self.pruned = self.stop_when(event)
                    if self.pruned is not None:
                        proc.kill()  # its remaining output is read to the end, then the loop ends

    def _speed_line(self, line: str) -> None:
        """The harness's own line, written before any candidate code was loaded: only the first."""
        self.speed_line_due = False
        self.outcome.machine_speed = _scaled_for_tests(speed.parse_line(line.rstrip("\n")))
        if self.evaluating:
            self.spares.fill()
        event = {"event": "machine_speed", "gflops": self.outcome.machine_speed}
        self.on_event(event)
        if self.stop_when is not None:
            self.stop_when(event)

    def _probe_again(self) -> None:
        """A CPU shared with other work has dips of a second or more; a run's speed is the better of the probe
        before it and one after it (here, in the harness, with the run's processes gone), so that a dip at one
        moment is not taken for a slower machine. (GPUs are steady, and this process keeps off them.)"""
        if self.outcome.machine_speed is None or self.device != "cpu":
            return
        try:
            self.outcome.machine_speed = max(self.outcome.machine_speed, _scaled_for_tests(speed.probe("cpu")))
        except Exception:  # noqa: BLE001 (the figure from before the run stands)
            pass

    def classify(self, proc: sandbox.CandidateProcess, code: int, ended: float) -> None:
        """How the run ended: a disk or memory limit, pruned, past the clock, a crash; then the clock's verdict
        on its phases and its own figures, and the throughput."""
        outcome, what, config = self.outcome, self.what, self.config
        failure = self._failure(proc, code)
        if failure is not None:
            outcome.status, outcome.error = failure
        if config.evaluated:
            run_clock = self.run_clock
            outcome.startup_seconds = run_clock.startup_seconds
            outcome.training_seconds = run_clock.training_seconds
            outcome.finish_seconds = run_clock.finish_seconds(ended)
            verdict = run_clock.verdict(outcome.reported_training_seconds) if outcome.status == "ok" else None
            if verdict is not None:
                status, why = verdict
                outcome.status = status
                outcome.error = f"tampered: {why}" if status == "tampered" else f"{what} {why}"
                self.evaluating = False
        else:
            outcome.training_seconds = outcome.reported_training_seconds or time.perf_counter() - self.started
        if outcome.tokens and outcome.training_seconds:
            outcome.tokens_per_s = outcome.tokens / outcome.training_seconds
        if outcome.status == "ok" and outcome.flops_per_token and outcome.tokens_per_s and self.device != "-":
            outcome.mfu = mfu(outcome.tokens_per_s, outcome.flops_per_token, device_name(self.device))

    def _failure(self, proc: sandbox.CandidateProcess, code: int) -> tuple[str, str] | None:
        """(status, error) of a run that did not end well by itself; None if it did."""
        what = self.what
        if self.disk.reason is not None:
            freed = diskguard.remove_written(self.task_dir, self.files_before, self.box.write, self.since,
                                             HIDDEN_IN_WORKDIR)
            self.evaluating = False
            return "crash", (f"{what} was stopped: {self.disk.reason}. The {freed / diskguard.GB:.2f} GB it wrote "
                             "were deleted (docs/security.md)")
        if code != 0 and proc.memory_exceeded():
            self.evaluating = False
            return "crash", (f"{what} was stopped: it used more than its memory limit of {proc.memory_gb:.3g} GB "
                             "(sandbox.max_memory_gb)")
        if self.pruned is not None:
            self.evaluating = False
            return "pruned", self.pruned
        if self.watch.killed is not None:
            return "timeout", (f"{what} {self.watch.killed} and was killed" if self.config.evaluated else
                               f"{what} ran past budget + start-up allowance ({self.budget + self.startup:.0f} s) "
                               "and was killed")
        if code != 0:
            return "crash", capped("".join(self.tail[-30:]).strip()) or f"{what} exited with code {code}"
        if self.config.evaluated and not any(e.get("event") == "done" for e in self.outcome.events):
            return "crash", "train.py exited without its final progress line (see docs/contract.md)"
        return None

    def evaluate(self) -> None:
        """The trusted metric of the model the run saved; then, where `probe` says (or always), the causality
        probe and the hidden test split; then the entropy floor."""
        outcome, config, dataset, script = self.outcome, self.config, self.dataset, self.script
        if outcome.status != "ok" or not self.evaluating:
            return
        model_path, vocab, device = self.output_dir / "model.pt", len(dataset.token_bytes()), self.device
        eval_env, timeout = {"AUTORESEARCH_DEVICE": device}, max(120.0, self.budget)
        shape = dict(seq_len=config.eval.seq_len, n_tokens=config.eval.tokens, batch_size=config.eval.batch_size)
        try:
            result = evaluate(script, model_path, dataset.tokens("val"), dataset.token_bytes(), **shape,
                              device=device, cwd=self.task_dir, timeout=timeout, env=eval_env,
                              worker=self.spares.take(script, model_path, vocab))
            outcome.val_bpb, outcome.val_bpb_stderr = result.bpb, result.bpb_stderr
            outcome.metric, outcome.eval_seconds = result.bpb, result.seconds
            self.on_event({"event": "eval", "val_bpb": result.bpb, "seconds": result.seconds})
            checked_test = None
            if result.audit is not None and (self.probe is None or self.probe(result.bpb)):
                checked = verify(script, model_path, result.audit, dataset.token_bytes(), device=device,
                                 cwd=self.task_dir, env=eval_env, timeout=timeout, test_tokens=dataset.tokens("test"),
                                 **shape, worker=self.spares.take(script, model_path, vocab))
                outcome.causal_tv, outcome.probe_seconds = checked.causal_tv, checked.seconds
                outcome.test_bpb = checked.test.bpb if checked.test is not None else None
                checked_test = checked.test
            void = _impossible_scores(outcome, dataset, config, result.bpb_stderr, checked_test)
            if void is not None:
                outcome.status, outcome.error = "tampered", void
        except EvaluationVoid as err:
            outcome.status, outcome.error = "tampered", str(err)
            _log_worker_output(self.run_dir, err)
        except EvaluationError as err:
            outcome.status, outcome.error = "crash", f"evaluation failed: {err}"
            _log_worker_output(self.run_dir, err)

    def close_spares(self) -> None:
        if self.own_spares and self.spares is not None:
            self.spares.close()
            self.own_spares = False

    def finish(self) -> Outcome:
        """A task's own metric read, the model moved into the run's folder, outcome.json written."""
        outcome = self.outcome
        if outcome.status == "ok" and not self.config.evaluated:
            _read_reported(outcome, self.config, self.log_path, self.json_path)
        if self.run_dir.is_dir():
            keep_model(self.output_dir, self.run_dir / "model")
        outcome.total_seconds = time.perf_counter() - self.started
        measured = outcome.done()
        if self.run_dir.is_dir():
            (self.run_dir / "outcome.json").write_text(json.dumps(measured.summary(), indent=2))
        return measured


def _impossible_scores(outcome: OutcomeBuilder, dataset: Dataset, config: TaskConfig, val_stderr: float,
                       test: EvalResult | None) -> str | None:
    """Why the measured scores cannot come from an honest model (floor.py), or None."""
    val_floor = floor.evaluated_floor(dataset, "val", config.eval.seq_len, config.eval.tokens)
    why = floor.below_floor(outcome.val_bpb, val_stderr, val_floor, "val")
    if why is None and test is not None:
        test_floor = floor.evaluated_floor(dataset, "test", config.eval.seq_len, config.eval.tokens)
        why = floor.below_floor(test.bpb, test.bpb_stderr, test_floor, "test") or floor.suspiciously_good_test(
            (outcome.val_bpb, val_stderr), (test.bpb, test.bpb_stderr), val_floor, test_floor)
    return f"tampered: {why}" if why else None


def _log_worker_output(run_dir: Path, err: EvaluationError) -> None:
    """What the evaluation worker wrote, for the person (`autoresearch show`): never for the agent."""
    if err.worker_output:
        (run_dir / "eval.log").write_text(err.worker_output[-LOG_LIMIT_BYTES:], errors="replace")


def _launch_prestarted(prestarted: sandbox.CandidateProcess | None, script: Path, env: dict[str, str],
                       speed_probe: str | None) -> sandbox.CandidateProcess | None:
    if prestarted is None or not prestarted.alive():
        return None
    try:
        prestarted.go(script, env, speed_probe=speed_probe)
    except OSError:
        return None
    return prestarted


def _scaled_for_tests(figure: float | None) -> float | None:
    """The crash-safety tests' kind of fault injection, for the speed check's tests: a number in the file
    AUTORESEARCH_FAULT_SPEED_FILE (if set and present) multiplies every measured speed, as a load would."""
    path = os.environ.get("AUTORESEARCH_FAULT_SPEED_FILE")
    if figure is None or not path:
        return figure
    try:
        return figure * float(Path(path).read_text())
    except (OSError, ValueError):
        return figure


def _read_reported(outcome: OutcomeBuilder, config: TaskConfig, log_path: Path, json_path: Path | None) -> None:
    """The metric (and peak memory) the command reported about itself."""
    m = config.metric
    lines = log_path.read_text(errors="replace").splitlines()
    try:
        outcome.metric = reported.from_json(json_path, m.json_key) if json_path is not None \
            else reported.from_output(lines, m.regex)
    except reported.MetricNotFound as err:
        outcome.status, outcome.error = "crash", f"no {m.name}: {err}"
        return
    if m.name == "val_bpb":
        outcome.val_bpb = outcome.metric
    if m.memory_regex:
        try:
            outcome.peak_memory_bytes = int(reported.from_output(lines, m.memory_regex) * 2**20)
        except reported.MetricNotFound:
            pass  # memory is optional
