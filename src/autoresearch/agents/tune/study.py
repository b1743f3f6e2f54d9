"""The Optuna side of `tune`: the study in the experiment store's SQLite file, and what it is told.

The study of a run lives in the store's own file (``<task>/.autoresearch/store.sqlite``), named
``autoresearch-<tag>``, and is loaded if it exists, so a resumed loop continues it. Its sampler's seed is the
run's seed plus the number of trials already in the study, so a resumed study does not replay its first
random draws.

Experiment <-> trial link: the proposal's notes hold the trial's number, which the loop keeps in the
experiment's record (older records: the ``experiment_seq`` and description the trial holds). How a trial
ends (`tell_outcome`): COMPLETE with the metric for keep/discard; PRUNED for a run the loop stopped early as
hopeless (TPE ranks such trials below every completed one); FAIL for crash/timeout/rejected/tampered, and for
a trial whose experiment does not exist or is not this agent's; but a trial the loop rejected because its
code was measured already gets that earlier metric.

Invariants: every trial is told once (only RUNNING trials are told); copies of other runs' trials
(`learn_from`) are marked ``from_run``/``from_trial`` and are never copied on, so no trial counts twice.
"""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.trial import TrialState

from autoresearch.agents.base import NOTES
from autoresearch.store import BUSY_TIMEOUT_S, STORE_DIR, STORE_NAME, Experiment, Status, Store, setup_lock

TUNE_AGENTS = frozenset({"tune", "tune:random"})
TPE_STARTUP_TRIALS = 5  # random trials before TPE models (Optuna's default, 10, is most of a short run)

optuna.logging.set_verbosity(logging.WARNING)


def study_name(tag: str) -> str:
    return f"autoresearch-{tag}"


def storage_url(task_dir: Path) -> str:
    """The SQLAlchemy URL of the store's SQLite file of a task."""
    return f"sqlite:///{Path(task_dir) / STORE_DIR / STORE_NAME}"


def open_study(task_dir: Path, storage: optuna.storages.RDBStorage | None, tag: str, direction: str,
               sampler: str, seed: int) -> tuple[optuna.storages.RDBStorage, optuna.Study]:
    """The storage (`storage`, or a new one in the store's file) and the study of run `tag` in it, created or
    loaded, with its sampler ("tpe" or "random") seeded `seed` plus the number of trials the study holds."""
    Store.open(task_dir).close()  # the store's schema first: Store.open refuses a file of other tables
    with setup_lock(task_dir):  # another run's tune may be creating Optuna's tables right now
        if storage is None:
            storage = optuna.storages.RDBStorage(
                storage_url(task_dir), engine_kwargs={"connect_args": {"timeout": BUSY_TIMEOUT_S}})
        study = optuna.create_study(storage=storage, study_name=study_name(tag), direction=direction,
                                    sampler=optuna.samplers.RandomSampler(seed=seed), load_if_exists=True)
    seed += len(study.get_trials(deepcopy=False))
    study.sampler = (optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)
                     if sampler == "tpe" else optuna.samplers.RandomSampler(seed=seed))
    return storage, study


def trial_of(experiment: Experiment) -> int | None:
    """The number of the trial an experiment's record holds (None: not a tune proposal)."""
    if experiment.agent not in TUNE_AGENTS:
        return None
    return (experiment.metrics.get(NOTES) or {}).get("tune_trial")


def running_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def outcome_state(experiment: Experiment | None) -> TrialState:
    """How a trial whose experiment has no metric to tell ended: PRUNED if the loop stopped it early as hopeless
    (TPE ranks such trials below every completed one), else FAIL."""
    return TrialState.PRUNED if experiment is not None and experiment.status is Status.PRUNED else TrialState.FAIL


def tell_outcome(study: optuna.Study, trial: int | optuna.Trial, measured: Experiment | None) -> None:
    """Tell `trial` the result of the experiment that `measured` it: its metric if it was kept or discarded,
    else PRUNED or FAIL (`outcome_state`; None: it never became an experiment)."""
    if measured is not None and measured.status in (Status.KEEP, Status.DISCARD) and measured.metric is not None:
        study.tell(trial, measured.metric)
    else:
        study.tell(trial, state=outcome_state(measured))


def tell_finished(study: optuna.Study, history: list[Experiment]) -> None:
    """Tell every RUNNING trial its experiment's result; skip those whose experiment is still running.

    A trial is linked to its experiment by the trial number the experiment's record holds; records from before
    that, by the seq and description the trial holds. A trial the loop rejected as code already measured is
    told the result of the experiment that measured it (``same_code_as``)."""
    by_seq = {e.seq: e for e in history}
    by_trial = {trial_of(e): e for e in history if e.agent in TUNE_AGENTS}
    for trial in running_trials(study):
        experiment = by_trial.get(trial.number)
        if experiment is None:
            found = by_seq.get(trial.user_attrs.get("experiment_seq", -1))
            if (found is not None and found.agent in TUNE_AGENTS and NOTES not in found.metrics
                    and found.description == trial.user_attrs.get("description")):
                experiment = found
        if experiment is not None and experiment.status is Status.RUNNING:
            continue
        earlier = by_seq.get(experiment.metrics.get("same_code_as", -1)) if experiment is not None else None
        tell_outcome(study, trial.number, earlier or experiment)


def learn_from(study: optuna.Study, storage: optuna.storages.BaseStorage, tags: tuple[str, ...]) -> int:
    """Copy into `study` the completed trials of the studies of runs `tags` (the runs this one shares with,
    trained for the same budget) that it has not copied yet; returns how many it copied. Copies are marked
    (``from_run``, ``from_trial``) and never copied on. A trial whose parameters do not fit this study
    (another kind of value under one name) is left out."""
    if not tags:
        return 0
    names = set(optuna.study.get_all_study_names(storage))
    copied = {(t.user_attrs.get("from_run"), t.user_attrs.get("from_trial"))
              for t in study.get_trials(deepcopy=False) if "from_run" in t.user_attrs}
    count = 0
    for tag in tags:
        if study_name(tag) not in names:
            continue
        theirs = optuna.load_study(study_name=study_name(tag), storage=storage,
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
