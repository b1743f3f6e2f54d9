"""`Store`: the experiments of one task folder, their runs, lines and re-measurements, in one SQLite file.

- an experiment is written twice: `begin` (status RUNNING, before training) and `finish` (its final
  status and figures, after evaluation). A loop that dies in between leaves it RUNNING, and `running()`
  finds it on resume; a finished record can never be finished again (`AlreadyFinishedError`), nor changed
  or deleted (the database itself refuses: see the triggers in schema.py);
- a run, and a re-measurement of the best, are rows written once as they end, never changed or deleted;
- every write is one transaction, so after a crash each record is either fully written or absent.

Text fields (`diff`, `error`, ...) are stored as plain UTF-8 text: nothing is encoded or hidden, so
whatever a person can read in the logs they can read (and audit) in the store too.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from autoresearch.runlock import exclusive
from autoresearch.store import schema
from autoresearch.store.records import (
    LINE_FIELDS,
    PURPOSES,
    REMEASURE_REASONS,
    AlreadyFinishedError,
    Experiment,
    LineRecord,
    Remeasure,
    Run,
    Status,
    StoreError,
    UnknownExperimentError,
    checked_int,
    checked_text,
    experiment_of,
    line_of,
    line_values,
    optional_float,
    optional_int,
    proposal_values,
    result_values,
)
from autoresearch.store.schema import BUSY_TIMEOUT_S, COLUMNS

STORE_DIR = ".autoresearch"
STORE_NAME = "store.sqlite"


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
        self._lines: dict[str, LineRecord] = {}
        self._remeasures: dict[str, list[Remeasure]] = {}

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
                schema.configure(conn, path)
        except StoreError:
            conn.close()
            raise
        except sqlite3.OperationalError as err:  # locked past the timeout, read-only folder, disk full...
            conn.close()
            raise StoreError(f"cannot use the experiment store {path}: {err}") from err
        except sqlite3.DatabaseError as err:  # not a database, or a damaged one
            conn.close()
            raise StoreError(schema.corrupt_message(path, str(err))) from err
        conn.row_factory = sqlite3.Row
        return cls(path, conn)

    @classmethod
    def open_readonly(cls, task_dir: Path) -> Store:
        """Open the store of `task_dir` for reading only (`autoresearch serve`): SQLite's `mode=ro` and
        `query_only`, so nothing through this connection can change it, and no schema is created or
        upgraded. Raises `StoreError` when there is no store, or it is of another schema version."""
        path = Path(task_dir) / STORE_DIR / STORE_NAME
        if not path.is_file():
            raise StoreError(f"no experiment store in {task_dir}: run `autoresearch run` there first")
        try:
            conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S,
                                   isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            (version,) = conn.execute("PRAGMA user_version").fetchone()
        except sqlite3.Error as err:
            raise StoreError(f"cannot read the experiment store {path}: {err}") from err
        if version != schema.SCHEMA_VERSION:
            conn.close()
            newer = version > schema.SCHEMA_VERSION
            raise StoreError(f"the experiment store {path} has schema version {version}, this autoresearch reads "
                             f"{schema.SCHEMA_VERSION}: " + ("upgrade autoresearch (pip install -U autoresearch)"
                                                            if newer else "run `autoresearch status` there once "
                                                            "to bring it up to date"))
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
        row = proposal_values(tag=tag, parent_commit=parent_commit, commit=commit, diff=diff,
                        description=description, agent=agent, seed=seed, log_path=log_path)
        row["code_hash"] = None if code_hash is None else checked_text("code_hash", code_hash)
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
        result = result_values(status=status, metric=metric, metrics=metrics, training_seconds=training_seconds,
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
        row = proposal_values(tag=tag, parent_commit=parent_commit, commit=commit, diff=diff,
                        description=description, agent=agent, seed=seed, log_path=log_path)
        result = result_values(status=status, metric=metric, metrics=metrics, training_seconds=training_seconds,
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
                         "VALUES (?, ?, ?, ?, ?, ?, ?)", (experiment.id, i, seed, optional_float("metric", value),
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
        metric = optional_float("metric", run.metric)
        if metric is None or not math.isfinite(metric):
            raise StoreError(f"a run's metric must be a finite number, not {run.metric!r}")
        with self._write(experiments=False) as conn:
            (idx,) = conn.execute("SELECT COUNT(*) FROM runs WHERE experiment_id = ?", (experiment.id,)).fetchone()
            conn.execute("INSERT INTO runs (experiment_id, idx, seed, metric, speed, purpose, of_best, log_path, "
                         "recorded_at, node, gpu_seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (experiment.id, idx, checked_int("seed", run.seed), metric, optional_float("speed", run.speed),
                          run.purpose, int(run.of_best), log_path, time.time(), run.node,
                          optional_float("gpu_seconds", run.gpu_seconds)))
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
                    "SELECT metric, seed, speed, purpose, of_best, node, gpu_seconds FROM runs WHERE experiment_id = ? "
                    "ORDER BY idx", (experiment.id,))
                cached = [Run(row["metric"], row["seed"], row["speed"], row["purpose"], bool(row["of_best"]),
                              row["node"], row["gpu_seconds"]) for row in rows]
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

    # ------------------------------------------------------------------ lines and re-measurements

    def line(self, tag: str) -> LineRecord:
        """The line of `tag` as its loop set it up; a record of defaults (nothing set) if none did yet."""
        with self._lock:
            self._check_version()
            if tag not in self._lines:
                row = self._connection.execute("SELECT * FROM lines WHERE tag = ?", (tag,)).fetchone()
                self._lines[tag] = LineRecord(tag) if row is None else line_of(row)
            return self._lines[tag]

    def set_line(self, tag: str, **values: Any) -> LineRecord:
        """Set fields of the line of `tag` (the names of `LineRecord`'s), creating its row if needed."""
        unknown = set(values) - LINE_FIELDS
        if unknown:
            raise ValueError(f"no line field {', '.join(sorted(unknown))}: use {', '.join(sorted(LINE_FIELDS))}")
        columns = line_values(values)
        with self._write(experiments=False) as conn:
            _ensure_line(conn, tag)
            if columns:
                assignments = ", ".join(f"{name} = :{name}" for name in columns)
                conn.execute(f"UPDATE lines SET {assignments}, updated_at = :now WHERE tag = :tag",
                             {**columns, "now": time.time(), "tag": tag})
            self._lines.pop(tag, None)
        return self.line(tag)

    def request_recalibration(self, tag: str) -> int:
        """Count one more request that the loop of `tag` measure its best again; the count so far."""
        with self._write(experiments=False) as conn:
            _ensure_line(conn, tag)
            conn.execute("UPDATE lines SET recalibrations_requested = recalibrations_requested + 1, updated_at = ? "
                         "WHERE tag = ?", (time.time(), tag))
            self._lines.pop(tag, None)
        return self.line(tag).recalibrations_requested

    def add_remeasure(self, experiment: Experiment, remeasure: Remeasure) -> Remeasure:
        """Record that the best (`experiment`) was measured again, after its runs were made (`add_run`)."""
        if remeasure.reason not in REMEASURE_REASONS:
            raise StoreError(f"re-measurement reason {remeasure.reason!r}: use one of {', '.join(REMEASURE_REASONS)}")
        with self._write(experiments=False) as conn:
            conn.execute("INSERT INTO remeasures (tag, best_id, reason, runs_asked, runs_made, for_id, "
                         "requests_served, made_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (experiment.tag, experiment.id, remeasure.reason, checked_int("runs_asked", remeasure.runs_asked),
                          checked_int("runs_made", remeasure.runs_made), optional_int("for_id", remeasure.for_id),
                          checked_int("requests_served", remeasure.requests_served), time.time()))
            self._remeasures.pop(experiment.tag, None)
        return remeasure

    def remeasures(self, tag: str) -> list[Remeasure]:
        """Every time the best of `tag` was measured again, in order."""
        with self._lock:
            self._check_version()
            if tag not in self._remeasures:
                rows = self._connection.execute(
                    "SELECT best_id, reason, runs_asked, runs_made, for_id, requests_served FROM remeasures "
                    "WHERE tag = ? ORDER BY id", (tag,))
                self._remeasures[tag] = [Remeasure(**dict(row)) for row in rows]
            return list(self._remeasures[tag])

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

    def keep_transcript(self, experiment_id: int, prompt: str, answer: str) -> None:
        """Keep what the agent was asked for an experiment and what it answered (`autoresearch serve` shows
        them); each cut to `TRANSCRIPT_CHARS`. Kept in the state table, out of the history's rows and of the
        read caches, so a night of long prompts does not slow every read of the history."""
        text = json.dumps({"prompt": _cut(prompt), "answer": _cut(answer)})
        with self._write(experiments=False) as conn:
            conn.execute("INSERT INTO state (key, value, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                         (f"transcript:{experiment_id}", text, time.time()))

    def transcript(self, experiment_id: int) -> dict | None:
        """`{"prompt", "answer"}` kept for an experiment by `keep_transcript`; None if none was."""
        with self._lock:
            row = self._connection.execute("SELECT value FROM state WHERE key = ?",
                                           (f"transcript:{experiment_id}",)).fetchone()
        return None if row is None else json.loads(row["value"])

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
        self._lines.clear()
        self._remeasures.clear()

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
        row = conn.execute(f"SELECT {COLUMNS} FROM experiments WHERE id = ?", (experiment_id,)).fetchone()
        if row is None:
            raise UnknownExperimentError(f"no experiment with id {experiment_id} in {self.path}")
        return experiment_of(row)

    def _select(self, where: str, params: tuple) -> list[Experiment]:
        with self._lock:
            rows = self._connection.execute(f"SELECT {COLUMNS} FROM experiments WHERE {where}", params)
            return [experiment_of(row) for row in rows]


def _ensure_line(conn: sqlite3.Connection, tag: str) -> None:
    """The row of line `tag`, made with its defaults if it has none yet (inside the caller's transaction)."""
    conn.execute("INSERT INTO lines (tag, updated_at) VALUES (?, ?) ON CONFLICT (tag) DO NOTHING",
                 (checked_text("tag", tag), time.time()))


TRANSCRIPT_CHARS = 200_000  # of a prompt or an answer kept by `Store.keep_transcript`; the rest is cut


def _cut(text: str) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= TRANSCRIPT_CHARS else text[:TRANSCRIPT_CHARS] + "\n... (cut)"
