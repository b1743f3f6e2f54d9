"""The experiment store, on real SQLite files: round trips, numbering, results.tsv, other processes, kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoresearch.decide.measured import current_runs, measured
from autoresearch.store import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    AlreadyFinishedError,
    Experiment,
    LineRecord,
    Remeasure,
    Run,
    Status,
    Store,
    StoreError,
    UnknownExperimentError,
)
from autoresearch.store.export import export_results_tsv, results_tsv

SRC = str(Path(__file__).resolve().parents[1] / "src")
ENV = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def proposal(**overrides: object) -> dict:
    return {"tag": "nov27", "parent_commit": "0" * 40, "commit": "1" * 40, "diff": "--- a\n+++ b\n",
            "description": "a change", "agent": "claude", "seed": 0, **overrides}


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path) as s:
        yield s


def test_round_trip_of_every_field(tmp_path: Path) -> None:
    diff = "diff --git a/train.py b/train.py\n-lr = 0.04\n+lr = 0.05\t# tab\n\u00e9\u4e2d\U0001f600\n" * 50
    with Store.open(tmp_path) as store:
        begun = store.begin(tag="nov27", parent_commit="a" * 40, commit="b" * 40, diff=diff,
                            description="raise lr\nto 0.05", agent="claude-x", seed=7, log_path="/runs/1/train.log")
        assert begun.status is Status.RUNNING and not begun.finished
        assert (begun.metric, begun.ended_at, begun.error, begun.metrics) == (None, None, None, {})
        done = store.finish(begun.id, status=Status.DISCARD, metric=1.0123456789, training_seconds=300.5,
                            metrics={"val_bpb_stderr": 0.003, "mfu": 0.41, "nested": {"a": [1, 2.5, None]}},
                            total_seconds=331.25, peak_memory_bytes=45 * 1024**3 + 1, tokens=123_456_789_012,
                            steps=9876, error="log tail\nline 2")
    with Store.open(tmp_path) as store:  # a fresh connection reads back exactly what was written
        again = store.get(begun.id)
        assert again == done and store.experiments() == [done]
    expected = {"id": 1, "tag": "nov27", "seq": 0, "parent_commit": "a" * 40, "commit": "b" * 40, "diff": diff,
                "description": "raise lr\nto 0.05", "agent": "claude-x", "seed": 7, "status": Status.DISCARD,
                "metric": 1.0123456789, "training_seconds": 300.5, "total_seconds": 331.25,
                "metrics": {"val_bpb_stderr": 0.003, "mfu": 0.41, "nested": {"a": [1, 2.5, None]}},
                "peak_memory_bytes": 45 * 1024**3 + 1, "tokens": 123_456_789_012, "steps": 9876,
                "log_path": "/runs/1/train.log", "error": "log tail\nline 2", "started_at": begun.started_at}
    assert {k: getattr(again, k) for k in expected} == expected
    assert begun.started_at <= again.ended_at <= time.time()
    assert isinstance(again.peak_memory_bytes, int) and isinstance(again.metric, float)
    assert again.finished and isinstance(hash(again), int)
    with pytest.raises(AttributeError):
        again.status = Status.KEEP  # type: ignore[misc]
    again.metrics["mfu"] = 99  # a snapshot's dict is its own: the store is not changed through it
    assert store_metrics(tmp_path, 1)["mfu"] == 0.41


def store_metrics(task: Path, experiment_id: int) -> dict:
    with Store.open(task) as store:
        return store.get(experiment_id).metrics


def test_text_is_stored_plain_and_numbers_are_checked(store: Store) -> None:
    exp = store.record(status="crash", **proposal(diff="bad byte \udcff here"), error="x\x00y",
                       metrics={"mfu": float("nan"), "tps": float("inf"), "ok": 1.5}, peak_memory_bytes=2.0**33)
    assert exp.diff == "bad byte \ufffd here" and exp.error == "x\x00y"
    assert exp.metrics == {"mfu": None, "tps": None, "ok": 1.5} and exp.peak_memory_bytes == 2**33
    raw = sqlite3.connect(store.path).execute("SELECT diff, error FROM experiments").fetchone()
    assert raw == ("bad byte \ufffd here", "x\x00y")  # plain text, readable with any SQLite tool
    e = store.begin(**proposal())
    for bad in ({"metric": float("nan")}, {"metric": "1.0"}, {"steps": 1.5}, {"tokens": True},
                {"metrics": {1: 2}}, {"metrics": {"x": object()}}):
        with pytest.raises((ValueError, TypeError)):
            store.finish(e.id, status="discard", **bad)
    with pytest.raises(ValueError, match="needs its metric"):
        store.finish(e.id, status="keep")
    with pytest.raises(ValueError, match="not RUNNING"):
        store.finish(e.id, status=Status.RUNNING)
    with pytest.raises(ValueError, match="unknown status"):
        store.finish(e.id, status="great")
    with pytest.raises(ValueError, match="tag"):
        store.begin(**proposal(tag=""))
    assert store.get(e.id).status is Status.RUNNING  # none of the refused calls wrote anything


def test_seq_is_numbered_per_tag(store: Store) -> None:
    made = [store.begin(**proposal(tag=tag)) for tag in ("a", "b", "a", "a", "b")]
    made.append(store.record(status="rejected", **proposal(tag="b", commit=None)))
    assert [(e.id, e.tag, e.seq) for e in made] == [(1, "a", 0), (2, "b", 0), (3, "a", 1), (4, "a", 2),
                                                    (5, "b", 1), (6, "b", 2)]
    assert [e.id for e in store.experiments("a")] == [1, 3, 4]
    assert [e.id for e in store.experiments()] == [1, 2, 3, 4, 5, 6]
    assert store.experiments("zzz") == [] and store.tags() == ["a", "b"]


def test_finish_twice_raises_and_changes_nothing(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        e = store.begin(**proposal())
        first = store.finish(e.id, status="keep", metric=1.1)
        with pytest.raises(AlreadyFinishedError, match="already finished"):
            store.finish(e.id, status="discard", metric=0.9)
        with pytest.raises(UnknownExperimentError):
            store.finish(999, status="discard")
        with pytest.raises(UnknownExperimentError):
            store.get(999)
    with Store.open(tmp_path) as store:  # a resumed loop is refused just the same
        with pytest.raises(AlreadyFinishedError):
            store.finish(e.id, status="keep", metric=0.5)
        assert store.get(e.id) == first
    conn = sqlite3.connect(tmp_path / ".autoresearch" / "store.sqlite")
    with pytest.raises(sqlite3.IntegrityError, match="cannot be changed"):  # nor behind the store's back
        conn.execute("UPDATE experiments SET metric = 0.1")
    with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
        conn.execute("DELETE FROM experiments")
    conn.close()


def test_record_for_a_rejected_proposal(store: Store) -> None:
    rejected = store.record(status=Status.REJECTED, **proposal(commit=None), error="the patch did not apply")
    assert rejected.status is Status.REJECTED and rejected.commit is None
    assert rejected.error == "the patch did not apply" and rejected.ended_at == rejected.started_at
    assert store.running("nov27") == [] and store.get(rejected.id) == rejected
    with pytest.raises(AlreadyFinishedError):
        store.finish(rejected.id, status="discard")


def test_running_lists_what_a_dead_loop_left(store: Store) -> None:
    a = store.begin(**proposal())
    store.finish(store.begin(**proposal()).id, status="discard", metric=1.0)
    c = store.begin(**proposal())
    store.begin(**proposal(tag="other"))
    assert [e.id for e in store.running("nov27")] == [a.id, c.id]
    store.finish(a.id, status="crash", error="abandoned: the loop was killed")
    assert [e.id for e in store.running("nov27")] == [c.id]


def test_the_incumbent_is_the_latest_keep(store: Store) -> None:
    assert store.incumbent("nov27") is None
    store.finish(store.begin(**proposal()).id, status="keep", metric=1.30)
    store.finish(store.begin(**proposal()).id, status="keep", metric=1.10)
    store.finish(store.begin(**proposal()).id, status="discard", metric=1.00)
    store.finish(store.begin(**proposal()).id, status="crash", error="OOM")
    store.finish(store.begin(**proposal()).id, status="tampered", metric=0.10)
    keep = store.finish(store.begin(**proposal()).id, status="keep", metric=1.20)  # beat 1.10 measured again
    store.begin(**proposal())
    store.finish(store.begin(**proposal(tag="other")).id, status="keep", metric=0.5)
    assert store.incumbent("nov27") == keep and store.incumbent("other").metric == 0.5


def test_results_tsv_exact_bytes(tmp_path: Path, store: Store) -> None:
    gb = 1024**3
    store.finish(store.begin(**proposal(commit="a1b2c3d4e5f60718")).id, status="keep", metric=0.997900123,
                 peak_memory_bytes=int(44.04 * gb))
    store.finish(store.begin(**proposal(commit="b2c3d4e5f6071829", description="lr 0.04\tto 0.05\nand warmup\r\n"
                                        )).id, status="discard", metric=1.005, peak_memory_bytes=int(44.2 * gb))
    store.finish(store.begin(**proposal(commit="c3d4e5f607182930", description="double the width (OOM)")).id,
                 status="crash", peak_memory_bytes=80 * gb, error="CUDA out of memory")
    store.record(status="rejected", **proposal(commit=None, description="edit the evaluator"), error="tampering")
    store.finish(store.begin(**proposal(commit="d4e5f60718293041", description="ReLU\u00b2")).id, status="keep",
                 metric=0.9932, peak_memory_bytes=int(44.06 * gb))
    store.begin(**proposal(commit="e5f6071829304152", description="still running"))
    store.record(status="discard", **proposal(tag="other"), metric=2.0)
    out = tmp_path / "results.tsv"
    out.write_text("stale\n")
    export_results_tsv(measured(store, "nov27"), out)
    assert out.read_bytes() == (
        b"commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
        b"a1b2c3d\t0.997900\t44.0\tkeep\ta change\n"
        b"b2c3d4e\t1.005000\t44.2\tdiscard\tlr 0.04 to 0.05 and warmup  \n"
        b"c3d4e5f\t0.000000\t0.0\tcrash\tdouble the width (OOM)\n"
        b"-------\t0.000000\t0.0\trejected\tedit the evaluator\n"
        b"d4e5f60\t0.993200\t44.1\tkeep\tReLU\xc2\xb2\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".autoresearch", "results.tsv"]  # no temp file left
    export_results_tsv(measured(store, "none-yet"), out)
    assert out.read_bytes() == b"commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"


def test_state_is_a_json_key_value_table(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        assert store.get_state("best_commit") is None and store.get_state("best_commit", "none") == "none"
        store.set_state("best_commit", "abc")
        store.set_state("best_commit", "def")
        store.set_state("agent", {"turn": 3, "notes": ["a", "b"], "x": 1.5, "y": None})
        with pytest.raises(ValueError):
            store.set_state("bad", float("nan"))
        with pytest.raises(ValueError):
            store.set_state("bad", {1, 2})
    with Store.open(tmp_path) as store:
        assert store.get_state("best_commit") == "def"
        assert store.get_state("agent") == {"turn": 3, "notes": ["a", "b"], "x": 1.5, "y": None}
        assert store.get_state("bad", 0) == 0


READER = r"""
import json, sys, time
from pathlib import Path
from autoresearch.store import Store
store = Store.open(Path(sys.argv[1]))
print("ready", flush=True)
reads, last, deadline = 0, 0, time.time() + 30
while time.time() < deadline:
    exps = store.experiments()
    reads += 1
    assert [e.id for e in exps] == list(range(1, len(exps) + 1)), "ids not contiguous"
    assert len(exps) >= last, "a record disappeared"
    last = len(exps)
    for e in exps:
        assert e.status.value == "running" or (e.metric == e.seq / 1000 and e.ended_at), e
    if store.get_state("done"):
        break
