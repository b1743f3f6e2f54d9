"""One experiment: run train.py under the budget, then the trusted evaluation -> `Outcome`.

Tasks outside the built-in contract run their own command instead, and their metric is read from what
the run reports (`reported.py`).

train.py reports progress as `@autoresearch {json}` lines (docs/contract.md). They drive the live
display and the throughput figures; the metric comes from `evaluate.py` alone.
"""

from __future__ import annotations

import json
import math
import os
import select
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from autoresearch.config import TaskConfig
from autoresearch.data.prepare import Dataset
from autoresearch.decide import speed
from autoresearch.run import diskguard, floor, reported, sandbox
from autoresearch.run.clock import STOP, Clock
from autoresearch.run.evaluate import (
    EvalResult,
    EvaluationError,
    EvaluationVoid,
    SpareWorkers,
    evaluate,
    verify,
)
from autoresearch.run.flops import mfu

PROGRESS_PREFIX = "@autoresearch "
LOG_LIMIT_BYTES = 32 << 20  # of a run's output kept in train.log; the rest is read and dropped
MAX_LINE_BYTES = 1 << 20  # output is read in lines of at most this many bytes (a line without end is cut)
STOP_LINE = b"stop\n"  # written to train.py's standard input when the budget is spent (docs/contract.md)
ERROR_CHARS = 4000  # of a crashed run's output, at most, in its error


CANDIDATE_EVENTS = ("start", "step", "done")  # what train.py may report; every other name is the harness's
INTEGER_FIELDS = frozenset({"params", "step", "steps", "tokens", "peak_memory_bytes"})
TEXT_FIELDS = frozenset({"device", "profile"})  # every other field is a number


def capped(text: str, limit: int = ERROR_CHARS) -> str:
    """The end of `text`, at most `limit` characters: what of a run's own output may go into its error (which
    reaches the agent)."""
    return text if len(text) <= limit else "[... cut]\n" + text[-limit:]


def parse_progress(line: str) -> dict | None:
    """The event of a progress line, or None for free-form output and malformed lines.

    The line is candidate output, so it is cleaned before anything uses it: only the contract's events
    (`CANDIDATE_EVENTS`), and of their fields only finite numbers (whole numbers where counts are meant)
    and, for `TEXT_FIELDS`, short strings. A line that claims to be the harness's own event (an evaluation) is ignored."""
    if not line.startswith(PROGRESS_PREFIX):
        return None
    try:
        event = json.loads(line[len(PROGRESS_PREFIX):])
    except (json.JSONDecodeError, RecursionError):
        return None
    if not isinstance(event, dict) or event.get("event") not in CANDIDATE_EVENTS:
        return None
    clean: dict = {"event": event["event"]}
    for key, value in event.items():
        if key == "event" or not isinstance(key, str):
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            clean[key] = int(value) if key in INTEGER_FIELDS else value
        elif isinstance(value, str) and len(value) <= 200 and key in TEXT_FIELDS:
            clean[key] = value
    return clean


def run_folder(experiment_dir: Path, index: int) -> Path:
    """Where run `index` (0 first) of an experiment writes its train.log: the experiment's log folder for the
    first, `run-<index + 1>/` in it for the confirmation runs and the later runs of a best."""
    return experiment_dir / f"run-{index + 1}" if index else experiment_dir


def logged_progress(log_path: Path) -> list[dict]:
    """The progress events in a run's log file (`parse_progress`); none if the file is missing."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            return [event for line in log if (event := parse_progress(line.rstrip("\n"))) is not None]
    except OSError:
        return []


@dataclass(frozen=True)
class Outcome:
    """What one run of an experiment's code measured (frozen: a runner builds it with `OutcomeBuilder`)."""

    status: str  # ok | crash | timeout | pruned (stopped early: `stop_when`) | void (evaluate.EvaluationVoid)
    metric: float | None = None  # the task's metric (val_bpb with the built-in evaluation)
    metric_name: str = "val_bpb"
    val_bpb: float | None = None
    val_bpb_stderr: float | None = None
    training_seconds: float | None = None  # built-in contract: `start` line to `done` line, as the harness read them
    total_seconds: float = 0.0
    startup_seconds: float | None = None  # from launch to the `start` line, by the harness's clock
    finish_seconds: float | None = None  # from the `done` line to the exit (saving), by the harness's clock
    reported_training_seconds: float | None = None  # what train.py said (its `done` line); not trusted
    eval_seconds: float | None = None
    peak_memory_bytes: int | None = None
    tokens: int | None = None
    steps: int | None = None
    params: int | None = None
    flops_per_token: float | None = None
    tokens_per_s: float | None = None
    mfu: float | None = None
    device: str | None = None
    prestarted: bool = False  # train.py ran in an interpreter started ahead of time (prestart.py)
    machine_speed: float | None = None  # GFLOP/s of the harness's probe before train.py (speed.py; CPU: and after)
    isolation: str | None = None  # how the candidate was contained: bwrap, or process (no sandbox)
    causal_tv: float | None = None  # the causality probe's largest total variation (None: not probed)
    test_bpb: float | None = None  # on the hidden test split, measured with the probe; never used to decide
    probe_seconds: float | None = None  # the probe and the test evaluation
    seed: int = 0
    budget_seconds: float = 0.0
    log_path: str = ""
    error: str | None = None
    events: tuple[dict, ...] = field(default=(), repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "events"}


