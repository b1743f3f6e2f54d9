"""The experiment store: every experiment of a task, as immutable records in one SQLite file.

The store lives at `<task>/.autoresearch/store.sqlite`. It is the one place that says what was tried and
what came of it, so the research loop can run for hundreds of experiments unattended, be killed at any
moment (`kill -9` included) and resume without losing or double-counting a result:

- an experiment is written twice: `begin` (status RUNNING, before training) and `finish` (its final
  status and figures, after evaluation). A loop that dies in between leaves it RUNNING, and `running()`
  finds it on resume; a finished record can never be finished again (`AlreadyFinishedError`), nor changed
  or deleted (the database itself refuses: see the triggers in `_SCHEMA_V1`);
- every write is one transaction, so after a crash each record is either fully written or absent;
- `results.tsv` (the reference format the analysis notebooks read) is an export, rewritten atomically
  from the store, never a second source of truth.

Records are frozen snapshots (`Experiment`), in the style of Optuna's FrozenTrial: reading one twice
gives two equal, independent objects, and changing the store never changes a snapshot already taken.
Text fields (`diff`, `error`, ...) are stored as plain UTF-8 text: nothing is encoded or hidden, so
whatever a person can read in the logs they can read (and audit) in the store too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from autoresearch.decide import speed
from autoresearch.runlock import exclusive

STORE_DIR = ".autoresearch"
STORE_NAME = "store.sqlite"
SCHEMA_VERSION = 5  # PRAGMA user_version of the schema this module writes
APPLICATION_ID = 0x41525331  # "ARS1", PRAGMA application_id: marks the file as an autoresearch store
BUSY_TIMEOUT_S = 60.0  # how long any statement waits for another process's lock before failing
RESULTS_COLUMNS = ("commit", "{metric}", "memory_gb", "status", "description")  # the reference's, for val_bpb


class StoreError(Exception):
    """A problem with the store; the message names the file and the fix."""


class AlreadyFinishedError(StoreError):
    """`finish` was called for an experiment that is already finished (it would be counted twice)."""


class UnknownExperimentError(StoreError, LookupError):
    """No experiment has this id."""


class Status(str, Enum):
    """The state of an experiment. Every status but RUNNING is final."""

    RUNNING = "running"  # begun, not (yet) finished: a loop that died mid-experiment leaves this
    KEEP = "keep"  # improved the metric: the candidate commit was kept
    DISCARD = "discard"  # ran fine, no improvement: reset
    CRASH = "crash"  # train.py or its evaluation failed
    TIMEOUT = "timeout"  # ran past budget + start-up allowance and was killed
    REJECTED = "rejected"  # the proposal was refused before it ran (e.g. did not apply, broke the rules)
    TAMPERED = "tampered"  # the candidate touched what the harness owns (data, evaluator, clock)
    PRUNED = "pruned"  # stopped early: its training curve showed it could not beat the best (prune.py)

    @property
    def finished(self) -> bool:
        return self is not Status.RUNNING

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Experiment:
    """One experiment as stored at the moment it was read. Immutable; `store.get(id)` for a fresh copy."""

    id: int
    tag: str  # run tag, e.g. "nov27" (branch autoresearch/<tag>)
    seq: int  # 0-based number of the experiment within its tag (0 = baseline)
    parent_commit: str  # commit the proposal was built on
    commit: str | None  # commit of the candidate (None for rejected proposals that were never committed)
    diff: str
    description: str
    agent: str
    seed: int
    status: Status
    metric: float | None  # the task's metric (val_bpb for the built-in task)
    metrics: dict = field(hash=False)  # any other metrics (JSON), e.g. {"val_bpb_stderr": ...}
    training_seconds: float | None
    total_seconds: float | None
    peak_memory_bytes: int | None
    tokens: int | None
    steps: int | None
    log_path: str | None
    started_at: float  # unix time
    ended_at: float | None
    error: str | None  # reason for rejected/crash/timeout, or log tail
    code_hash: str | None = None  # `same_code.code_hash` of the editable files it ran (None: not run, or older)

    @property
    def finished(self) -> bool:
        return self.status.finished


PURPOSES = ("own", "confirm", "noise", "remeasure", "speed")  # decide.rule.Purpose's values


@dataclass(frozen=True)
class Run:
    """One measurement of an experiment's code (a row of the `runs` table)."""

    metric: float
    seed: int = 0
    speed: float | None = None  # the machine's speed at the run (GFLOP/s, speed.py; None: not measured)
    purpose: str = "own"  # why it was made: one of PURPOSES
    of_best: bool = False  # made later, when the experiment was the best and was measured again


# The statuses of each schema version, as SQL for its CHECK constraint. A schema is a record of what was
# written, so these are spelled out; a test checks that the latest is `Status`.
_STATUS_SQL_V1 = "'running', 'keep', 'discard', 'crash', 'timeout', 'rejected', 'tampered'"
_STATUS_SQL = _STATUS_SQL_V1 + ", 'pruned'"  # from version 4

