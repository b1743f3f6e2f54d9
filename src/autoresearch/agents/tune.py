"""`tune`: hyperparameter search over the numeric constants of train.py with Optuna, one trial per proposal.

Specs: `tune` (TPE, `optuna.samplers.TPESampler`) and `tune:random` (`RandomSampler`, a baseline to compare
TPE against). Each proposal asks the study for one trial and writes its values into the worktree's train.py
(the incumbent) as a plain edit of the constants' literals; the description lists only what changed, e.g.
``MATRIX_LR 0.02 -> 0.028, DEPTH 1 -> 2``.

What is tuned (`find_constants`):

- module-level ``NAME = <number>`` assignments (UPPER_CASE names; the value an int/float literal or a constant
  arithmetic expression such as ``8 * 256``; booleans and anything else are skipped);
- the entries of the active profile in ``PROFILES = {"cpu": dict(KEY=<number>, ...), ...}`` (``dict(...)``
  calls or ``{...}`` literals); the other profiles are never touched.

Search ranges (`infer_range`) come from each constant's current value, checked in this order:
names ending ``_FRAC`` -> float [0, min(1, max(2v, 0.2))]; then a value of 0 stays fixed; names containing
``LR`` -> log-scale float [v/4, 4v]; ``BATCH`` or ``TOKENS`` -> powers of two in [v/4, 4v]; ``DEPTH`` or
``LAYER`` -> int v-2..v+2 (>= 1); other ints -> [max(1, v//2), 2v]; other floats -> [v/2, 2v], capped at 0.999
for names containing ``MOMENTUM`` with v < 1 (a momentum of 1 diverges). Negative
values stay fixed. ``LOG_EVERY_S`` (logging cadence, not a hyperparameter) is fixed by default.
The task's ``autoresearch.toml`` may override any of this in a ``[tune]`` table::

    [tune]
    MATRIX_LR = [0.005, 0.1, "log"]     # kinds: "float", "log", "int", "pow2"
    DEPTH = [1, 4, "int"]
    SEQ_LEN = [128, 512, "pow2"]
    LOG_EVERY_S = false                 # never tune this one (true: tune it with the default range)

Each trial is a local move from the incumbent: 1, 2 or 3 constants (chosen at random: half the trials move
one) get new values from the sampler, and the others keep the incumbent's values (fixed parameters of the
trial, `study.enqueue_trial`). So every trial is a small, readable edit, and the study still records the
whole point, which TPE models. Values are absolute; floats are written rounded to 4 significant digits. A trial whose values all equal the current ones is the incumbent
itself: it is told the incumbent's metric (FAIL if unknown) and another is asked. So is a trial whose move was
already run from the same incumbent (same description, same parent commit): it is told that run's result.
After `max_reasks` such trials in a row, `AgentError`.

The study lives in the experiment store's own SQLite file (``<task>/.autoresearch/store.sqlite``, created by
`Store.open` first, so the store's schema check passes), named ``autoresearch-<tag>``, and is loaded if it
exists, so a resumed loop continues it. Experiment <-> trial link: the proposal's notes hold the trial's
number, which the loop keeps in the experiment's record; `observe` tells the trial as soon as the record is
written. At every `propose`, before asking, each trial still RUNNING (a loop stopped before it told) is told
from the experiment whose record holds its number (stores from before: the ``experiment_seq`` and
description the trial holds) in `context.history`: COMPLETE with
the metric for keep/discard, PRUNED for a run the loop stopped early as hopeless, FAIL for
crash/timeout/rejected/tampered (but a trial the loop rejected because
its code was measured already gets that earlier metric); a trial whose experiment does not exist
(the loop died between proposing and recording) or is not this agent's proposal is told FAIL.

Runs that share (`loop.adopt_from`, as `run --parallel` sets it) search as one: before asking, the study
takes in the completed trials of the studies of `context.shared_runs` (the runs named there that train for
the same budget, so their metrics compare) that it has not taken in yet (`learn_from`), marked ``from_run``
and ``from_trial``. Copies are never passed on, so no trial counts twice. TPE then models every point the
fleet measured, and leaves its first random trials behind after 5 of them, not 5 per run.
"""

from __future__ import annotations

import ast
import logging
import math
import random
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import TrialState