class OutcomeBuilder:
    """An `Outcome` being measured: its fields, set one by one as the run goes; `done` freezes them."""

    def __init__(self, **given: object) -> None:
        unknown = set(given) - {f.name for f in fields(Outcome)}
        if unknown:
            raise TypeError(f"Outcome has no field {sorted(unknown)}")
        for f in fields(Outcome):
            setattr(self, f.name, given.get(f.name, [] if f.name == "events" else f.default))

    def done(self) -> Outcome:
        values = {f.name: getattr(self, f.name) for f in fields(Outcome)}
        return Outcome(**{**values, "events": tuple(values["events"])})


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
    prestarted interpreter (`prestart_python`) is started with, before it knows its experiment."""
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


def model_dir(task_dir: Path) -> Path:
    """Where train.py saves its model: a fixed folder of the working folder, emptied before each run and
    moved into the run's log folder after it (fixed, so a prestarted interpreter's box can show it)."""
    return task_dir / ".autoresearch" / "model"


def compile_cache(task_dir: Path) -> Path:
    """The compile cache a run writes (torch.compile's and Triton's): its own copy of the frozen cache
    (`frozen_cache`), made afresh before each run and thrown away after it, so that nothing one run compiles (or
    plants there) reaches another. A fixed folder, like the model folder, so a prestarted interpreter's box
    shows it."""
    return task_dir / ".autoresearch" / "compile-cache"


def frozen_cache(task_dir: Path) -> Path:
    """The compile cache each run starts from: what the loop's own baseline compiled in its first run
    (`freeze_compile_cache`), never written by a candidate; or the folder a person named in
    TORCHINDUCTOR_CACHE_DIR, which is only ever read."""
    placed = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    return Path(placed) if placed else task_dir / ".autoresearch" / "compile-cache-frozen"


def reset_compile_cache(task_dir: Path) -> None:
    """Make the run's compile cache an exact copy of the frozen one: emptied in place (a prestarted box has it
    mounted), then filled. Symbolic links in the frozen cache are not followed."""
    run = compile_cache(task_dir)
    _empty(run)
    frozen = frozen_cache(task_dir)
    if frozen.is_dir():
        shutil.copytree(frozen, run, symlinks=True, dirs_exist_ok=True)


def freeze_compile_cache(task_dir: Path, max_gb: float) -> int | None:
    """Keep what the run just compiled as the frozen cache, unless there is one already (or a person placed
    theirs). Called by the loop after its baseline's first sound run only: the baseline is the task's own code.
    Returns the bytes frozen; None when nothing was, because the cache was over `max_gb` (0: no cap)."""
    frozen, run = frozen_cache(task_dir), compile_cache(task_dir)
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ or frozen.exists() or not run.is_dir():
        return 0
    size = sum(f.stat().st_size for f in run.rglob("*") if f.is_file() and not f.is_symlink())
    if max_gb > 0 and size > max_gb * diskguard.GB:
        return None
    scratch = frozen.with_name(frozen.name + f".tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(run, scratch, symlinks=True)
    os.replace(scratch, frozen)
    return size


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
        _empty(self.output_dir)
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
        self.files_before = diskguard.files_in(self.task_dir, sandbox.HIDDEN_IN_WORKDIR)
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
        self.watch = watch = _Watch(self.run_clock, proc, stops=config.evaluated)
        watch.start()
        self.disk = disk = diskguard.DiskWatch(self.task_dir, lambda _: proc.kill(),
                                               max_write_gb=config.sandbox.max_write_gb,
                                               min_free_gb=config.sandbox.min_free_gb)
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
                _absorb(outcome, event)
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
                outcome.status = "void" if status == "tampered" else status
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
                                             sandbox.HIDDEN_IN_WORKDIR)
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
                outcome.status, outcome.error = "void", void
        except EvaluationVoid as err:
            outcome.status, outcome.error = "void", str(err)
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
            _keep_model(self.output_dir, self.run_dir / "model")
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


def output_lines(popen: subprocess.Popen, max_line: int = MAX_LINE_BYTES, linger: float = 1.0) -> Iterator[bytes]:
    """What `popen` writes to its stdout pipe, line by line (a line longer than `max_line` comes in pieces of
    that size), until the pipe ends, or `linger` seconds after the process ended: outside the box, a process
    it left behind (a daemon) could hold the pipe open, or keep writing to it, for ever."""
    fd = popen.stdout.fileno()
    buffer, ended = b"", None
    while True:
        if ended is None and popen.poll() is not None:
            ended = time.monotonic()
        if ended is not None and time.monotonic() - ended > linger:
            break
        if not select.select([fd], [], [], 0.2)[0]:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        buffer += chunk
        while True:
            cut = buffer.find(b"\n", 0, max_line)
            if cut < 0 and len(buffer) < max_line:
                break
            end = cut + 1 if cut >= 0 else max_line
            yield buffer[:end]
            buffer = buffer[end:]
    if buffer:
        yield buffer


def _empty(folder: Path) -> None:
    """`folder` exists and is empty. Emptied in place, never replaced: a prestarted interpreter's box has
    this very folder mounted."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def remove_models(experiment_dir: Path, *, keep_first: bool) -> None:
    """Delete the trained models in an experiment's log folder (its first run's `model/`, and each later run's
    `run-N/model/`), all or all but the first run's."""
    folders = sorted(experiment_dir.glob("run-*/model"))
    if not keep_first:
        folders.append(experiment_dir / "model")
    for folder in folders:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def _keep_model(output_dir: Path, destination: Path) -> None:
    """Move what the run saved into its log folder, leaving the output folder itself (see `_empty`)."""
    entries = list(output_dir.iterdir()) if output_dir.is_dir() else []
    if not entries:
        return
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for entry in entries:
        shutil.move(str(entry), str(destination / entry.name))