# A finished experiment is a fact: the database refuses to change it, and refuses to delete any. (Made with the
# table in version 1, and made again with the table that version 4 builds.)
_GUARDS = """
CREATE TRIGGER experiments_finished_are_final BEFORE UPDATE ON experiments
WHEN OLD.status <> 'running'
BEGIN
    SELECT RAISE(ABORT, 'autoresearch: a finished experiment cannot be changed');
END;

CREATE TRIGGER experiments_are_never_deleted BEFORE DELETE ON experiments
BEGIN
    SELECT RAISE(ABORT, 'autoresearch: experiments are never deleted');
END;
"""

# Version 1. Column `commit_sha` is `Experiment.commit` (COMMIT is an SQL keyword). Plain INTEGER PRIMARY
# KEY ids: nothing is ever deleted, so ids are 1, 2, 3, ... with no gaps (a rolled-back insert uses none).
_SCHEMA_V1 = f"""
CREATE TABLE experiments (
    id                INTEGER PRIMARY KEY,
    tag               TEXT    NOT NULL CHECK (length(tag) > 0),
    seq               INTEGER NOT NULL CHECK (seq >= 0),
    parent_commit     TEXT    NOT NULL,
    commit_sha        TEXT,
    diff              TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    agent             TEXT    NOT NULL,
    seed              INTEGER NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ({_STATUS_SQL_V1})),
    val_bpb           REAL,
    metrics           TEXT    NOT NULL DEFAULT '{{}}',
    training_seconds  REAL,
    total_seconds     REAL,
    peak_memory_bytes INTEGER,
    tokens            INTEGER,
    steps             INTEGER,
    log_path          TEXT,
    started_at        REAL    NOT NULL,
    ended_at          REAL,
    error             TEXT,
    UNIQUE (tag, seq),
    CHECK ((status = 'running') = (ended_at IS NULL)),
    CHECK (status <> 'keep' OR val_bpb IS NOT NULL)
);

{_GUARDS}
-- Small JSON values of the loop's own state (best commit, agent state, ...).
CREATE TABLE state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
"""

# Version 2: the task's metric is not always val_bpb (generic tasks name their own), so the column is
# `metric`; SQLite carries the rename into the CHECK constraint.
_SCHEMA_V2 = "ALTER TABLE experiments RENAME COLUMN val_bpb TO metric;"

# Version 3: what code an experiment ran, so that a change already measured is not run again (loop.py).
_SCHEMA_V3 = """
ALTER TABLE experiments ADD COLUMN code_hash TEXT;
CREATE INDEX experiments_by_code ON experiments (tag, code_hash);
"""

# Version 4: status `pruned`. SQLite cannot change a CHECK constraint, so the table is built anew and the
# rows copied (inside the migration's one transaction: all or nothing); its index and triggers go with the
# old table and are made again.
_SCHEMA_V4 = f"""
CREATE TABLE experiments_v4 (
    id                INTEGER PRIMARY KEY,
    tag               TEXT    NOT NULL CHECK (length(tag) > 0),
    seq               INTEGER NOT NULL CHECK (seq >= 0),
    parent_commit     TEXT    NOT NULL,
    commit_sha        TEXT,
    diff              TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    agent             TEXT    NOT NULL,
    seed              INTEGER NOT NULL,
    status            TEXT    NOT NULL CHECK (status IN ({_STATUS_SQL})),
    metric            REAL,
    metrics           TEXT    NOT NULL DEFAULT '{{}}',
    training_seconds  REAL,
    total_seconds     REAL,
    peak_memory_bytes INTEGER,
    tokens            INTEGER,
    steps             INTEGER,
    log_path          TEXT,
    started_at        REAL    NOT NULL,
    ended_at          REAL,
    error             TEXT,
    code_hash         TEXT,
    UNIQUE (tag, seq),
    CHECK ((status = 'running') = (ended_at IS NULL)),
    CHECK (status <> 'keep' OR metric IS NOT NULL)
);

INSERT INTO experiments_v4 ({{columns}}) SELECT {{columns}} FROM experiments;

DROP TABLE experiments;

ALTER TABLE experiments_v4 RENAME TO experiments;

CREATE INDEX experiments_by_code ON experiments (tag, code_hash);

{_GUARDS}"""

_COLUMNS = ("id, tag, seq, parent_commit, commit_sha, diff, description, agent, seed, status, metric, metrics, "
            "training_seconds, total_seconds, peak_memory_bytes, tokens, steps, log_path, started_at, ended_at, "
            "error, code_hash")