print(json.dumps({"reads": reads, "seen": len(store.experiments())}))
"""


def test_a_reader_in_another_process_while_writing(tmp_path: Path, store: Store) -> None:
    reader = subprocess.Popen([sys.executable, "-c", READER, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
        for _ in range(150):
            e = store.begin(**proposal())
            store.finish(e.id, status="discard", metric=e.seq / 1000)
        store.set_state("done", True)
        out, err = reader.communicate(timeout=30)
    finally:
        reader.kill()
    assert reader.returncode == 0, err
    summary = json.loads(out)
    assert summary["seen"] == 150 and summary["reads"] > 1


def test_an_open_read_transaction_does_not_block_the_writer(store: Store) -> None:
    store.begin(**proposal())
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM experiments").fetchone() == (1,)
    started = time.monotonic()
    store.finish(store.begin(**proposal()).id, status="discard", metric=1.0)
    assert time.monotonic() - started < 1.0
    assert reader.execute("SELECT COUNT(*) FROM experiments").fetchone() == (1,)  # its snapshot
    reader.execute("COMMIT")
    reader.close()


LOCKER = r"""
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(1.0)
conn.execute("COMMIT")
"""


def test_a_writer_waits_for_another_process_instead_of_failing(store: Store) -> None:
    locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(store.path)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout.readline().strip() == "locked"
        started = time.monotonic()
        e = store.begin(**proposal())  # waits for the lock (busy timeout) rather than 'database is locked'
        assert time.monotonic() - started > 0.3 and e.seq == 0
    finally:
        locker.wait(timeout=30)


# A loop that never stops writing: on start it settles what a killed predecessor left RUNNING (as a
# resumed loop does), then begin/finish, record and set_state forever. Every field of an experiment is
# derived from one random token, so a half-written record cannot pass for a whole one.
WORKER = r"""
import random, sys
from pathlib import Path
from autoresearch.store import Store
store = Store.open(Path(sys.argv[1]))
for e in store.running("kill"):
    store.finish(e.id, status="crash", error="abandoned: " + e.description)
