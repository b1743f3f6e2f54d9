"""The task's protocol, read from `autoresearch.toml`, as frozen dataclasses with clear errors."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from autoresearch.decide import speed
from autoresearch.decide.prune import Settings as PruneSettings
from autoresearch.decide.stats import Thresholds
from autoresearch.observe import notify, track
from autoresearch.observe.notify import NotifySettings
from autoresearch.observe.track import TrackSettings
from autoresearch.run import executor
from autoresearch.run.executor import ExecutorSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "autoresearch.toml"
PROFILES = ("cpu", "h100")


class ConfigError(Exception):
    """A problem with the task settings; the message names the setting and the fix."""


@dataclass(frozen=True)
class DataConfig:
    source: str = "builtin"  # builtin | hf:<owner/name>[@revision] | <path>
    vocab_size: int = 2048  # BPE vocabulary, bytes included (>= 256); BOS is added on top
    seed: int = 0  # built-in corpus only
    train_mb: float = 24.0  # built-in corpus only: size of each split in MB of UTF-8 text
    val_mb: float = 2.0
    test_mb: float = 2.0
    hf_train_shards: int = 2  # hf only: how many parquet shards to train on
    tokenizer_sample_mb: float = 64.0  # how much training text the tokenizer learns from


@dataclass(frozen=True)
class TrainConfig:
    script: str = "train.py"  # the file the harness evaluates (metric.source = "evaluator")
    command: str = ""  # how to run an experiment; empty: `python <script>` (see docs/tasks.md)
    prepare_command: str = ""  # run once by `autoresearch prepare`, e.g. "uv run prepare.py"
    budget_seconds: float = 60.0
    profile: str = "auto"  # auto | cpu | h100
    device: str = "auto"  # auto | cpu | cuda | mps
    # The harness times each run itself (docs/contract.md, "The clock"). Start-up (to train.py's `start` line) and
    # finish (from its `done` line to its exit) may take at most these long for the baseline; later runs get
    # allowance_factor x the baseline's own + allowance_margin_seconds, never more than these.
    startup_allowance_seconds: float = 180.0
    finish_allowance_seconds: float = 60.0
    allowance_factor: float = 2.0
    allowance_margin_seconds: float = 5.0


@dataclass(frozen=True)
class EvalConfig:
    seq_len: int = 256
    tokens: int = 65_536  # 2 s on 2 CPU cores: docs/evaluation.md weighs cost against sampling error
    batch_size: int = 16
    probe: str = "keeps"  # the causality probe (docs/security.md) runs for results that would be kept, or "all"


@dataclass(frozen=True)
class MetricConfig:
    name: str = "val_bpb"
    direction: str = "minimize"  # minimize | maximize
    # evaluator: the harness evaluates the model train.py saved (trusted). regex: the last match of `regex`
    # in the run's output. json: `json_key` of the file `json_file`. The last two are what the run says
    # of itself: weaker, since the editable code can print anything.
    source: str = "evaluator"
    regex: str = ""  # source = regex: one capture group around the number, e.g. '^val_bpb:\s*(\S+)'
    json_file: str = ""  # source = json: written by the run, relative to the task folder
    json_key: str = ""  # source = json: a key, or a dotted path such as "eval.score"
    memory_regex: str = ""  # optional: the run's peak memory in MB, from its output

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def better(self, value: float, than: float) -> bool:
        """Is `value` strictly better than `than`?"""
        return value > than if self.maximize else value < than


@dataclass(frozen=True)
class AgentConfig:
    # Dollars per million tokens, for agents that report tokens but no cost (API agents, codex);
    # 0 leaves the cost unknown. Agents that report their own cost (claude) keep theirs.
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    # Run coding agents (cmd:, claude, codex, aider) in a box that hides the store, the logs and the data
    # (docs/security.md); false runs them as you (needed only if your agent must reach those).
    box: bool = True


@dataclass(frozen=True)
class SandboxConfig:
    # What runs may reach besides their folder (docs/security.md). Paths may start with ~.
    read: list = field(default_factory=list)  # files or folders runs may read, e.g. a self-evaluating task's data
    write: list = field(default_factory=list)  # folders runs may write, e.g. a package manager's cache
    env: list = field(default_factory=list)  # names of environment variables passed to runs as they are
    network: bool = False  # let runs reach the network (only for commands that must download)
    min_free_gb: float = 4.0  # a run starts only with this much free disk; it is stopped under a quarter of it
    max_write_gb: float = 32.0  # a run is stopped once it has taken this much of its disk (what it wrote is deleted)
    # The most memory (GB) a run's processes may use together, files in its RAM-backed /tmp and /dev/shm included;
    # past it the run is stopped and recorded as a crash (docs/security.md). 0: 75% of the machine's memory.
    max_memory_gb: float = 0.0
    # torch.compile's cache: what the baseline's first run compiled is frozen, and each run starts from a copy of
    # it that is thrown away afterwards (docs/security.md). A baseline cache larger than this is not frozen. 0: no cap.
    compile_cache_gb: float = 20.0


TURNS = ("fixed", "adaptive")  # how agents taking turns share them: as listed, or by whose proposals get kept


@dataclass(frozen=True)
class LoopConfig:
    editable: list = field(default_factory=lambda: ["train.py"])  # paths or globs the agent may change
    seed: int = 0  # seed passed to every run
    fix_attempts: int = 2  # after a crash, how many fixes an agent that can fix may try
    pipeline: str = "auto"  # draft the next proposal while an experiment trains: auto (API agents), on, off
    # Agents taking turns (several --agent): fixed (each as often as it is listed), or adaptive (more turns to
    # those whose proposals get kept; docs/agents/README.md, "Adaptive turns").
    turns: str = "fixed"
    # Which trained models stay in the logs once an experiment is decided (docs/loop.md, "Disk"): kept (those
    # of kept experiments, one each, and of void ones, as evidence), all, or none.
    keep_models: str = "kept"
    # Other runs of this folder (tags; "*": all of them) whose best this run takes up when it beats its own by
    # more than the noise: each GPU searches on its own, and they share what they find (docs/loop.md, "Runs
    # that share their best"). Empty: this run is a line of research of its own.
    adopt_from: list = field(default_factory=list)
    # Take another run's best up only after this many experiments of this run without a keep (0: as soon as
    # one beats this run's): runs that share later keep their own lines longer, and search more widely.
    adopt_after: int = 0
    # A folder shared by machines (NFS, say) where each run writes its best and reads the others': their runs
    # are offered to adopt_from under `<tag>@<host>` (docs/loop.md, "Runs on several machines"). Empty: none.
    exchange: str = ""
    # After proposals that did not run (an API down, a key expired, a command that changes nothing, code
    # already measured), the agent is asked again after a wait that doubles from this many seconds, up to 10
    # minutes, from the third in a row; after stop_after_agent_failures in a row (0: never) the run stops
    # (docs/loop.md, "An agent that fails").
    agent_retry_seconds: float = 10.0
    stop_after_agent_failures: int = 20
    # After this many crashes or timeouts in a row (0: never), the best runs once more: when it fails too, the
    # machine or its environment is broken, not the proposals, and the run stops (docs/loop.md, "A machine
    # that breaks").
    check_best_after_crashes: int = 5


@dataclass(frozen=True)
class KeepConfig:
    # How a result is judged (docs/keep.md). confirm: better than the best by a clear margin relative to the
    # measured run-to-run noise, or confirmed by re-runs with fresh seeds. strict: better by any amount.
    rule: str = "confirm"
    noise_seeds: int = 3  # the baseline's runs (seeds seed, seed+1, ...) that first measure the noise
    recalibrate_every: int = 5  # after this many keeps, the best runs noise_seeds more times (0: never)
    best_runs: int = 2  # a new best kept on fewer runs than this runs again until it has them (1: never)
    # The thresholds of the confirm rule; their defaults live in `stats.Thresholds`.
    clear_z: float = Thresholds.clear_z  # first run better by this many standard errors: kept at once
    gate_z: float = Thresholds.gate_z  # first run better by at most this many: discarded
    confirm_z: float = Thresholds.confirm_z  # after re-runs, the mean better by this many: kept
    futility_z: float = Thresholds.futility_z  # after a re-run, the mean better by at most this many: discarded
    max_confirm: int = Thresholds.max_confirm  # re-runs at most
    tie_z: float = Thresholds.tie_z  # a change that removes more lines than it adds is kept within this many
    widen_z: float = Thresholds.widen_z  # a noise estimate from few runs is widened by t_dof(Phi(widen_z)) / widen_z
    learn_dof: int = Thresholds.learn_dof  # below this many degrees of freedom, any better first run is confirmed
    # A run is compared only with runs of the best made at about its machine speed (within this fraction); if
    # there are none, the best runs again first (docs/keep.md, "Machine speed"). 0 turns the check off.
    speed_tolerance: float = speed.DEFAULT_TOLERANCE
    # The price of code (docs/keep.md, "The price of complexity"): a change must beat the best by more than the
    # noise asks plus this much of the metric per line of code it adds (a change that removes lines earns it
    # back). 0: lines are free.
    complexity_cost: float = 0.0
    # Commands that must pass on a candidate before it is kept, run in the box in its worktree, e.g.
    # ["ruff check train.py", "pytest -q tests/"] (docs/keep.md, "Checks"): a failure makes it rejected, and
    # their output goes to the agent with its next request. Empty: no checks.
    checks: list = field(default_factory=list)
    checks_timeout_seconds: float = 300.0  # each check's time limit

    def thresholds(self) -> Thresholds:
        return Thresholds(**{f.name: getattr(self, f.name) for f in fields(Thresholds)})


@dataclass(frozen=True)
class TaskConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    metric: MetricConfig = field(default_factory=MetricConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    keep: KeepConfig = field(default_factory=KeepConfig)
    prune: PruneSettings = field(default_factory=PruneSettings)  # stopping hopeless runs early (prune.py)
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)  # where runs train (executor.py)
    notify: NotifySettings = field(default_factory=NotifySettings)  # alerts to a webhook (observe/notify.py)
    track: TrackSettings = field(default_factory=TrackSettings)  # MLflow, TensorBoard, W&B (observe/track.py)

    @property
    def evaluated(self) -> bool:
        """Does the harness compute the metric itself (the built-in contract), rather than read it?"""
        return self.metric.source == "evaluator"

    def validate(self) -> TaskConfig:
        """This config, checked section by section; a `ConfigError` names the first setting that is wrong."""
        _validate_data(self.data)
        _validate_train(self.train)
        _validate_eval(self.eval)
        _validate_editable(self.loop)
        self._validate_metric()
        _validate_agent(self.agent)
        _validate_loop(self.loop)
        _validate_sandbox(self.sandbox)
        _validate_keep(self.keep)
        _validate_prune(self.prune)
        for problem in (executor.check(self.executor), notify.check(self.notify), track.check(self.track)):
            if problem is not None:
                raise ConfigError(problem)
        return self

    def _validate_metric(self) -> None:
        m = self.metric
        if m.direction not in ("minimize", "maximize"):
            raise ConfigError(f"metric.direction = {m.direction!r}: use minimize or maximize")
        if not m.name.strip():
            raise ConfigError('metric.name is empty: name the metric, e.g. "val_bpb" or "accuracy"')
        if m.source == "evaluator":
            if m.direction != "minimize" or m.name != "val_bpb":
                raise ConfigError("metric.source = evaluator measures val_bpb, lower is better: keep "
                                  'name = "val_bpb" and direction = "minimize", or read your own metric with '
                                  'source = "regex" or "json"')
        elif m.source == "regex":
            _check_regex("metric.regex", m.regex, required=True)
        elif m.source == "json":
            if not m.json_file or not m.json_key:
                raise ConfigError('metric.source = json needs json_file (e.g. "metrics.json") and json_key '
                                  '(e.g. "score")')
        else:
            raise ConfigError(f"metric.source = {m.source!r}: use evaluator, regex or json")
        _check_regex("metric.memory_regex", m.memory_regex, required=False)
        if self.train.command:
            try:
                argv = shlex.split(self.train.command)
            except ValueError as err:
                raise ConfigError(f"train.command = {self.train.command!r} does not parse: {err}") from err
            if not argv:
                raise ConfigError("train.command is blank: leave it out to run `python <script>`")


def _validate_data(d: DataConfig) -> None:
    if d.vocab_size < 256:
        raise ConfigError(f"data.vocab_size = {d.vocab_size} is too small: it counts the 256 byte tokens, "
                          "so use 256 (plain bytes) or more, e.g. 2048 or 8192")
    if d.vocab_size > 1_000_000:
        raise ConfigError(f"data.vocab_size = {d.vocab_size} is too large: use at most 1,000,000")
    for name in ("train_mb", "val_mb", "test_mb", "tokenizer_sample_mb"):
        if getattr(d, name) <= 0:
            raise ConfigError(f"data.{name} must be positive")


def _validate_train(t: TrainConfig) -> None:
    if t.budget_seconds <= 0:
        raise ConfigError("train.budget_seconds must be positive, e.g. 60 on CPU or 300 on a GPU")
    if min(t.startup_allowance_seconds, t.finish_allowance_seconds) <= 0 \
            or t.allowance_factor < 1 or t.allowance_margin_seconds < 0:
        raise ConfigError("train.startup_allowance_seconds and train.finish_allowance_seconds must be positive, "
                          "train.allowance_factor at least 1 and train.allowance_margin_seconds 0 or more, "
                          "e.g. 180, 60, 2 and 5")
    if t.profile not in ("auto", *PROFILES):
        raise ConfigError(f"train.profile = {t.profile!r}: use auto, cpu or h100")
    if t.device not in ("auto", "cpu", "cuda", "mps"):
        raise ConfigError(f"train.device = {t.device!r}: use auto, cpu, cuda or mps")


def _validate_eval(e: EvalConfig) -> None:
    if e.probe not in ("keeps", "all"):
        raise ConfigError(f"eval.probe = {e.probe!r}: use keeps (probe results that would be kept) or all")
    if e.seq_len < 2 or e.tokens < e.seq_len or e.batch_size < 1:
        raise ConfigError("eval needs seq_len >= 2, tokens >= seq_len and batch_size >= 1")


def _validate_editable(loop: LoopConfig) -> None:
    if not loop.editable or not all(isinstance(p, str) and p for p in loop.editable):
        raise ConfigError('loop.editable must list the files the agent may edit, e.g. ["train.py"]')


def _validate_agent(a: AgentConfig) -> None:
    if a.price_in_per_mtok < 0 or a.price_out_per_mtok < 0:
        raise ConfigError("agent prices must be 0 (unknown) or positive dollars per million tokens")


def _validate_loop(loop: LoopConfig) -> None:
    """The [loop] settings but `editable` (checked first, before the metric: `_validate_editable`)."""
    if not 0 <= loop.fix_attempts <= 10:
        raise ConfigError(f"loop.fix_attempts = {loop.fix_attempts}: use 0 (never) to 10")
    if not isinstance(loop.adopt_from, (list, tuple)) or \
            not all(isinstance(t, str) and t.strip() for t in loop.adopt_from):
        raise ConfigError(f"loop.adopt_from = {loop.adopt_from!r}: list the run tags to take the best "
                          'from, e.g. ["gpu0", "gpu1"], or ["*"] for every other run of this folder')
    if loop.adopt_after < 0:
        raise ConfigError(f"loop.adopt_after = {loop.adopt_after}: give how many experiments without a keep "
                          "a run makes before it takes up another run's best, e.g. 5 (0: at once)")
    if loop.check_best_after_crashes < 0:
        raise ConfigError(f"loop.check_best_after_crashes = {loop.check_best_after_crashes}: give how many "
                          "crashes in a row make the best run again, e.g. 5 (0: never)")
    if not loop.agent_retry_seconds >= 0 or loop.stop_after_agent_failures < 0:
        raise ConfigError("loop.agent_retry_seconds and loop.stop_after_agent_failures must be 0 or more, "
                          "e.g. 10 (seconds) and 20 (failures in a row; 0: never stop)")
    if loop.keep_models not in ("kept", "all", "none"):
        raise ConfigError(f"loop.keep_models = {loop.keep_models!r}: use kept (the models of kept "
                          "experiments), all or none")
    if loop.pipeline not in ("auto", "on", "off"):
        raise ConfigError(f"loop.pipeline = {loop.pipeline!r}: use auto (on for API agents), on or off")
    if loop.turns not in TURNS:
        raise ConfigError(f"loop.turns = {loop.turns!r}: use fixed (each agent as often as it is listed) "
                          "or adaptive (more turns to the agents whose proposals get kept)")


def _validate_sandbox(s: SandboxConfig) -> None:
    for name in ("read", "write", "env"):
        if not all(isinstance(item, str) and item for item in getattr(s, name)):
            raise ConfigError(f"sandbox.{name} must be a list of non-empty strings, e.g. "
                              + ('["~/.cache/mydata"]' if name != "env" else '["MY_DATA_DIR"]'))
    if not s.min_free_gb > 0 or not s.max_write_gb > 0:
        raise ConfigError("sandbox.min_free_gb and sandbox.max_write_gb must be positive numbers of GB, "
                          "e.g. 4 and 32")
    if not s.max_memory_gb >= 0:
        raise ConfigError(f"sandbox.max_memory_gb = {s.max_memory_gb!r}: give the most GB of memory a "
                          "run may use, e.g. 16 (0: 75% of the machine's)")
    if not s.compile_cache_gb >= 0:
        raise ConfigError(f"sandbox.compile_cache_gb = {s.compile_cache_gb!r}: give the most GB the "
                          "compile cache may hold, e.g. 20 (0: no cap)")


def _validate_keep(k: KeepConfig) -> None:
    if k.rule not in ("confirm", "strict"):
        raise ConfigError(f"keep.rule = {k.rule!r}: use confirm (noise-aware) or strict (any gain)")
    if not 1 <= k.noise_seeds <= 20 or k.recalibrate_every < 0 or not 0 <= k.max_confirm <= 10:
        raise ConfigError("keep needs 1 <= noise_seeds <= 20 (3 is the default), recalibrate_every >= 0 and "
                          "0 <= max_confirm <= 10")
    if not k.clear_z >= k.confirm_z > k.futility_z or k.gate_z > k.clear_z or k.tie_z < 0:
        raise ConfigError("keep thresholds need clear_z >= confirm_z > futility_z, gate_z <= clear_z and "
                          "tie_z >= 0 (defaults 3, 2, 1, 0.5 and 1)")
    if not 0 <= k.widen_z <= 5:
        raise ConfigError(f"keep.widen_z = {k.widen_z}: use a number from 0 (no widening) to 5; 2 is the default")
    if not 1 <= k.best_runs <= 10:
        raise ConfigError(f"keep.best_runs = {k.best_runs}: use a whole number from 1 (a best kept on one run "
                          "is not run again) to 10; 2 is the default")
    if not 0 <= k.speed_tolerance < 1:
        raise ConfigError(f"keep.speed_tolerance = {k.speed_tolerance}: use a fraction from 0 (no speed check) "
                          "to below 1; 0.25 (runs within 25% of each other's machine speed) is the default")
    if not 0 <= k.learn_dof <= 100:
        raise ConfigError(f"keep.learn_dof = {k.learn_dof}: use a whole number from 0 (never) to 100; 5 is the "
                          "default")
    if not 0 <= k.complexity_cost < math.inf:
        raise ConfigError(f"keep.complexity_cost = {k.complexity_cost}: use 0 (lines are free) or a positive "
                          "price of the metric per added line, e.g. 0.0001 (docs/keep.md)")
    if not isinstance(k.checks, list) or not all(isinstance(c, str) and c.strip() for c in k.checks):
        raise ConfigError(f"keep.checks = {k.checks!r}: list the commands as strings, e.g. "
                          '["ruff check train.py", "pytest -q tests/"]')
    for command in k.checks:
        try:
            if not shlex.split(command):
                raise ValueError("it is blank")
        except ValueError as err:
            raise ConfigError(f"keep.checks: {command!r} does not parse ({err}): write it as you would in a "
                              "shell, without pipes") from err
    if not 1 <= k.checks_timeout_seconds <= 3600:
        raise ConfigError(f"keep.checks_timeout_seconds = {k.checks_timeout_seconds}: use 1 to 3600 seconds")


def _validate_prune(p: PruneSettings) -> None:
    if not (0 <= p.after < p.until <= 1 and 0 < p.window <= 1 and p.catch_up >= 1 and p.margin >= 0
            and p.hold >= 0):
        raise ConfigError("prune needs 0 <= after < until <= 1, 0 < window <= 1, catch_up >= 1, margin >= 0 and "
                          "hold >= 0 (defaults 0.25, 0.75, 0.1, 2, 0.02 and 0.1); enabled = false turns it off")


def _check_regex(name: str, pattern: str, *, required: bool) -> None:
    if not pattern:
        if required:
            raise ConfigError(f"{name} is empty: give a pattern with one group around the number, "
                              "e.g. '^score:\\s*(\\S+)'")
        return
    try:
        compiled = re.compile(pattern)
    except re.error as err:
        raise ConfigError(f"{name} = {pattern!r} is not a valid regular expression: {err}") from err
    if compiled.groups < 1:
        raise ConfigError(f"{name} = {pattern!r} has no group: put parentheses around the number, "
                          "e.g. '^score:\\s*(\\S+)'")


_SECTIONS = {"data": DataConfig, "train": TrainConfig, "eval": EvalConfig, "metric": MetricConfig,
             "loop": LoopConfig, "agent": AgentConfig, "sandbox": SandboxConfig, "keep": KeepConfig,
             "prune": PruneSettings, "executor": ExecutorSettings, "notify": NotifySettings,
             "track": TrackSettings}


def config_from_dict(raw: dict[str, Any], origin: str = CONFIG_NAME) -> TaskConfig:
    loop = raw.get("loop")
    if isinstance(loop, dict) and "keep_rule" in loop:  # where task folders of earlier versions name the rule
        keep = raw.get("keep", {})
        raw = {**raw, "loop": {k: v for k, v in loop.items() if k != "keep_rule"},
               "keep": keep if not isinstance(keep, dict) or "rule" in keep else {**keep, "rule": loop["keep_rule"]}}
    parts: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = raw.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        known = {f.name: f for f in fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown setting {section}.{key}; known: {', '.join(known)}")
            expected = type(getattr(cls(), key))
            if (section, key) == ("loop", "pipeline") and isinstance(value, bool):
                value = "on" if value else "off"  # `pipeline = true` reads as it should
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise ConfigError(f"{origin}: {section}.{key} = {value!r} should be a {expected.__name__}")
            values = {**values, key: value}
        parts[section] = cls(**values)
    return TaskConfig(**parts).validate()


def load_config(task_dir: Path) -> TaskConfig:
    path = task_dir / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"no {CONFIG_NAME} in {task_dir}: run `autoresearch init` there first")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from err
    return config_from_dict(raw, str(path))


def default_config(accelerated: bool) -> TaskConfig:
    """Settings `init` writes: a 60 s CPU task, or a 5-minute task sized for one H100."""
    base = TaskConfig()
    if not accelerated:
        return base
    return TaskConfig(
        data=replace(base.data, vocab_size=8192, train_mb=1000.0, val_mb=40.0, test_mb=40.0),
        train=replace(base.train, budget_seconds=300.0),
        eval=EvalConfig(seq_len=2048, tokens=8 * 1024 * 1024, batch_size=32),
    )


REFERENCE_FILES = ("prepare.py", "train.py", "program.md")
REFERENCE_METRIC_REGEX = r"^val_bpb:\s*([-+0-9.eEnaif]+)\s*$"
REFERENCE_MEMORY_REGEX = r"^peak_vram_mb:\s*([0-9.]+)"


def is_reference_layout(folder: Path) -> bool:
    """A folder in the reference layout: prepare.py, train.py and program.md, with no autoresearch.toml."""
    return all((folder / name).is_file() for name in REFERENCE_FILES) and not (folder / CONFIG_NAME).exists()


REFERENCE_DATA_FOLDERS = ("data", "tokenizer")  # what the reference layout's prepare.py writes in its cache


def reference_config(uv: bool) -> TaskConfig:
    """Settings for a reference-layout folder: train.py runs as it is (it keeps its own 5-minute budget and
    prints `val_bpb:`), the harness reads that line, and kills a run at 10 minutes as the reference does."""
    runner = "uv run" if uv else "python"
    # train.py reads the data prepare.py keeps in ~/.cache/autoresearch/{data,tokenizer} (only those: the same
    # folder is our own cache by default, with the built-in corpus's split key); `uv run` needs its cache
    sandbox = SandboxConfig(read=[f"~/.cache/autoresearch/{name}" for name in REFERENCE_DATA_FOLDERS],
                            write=["~/.cache/uv"] if uv else [],
                            env=["UV_CACHE_DIR", "UV_PYTHON_INSTALL_DIR"] if uv else [], network=uv)
    return TaskConfig(
        train=TrainConfig(command=f"{runner} train.py", prepare_command=f"{runner} prepare.py",
                          budget_seconds=300.0, startup_allowance_seconds=300.0),
        metric=MetricConfig(source="regex", regex=REFERENCE_METRIC_REGEX, memory_regex=REFERENCE_MEMORY_REGEX),
        sandbox=sandbox,
    ).validate()


def generic_config(command: str, *, editable: list[str], metric_name: str, maximize: bool, regex: str = "",
                   json_spec: str = "", budget_seconds: float = 60.0) -> TaskConfig:
    """Settings for a generic task: any command, its metric read from a regex or `FILE:KEY` of a JSON file."""
    if bool(regex) == bool(json_spec):
        raise ConfigError("a generic task reads its metric from the output or from a JSON file: give exactly one "
                          "of --metric-regex '^score:\\s*(\\S+)' or --metric-json metrics.json:score")
    json_file, _, json_key = json_spec.rpartition(":") if json_spec else ("", "", "")
    if json_spec and not (json_file and json_key):
        raise ConfigError(f"--metric-json {json_spec!r}: write it FILE:KEY, e.g. metrics.json:score")
    metric = MetricConfig(name=metric_name, direction="maximize" if maximize else "minimize",
                          source="json" if json_spec else "regex", regex=regex, json_file=json_file,
                          json_key=json_key)
    return TaskConfig(train=TrainConfig(command=command, budget_seconds=budget_seconds), metric=metric,
                      loop=LoopConfig(editable=editable)).validate()


def render_config(config: TaskConfig) -> str:
    """The toml text `init` writes, one line per setting. Tasks that read their own metric get no [data]
    and [eval] sections: those belong to the built-in evaluation."""
    lines = ["# The fixed protocol of this task. The agent may not edit this file.", ""]
    for section in _SECTIONS:
        if section in ("data", "eval") and not config.evaluated:
            continue
        lines.append(f"[{section}]")
        for f in fields(getattr(config, section)):
            value = getattr(getattr(config, section), f.name)
            rendered = json.dumps(value) if isinstance(value, (str, list)) else str(value).lower() \
                if isinstance(value, bool) else repr(value)
            lines.append(f"{f.name} = {rendered}")
        lines.append("")
    return "\n".join(lines)


def cache_root() -> Path:
    """Where prepared data lives: $AUTORESEARCH_CACHE, else ~/.cache/autoresearch."""
    env = os.environ.get("AUTORESEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autoresearch"