# Version 5: the runs of each experiment as rows, one per measurement (before: JSON in `metrics` and in the
# state entries `runs:<id>`, `recalibration:<id>`, `recalibration-speeds:<id>`, which stay as they were). The
# migration moves them over: an experiment's own runs from its metrics (seeds and speeds where recorded,
# else seed + index and unknown), a RUNNING one's from its `runs:` entry, then the best's later runs.
_SCHEMA_V5 = f"""
CREATE TABLE runs (
    experiment_id INTEGER NOT NULL REFERENCES experiments (id),
    idx           INTEGER NOT NULL CHECK (idx >= 0),
    seed          INTEGER NOT NULL,
    metric        REAL    NOT NULL,
    speed         REAL,
    purpose       TEXT    NOT NULL CHECK (purpose IN ({", ".join(f"'{p}'" for p in PURPOSES)})),
    of_best       INTEGER NOT NULL DEFAULT 0 CHECK (of_best IN (0, 1)),
    log_path      TEXT,
    recorded_at   REAL    NOT NULL,
    PRIMARY KEY (experiment_id, idx)
);

CREATE TRIGGER runs_are_final BEFORE UPDATE ON runs
BEGIN
    SELECT RAISE(ABORT, 'autoresearch: a recorded run cannot be changed');
END;

CREATE TRIGGER runs_are_never_deleted BEFORE DELETE ON runs
BEGIN
    SELECT RAISE(ABORT, 'autoresearch: runs are never deleted');
END;

INSERT INTO runs (experiment_id, idx, seed, metric, speed, purpose, recorded_at)
SELECT e.id, j.key, COALESCE(json_extract(e.metrics, '$.run_seeds[' || j.key || ']'), e.seed + j.key), j.value,
       json_extract(e.metrics, '$.run_speeds[' || j.key || ']'),
       CASE WHEN j.key = 0 THEN 'own' WHEN e.description = 'baseline' AND e.agent = '-' THEN 'noise'
            ELSE 'confirm' END, COALESCE(e.ended_at, e.started_at)
FROM experiments e, json_each(e.metrics, '$.runs') j
WHERE json_type(e.metrics, '$.runs') = 'array' AND j.type IN ('real', 'integer');

INSERT INTO runs (experiment_id, idx, seed, metric, speed, purpose, recorded_at)
SELECT e.id, 0, e.seed, e.metric, json_extract(e.metrics, '$.run_speeds[0]'), 'own', e.ended_at
FROM experiments e
WHERE e.status IN ('keep', 'discard') AND e.metric IS NOT NULL AND json_type(e.metrics, '$.runs') IS NULL;

INSERT INTO runs (experiment_id, idx, seed, metric, speed, purpose, recorded_at)
SELECT e.id, j.key, COALESCE(json_extract(j.value, '$.seed'), e.seed + j.key), json_extract(j.value, '$.metric'),
       json_extract(j.value, '$.speed'),
       CASE WHEN j.key = 0 THEN 'own' WHEN e.description = 'baseline' AND e.agent = '-' THEN 'noise'
            ELSE 'confirm' END, s.updated_at
FROM experiments e JOIN state s ON s.key = 'runs:' || e.id, json_each(s.value) j
WHERE e.status = 'running' AND json_type(j.value, '$.metric') IN ('real', 'integer');

INSERT INTO runs (experiment_id, idx, seed, metric, speed, purpose, of_best, recorded_at)
SELECT e.id, own.n + j.key, e.seed + own.n + j.key, j.value, json_extract(sp.value, '$[' || j.key || ']'),
       'remeasure', 1, s.updated_at
FROM experiments e
JOIN state s ON s.key = 'recalibration:' || e.id
LEFT JOIN state sp ON sp.key = 'recalibration-speeds:' || e.id
JOIN (SELECT experiment_id, COUNT(*) AS n FROM runs GROUP BY experiment_id) own ON own.experiment_id = e.id,
json_each(s.value) j
WHERE j.type IN ('real', 'integer');
"""

# Migrations from version N-1 to N.
_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3,
                               4: _SCHEMA_V4.replace("{columns}", _COLUMNS), 5: _SCHEMA_V5}

@contextmanager
def setup_lock(task_dir: Path) -> Iterator[None]:
    """Held while a process sets up the store file's schema (`Store.open`) or adds tables of its own to it (the
    `tune` agent's Optuna study): several loops started at once on a new folder would otherwise create the
    same tables at the same moment, and all but one fail (`table ... already exists`, `database is locked`).
    An exclusive `flock` on `.autoresearch/store.lock`, which the kernel drops with the process."""
    folder = Path(task_dir) / STORE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive(folder / "store.lock"):
        yield