from autoresearch.agents import AgentConfigError, AgentError, AgentExhausted, Proposal, ProposalContext
from autoresearch.agents.base import NOTES, Agent
from autoresearch.store import BUSY_TIMEOUT_S, STORE_DIR, STORE_NAME, Experiment, Status, Store, setup_lock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Kind = Literal["float", "log", "int", "pow2"]
KINDS: tuple[str, ...] = ("float", "log", "int", "pow2")
TUNE_AGENTS = frozenset({"tune", "tune:random"})
DEFAULT_FIXED = frozenset({"LOG_EVERY_S"})
MOVES, MOVE_WEIGHTS = (1, 2, 3), (0.5, 0.35, 0.15)  # how many constants one trial changes
TPE_STARTUP_TRIALS = 5  # random trials before TPE models (Optuna's default, 10, is most of a short run)
CONFIG_NAME = "autoresearch.toml"
_CONSTANT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")

optuna.logging.set_verbosity(logging.WARNING)


# ---------------------------------------------------------------------------------------------- constants


@dataclass(frozen=True)
class Constant:
    """A numeric constant of train.py: its value and the byte span of its value expression in the source."""

    name: str  # the key in descriptions, [tune] and Optuna params (the profile entry's key for profile entries)
    value: int | float
    start: int  # byte offset (UTF-8) of the value expression
    end: int
    profile: str | None = None  # the PROFILES entry it belongs to; None for module level


def _number(node: ast.expr) -> int | float | None:
    """The value of a numeric literal or constant arithmetic expression (``2**19``, ``8 * 256``); else None."""
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _number(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.BinOp):
        left, right = _number(node.left), _number(node.right)
        if left is None or right is None:
            return None
        try:
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            if isinstance(node.op, ast.Div):
                return left / right
            if isinstance(node.op, ast.FloorDiv):
                return left // right
            if isinstance(node.op, ast.Pow) and abs(right) <= 64:
                return left**right
        except (ArithmeticError, ValueError):
            return None
    return None


def _span(line_starts: list[int], node: ast.expr) -> tuple[int, int]:
    assert node.end_lineno is not None and node.end_col_offset is not None
    return line_starts[node.lineno - 1] + node.col_offset, line_starts[node.end_lineno - 1] + node.end_col_offset


def _line_starts(source: str) -> list[int]:
    starts, offset = [], 0
    for line in source.encode("utf-8").splitlines(keepends=True):
        starts.append(offset)
        offset += len(line)
    starts.append(offset)
    return starts


