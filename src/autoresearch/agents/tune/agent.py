"""`TuneAgent`: the `tune` agent, one Optuna trial per proposal, written into train.py as an edit of literals.

Specs: `tune` (TPE, `optuna.samplers.TPESampler`) and `tune:random` (`RandomSampler`, a baseline to compare
TPE against). Each proposal asks the study for one trial and writes its values into the worktree's train.py
(the incumbent) as a plain edit of the constants' literals (`constants.apply_values`); the description lists
only what changed, e.g. ``MATRIX_LR 0.02 -> 0.028, DEPTH 1 -> 2``.

Each trial is a local move from the incumbent: 1, 2 or 3 constants (chosen at random: half the trials move
one) get new values from the sampler, and the others keep the incumbent's values (fixed parameters of the
trial, `study.enqueue_trial`). So every trial is a small, readable edit, and the study still records the
whole point, which TPE models. Values are absolute; floats are written rounded to 4 significant digits.

Invariants:

- A trial whose values all equal the current ones is the incumbent itself: it is told the incumbent's
  metric (FAIL if unknown) and another is asked. So is a trial whose move was already run from the same
  incumbent (same description, same parent commit): it is told that run's result. After `max_reasks` such
  trials in a row, `AgentError`. A proposal therefore always changes at least one constant.
- The agent writes nothing but the literals of the constants of one file (`script`).
- Trials are told as soon as the loop records their experiment (`observe`), and at every `propose`, before
  asking, any still RUNNING are told from `context.history` (`study.tell_finished`).
- Runs that share (`loop.adopt_from`, as `run --parallel` sets it) search as one: before asking, the study
  takes in the completed trials of the studies of `context.shared_runs` it has not taken in yet
  (`study.learn_from`). TPE then models every point the fleet measured, and leaves its first random trials
  behind after 5 of them, not 5 per run.
"""

from __future__ import annotations

import ast
import zlib
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.trial import TrialState

from autoresearch.agents import AgentConfigError, AgentError, AgentExhausted, Proposal, ProposalContext
from autoresearch.agents.base import Agent
from autoresearch.agents.tune import study as studies
from autoresearch.agents.tune.constants import Constant, apply_values, describe, find_constants, profiles_of
from autoresearch.agents.tune.space import (
    CONFIG_NAME,
    Range,
    param_value,
    pick_moves,
    read_overrides,
    search_space,
    suggest,
)
from autoresearch.store import STORE_DIR, Experiment

Move = tuple[optuna.Trial, list[tuple[Constant, int | float]]]  # a trial asked, and the values it changes


class TuneAgent(Agent):
    """The `tune` agent. See the module docstring for what it does.

    `task_dir`: the task folder (holds autoresearch.toml and .autoresearch/store.sqlite). `profile`: the
    profile of train.py the harness runs ("cpu", "h100"). `sampler`: "tpe" or "random". `tag`: the run tag;
    by default taken from `context.history`, else from the worktree path ``.autoresearch/worktrees/<tag>``.
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
        return studies.storage_url(self.task_dir)

    def study(self, tag: str) -> optuna.Study:
        """The study ``autoresearch-<tag>`` in the store's SQLite file, created or loaded (cached)."""
        if self._study is not None and self._study.study_name == studies.study_name(tag):
            return self._study
        # Two runs of tune on one task (tags tune-1, tune-2) must not walk the same path: the seed is mixed
        # with the tag, so a run is reproducible and another run is another sample of the search.
        self._tag_seed = (self.seed + zlib.crc32(tag.encode())) % 2**31
        self._storage, self._study = studies.open_study(self.task_dir, self._storage, tag, self.direction,
                                                        self.sampler, self._tag_seed)
        return self._study

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
        trial = studies.trial_of(experiment)
        if trial is None:
            return
        study = self.study(experiment.tag)
        if trial in {t.number for t in studies.running_trials(study)}:
            studies.tell_outcome(study, trial, self._same_code_source(experiment) or experiment)

    def _same_code_source(self, experiment: Experiment) -> Experiment | None:
        """The earlier experiment whose result a proposal rejected as code already measured has."""
        earlier = experiment.metrics.get("same_code_as")
        if earlier is None or self._history is None:
            return None
        return next((e for e in self._history if e.seq == earlier), None)

    def tell_finished(self, study: optuna.Study, history: list[Experiment]) -> None:
        """Tell every RUNNING trial its experiment's result (`study.tell_finished`); `observe` told most of
        them already: these are the ones a loop stopped before telling."""
        self._history = history
        studies.tell_finished(study, history)

    def learn_from(self, study: optuna.Study, tags: tuple[str, ...]) -> int:
        """Take into `study` the completed trials of runs `tags` not taken in yet (`study.learn_from`)."""
        if not tags:
            return 0
        assert self._storage is not None, "learn_from takes a study this agent opened (`study`)"
        return studies.learn_from(study, self._storage, tags)

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
            move = self._ask_move(study, space, incumbent, tried, attempt)
            if move is None:
                continue
            trial, values = move
            changes = [(c, v) for c, v in values if v != c.value]
            edited = apply_values(source, changes)
            ast.parse(edited)  # an edit of literals keeps the file valid; check it anyway
            description = describe(changes)
            trial.set_user_attr("experiment_seq", next_seq)
            trial.set_user_attr("description", description)
            trial.set_user_attr("values", {c.name: v for c, v in values})
            path.write_text(edited)
            return Proposal(description, notes={"tune_trial": trial.number})
        raise AgentError(f"tune: {self.max_reasks} trials in a row suggested the current values or a move "
                         "already tried from them")

    def _ask_move(self, study: optuna.Study, space: list[tuple[Constant, Range]], incumbent: float | None,
                  tried: dict[str, Experiment], attempt: int) -> Move | None:
        """Ask one trial, a local move: the incumbent's values except for 1-3 constants, which the sampler
        chooses (TPE from the study's history, or at random). Returns it with every constant's value, or None
        when its result is known already (the incumbent itself, or a move already run from the incumbent):
        it is told that result (`incumbent`: the incumbent's metric; `tried`: the experiments run from the
        incumbent, by description), and another must be asked."""
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
            return None
        earlier = tried.get(describe(changes))
        if earlier is not None:  # this very move from this very incumbent was run: its result is known
            studies.tell_outcome(study, trial, earlier)
            return None
        return trial, values


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