class Store:
    """The experiments of one task folder. Open with `Store.open(task_dir)`; close (or use `with`).

    Safe to share between threads of one process, and to open from several processes at once (the loop
    writing, `autoresearch status` reading): readers never block the writer nor each other (WAL), and a
    write waits up to `BUSY_TIMEOUT_S` for another process's write to finish instead of failing.
    """

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        """Use `Store.open`."""
        self.path = path
        self._conn: sqlite3.Connection | None = conn
        self._lock = threading.RLock()
        # Read caches, so that a loop that reads its whole history several times per experiment does not parse
        # it each time: valid while SQLite's data_version (bumped by other connections' commits) is unchanged;
        # this connection's own writes update or drop them as they commit.
        self._version: int | None = None
        self._tag_rows: dict[str | None, list[Experiment]] = {}
        self._states: dict[str, str | None] = {}
        self._runs: dict[int, list[Run]] = {}

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, task_dir: Path) -> Store:
        """Open the store of `task_dir`, creating `<task_dir>/.autoresearch/store.sqlite` and its schema.

        `task_dir` must exist. Raises `StoreError` if the file is not an autoresearch store (corrupt, or
        some other SQLite database) or was written by a newer autoresearch (its schema version is higher
        than `SCHEMA_VERSION`); the message says what to do.
        """
        task_dir = Path(task_dir)
        if not task_dir.is_dir():
            raise StoreError(f"task folder {task_dir} does not exist (create it with `autoresearch init`)")
        folder = task_dir / STORE_DIR
        folder.mkdir(exist_ok=True)
        path = folder / STORE_NAME
        try:
            # isolation_level=None: no implicit transactions; every write below opens its own BEGIN IMMEDIATE.
            conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as err:
            raise StoreError(f"cannot open the experiment store {path}: {err}") from err
        try:
            with setup_lock(task_dir):  # loops started at the same moment on a new folder take turns here
                _configure(conn, path)
        except StoreError:
            conn.close()
            raise
        except sqlite3.OperationalError as err:  # locked past the timeout, read-only folder, disk full...
            conn.close()
            raise StoreError(f"cannot use the experiment store {path}: {err}") from err
        except sqlite3.DatabaseError as err:  # not a database, or a damaged one
            conn.close()
            raise StoreError(_corrupt_message(path, str(err))) from err
        conn.row_factory = sqlite3.Row
        return cls(path, conn)

    def close(self) -> None:
        """Close the connection. Idempotent; the store cannot be used afterwards."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing experiments

    def begin(self, *, tag: str, parent_commit: str, commit: str | None, diff: str, description: str,
              agent: str, seed: int, log_path: str | None = None, code_hash: str | None = None) -> Experiment:
        """Record the start of an experiment: status RUNNING, `seq` = the next number of `tag` (0 first).
        `code_hash`: what code it runs (`same_code.code_hash`), for `same_code`.

        Call it before training starts, so that a loop killed mid-experiment leaves a trace (`running`).
        """
        row = _proposal(tag=tag, parent_commit=parent_commit, commit=commit, diff=diff,
                        description=description, agent=agent, seed=seed, log_path=log_path)
        row["code_hash"] = None if code_hash is None else _text("code_hash", code_hash)
        with self._write() as conn:
            return self._insert(conn, row, Status.RUNNING, None)

    def finish(self, experiment_id: int, *, status: Status | str, metric: float | None = None,
               metrics: Mapping[str, Any] | None = None, training_seconds: float | None = None,
               total_seconds: float | None = None, peak_memory_bytes: int | None = None,
               tokens: int | None = None, steps: int | None = None, error: str | None = None) -> Experiment:
        """Record the end of a RUNNING experiment and return it as finished.

        `status` is any status but RUNNING; KEEP needs a `metric`. Numbers must be finite (integral for the
        integer fields); non-finite floats inside `metrics` are stored as null. Raises
        `AlreadyFinishedError` if the experiment is already finished (so a resumed loop cannot count a
        result twice) and `UnknownExperimentError` if there is no such experiment. All or nothing.
        """
        result = _result(status=status, metric=metric, metrics=metrics, training_seconds=training_seconds,
                         total_seconds=total_seconds, peak_memory_bytes=peak_memory_bytes, tokens=tokens,
                         steps=steps, error=error)
        with self._write() as conn:
            current = conn.execute("SELECT status FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
            if current is None:
                raise UnknownExperimentError(f"no experiment with id {experiment_id} in {self.path}")
            if current["status"] != Status.RUNNING.value:
                raise AlreadyFinishedError(f"experiment {experiment_id} is already finished "
                                           f"({current['status']}); a result is recorded once")
            conn.execute("UPDATE experiments SET status = :status, metric = :metric, metrics = :metrics, "
                         "training_seconds = :training_seconds, total_seconds = :total_seconds, "
                         "peak_memory_bytes = :peak_memory_bytes, tokens = :tokens, steps = :steps, "
                         "error = :error, ended_at = :ended_at WHERE id = :id AND status = 'running'",
                         {**result, "ended_at": time.time(), "id": experiment_id})
            finished = self._get(conn, experiment_id)
            self._own_runs_from_metrics(conn, finished)
            return finished

    def record(self, *, status: Status | str, tag: str, parent_commit: str, diff: str, description: str,
               agent: str, seed: int, commit: str | None = None, log_path: str | None = None,
               metric: float | None = None, metrics: Mapping[str, Any] | None = None,
               training_seconds: float | None = None, total_seconds: float | None = None,
               peak_memory_bytes: int | None = None, tokens: int | None = None, steps: int | None = None,
               error: str | None = None) -> Experiment:
        """`begin` and `finish` in one transaction, e.g. for a proposal rejected before it ran.

        Same checks as `begin` and `finish`; the record never exists as RUNNING.
        """
        row = _proposal(tag=tag, parent_commit=parent_commit, commit=commit, diff=diff,
                        description=description, agent=agent, seed=seed, log_path=log_path)
        result = _result(status=status, metric=metric, metrics=metrics, training_seconds=training_seconds,
                         total_seconds=total_seconds, peak_memory_bytes=peak_memory_bytes, tokens=tokens,
                         steps=steps, error=error)
        with self._write() as conn:
            recorded = self._insert(conn, {**row, **result}, Status(result["status"]), time.time())
            self._own_runs_from_metrics(conn, recorded)
            return recorded

    def _own_runs_from_metrics(self, conn: sqlite3.Connection, experiment: Experiment) -> None:
        """An experiment finished with a result but none of its runs recorded (`add_run`): what its record says
        of them becomes its runs, as the migration to version 5 reads older records: `metrics["runs"]` (with
        `run_seeds`, `run_speeds`), else its metric, one run."""
        self._runs.pop(experiment.id, None)
        if experiment.status not in (Status.KEEP, Status.DISCARD) or experiment.metric is None:
            return
        if conn.execute("SELECT 1 FROM runs WHERE experiment_id = ?", (experiment.id,)).fetchone():
            return
        values = experiment.metrics.get("runs") or [experiment.metric]
        seeds, speeds = experiment.metrics.get("run_seeds") or [], experiment.metrics.get("run_speeds") or []
        baseline = experiment.description == "baseline" and experiment.agent == "-"
        for i, value in enumerate(values):
            seed = seeds[i] if i < len(seeds) else experiment.seed + i
            purpose = "own" if i == 0 else "noise" if baseline else "confirm"
            conn.execute("INSERT INTO runs (experiment_id, idx, seed, metric, speed, purpose, recorded_at) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (experiment.id, i, seed, _opt_float("metric", value),
                                                          speeds[i] if i < len(speeds) else None, purpose,
                                                          experiment.ended_at))

    # ------------------------------------------------------------------ reading experiments

    def get(self, experiment_id: int) -> Experiment:
        """The experiment with this id; `UnknownExperimentError` if there is none."""
        with self._lock:
            return self._get(self._connection, experiment_id)

    def experiments(self, tag: str | None = None) -> list[Experiment]:
        """All experiments (of `tag`, if given), ordered by id, RUNNING ones included."""
        with self._lock:
            self._check_version()
            cached = self._tag_rows.get(tag)
            if cached is None:
                cached = self._select("1 ORDER BY id", ()) if tag is None else self._select("tag = ? ORDER BY id", (tag,))
                self._tag_rows[tag] = cached
            return list(cached)

    def add_run(self, experiment: Experiment, run: Run, log_path: str | None = None) -> Run:
        """Record one run of `experiment`'s code, as it ends: the next index of its runs. A recorded run is a
        fact: it is never changed or deleted."""
        if run.purpose not in PURPOSES:
            raise StoreError(f"run purpose {run.purpose!r}: use one of {', '.join(PURPOSES)}")
        metric = _opt_float("metric", run.metric)
        if metric is None or not math.isfinite(metric):
            raise StoreError(f"a run's metric must be a finite number, not {run.metric!r}")
        with self._write(experiments=False) as conn:
            (idx,) = conn.execute("SELECT COUNT(*) FROM runs WHERE experiment_id = ?", (experiment.id,)).fetchone()
            conn.execute("INSERT INTO runs (experiment_id, idx, seed, metric, speed, purpose, of_best, log_path, "
                         "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (experiment.id, idx, _int("seed", run.seed), metric, _opt_float("speed", run.speed),
                          run.purpose, int(run.of_best), log_path, time.time()))
            self._runs.pop(experiment.id, None)
        return run

    def runs(self, experiment: Experiment) -> list[Run]:
        """Every run of `experiment`'s code, in order: its own (one, or several: the baseline's seeds,
        confirmations), then those it got when it was the best and was measured again (docs/keep.md). Of a
        RUNNING experiment, the runs made so far."""
        with self._lock:
            self._check_version()
            cached = self._runs.get(experiment.id)
            if cached is None:
                rows = self._connection.execute(
                    "SELECT metric, seed, speed, purpose, of_best FROM runs WHERE experiment_id = ? ORDER BY idx",
                    (experiment.id,))
                cached = [Run(row["metric"], row["seed"], row["speed"], row["purpose"], bool(row["of_best"]))
                          for row in rows]
                self._runs[experiment.id] = cached
            return list(cached)

    def remeasured_runs(self, experiment: Experiment) -> list[float]:
        """The runs an experiment's code got later, when it was the best and was measured again; empty if none."""
        return [r.metric for r in self.runs(experiment) if r.of_best]

    def measured_runs(self, experiment: Experiment) -> list[float]:
        """The metric of every run of `runs`."""
        return [r.metric for r in self.runs(experiment)]

    def measured_speeds(self, experiment: Experiment) -> list[float | None]:
        """The machine's speed (speed.py) at each run of `runs`, in the same order; None where it was not
        measured (a run without a prestarted interpreter, or a store from before the speed check)."""
        return [r.speed for r in self.runs(experiment)]

    def current_runs(self, experiment: Experiment) -> list[float]:
        """The runs of `measured_runs` made at about the machine speed of the latest one (`speed.groups`, with
        the tag's `speed_tolerance`): the code as measured on the machine as it is now. All of them when the
        speed did not move."""
        runs, speeds = self.measured_runs(experiment), self.measured_speeds(experiment)
        if not runs:
            return []
        latest = next(g for g in speed.groups(speeds, self.speed_tolerance(experiment.tag)) if len(runs) - 1 in g)
        return [runs[i] for i in latest]

    def speed_tolerance(self, tag: str) -> float:
        """`keep.speed_tolerance` as the loop of `tag` last ran with it (the default before it first ran)."""
        return float(self.get_state(f"speed-tolerance:{tag}", speed.DEFAULT_TOLERANCE))

    def set_speed_tolerance(self, tag: str, tolerance: float) -> None:
        self.set_state(f"speed-tolerance:{tag}", tolerance)

    def measured(self, tag: str) -> list[Experiment]:
        """`experiments(tag)` as measured so far: one whose code was run again later has as its metric the
        mean of its runs made at about the latest run's machine speed (`current_runs`; all its runs, its own
        and the later ones, on a steady machine). What status, the report and results.tsv show, so that a best
        first kept on a lucky run, or measured while the machine was busy, is not shown at that."""
        out = []
        for e in self.experiments(tag):
            if e.metric is not None and self.remeasured_runs(e):
                runs = self.current_runs(e)
                e = dataclasses.replace(e, metric=sum(runs) / len(runs))
            out.append(e)
        return out

    def same_code(self, tag: str, code_hash: str) -> Experiment | None:
        """The latest experiment of `tag` that measured the code `code_hash`: one that ran to a result (kept,
        discarded, or stopped early as hopeless) or was caught tampering. Crashes and timeouts do not count: the machine may have caused
        them. None if there is none."""
        found = self._select("tag = ? AND code_hash = ? AND status IN ('keep', 'discard', 'tampered', 'pruned') "
                             "ORDER BY id DESC LIMIT 1", (tag, code_hash))
        return found[0] if found else None

    def running(self, tag: str) -> list[Experiment]:
        """The experiments of `tag` that were begun and never finished (a loop died), ordered by id."""
        return self._select("tag = ? AND status = 'running' ORDER BY id", (tag,))

    def incumbent(self, tag: str) -> Experiment | None:
        """The latest KEEP experiment of `tag`: the run's best, the commit its branch holds and proposals build
        on (each keep beat the best before it); None if nothing was kept."""
        found = self._select("tag = ? AND status = 'keep' ORDER BY id DESC LIMIT 1", (tag,))
        return found[0] if found else None

    def latest_finished(self, tags: Sequence[str], count: int) -> list[Experiment]:
        """The `count` experiments of `tags` that ended last, oldest first."""
        if not tags or count <= 0:
            return []
        marks = ", ".join("?" for _ in tags)
        found = self._select(f"tag IN ({marks}) AND status <> 'running' ORDER BY ended_at DESC, id DESC LIMIT ?",
                             (*tags, count))
        return found[::-1]

    def tags(self) -> list[str]:
        """The run tags that have experiments, in the order they were first used."""
        with self._lock:
            rows = self._connection.execute("SELECT tag FROM experiments GROUP BY tag ORDER BY MIN(id)")
            return [row["tag"] for row in rows]

    # ------------------------------------------------------------------ loop state

    def get_state(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under `key`, or `default` if the key was never set."""
        with self._lock:
            self._check_version()
            if key not in self._states:
                row = self._connection.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
                self._states[key] = None if row is None else row["value"]
            text = self._states[key]
        return default if text is None else json.loads(text)

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable `value` (finite numbers only) under `key`, in its own transaction."""
        if not isinstance(key, str) or not key:
            raise ValueError("state key must be a non-empty string")
        try:
            text = json.dumps(value, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise ValueError(f"state {key!r} is not JSON-serialisable with finite numbers: {err}") from err
        with self._write(experiments=False) as conn:
            conn.execute("INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                         (key, text, time.time()))
            self._states[key] = text

    def keep_program(self, text: str) -> str:
        """Keep a program.md text (once) and return its id: the first 12 hex digits of its SHA-256."""
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        if self.get_state(f"program:{key}") is None:
            self.set_state(f"program:{key}", text)
        return key

    def programs(self, keys: Iterable[str]) -> dict[str, str]:
        """The program.md texts kept under `keys` (those unknown are left out)."""
        found = {key: self.get_state(f"program:{key}") for key in set(keys)}
        return {key: text for key, text in found.items() if isinstance(text, str)}

    # ------------------------------------------------------------------ results.tsv

    def results_tsv(self, tag: str, metric_name: str = "val_bpb") -> str:
        """The reference `results.tsv` text of `tag`: the header, then one line per finished experiment.

        Columns: short commit (7 characters, `-------` without one), the metric (6 decimals; the column is
        named `metric_name`, val_bpb in the reference), peak memory in GB (1 decimal), status, description
        (tabs and line breaks become spaces). An experiment without a metric is written `0.000000` and
        `0.0`; one without a memory figure gets `0.0`. RUNNING experiments are left out.
        """
        lines = ["\t".join(RESULTS_COLUMNS).replace("{metric}", _one_line(metric_name))]
        for exp in self.measured(tag):
            if not exp.finished:
                continue
            commit = (exp.commit or "")[:7] or "-------"
            if exp.metric is None:
                bpb, memory = "0.000000", "0.0"
            else:
                gb = (exp.peak_memory_bytes or 0) / 1024**3
                bpb, memory = f"{exp.metric:.6f}", f"{gb:.1f}"
            lines.append(f"{commit}\t{bpb}\t{memory}\t{exp.status.value}\t{_one_line(exp.description)}")
        return "\n".join(lines) + "\n"

    def export_results_tsv(self, tag: str, path: Path, metric_name: str = "val_bpb") -> None:
        """Write `results_tsv(tag)` to `path` atomically (temporary file in the same folder, then rename):
        a reader sees the old file or the new one, never a partial one."""
        path = Path(path)
        data = self.results_tsv(tag, metric_name).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    # ------------------------------------------------------------------ internals

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the experiment store {self.path} is closed")
        return self._conn

    @contextmanager
    def _write(self, *, experiments: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. BEGIN IMMEDIATE takes the write lock up front (waiting for another
        writer up to the busy timeout), so the reads inside it (next seq, current status) cannot go stale.
        `experiments`: it writes experiments (their cached lists are dropped; a state write updates its own
        cache entry)."""
        with self._lock:
            conn = self._connection
            conn.execute("BEGIN IMMEDIATE")
            self._check_version()  # what other connections wrote before this transaction
            if experiments:
                self._tag_rows.clear()
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._forget()
                raise

    def _check_version(self) -> None:
        """Drop the read caches if another connection has committed since they were filled."""
        (version,) = self._connection.execute("PRAGMA data_version").fetchone()
        if version != self._version:
            self._forget()
            self._version = version

    def _forget(self) -> None:
        self._tag_rows.clear()
        self._states.clear()
        self._runs.clear()

    def _insert(self, conn: sqlite3.Connection, values: dict, status: Status, ended_at: float | None) -> Experiment:
        (seq,) = conn.execute("SELECT COALESCE(MAX(seq) + 1, 0) FROM experiments WHERE tag = ?",
                              (values["tag"],)).fetchone()
        row = {"metric": None, "metrics": "{}", "training_seconds": None, "total_seconds": None,
               "peak_memory_bytes": None, "tokens": None, "steps": None, "error": None, "code_hash": None,
               **values, "seq": seq, "status": status.value, "started_at": ended_at or time.time(),
               "ended_at": ended_at}
        cur = conn.execute(
            "INSERT INTO experiments (tag, seq, parent_commit, commit_sha, diff, description, agent, seed, status, "
            "metric, metrics, training_seconds, total_seconds, peak_memory_bytes, tokens, steps, log_path, "
            "started_at, ended_at, error, code_hash) VALUES (:tag, :seq, :parent_commit, :commit, :diff, "
            ":description, :agent, :seed, :status, :metric, :metrics, :training_seconds, :total_seconds, "
            ":peak_memory_bytes, :tokens, :steps, :log_path, :started_at, :ended_at, :error, :code_hash)", row)
        return self._get(conn, cur.lastrowid)

    def _get(self, conn: sqlite3.Connection, experiment_id: int) -> Experiment:
        row = conn.execute(f"SELECT {_COLUMNS} FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        if row is None:
            raise UnknownExperimentError(f"no experiment with id {experiment_id} in {self.path}")
        return _experiment(row)

    def _select(self, where: str, params: tuple) -> list[Experiment]:
        with self._lock:
            rows = self._connection.execute(f"SELECT {_COLUMNS} FROM experiments WHERE {where}", params)
            return [_experiment(row) for row in rows]


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    """Set the connection up and bring the schema to `SCHEMA_VERSION`. Raises sqlite3 errors as they come."""
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    # WAL: readers (`autoresearch status`) and the writer (the loop) never block each other, and a commit is
    # one append to the -wal file. The mode is stored in the file, so this is a no-op after creation. (On a
    # file system without shared memory SQLite stays in rollback-journal mode, which is just as safe here.)
    conn.execute("PRAGMA journal_mode = WAL").fetchone()
    # synchronous: for a kill -9 of the process, NORMAL is already enough: once COMMIT returns, the
    # transaction is in the -wal file in the OS page cache, which the kernel writes out whether or not the
    # process lives on; a process killed mid-commit leaves WAL frames without a commit mark, which the next
    # open ignores. NORMAL can only lose the last commits to power loss or a kernel crash (never consistency).
    # We still choose FULL (an fsync of the WAL at every commit): its cost is nil at this write rate (a few
    # small transactions per experiment of minutes, a millisecond or so each), and in exchange a result the
    # loop was told is recorded -- a KEEP it then builds on -- stays recorded even if the machine loses power
    # overnight. FULL is also the safe setting should the file fall back to a rollback journal (see above).
    conn.execute("PRAGMA synchronous = FULL")
    # Damage shows here, at open, rather than in the middle of a night's run. Cheap: the file is small.
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        raise StoreError(_corrupt_message(path, "; ".join(problems[:3])))
    _migrate(conn, path)


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        _check_application_id(conn, path)
        return
    if version > SCHEMA_VERSION:
        raise StoreError(_newer_message(path, version))
    conn.execute("BEGIN IMMEDIATE")  # another process may be creating or upgrading the schema right now
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()  # again: another process may have won
        if version > SCHEMA_VERSION:
            raise StoreError(_newer_message(path, version))
        if version == 0:
            tables = conn.execute("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
            if tables:
                raise StoreError(f"{path} is a SQLite database but not an autoresearch store (it has tables "
                                 f"{', '.join(t[0] for t in tables[:5])}). Move it aside; a new store will be "
                                 "created in its place.")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        else:
            _check_application_id(conn, path)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            # executescript() would COMMIT first; run the statements one by one inside our transaction.
            for statement in _statements(_MIGRATIONS[target]):
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _newer_message(path: Path, version: int) -> str:
    return (f"{path} was written by a newer autoresearch (store schema version {version}; this one reads up to "
            f"{SCHEMA_VERSION}). Upgrade autoresearch (pip install -U autoresearch) to use it; nothing was changed.")


def _check_application_id(conn: sqlite3.Connection, path: Path) -> None:
    (app_id,) = conn.execute("PRAGMA application_id").fetchone()
    if app_id != APPLICATION_ID:
        raise StoreError(f"{path} is a SQLite database but not an autoresearch store (application_id "
                         f"{app_id:#x}). Move it aside; a new store will be created in its place.")


def _statements(script: str) -> list[str]:
    """Split a schema script into complete statements (triggers contain `;` inside BEGIN ... END)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        current += line
        if current.strip() and sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        raise AssertionError(f"incomplete statement in schema: {current!r}")
    return out


def _corrupt_message(path: Path, detail: str) -> str:
    return (f"the experiment store {path} is not a readable SQLite database ({detail}). Move it aside "
            f"(e.g. `mv {path} {path}.broken`, with any {path.name}-wal and {path.name}-shm next to it) and run "
            "again: a new, empty store is created. The experiments' logs (.autoresearch/runs) and the git "
            "history of the autoresearch/<tag> branches remain.")


# ---------------------------------------------------------------------- validation and conversion


def _proposal(*, tag: str, parent_commit: str, commit: str | None, diff: str, description: str, agent: str,
              seed: int, log_path: str | None) -> dict:
    if not isinstance(tag, str) or not tag.strip():
        raise ValueError(f"tag must be a non-empty string, not {tag!r}")
    return {"tag": tag, "parent_commit": _text("parent_commit", parent_commit),
            "commit": None if commit is None else _text("commit", commit), "diff": _text("diff", diff),
            "description": _text("description", description), "agent": _text("agent", agent),
            "seed": _int("seed", seed), "log_path": None if log_path is None else _text("log_path", str(log_path))}


def _result(*, status: Status | str, metric: float | None, metrics: Mapping[str, Any] | None,
            training_seconds: float | None, total_seconds: float | None, peak_memory_bytes: int | None,
            tokens: int | None, steps: int | None, error: str | None) -> dict:
    try:
        status = Status(status)
    except ValueError:
        raise ValueError(f"unknown status {status!r}: use one of {', '.join(s.value for s in Status)}") from None
    if status is Status.RUNNING:
        raise ValueError("an experiment is finished with a final status, not RUNNING")
    metric = _opt_float("metric", metric)
    if status is Status.KEEP and metric is None:
        raise ValueError("a KEEP experiment needs its metric")
    metrics = {} if metrics is None else metrics
    if not isinstance(metrics, Mapping) or not all(isinstance(k, str) for k in metrics):
        raise TypeError("metrics must be a mapping with string keys")
    try:
        metrics_json = json.dumps(_finite_or_null(dict(metrics)), allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise TypeError(f"metrics must be JSON-serialisable: {err}") from err
    return {"status": status.value, "metric": metric, "metrics": metrics_json,
            "training_seconds": _opt_float("training_seconds", training_seconds),
            "total_seconds": _opt_float("total_seconds", total_seconds),
            "peak_memory_bytes": _opt_int("peak_memory_bytes", peak_memory_bytes),
            "tokens": _opt_int("tokens", tokens), "steps": _opt_int("steps", steps),
            "error": None if error is None else _text("error", error)}


_SURROGATE = re.compile("[\ud800-\udfff]")


def _text(name: str, value: str) -> str:
    """Plain text as stored. Lone surrogates (undecodable bytes) cannot be UTF-8 and become U+FFFD."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = _SURROGATE.sub("\ufffd", value)
    return value


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    return int(value)


def _opt_int(name: str, value: Any) -> int | None:
    return None if value is None else _int(name, value)


def _opt_float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return float(value)


def _finite_or_null(value: Any) -> Any:
    """Metrics come from train.py's figures: a NaN or inf there is stored as null rather than lost in a crash."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


_LINE_BREAKS = str.maketrans({c: " " for c in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def _one_line(text: str) -> str:
    """Tabs and every kind of line break become spaces, so a description stays one TSV field; other control
    characters (a terminal's escapes) are shown, not written (`report.safe_text.for_terminal`)."""
    from autoresearch.report.safe_text import for_terminal

    return for_terminal(text.translate(_LINE_BREAKS))


def _experiment(row: sqlite3.Row) -> Experiment:
    return Experiment(id=row["id"], tag=row["tag"], seq=row["seq"], parent_commit=row["parent_commit"],
                      commit=row["commit_sha"], diff=row["diff"], description=row["description"],
                      agent=row["agent"], seed=row["seed"], status=Status(row["status"]), metric=row["metric"],
                      metrics=json.loads(row["metrics"]), training_seconds=row["training_seconds"],
                      total_seconds=row["total_seconds"], peak_memory_bytes=row["peak_memory_bytes"],
                      tokens=row["tokens"], steps=row["steps"], log_path=row["log_path"],
                      started_at=row["started_at"], ended_at=row["ended_at"], error=row["error"],
                      code_hash=row["code_hash"])