def _profile_entries(node: ast.expr) -> list[tuple[str, ast.expr]]:
    """(key, value node) pairs of ``dict(KEY=...)`` or ``{"KEY": ...}``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return [(kw.arg, kw.value) for kw in node.keywords if kw.arg is not None]
    if isinstance(node, ast.Dict):
        return [(k.value, v) for k, v in zip(node.keys, node.values, strict=False)
                if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return []


def find_constants(source: str, profile: str | None) -> list[Constant]:
    """The numeric constants of a train.py source, in source order (see the module docstring).

    Module-level constants, and the entries of `PROFILES[profile]` when it exists. Raises `SyntaxError` if
    the source does not parse. A profile key that repeats a module-level name is named ``<profile>.<KEY>``.
    """
    tree = ast.parse(source)
    starts = _line_starts(source)
    found: list[Constant] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            name, value_node = stmt.targets[0].id, stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            name, value_node = stmt.target.id, stmt.value
        else:
            continue
        if name == "PROFILES" and isinstance(value_node, ast.Dict):
            for key, entry in zip(value_node.keys, value_node.values, strict=False):
                if profile is None or not (isinstance(key, ast.Constant) and key.value == profile):
                    continue
                for entry_name, entry_value in _profile_entries(entry):
                    value = _number(entry_value)
                    if value is not None:
                        found.append(Constant(entry_name, value, *_span(starts, entry_value), profile=profile))
            continue
        if not _CONSTANT_NAME.match(name):
            continue
        value = _number(value_node)
        if value is not None:
            found.append(Constant(name, value, *_span(starts, value_node)))
    module_names = {c.name for c in found if c.profile is None}
    return [Constant(f"{c.profile}.{c.name}", c.value, c.start, c.end, c.profile)
            if c.profile is not None and c.name in module_names else c for c in found]


def profiles_of(source: str) -> list[str]:
    """The keys of the PROFILES dict of a train.py source (empty if it has none)."""
    for stmt in ast.parse(source).body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id == "PROFILES" and isinstance(stmt.value, ast.Dict)):
            return [k.value for k in stmt.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
    return []


# ---------------------------------------------------------------------------------------------- ranges


@dataclass(frozen=True)
class Range:
    """A search range: `low`..`high` inclusive; for "pow2" both are powers of two and only those are tried."""

    low: float
    high: float
    kind: Kind


def _pow2_range(low: float, high: float) -> Range | None:
    if low <= 0 or high < low:
        return None
    lo, hi = math.ceil(math.log2(low) - 1e-9), math.floor(math.log2(high) + 1e-9)
    lo = max(lo, 0)
    return Range(2**lo, 2**hi, "pow2") if hi >= lo else None


def infer_range(name: str, value: int | float) -> Range | None:
    """The default search range of a constant from its name and current value; None when it stays fixed."""
    key = name.rsplit(".", 1)[-1].upper()
    if key.endswith("_FRAC"):
        return Range(0.0, min(1.0, max(2.0 * value, 0.2)), "float")
    if value <= 0:
        return None  # 0 stays fixed; a negative value's rules are not guessed
    if "LR" in key:
        return Range(value / 4, value * 4, "log")
    if "BATCH" in key or "TOKENS" in key:
        return _pow2_range(value / 4, value * 4)
    if key.endswith("_DIM") or key.endswith("SEQ_LEN"):  # shapes: kernels and head splits want powers of two
        return _pow2_range(value / 2, value * 2)
    if "DEPTH" in key or "LAYER" in key:
        v = round(value)
        return Range(max(1, v - 2), v + 2, "int")
    if isinstance(value, int):
        low, high = max(1, value // 2), 2 * value
        return Range(low, high, "int") if high > low else None
    if "MOMENTUM" in key and value < 1:  # a momentum of 1 or more diverges
        return Range(value / 2, min(value * 2, 0.999), "float")
    return Range(value / 2, value * 2, "float")


def read_overrides(task_dir: Path) -> dict[str, Range | bool]:
    """The ``[tune]`` table of ``<task_dir>/autoresearch.toml``: name -> `Range`, or a bool (False: fixed,
    True: default range). Missing file or table -> {}. Raises `AgentConfigError` on a malformed entry."""
    path = Path(task_dir) / CONFIG_NAME
    if not path.exists():
        return {}
    try:
        table = tomllib.loads(path.read_text()).get("tune", {})
    except tomllib.TOMLDecodeError as err:
        raise AgentConfigError(f"{path}: not valid TOML ({err})") from err
    if not isinstance(table, dict):
        raise AgentConfigError(f"{path}: [tune] must be a table of NAME = [low, high, kind]")
    out: dict[str, Range | bool] = {}
    for name, spec in table.items():
        where = f"{path}: [tune] {name}"
        if isinstance(spec, bool):
            out[name] = spec
            continue
        if not isinstance(spec, list) or len(spec) not in (2, 3):
            raise AgentConfigError(f"{where} = {spec!r}: use [low, high] or [low, high, kind], or false")
        low, high = spec[0], spec[1]
        if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in (low, high)) or not low < high:
            raise AgentConfigError(f"{where} = {spec!r}: low and high must be numbers with low < high")
        kind = spec[2] if len(spec) == 3 else ("int" if isinstance(low, int) and isinstance(high, int) else "float")
        if kind not in KINDS:
            raise AgentConfigError(f"{where}: kind {kind!r} must be one of {', '.join(KINDS)}")
        if kind == "log" and low <= 0:
            raise AgentConfigError(f"{where}: a log range needs low > 0")
        if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
            raise AgentConfigError(f"{where}: an int range needs integer bounds")
        if kind == "pow2":
            found = _pow2_range(low, high)
            if found is None:
                raise AgentConfigError(f"{where}: no power of two >= 1 lies in [{low}, {high}]")
            out[name] = found
        else:
            out[name] = Range(int(low), int(high), "int") if kind == "int" else Range(float(low), float(high), kind)
    return out


def search_space(constants: list[Constant], overrides: dict[str, Range | bool],
                 origin: str = CONFIG_NAME) -> list[tuple[Constant, Range]]:
    """The constants to tune and their ranges: overrides first, else `infer_range`; fixed ones left out.

    Raises `AgentConfigError` naming any override for a constant that is not among `constants`.
    """
    names = {c.name for c in constants}
    unknown = [n for n in overrides if n not in names]
    if unknown:
        raise AgentConfigError(f"{origin}: [tune] names unknown constant {unknown[0]!r}"
                               f"{' (and ' + ', '.join(unknown[1:]) + ')' if unknown[1:] else ''}; "
                               f"tunable constants of train.py: {', '.join(sorted(names)) or '(none)'}")
    out = []
    for constant in constants:
        override = overrides.get(constant.name)
        if isinstance(override, Range):
            found: Range | None = override
        elif override is False or (override is None and constant.name in DEFAULT_FIXED):
            found = None
        else:
            found = infer_range(constant.name, constant.value)
        if found is not None and found.high > found.low:
            out.append((constant, found))
    return out


# ---------------------------------------------------------------------------------------------- editing


def format_value(value: int | float) -> str:
    """Compact display: ints as is, floats with 4 significant digits, positional unless tiny or huge
    (``10000.0`` -> ``10000``, ``13702.5`` -> ``13700``, ``0.012345`` -> ``0.01235``, ``1e-07`` stays)."""
    if isinstance(value, int):
        return str(value)
    if value != 0 and not 1e-4 <= abs(value) < 1e9:
        return f"{value:.4g}"
    return np.format_float_positional(float(f"{value:.4g}"), trim="-")


def _literal(value: int | float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def apply_values(source: str, changes: list[tuple[Constant, int | float]]) -> str:
    """`source` with each constant's value expression replaced by the new value's literal; nothing else moves."""
    data = source.encode("utf-8")
    for constant, value in sorted(changes, key=lambda c: c[0].start, reverse=True):
        data = data[:constant.start] + _literal(value).encode("utf-8") + data[constant.end:]
    return data.decode("utf-8")


def describe(changes: list[tuple[Constant, int | float]]) -> str:
    """``NAME old -> new, ...`` in source order."""
    return ", ".join(f"{c.name} {format_value(c.value)} -> {format_value(v)}"
                     for c, v in sorted(changes, key=lambda c: c[0].start))


def param_value(constant: Constant, rng: Range) -> tuple[str, int | float]:
    """The Optuna parameter (name and value, see `suggest`) that stands for the constant's current value."""
    if rng.kind == "pow2":
        return f"{constant.name}:log2", int(round(math.log2(max(constant.value, 1))))
    if rng.kind == "int":
        return f"{constant.name}:int", int(constant.value)
    return (f"{constant.name}:log" if rng.kind == "log" else constant.name), float(constant.value)


