"""The store's schema: the SQL of every version, and the migration of a file to the latest.

A store file says what it is (`PRAGMA application_id`) and which schema it holds (`PRAGMA user_version`). A
file of an older version is brought up to `SCHEMA_VERSION` in one transaction (all or nothing); one of a
newer version, or one that is not an autoresearch store, is refused with a message that says what to do.
Each version's SQL is a record of what was written, so old versions are spelled out, never edited.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from autoresearch.store.records import PURPOSES, REMEASURE_REASONS, StoreError

SCHEMA_VERSION = 7  # PRAGMA user_version of the schema this module writes
APPLICATION_ID = 0x41525331  # "ARS1", PRAGMA application_id: marks the file as an autoresearch store
BUSY_TIMEOUT_S = 60.0  # how long any statement waits for another process's lock before failing

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

COLUMNS = ("id, tag, seq, parent_commit, commit_sha, diff, description, agent, seed, status, metric, metrics, "
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

# Version 6: a tag's line of research as a row (before: the state entries `budget:<tag>`, `protocol:<tag>`,
# `speed-tolerance:<tag>`, `lineup:<tag>`, `phases:<tag>`, `recalibrate-requested:<tag>`), and each time the
# best was measured again as a row, so that the flags the loop kept (`settled:<id>`, `speed-checked:<id>`,
# `calibrated:<tag>` with `recalibrate-served:<tag>`, `checked-after:<tag>`) are questions asked of them. The old
# entries stay where they were; nothing reads them any more.
_SCHEMA_V6 = f"""
CREATE TABLE lines (
    tag                      TEXT    PRIMARY KEY CHECK (length(tag) > 0),
    budget_seconds           REAL,
    protocol                 TEXT,
    speed_tolerance          REAL,
    lineup                   TEXT,
    lineup_since             INTEGER NOT NULL DEFAULT 0,
    phases                   TEXT    NOT NULL DEFAULT '{{"finish": [], "startup": []}}',
    recalibrations_requested INTEGER NOT NULL DEFAULT 0 CHECK (recalibrations_requested >= 0),
    updated_at               REAL    NOT NULL
);

CREATE TABLE remeasures (
    id              INTEGER PRIMARY KEY,
    tag             TEXT    NOT NULL,
    best_id         INTEGER NOT NULL REFERENCES experiments (id),
    reason          TEXT    NOT NULL CHECK (reason IN ({", ".join(f"'{r}'" for r in REMEASURE_REASONS)})),
    runs_asked      INTEGER NOT NULL CHECK (runs_asked >= 0),
    runs_made       INTEGER NOT NULL CHECK (runs_made >= 0),
    for_id          INTEGER REFERENCES experiments (id),
    requests_served INTEGER NOT NULL DEFAULT 0,
    made_at         REAL    NOT NULL
);

CREATE INDEX remeasures_by_tag ON remeasures (tag);

CREATE TRIGGER remeasures_are_final BEFORE UPDATE ON remeasures
BEGIN
    SELECT RAISE(ABORT, 'autoresearch: a recorded re-measurement cannot be changed');
END;

CREATE TRIGGER remeasures_are_never_deleted BEFORE DELETE ON remeasures
BEGIN
    SELECT RAISE(ABORT, 'autoresearch: re-measurements are never deleted');
END;

INSERT INTO lines (tag, budget_seconds, protocol, speed_tolerance, lineup, lineup_since, phases,
                   recalibrations_requested, updated_at)
SELECT t.tag,
       (SELECT json_extract(value, '$') FROM state WHERE key = 'budget:' || t.tag),
       (SELECT value FROM state WHERE key = 'protocol:' || t.tag AND json_type(value) = 'object'),
       (SELECT json_extract(value, '$') FROM state WHERE key = 'speed-tolerance:' || t.tag),
       (SELECT json_extract(value, '$.lineup') FROM state WHERE key = 'lineup:' || t.tag
                                                          AND json_type(value, '$.lineup') = 'text'),
       COALESCE((SELECT json_extract(value, '$.since') FROM state WHERE key = 'lineup:' || t.tag), 0),
       COALESCE((SELECT value FROM state WHERE key = 'phases:' || t.tag AND json_type(value) = 'object'),
                '{{"finish": [], "startup": []}}'),
       COALESCE((SELECT json_extract(value, '$') FROM state WHERE key = 'recalibrate-requested:' || t.tag), 0),
       (SELECT MAX(updated_at) FROM state WHERE substr(key, instr(key, ':') + 1) = t.tag)