rng = random.Random()
while True:
    t = "%016x" % rng.getrandbits(64)
    fields = dict(tag="kill", parent_commit=t * 2 + "ab" * 4, diff=t * 1500, description=t, agent="a" + t,
                  seed=int(t[:8], 16))
    if int(t[-1], 16) < 3:
        store.record(status="rejected", commit=None, error="rejected " + t, **fields)
        continue
    e = store.begin(commit=t[::-1] * 2, log_path="/log/" + t, **fields)
    store.finish(e.id, status="keep" if int(t[-1], 16) % 2 else "discard", metric=int(t[:6], 16) / 1e7,
                 metrics={"token": t, "blob": t * 300}, training_seconds=int(t[6:9], 16) / 8, total_seconds=1e3,
                 peak_memory_bytes=int(t[:10], 16), tokens=int(t[2:12], 16), steps=int(t[4:8], 16), error=t)
    store.set_state("last", e.id)
"""


def check_consistent(exp: Experiment) -> None:
    """Every field of `exp` is the one the worker derived from its token: nothing half-written."""
    t = exp.description
    assert len(t) == 16 and (exp.tag, exp.agent, exp.seed) == ("kill", "a" + t, int(t[:8], 16)), exp
    assert exp.parent_commit == t * 2 + "ab" * 4 and exp.diff == t * 1500, exp.id
    assert exp.started_at > 0
    if exp.status is Status.REJECTED:
        assert (exp.commit, exp.error, exp.metric, exp.metrics) == (None, "rejected " + t, None, {}), exp.id
        assert exp.ended_at == exp.started_at
        return
    assert exp.commit == t[::-1] * 2 and exp.log_path == "/log/" + t, exp.id
    if exp.status is Status.RUNNING or exp.status is Status.CRASH:  # begun; maybe settled by a successor
        assert (exp.metric, exp.metrics, exp.steps, exp.tokens, exp.peak_memory_bytes, exp.training_seconds,
                exp.total_seconds) == (None, {}, None, None, None, None, None), exp.id
        assert (exp.ended_at is None) == (exp.status is Status.RUNNING), exp.id
        assert exp.error == (None if exp.status is Status.RUNNING else "abandoned: " + t), exp.id
        return
    assert exp.status is (Status.KEEP if int(t[-1], 16) % 2 else Status.DISCARD), exp.id
    assert (exp.metric, exp.training_seconds, exp.total_seconds) == (int(t[:6], 16) / 1e7, int(t[6:9], 16) / 8,
                                                                     1e3), exp.id
    assert (exp.peak_memory_bytes, exp.tokens, exp.steps) == (int(t[:10], 16), int(t[2:12], 16),
                                                              int(t[4:8], 16)), exp.id
    assert exp.metrics == {"token": t, "blob": t * 300} and exp.error == t, exp.id
    assert exp.ended_at >= exp.started_at, exp.id


def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path) -> None:
    rng = random.Random(20251127)
    landed = 0  # kills that found the worker already writing
    before = 0
    for kill in range(20):
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path)], env=ENV,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.02, 0.5))
        worker.send_signal(signal.SIGKILL)
        _, err = worker.communicate(timeout=30)
        assert worker.returncode == -signal.SIGKILL, err.decode()  # it was still running: never failed

        with Store.open(tmp_path) as store:
            exps = store.experiments()
            assert [e.id for e in exps] == list(range(1, len(exps) + 1)), f"kill {kill}: ids not contiguous"
            assert [e.seq for e in exps] == list(range(len(exps))), f"kill {kill}: seq not contiguous"
            for exp in exps:
                check_consistent(exp)
            running = [e for e in exps if e.status is Status.RUNNING]
            assert len(running) <= kill + 1
            last = store.get_state("last")
            if last is not None:
                assert store.get(last).status in (Status.KEEP, Status.DISCARD)
            landed += len(exps) > before
            before = len(exps)
    # Not vacuous: most kills (17 of 20 here, about 400 experiments in all) hit a worker that was writing.
    assert landed >= 8 and before >= 20, (landed, before)


def test_a_corrupt_file_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / ".autoresearch" / "store.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"these are not the bytes of a database\n" * 200)
    with pytest.raises(StoreError) as info:
        Store.open(tmp_path)
    message = str(info.value)
    assert str(path) in message and "Move it aside" in message and f"mv {path}" in message
    assert "logs" in message and "git history" in message


def test_a_damaged_database_is_refused_at_open(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        for _ in range(20):
            store.record(status="discard", **proposal(diff="x" * 5000), metric=1.0)
        path = store.path
    data = bytearray(path.read_bytes())
    data[3 * 4096:3 * 4096 + 2000] = b"\xab" * 2000
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="Move it aside"):
        Store.open(tmp_path)


def test_a_newer_schema_or_a_foreign_database_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    path = tmp_path / ".autoresearch" / "store.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer autoresearch.*version 99.*Upgrade"):
        Store.open(tmp_path)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (99,)  # left untouched

    other = tmp_path / "other"
    (other / ".autoresearch").mkdir(parents=True)
    conn = sqlite3.connect(other / ".autoresearch" / "store.sqlite")
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not an autoresearch store.*photos"):
        Store.open(other)


def test_open_needs_the_task_folder_and_a_closed_store_says_so(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        Store.open(tmp_path / "missing")
    store = Store.open(tmp_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.experiments()
    assert (tmp_path / ".autoresearch" / "store.sqlite").is_file()


def old_store(task: Path, version: int) -> Path:
    """A store as autoresearch wrote it at schema `version`, with one kept baseline (val_bpb 0.9979)."""
    from autoresearch.store.schema import _MIGRATIONS, _statements

    path = task / ".autoresearch" / "store.sqlite"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    for step in range(1, version + 1):
        for statement in _statements(_MIGRATIONS[step]):
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {version}")
    metric = "val_bpb" if version == 1 else "metric"
    conn.execute("INSERT INTO experiments (tag, seq, parent_commit, commit_sha, diff, description, agent, seed, "
                 f"status, {metric}, started_at, ended_at) VALUES ('old', 0, 'p', 'c', '', 'baseline', '-', 0, "
                 "'keep', 0.9979, 1.0, 2.0)")
    conn.commit()
    conn.close()
    return path


def test_a_version_1_store_is_upgraded_and_keeps_its_results(tmp_path):
    path = old_store(tmp_path, 1)
    with Store.open(tmp_path) as store:
        (old,) = store.experiments("old")
        assert old.metric == 0.9979 and old.status is Status.KEEP
        with pytest.raises(ValueError, match="needs its metric"):  # the CHECK constraint moved with the column
            store.record(status="keep", **proposal())
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO experiments (tag, seq, parent_commit, diff, description, agent, seed, status, "
                    "started_at, ended_at) VALUES ('x', 0, 'p', '', 'd', 'a', 0, 'keep', 1.0, 2.0)")


def test_a_version_2_store_is_upgraded_and_its_experiments_have_no_code_hash(tmp_path):
    path = old_store(tmp_path, 2)
    with Store.open(tmp_path) as store:
        (old,) = store.experiments("old")
        assert (old.metric, old.code_hash) == (0.9979, None)
        store.finish(store.begin(**proposal(tag="old"), code_hash="h1").id, status="discard", metric=1.0)
        assert store.same_code("old", "h1").seq == 1
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_version_3_store_is_rebuilt_for_the_pruned_status_with_its_rows_and_its_guards(tmp_path):
    path = old_store(tmp_path, 3)
    raw = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError):  # what version 3 refuses
        raw.execute("INSERT INTO experiments (tag, seq, parent_commit, diff, description, agent, seed, status, "
                    "started_at, ended_at) VALUES ('x', 0, 'p', '', 'd', 'a', 0, 'pruned', 1.0, 2.0)")
    raw.close()
    with Store.open(tmp_path) as store:
        (old,) = store.experiments("old")
        assert (old.id, old.seq, old.metric, old.status) == (1, 0, 0.9979, Status.KEEP)
        hopeless = store.finish(store.begin(**proposal(tag="old"), code_hash="h").id, status="pruned",
                                error="stopped early")
        assert hopeless.status is Status.PRUNED and hopeless.id == 2 and store.same_code("old", "h").seq == 1
        with pytest.raises(ValueError, match="needs its metric"):
            store.record(status="keep", **proposal())
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert {row[0] for row in raw.execute("SELECT name FROM sqlite_master")} >= {
        "experiments", "experiments_by_code", "experiments_finished_are_final", "experiments_are_never_deleted"}
    assert "experiments_v4" not in {row[0] for row in raw.execute("SELECT name FROM sqlite_master")}
    for forbidden in ("DELETE FROM experiments", "UPDATE experiments SET metric = 0.5 WHERE id = 1"):
        with pytest.raises(sqlite3.IntegrityError, match="autoresearch"):
            raw.execute(forbidden)


def test_the_schema_allows_every_status_and_nothing_else(tmp_path):
    from autoresearch.store.schema import _STATUS_SQL

    assert _STATUS_SQL == ", ".join(f"'{s.value}'" for s in Status)
    with Store.open(tmp_path) as store:
        for status in Status:
            if status is not Status.RUNNING:
                store.record(status=status, metric=1.0, **proposal())
    with pytest.raises(sqlite3.IntegrityError):
        sqlite3.connect(tmp_path / ".autoresearch" / "store.sqlite").execute(
            "INSERT INTO experiments (tag, seq, parent_commit, diff, description, agent, seed, status, started_at, "
            "ended_at) VALUES ('x', 0, 'p', '', 'd', 'a', 0, 'lost', 1.0, 2.0)")


def test_same_code_finds_the_latest_measurement_of_that_code_in_the_tag(store):
    def run(status, code, tag="nov27", metric=1.0):
        return store.finish(store.begin(**proposal(tag=tag), code_hash=code).id, status=status,
                            metric=None if status in ("crash", "timeout") else metric)

    run("keep", "base")
    assert store.same_code("nov27", "base").seq == 0 and store.same_code("nov27", "other") is None
    run("crash", "broken")
    run("timeout", "slow")
    assert store.same_code("nov27", "broken") is None and store.same_code("nov27", "slow") is None  # not measured
    run("discard", "a", metric=1.1)
    run("discard", "a", metric=1.2)
    assert store.same_code("nov27", "a").metric == 1.2
    run("tampered", "cheat", metric=None)
    assert store.same_code("nov27", "cheat").status is Status.TAMPERED
    run("discard", "elsewhere", tag="gpu1")
    assert store.same_code("nov27", "elsewhere") is None and store.same_code("gpu1", "elsewhere").tag == "gpu1"
    rejected = store.record(status="rejected", **proposal(), error="empty proposal")
    assert rejected.code_hash is None  # a proposal that did not run has no code on record
    with pytest.raises(TypeError, match="code_hash"):
        store.begin(**proposal(), code_hash=123)


def test_results_follow_the_metric_name(store):
    for value in (0.80, 0.95, 0.90):
        store.finish(store.begin(**proposal(tag="acc")).id, status="keep", metric=value)
    assert store.incumbent("acc").metric == 0.90
    assert results_tsv(store.experiments("acc"), "accuracy").splitlines()[0] == "commit\taccuracy\tmemory_gb\tstatus\tdescription"


SET_UP_AT_ONCE = """
import sys, time
from pathlib import Path
from autoresearch.agents.tune import TuneAgent
from autoresearch.store import Store
task, start, tag = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
agent = TuneAgent(task, tag=tag, script="loss.py")
while time.time() < start:
    pass