def pick_moves(space: list[tuple[Constant, Range]], seed: str) -> set[str]:
    """The names of the constants one trial moves: 1 (half the time), 2 or 3 of them, at random."""
    rng = random.Random(seed)
    k = rng.choices(MOVES, weights=MOVE_WEIGHTS)[0]
    return set(rng.sample([c.name for c, _ in space], min(k, len(space))))


def suggest(trial: optuna.Trial, constant: Constant, rng: Range) -> int | float:
    """Ask `trial` for this constant's value (absolute). Ints for "int"/"pow2" ranges; floats to 4 digits.

    The Optuna parameter is named after the constant and the range's kind (``NAME`` float, ``NAME:log``,
    ``NAME:int``, ``NAME:log2`` for pow2, whose parameter is the exponent), so a kind that changes between
    runs (a [tune] edit) starts a new parameter instead of clashing with the study's recorded distribution.
    Ranges may move between trials (they follow the incumbent); Optuna allows that within one kind.
    """
    if rng.kind == "pow2":
        exponent = trial.suggest_int(f"{constant.name}:log2", int(math.log2(rng.low)), int(math.log2(rng.high)))
        return 2**exponent
    if rng.kind == "int":
        return trial.suggest_int(f"{constant.name}:int", int(rng.low), int(rng.high))
    name = f"{constant.name}:log" if rng.kind == "log" else constant.name
    value = trial.suggest_float(name, float(rng.low), float(rng.high), log=rng.kind == "log")
    return float(f"{value:.4g}")