FROM (SELECT DISTINCT substr(key, instr(key, ':') + 1) AS tag FROM state
      WHERE substr(key, 1, instr(key, ':') - 1) IN ('budget', 'protocol', 'speed-tolerance', 'lineup', 'phases',
                                                   'recalibrate-requested')) t
WHERE length(t.tag) > 0;

INSERT INTO remeasures (tag, best_id, reason, runs_asked, runs_made, made_at)
SELECT e.tag, e.id, 'settle', n.made, n.made, s.updated_at
FROM state s JOIN experiments e ON s.key = 'settled:' || e.id
JOIN (SELECT experiment_id, COUNT(*) AS made FROM runs WHERE purpose = 'remeasure' GROUP BY experiment_id) n
     ON n.experiment_id = e.id
WHERE s.value = 'true';

INSERT INTO remeasures (tag, best_id, reason, runs_asked, runs_made, for_id, made_at)
SELECT e.tag, b.id, 'speed', 0, 0, e.id, s.updated_at
FROM state s JOIN experiments e ON s.key = 'speed-checked:' || e.id
JOIN experiments b ON b.id = (SELECT MAX(k.id) FROM experiments k WHERE k.tag = e.tag AND k.status = 'keep'
                                                                    AND k.id < e.id)
WHERE s.value = 'true';

INSERT INTO remeasures (tag, best_id, reason, runs_asked, runs_made, requests_served, made_at)
SELECT e.tag, e.id, 'noise', 0, 0,
       COALESCE((SELECT json_extract(value, '$') FROM state WHERE key = 'recalibrate-served:' || e.tag), 0),
       s.updated_at
FROM state s JOIN experiments e ON s.key = 'calibrated:' || e.tag AND e.seq = json_extract(s.value, '$');

INSERT INTO remeasures (tag, best_id, reason, runs_asked, runs_made, for_id, made_at)
SELECT c.tag, b.id, 'machine', 1, 0, c.id, s.updated_at
FROM state s JOIN experiments c ON s.key = 'checked-after:' || c.tag AND c.id = json_extract(s.value, '$')
JOIN experiments b ON b.id = (SELECT MAX(k.id) FROM experiments k WHERE k.tag = c.tag AND k.status = 'keep'
                                                                    AND k.id < c.id);
"""

# Migrations from version N-1 to N.
# Version 7: where each run trained, for runs on a cluster (`--executor ray`): the node, and the GPU time it
# took there (its seconds times the GPUs it asked for); NULL for runs on this machine and for older runs.
_SCHEMA_V7 = """
ALTER TABLE runs ADD COLUMN node TEXT;
ALTER TABLE runs ADD COLUMN gpu_seconds REAL CHECK (gpu_seconds IS NULL OR gpu_seconds >= 0);
"""

_MIGRATIONS: dict[int, str] = {1: _SCHEMA_V1, 2: _SCHEMA_V2, 3: _SCHEMA_V3,
                               4: _SCHEMA_V4.replace("{columns}", COLUMNS), 5: _SCHEMA_V5,
                               6: _SCHEMA_V6, 7: _SCHEMA_V7}


def configure(conn: sqlite3.Connection, path: Path) -> None:
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
        raise StoreError(corrupt_message(path, "; ".join(problems[:3])))
    migrate(conn, path)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
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


def corrupt_message(path: Path, detail: str) -> str:
    return (f"the experiment store {path} is not a readable SQLite database ({detail}). Move it aside "
            f"(e.g. `mv {path} {path}.broken`, with any {path.name}-wal and {path.name}-shm next to it) and run "
            "again: a new, empty store is created. The experiments' logs (.autoresearch/runs) and the git "
            "history of the autoresearch/<tag> branches remain.")


