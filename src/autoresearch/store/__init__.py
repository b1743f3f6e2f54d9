"""The experiment store: every experiment of a task, its runs and its lines, as records in one SQLite file.

The store lives at `<task>/.autoresearch/store.sqlite`. It is the one place that says what was tried and
what came of it, so the research loop can run for hundreds of experiments unattended, be killed at any
moment (`kill -9` included) and resume without losing or double-counting a result. It records; it does not
judge: which runs compare and what a best measures now are the decision side's (`decide/`).

- `records.py`: the frozen records (`Experiment`, `Run`, `LineRecord`, `Remeasure`) and the checks values pass;
- `schema.py`: the SQL of every schema version and the migration of a file to the latest;
- `store.py`: `Store`, reading and writing them, one transaction per write;
- `export.py`: results.tsv, rewritten atomically from the store, never a second source of truth.
"""

from autoresearch.store.records import (
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
)
from autoresearch.store.schema import APPLICATION_ID, BUSY_TIMEOUT_S, SCHEMA_VERSION
from autoresearch.store.store import STORE_DIR, STORE_NAME, Store, setup_lock

__all__ = ["APPLICATION_ID", "BUSY_TIMEOUT_S", "PURPOSES", "REMEASURE_REASONS", "SCHEMA_VERSION", "STORE_DIR",
           "STORE_NAME", "AlreadyFinishedError", "Experiment", "LineRecord", "Remeasure", "Run", "Status", "Store",
           "StoreError", "UnknownExperimentError", "setup_lock"]