def outcome_state(experiment: Experiment | None) -> TrialState:
    """How a trial whose experiment has no metric to tell ended: PRUNED if the loop stopped it early as hopeless
    (TPE ranks such trials below every completed one), else FAIL."""
    return TrialState.PRUNED if experiment is not None and experiment.status is Status.PRUNED else TrialState.FAIL


# ---------------------------------------------------------------------------------------------- the agent


class TuneAgent(Agent):
    """The `tune` agent. See the module docstring for what it does.

    `task_dir`: the task folder (holds autoresearch.toml and .autoresearch/store.sqlite). `profile`: the
    PROFILES entry the harness runs ("cpu", "h100"). `sampler`: "tpe" or "random". `tag`: the run tag; by
    default taken from `context.history`, else from the worktree path ``.autoresearch/worktrees/<tag>``.
    `seed`: the sampler's seed is `seed` + the number of trials already in the study, so a resumed study
    does not replay its first random draws.
    """

    pipelines_by_default = False  # it proposes in milliseconds, and each trial should learn from the last

    def __init__(self, task_dir: Path, profile: str = "cpu", *, sampler: Literal["tpe", "random"] = "tpe",
                 tag: str | None = None, seed: int | None = None, script: str | None = None,
                 max_reasks: int = 20) -> None:
        if sampler not in ("tpe", "random"):
            raise AgentConfigError(f"unknown tune sampler {sampler!r}: use tune or tune:random")
        self.task_dir = Path(task_dir).resolve()
        self.profile, self.sampler, self.tag = profile, sampler, tag
        self.direction, task_seed = "minimize", 0
        if (self.task_dir / CONFIG_NAME).exists():
            from autoresearch.config import ConfigError, load_config

            try:
                config = load_config(self.task_dir)
            except ConfigError as err:
                raise AgentConfigError(str(err)) from err
            self.direction, task_seed = config.metric.direction, config.loop.seed
            script = script or tuned_file(config)
        self.seed = task_seed if seed is None else seed
        self._tag_seed = self.seed  # `seed` mixed with the run's tag (`study`): each run searches its own path
        self.script, self.max_reasks = script or "train.py", max_reasks
        self.name = "tune" if sampler == "tpe" else "tune:random"
        self.overrides = read_overrides(self.task_dir)
        self._storage: optuna.storages.RDBStorage | None = None
        self._study: optuna.Study | None = None
        self._history: list[Experiment] | None = None  # the line's experiments at the last proposal
        template = self.task_dir / self.script
        if template.exists():  # fail at start-up, not at the first proposal
            self._space(template.read_text())

    # -- study ----------------------------------------------------------------------------------

    @property
    def storage_url(self) -> str:
        return f"sqlite:///{self.task_dir / STORE_DIR / STORE_NAME}"

    def study(self, tag: str) -> optuna.Study:
        """The study ``autoresearch-<tag>`` in the store's SQLite file, created or loaded (cached)."""
        name = f"autoresearch-{tag}"
        if self._study is not None and self._study.study_name == name:
            return self._study
        Store.open(self.task_dir).close()  # the store's schema first: Store.open refuses a file of other tables
        # Two runs of tune on one task (tags tune-1, tune-2) must not walk the same path: the seed is mixed
        # with the tag, so a run is reproducible and another run is another sample of the search.
        self._tag_seed = (self.seed + zlib.crc32(tag.encode())) % 2**31
        with setup_lock(self.task_dir):  # another run's tune may be creating Optuna's tables right now
            if self._storage is None:
                self._storage = optuna.storages.RDBStorage(
                    self.storage_url, engine_kwargs={"connect_args": {"timeout": BUSY_TIMEOUT_S}})
            study = optuna.create_study(storage=self._storage, study_name=name, direction=self.direction,
                                        sampler=optuna.samplers.RandomSampler(seed=self._tag_seed),
                                        load_if_exists=True)
        seed = self._tag_seed + len(study.get_trials(deepcopy=False))
        study.sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
                         if self.sampler == "tpe"
                         else optuna.samplers.RandomSampler(seed=seed))
        self._study = study
        return study

    def close(self) -> None:
        """Release the database connections (the agent opens them again if used)."""
        if self._storage is not None:
            self._storage.remove_session()
            self._storage.engine.dispose()
        self._storage, self._study = None, None

    def _tag(self, workdir: Path, context: ProposalContext) -> str:
        if self.tag:
            return self.tag
        if context.history:
            return context.history[0].tag
        path = Path(workdir).resolve()
        if path.parent.name == "worktrees" and path.parent.parent.name == STORE_DIR:
            return path.name
        raise AgentConfigError(f"tune: cannot tell the run tag of {workdir}: pass tag= to TuneAgent")

    # -- tell -----------------------------------------------------------------------------------

    def observe(self, experiment: Experiment) -> None:
        """The loop has decided (or rejected) one of this agent's proposals: tell its trial now."""
        trial = (experiment.metrics.get(NOTES) or {}).get("tune_trial")
        if trial is None or experiment.agent not in TUNE_AGENTS:
            return
        study = self.study(experiment.tag)
        running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        if trial in running:
            self._tell(study, trial, experiment, self._same_code_source(experiment))

    def _same_code_source(self, experiment: Experiment) -> Experiment | None:
        """The earlier experiment whose result a proposal rejected as code already measured has."""
        earlier = experiment.metrics.get("same_code_as")
        if earlier is None or self._history is None:
            return None
        return next((e for e in self._history if e.seq == earlier), None)

    def tell_finished(self, study: optuna.Study, history: list[Experiment]) -> None:
        """Tell every RUNNING trial its experiment's result (see the module docstring); skip still-running ones.
        A trial is linked to its experiment by the trial number the experiment's record holds (`observe` told
        most of them already: these are the ones a loop stopped before telling); records from before that, by
        the seq and description the trial holds."""
        self._history = history
        by_seq = {e.seq: e for e in history}
        by_trial = {(e.metrics.get(NOTES) or {}).get("tune_trial"): e for e in history if e.agent in TUNE_AGENTS}
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            experiment = by_trial.get(trial.number)
            if experiment is None:
                found = by_seq.get(trial.user_attrs.get("experiment_seq", -1))
                if (found is not None and found.agent in TUNE_AGENTS and NOTES not in found.metrics
                        and found.description == trial.user_attrs.get("description")):
                    experiment = found
            if experiment is not None and experiment.status is Status.RUNNING:
                continue
            earlier = by_seq.get(experiment.metrics.get("same_code_as", -1)) if experiment is not None else None
            self._tell(study, trial.number, experiment, earlier)

    @staticmethod
    def _tell(study: optuna.Study, trial: int, experiment: Experiment | None, earlier: Experiment | None) -> None:
        """Tell `trial` how `experiment` ended (None: it never became one); a trial the loop did not run because
        its code was measured already (by `earlier`) has that result."""
        measured = earlier or experiment
        if measured is not None and measured.status in (Status.KEEP, Status.DISCARD) and measured.metric is not None:
            study.tell(trial, measured.metric)
        else:
            study.tell(trial, state=outcome_state(measured))

    def learn_from(self, study: optuna.Study, tags: tuple[str, ...]) -> int:
        """Copy into `study` the completed trials of the studies of runs `tags` (the runs this one shares with,
        trained for the same budget) that it has not copied yet; returns how many it copied. Copies are marked
        (``from_run``, ``from_trial``) and never copied on, so that runs learning from each other do not count a
        trial twice. A trial whose parameters do not fit this study (another kind of value under one name) is
        left out."""
        if not tags:
            return 0
        names = set(optuna.study.get_all_study_names(self._storage))
        copied = {(t.user_attrs.get("from_run"), t.user_attrs.get("from_trial"))
                  for t in study.get_trials(deepcopy=False) if "from_run" in t.user_attrs}
        count = 0
        for tag in tags:
            if f"autoresearch-{tag}" not in names:
                continue
            theirs = optuna.load_study(study_name=f"autoresearch-{tag}", storage=self._storage,
                                       sampler=optuna.samplers.RandomSampler())
            for trial in theirs.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
                if "from_run" in trial.user_attrs or (tag, trial.number) in copied:
                    continue
                try:
                    study.add_trial(optuna.trial.create_trial(
                        params=trial.params, distributions=trial.distributions, value=trial.value,
                        user_attrs={"from_run": tag, "from_trial": trial.number,
                                    "description": trial.user_attrs.get("description", "")}))
                except ValueError:  # a parameter of another kind here (an int there, a float here)
                    continue
                count += 1
        return count

    # -- propose --------------------------------------------------------------------------------

    def _space(self, source: str) -> list[tuple[Constant, Range]]:
        try:
            constants = find_constants(source, self.profile)
            available = profiles_of(source)
        except SyntaxError as err:
            raise AgentError(f"{self.script} does not parse ({err}); tune edits only its constants") from err
        if available and self.profile not in available:
            raise AgentConfigError(f"tune: profile {self.profile!r} is not in PROFILES of {self.script} "
                                   f"({', '.join(available)})")
        return search_space(constants, self.overrides, str(self.task_dir / CONFIG_NAME))

    def propose(self, workdir: Path, context: ProposalContext) -> Proposal:
        """Tell finished trials, ask one new trial, write its values into `workdir`/train.py; return
        the description of what changed. Raises `AgentExhausted` if train.py has no tunable constant and
        `AgentError` if `max_reasks` trials in a row change nothing."""
        study = self.study(self._tag(workdir, context))
        self.tell_finished(study, context.history)
        self.learn_from(study, context.shared_runs)
        path = Path(workdir) / self.script
        try:
            source = path.read_text()
        except OSError as err:
            raise AgentError(f"cannot read {path}: {err.strerror}") from err
        space = self._space(source)
        if not space:
            raise AgentExhausted(f"tune: no tunable constant in {self.script} (profile {self.profile})")
        next_seq = max((e.seq for e in context.history), default=-1) + 1
        incumbent = context.best.metric if context.best is not None else None
        # Moves already run from the current incumbent (same parent commit), by description.
        anchor = context.best.commit if context.best is not None else None
        tried = {e.description: e for e in context.history if anchor is not None and e.parent_commit == anchor
                 and e.seq > 0}
        for attempt in range(self.max_reasks):
            # A local move: the trial keeps the incumbent's values except for 1-3 constants, which the
            # sampler chooses (TPE from the study's history, or at random).
            moving = pick_moves(space, f"{self._tag_seed}-{len(study.get_trials(deepcopy=False))}-{attempt}")
            study.enqueue_trial(dict(param_value(c, r) for c, r in space if c.name not in moving),
                                skip_if_exists=False)
            trial = study.ask()
            values = [(constant, suggest(trial, constant, rng)) for constant, rng in space]
            changes = [(c, v) for c, v in values if v != c.value]
            if not changes:  # the incumbent itself: its result is known
                if incumbent is not None:
                    study.tell(trial, incumbent)
                else:
                    study.tell(trial, state=TrialState.FAIL)
                continue
            edited = apply_values(source, changes)
            ast.parse(edited)  # an edit of literals keeps the file valid; check it anyway
            description = describe(changes)
            earlier = tried.get(description)
            if earlier is not None:  # this very move from this very incumbent was run: its result is known
                if earlier.metric is not None and earlier.status in (Status.KEEP, Status.DISCARD):
                    study.tell(trial, earlier.metric)
                else:
                    study.tell(trial, state=outcome_state(earlier))
                continue
            trial.set_user_attr("experiment_seq", next_seq)
            trial.set_user_attr("description", description)
            trial.set_user_attr("values", {c.name: v for c, v in values})
            path.write_text(edited)
            return Proposal(description, notes={"tune_trial": trial.number})
        raise AgentError(f"tune: {self.max_reasks} trials in a row suggested the current values or a move "
                         "already tried from them")


def tuned_file(config) -> str:
    """The file whose constants `tune` searches: train.py under the built-in contract, else the first
    editable entry that names a Python file (not a glob)."""
    if config.evaluated:
        return config.train.script
    for entry in config.loop.editable:
        if entry.endswith(".py") and not any(ch in entry for ch in "*?["):
            return entry
    raise AgentConfigError("tune: no Python file among loop.editable to tune; list one, e.g. "
                           'editable = ["solve.py"]')


def from_spec(arg: str, task_dir: Path, profile: str, **kwargs: Any) -> TuneAgent:
    """`tune` -> TPE, `tune:random` -> random sampling."""
    if arg not in ("", "tpe", "random"):
        raise AgentConfigError(f"unknown tune variant {arg!r}: use tune or tune:random")
    return TuneAgent(task_dir, profile, sampler="random" if arg == "random" else "tpe", **kwargs)


def make(arg: str, task) -> TuneAgent:
    """`tune`, `tune:random` (registry.py)."""
    return from_spec(arg, task.task_dir, task.profile)