Store.open(task).close()
agent.study(tag)
print("ready")
"""


def test_loops_started_at_the_same_moment_on_a_new_folder_all_set_up_their_tables(tmp_path):
    # several runs started at once (one per GPU) on a folder without a store: each creates the store's schema
    # and its tune study's tables in the same SQLite file; without taking turns, all but one failed
    (tmp_path / "loss.py").write_text("LR = 0.1\nprint(f'loss: {LR}')\n")
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", SET_UP_AT_ONCE, str(tmp_path), str(start), f"gpu{i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [out.strip() for out, _ in outs] == ["ready"] * 4, [err[-500:] for _, err in outs]
    with Store.open(tmp_path) as store:
        assert store.experiments() == []


def test_a_store_made_by_schema_version_4_opens_and_reads_as_it_was_written(tmp_path):
    """tests/data/store-v4.sqlite, made by tests/data/make_store_v4.py (the code of schema version 4): a line
    with the baseline's seeds, a best run again at a new machine speed, a confirmation, a crash and a rejected
    proposal. Its runs, kept then in JSON, are rows of the `runs` table now, as they were written."""
    import shutil

    folder = tmp_path / "old"
    (folder / ".autoresearch").mkdir(parents=True)
    shutil.copy(Path(__file__).parent / "data" / "store-v4.sqlite", folder / ".autoresearch" / "store.sqlite")
    with Store.open(folder) as store:
        history = store.experiments("t")
        assert [(e.seq, e.status.value) for e in history] == [(0, "keep"), (1, "keep"), (2, "discard"),
                                                              (3, "crash"), (4, "rejected"), (5, "keep")]
        base, best = history[0], history[1]
        assert [(r.metric, r.seed, r.speed) for r in store.runs(base)] == [
            (1.0, 0, 100.0), (1.001, 1, 100.0), (1.002, 2, 100.0)]
        assert [(r.metric, r.seed, r.speed) for r in store.runs(best)] == [
            (0.8, 0, 100.0), (0.801, 1, 100.0), (0.802, 2, 50.0), (0.803, 3, 50.0)]
        assert current_runs(store, best) == [0.802, 0.803]  # the runs at the latest speed
        assert [(r.metric, r.seed) for r in store.runs(history[5])] == [(0.79, 0), (0.791, 1)]
        assert store.incumbent("t").seq == 5
        assert [(r.purpose, r.of_best) for r in store.runs(base)] == [("own", False), ("noise", False),
                                                                     ("noise", False)]
        assert [r.of_best for r in store.runs(best)] == [False, True, True, True]
        assert store.runs(history[3]) == [] and store.runs(history[4]) == []  # the crash, the rejected
        assert [r.purpose for r in store.runs(history[5])] == ["own", "confirm"]
        later = store.add_run(best, Run(0.804, 4, 50.0, "remeasure", of_best=True))  # and it goes on
        assert store.runs(best)[-1] == later and len(store.remeasured_runs(best)) == 4
        # version 6: the line's settings, once state entries, are its row; the flags are re-measurements
        line = store.line("t")
        assert (line.budget_seconds, line.speed_tolerance, line.lineup) == (10.0, 0.25, None)
        assert line.phases == {"finish": [0.1, 0.1, 0.1], "startup": [1.0, 1.0, 1.0]}
        assert line.protocol["train.budget_seconds"] == 10.0 and line.protocol["metric.name"] == "val_bpb"
        assert [(r.reason, r.best_id, r.for_id) for r in store.remeasures("t")] == [
            ("settle", best.id, None), ("speed", best.id, history[5].id)]  # settled:2, speed-checked:6
        assert store.line("never-ran") == LineRecord("never-ran")
    raw = sqlite3.connect(folder / ".autoresearch" / "store.sqlite")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 7
    with pytest.raises(sqlite3.IntegrityError, match="a recorded run cannot be changed"):
        raw.execute("UPDATE runs SET metric = 0.1 WHERE experiment_id = 2")
    with pytest.raises(sqlite3.IntegrityError, match="runs are never deleted"):
        raw.execute("DELETE FROM runs")


def test_a_line_is_a_row_set_field_by_field(store):
    assert store.line("l") == LineRecord("l")  # nothing set yet: the defaults
    store.set_line("l", budget_seconds=300, protocol={"device": "cuda"})
    store.set_line("l", speed_tolerance=0.1, lineup="a+b", lineup_since=4)
    line = store.line("l")
    assert (line.budget_seconds, line.protocol, line.speed_tolerance, line.lineup, line.lineup_since) == (
        300.0, {"device": "cuda"}, 0.1, "a+b", 4)
    assert [store.request_recalibration("l") for _ in range(3)] == [1, 2, 3]
    assert store.line("l").recalibrations_requested == 3 and store.line("other").recalibrations_requested == 0
    with pytest.raises(ValueError, match="no line field budget: use"):
        store.set_line("l", budget=3)
    with pytest.raises(ValueError, match="finite"):
        store.set_line("l", budget_seconds=float("inf"))


def test_remeasures_are_recorded_in_order_and_never_changed(tmp_path, store):
    best = store.finish(store.begin(**proposal()).id, status="keep", metric=1.0)
    store.add_remeasure(best, Remeasure(best.id, "settle", 2, 1))
    store.add_remeasure(best, Remeasure(best.id, "requested", 3, 3, requests_served=2))
    assert store.remeasures("nov27") == [Remeasure(best.id, "settle", 2, 1),
                                         Remeasure(best.id, "requested", 3, 3, requests_served=2)]
    assert store.remeasures("other") == []
    with pytest.raises(StoreError, match="reason 'lucky'"):
        store.add_remeasure(best, Remeasure(best.id, "lucky", 1, 1))
    raw = sqlite3.connect(tmp_path / ".autoresearch" / "store.sqlite")
    for forbidden in ("UPDATE remeasures SET runs_made = 9", "DELETE FROM remeasures"):
        with pytest.raises(sqlite3.IntegrityError, match="autoresearch"):
            raw.execute(forbidden)
