"""Experiments to MLflow: an MLflow experiment per tag, a run per autoresearch experiment.

Layout, in the MLflow experiment `autoresearch/<tag>`:
- a run `<tag> line` (tag `autoresearch.kind = line`) whose metric history is the line's progress: the
  task's metric and `best_so_far`, each at step = the experiment's seq (MLflow draws it as a line);
- under it (nested), a run per experiment, named `#<seq> <description>`: params (`export_params`), tags
  (status, agent, the key), metrics (`export_metrics`, at step = seq), each run's metric (`runs/<metric>` at
  step = run number), the training curves (`train/loss`, `train/seconds`, `train/tokens_per_s` at each step,
  timestamped by training time; a second run's as `run-2/train/...`), and the diff as `diff.patch`.

A local folder is an SQLite store (`settings.mlflow_target`), opened under a file lock so that the loops of
`run --parallel` do not create its tables at the same time. What is already there is found by the tag
`autoresearch.key` (and `autoresearch.task`, so that two task folders sharing a tag and a server do not
hide each other's runs); a run that an interrupted export left RUNNING is deleted and sent again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from autoresearch.observe import ObserverError
from autoresearch.observe.track.export import ExperimentExport, cut, plain
from autoresearch.observe.track.libraries import missing, tracker_library
from autoresearch.observe.track.settings import mlflow_target

EXPERIMENT_PREFIX = "autoresearch/"
KEY_TAG, TASK_TAG, KIND_TAG = "autoresearch.key", "autoresearch.task", "autoresearch.kind"
DIFF_ARTIFACT = "diff.patch"
DIFF_MAX_CHARS = 2_000_000  # a larger diff is cut: the store keeps it whole
# MLflow's limits, where `mlflow.utils.validation` does not say (older versions)
_LIMITS = {"MAX_PARAM_VAL_LENGTH": 500, "MAX_TAG_VAL_LENGTH": 5000, "MAX_ENTITY_KEY_LENGTH": 250,
           "MAX_PARAMS_TAGS_PER_BATCH": 100, "MAX_METRICS_PER_BATCH": 1000}
_KEY_FORBIDDEN = re.compile(r"[^\w\-. /:]")  # MLflow keys: alphanumerics, _ - . space / and :
_STATUS_OF = {"crash": "FAILED", "timeout": "FAILED", "pruned": "KILLED"}  # others FINISHED


class MlflowTracker:
    def __init__(self, value: str, *, task_dir: Path, tag: str) -> None:
        self.name = f"track.mlflow ({value})"
        self.tag, self.task = tag, str(task_dir)
        target = mlflow_target(value, task_dir)
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # offline: no usage pings from the library
        tracker_library("mlflow", setting="mlflow", extra="mlflow", value=value)
        if target.local is not None:  # the SQLite store's own requirements
            for module in ("sqlalchemy", "alembic"):
                tracker_library(module, setting="mlflow", extra="mlflow", value=value)
        from mlflow.tracking import MlflowClient
        from mlflow.utils import validation

        self.limits = {name: getattr(validation, name, default) for name, default in _LIMITS.items()}
        for logger in ("mlflow", "alembic"):  # their INFO lines ("Creating initial MLflow database tables")
            logging.getLogger(logger).setLevel(logging.WARNING)
        try:
            with _creating(target.local):
                self.client = MlflowClient(tracking_uri=target.uri)
                self.experiment_id = self._experiment(EXPERIMENT_PREFIX + tag, target.artifacts)
        except ImportError as e:
            raise missing("mlflow", "mlflow", value, e) from e
        except ObserverError:
            raise
        except Exception as e:  # noqa: BLE001 - whatever MLflow raises, the loop's start names the setting
            raise ObserverError(f"track.mlflow = {value!r}: MLflow cannot open {target.uri}: {e}") from e
        self.line_run: str | None = None  # found by `exported_keys`, else made by the first `write`
        self._line_running = False

    def _experiment(self, name: str, artifacts: str | None) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is None:
            return self.client.create_experiment(name, artifact_location=artifacts,
                                                 tags={"autoresearch.tag": plain(self.tag)})
        if found.lifecycle_stage != "active":
            raise ObserverError(f"the MLflow experiment {name!r} is deleted: restore it "
                                f"(`mlflow experiments restore --experiment-id {found.experiment_id}`) or delete "
                                "it for good (`mlflow gc`)")
        return found.experiment_id

    # -- what is there already ----------------------------------------------------------------

    def _our_runs(self) -> Iterator:
        token = None
        while True:
            page = self.client.search_runs([self.experiment_id], max_results=1000, page_token=token)
            for run in page:
                if run.data.tags.get(TASK_TAG) == self.task:
                    yield run
            token = page.token
            if not token:
                return

    def exported_keys(self) -> set[str]:
        keys = set()
        for run in list(self._our_runs()):
            tags = run.data.tags
            if tags.get(KIND_TAG) == "line":
                self.line_run = self.line_run or run.info.run_id
            elif run.info.status == "RUNNING":  # an export cut short: sent again whole
                self.client.delete_run(run.info.run_id)
            elif KEY_TAG in tags:
                keys.add(tags[KEY_TAG])
        return keys

    # -- sending ------------------------------------------------------------------------------

    def write(self, export: ExperimentExport) -> None:
        from mlflow.entities import Metric, Param

        line_run = self._line_run()
        ms = _ms(export.ended_at)
        tags = {KEY_TAG: export.key, TASK_TAG: self.task, KIND_TAG: "experiment", "mlflow.parentRunId": line_run,
                "autoresearch.tag": export.tag, "autoresearch.seq": str(export.seq), "status": export.status,
                "agent": export.params.get("agent", "")}
        run = self.client.create_run(self.experiment_id, start_time=_ms(export.started_at),
                                     run_name=self._tag_value(export.name),
                                     tags={k: self._tag_value(v) for k, v in tags.items()})
        run_id = run.info.run_id
        params = [Param(self._key(k), cut(v, self.limits["MAX_PARAM_VAL_LENGTH"])) for k, v in export.params.items()]
        metrics = [Metric(self._key(k), v, ms, export.seq) for k, v in export.metrics.items()]
        metrics += [Metric(self._key(f"runs/{export.metric_name}"), r.metric, ms, r.number)
                    for r in export.runs if r.metric is not None]
        metrics += [Metric(self._key("runs/seed"), float(r.seed), ms, r.number) for r in export.runs]
        for r in export.runs:
            prefix = "train/" if r.number == 1 else f"run-{r.number}/train/"
            for p in r.curve:
                at = _ms(export.started_at + (p.seconds or 0.0))
                metrics += [Metric(prefix + name, value, at, p.step) for name, value in
                            (("loss", p.loss), ("seconds", p.seconds), ("tokens_per_s", p.tokens_per_s))
                            if value is not None]
        self._log(run_id, params=params)
        self._log(run_id, metrics=metrics)
        self.client.log_batch(line_run, metrics=[Metric(self._key(k), export.metrics[k], ms, export.seq)
                                                 for k in (export.metric_name, "best_so_far") if k in export.metrics])
        if export.diff:
            self.client.log_text(run_id, cut(export.diff, DIFF_MAX_CHARS), DIFF_ARTIFACT)
        self.client.set_terminated(run_id, status=_STATUS_OF.get(export.status, "FINISHED"), end_time=ms)

    def _line_run(self) -> str:
        """The line's run (its progress), found or made; RUNNING while the loop runs."""
        if self._line_running:
            return self.line_run
        if self.line_run is None:
            made = self.client.create_run(self.experiment_id, run_name=self._tag_value(f"{self.tag} line"),
                                          tags={KIND_TAG: "line", TASK_TAG: self._tag_value(self.task),
                                                "autoresearch.tag": self._tag_value(plain(self.tag))})
            self.line_run = made.info.run_id
        else:
            self.client.update_run(self.line_run, status="RUNNING")
        self._line_running = True
        return self.line_run

    def _log(self, run_id: str, *, params: Sequence = (), metrics: Sequence = ()) -> None:
        for batch in _batches(params, self.limits["MAX_PARAMS_TAGS_PER_BATCH"]):
            self.client.log_batch(run_id, params=batch)
        for batch in _batches(metrics, self.limits["MAX_METRICS_PER_BATCH"]):
            self.client.log_batch(run_id, metrics=batch)

    def _key(self, key: str) -> str:
        return cut(_KEY_FORBIDDEN.sub("_", key), self.limits["MAX_ENTITY_KEY_LENGTH"])

    def _tag_value(self, text: str) -> str:
        return cut(text, self.limits["MAX_TAG_VAL_LENGTH"])

    def close(self) -> None:
        if self._line_running:
            self._line_running = False
            self.client.set_terminated(self.line_run, status="FINISHED")


@contextlib.contextmanager
def _creating(local: Path | None) -> Iterator[None]:
    """Hold a lock on a local MLflow folder (made if need be) while its store is opened."""
    if local is None:
        yield
        return
    try:
        local.mkdir(parents=True, exist_ok=True)
        lock = open(local / ".autoresearch.lock", "a")  # noqa: SIM115 - closed below
    except OSError as e:
        raise ObserverError(f"track.mlflow: cannot write the folder {local}: {e}") from e
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))