class _Watch(threading.Thread):
    """Carries out the run's clock (clock.py): the stop line at the budget, the kill past an allowance."""

    def __init__(self, clock: Clock, proc: sandbox.CandidateProcess, *, stops: bool) -> None:
        super().__init__(daemon=True)
        self.clock, self.proc, self.stops = clock, proc, stops
        self.killed: str | None = None  # why the run was killed, if it was
        self._lock, self._changed, self._ended = threading.Lock(), threading.Event(), False

    def saw(self, event: str) -> None:
        """train.py's `start` or `done` line has just been read."""
        with self._lock:
            (self.clock.started if event == "start" else self.clock.done)(time.monotonic())
        self._changed.set()

    def stop(self) -> None:
        self._ended = True
        self._changed.set()
        self.join(timeout=5)

    def run(self) -> None:
        while not self._ended:
            with self._lock:
                when, action, why = self.clock.next_action()
            delay = when - time.monotonic()
            if delay > 0:
                self._changed.wait(delay)
                self._changed.clear()
                continue
            if action == STOP:
                self.clock.stop_sent = True
                if self.stops:
                    self._tell_stop()
                continue
            self.killed = why
            self.proc.kill()
            return

    def _tell_stop(self) -> None:
        try:
            self.proc.popen.stdin.write(STOP_LINE)
            self.proc.popen.stdin.flush()
        except (OSError, ValueError):  # it closed its input, or is gone: the kill past the overrun follows
            pass


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


def _absorb(outcome: OutcomeBuilder, event: dict) -> None:
    kind = event["event"]
    if kind == "start":
        outcome.params = event.get("params")
        outcome.flops_per_token = event.get("flops_per_token")
    elif kind == "step":
        outcome.steps, outcome.tokens = event.get("step"), event.get("tokens")
    elif kind == "done":
        outcome.steps = event.get("steps", outcome.steps)
        outcome.tokens = event.get("tokens", outcome.tokens)
        outcome.reported_training_seconds = event.get("training_seconds")
        outcome.peak_memory_bytes = event.get("peak_memory_bytes")
