"""The disk a run writes to: free space checked before each run, a run that fills it stopped and cleaned up."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import pytest
from conftest import cli

from autoresearch.config import MetricConfig, SandboxConfig, TaskConfig, TrainConfig
from autoresearch.run import diskguard
from autoresearch.run.runner import run_experiment

GB = diskguard.GB


def test_a_run_may_go_on_until_it_writes_too_much_or_the_disk_runs_low():
    limits = {"max_write_gb": 2.0, "min_free_gb": 4.0}
    assert diskguard.overrun(100 * GB, 99 * GB, **limits) is None
    assert diskguard.overrun(100 * GB, 101 * GB, **limits) is None  # someone else freed space
    assert "wrote 3.00 GB" in diskguard.overrun(100 * GB, 97 * GB, **limits)
    low = diskguard.overrun(1.5 * GB, 0.5 * GB, **limits)  # 1 GB written, but under a quarter of 4 GB left
    assert low is not None and "fell to 0.50 GB" in low


def test_too_little_free_disk_is_refused_with_the_fix(tmp_path):
    diskguard.check_free(tmp_path, 0.001)
    with pytest.raises(diskguard.DiskSpaceError, match="min_free_gb"):
        diskguard.check_free(tmp_path, 1e9)


def test_what_an_overrunning_run_wrote_is_deleted_and_nothing_else(tmp_path):
    work, model = tmp_path / "work", tmp_path / "work" / ".autoresearch" / "model"
    model.mkdir(parents=True)
    (work / "train.py").write_text("old")
    (work / ".git").mkdir()
    (work / ".git" / "config").write_text("old")
    (model / "stale.bin").write_text("from an earlier run")
    past = time.time() - 100
    os.utime(model / "stale.bin", (past, past))
    before = diskguard.files_in(work, (".git", ".autoresearch"))
    since = time.time()
    (work / "fill").mkdir()
    for i in range(3):
        (work / "fill" / f"{i}.bin").write_bytes(b"x" * 1000)
    (work / "train.py").write_text("changed, but it was there before")
    (work / ".git" / "new").write_text("not the run's folder to clean")
    (model / "big.bin").write_bytes(b"x" * 5000)
    freed = diskguard.remove_written(work, before, [model], since, (".git", ".autoresearch"))
    assert freed == 8000
    assert not (work / "fill").exists() and not (model / "big.bin").exists()
    assert (work / "train.py").exists() and (model / "stale.bin").exists() and (work / ".git" / "new").exists()


def _filler_task(tmp_path: Path, max_write_gb: float) -> tuple[Path, TaskConfig]:
    task = tmp_path / "task"
    task.mkdir()
    (task / "fill.py").write_text(textwrap.dedent("""
        import os
        os.makedirs("junk", exist_ok=True)
        for i in range(400):  # 400 MB at most: a safety stop, should the watch be missing
            with open(f"junk/{i}.bin", "wb") as f:
                f.write(b"x" * (1 << 20))
                f.flush()
                os.fsync(f.fileno())
        print("score: 1.0")
    """))
    config = TaskConfig(train=TrainConfig(command="python fill.py", budget_seconds=60),
                        metric=MetricConfig(name="score", source="regex", regex=r"^score:\s*(\S+)"),
                        sandbox=SandboxConfig(max_write_gb=max_write_gb, min_free_gb=0.001)).validate()
    return task, config


def test_a_run_that_fills_the_disk_is_stopped_and_its_files_deleted(tmp_path):
    task, config = _filler_task(tmp_path, max_write_gb=0.05)
    outcome = run_experiment(task, config, None, run_dir=tmp_path / "run")
    assert outcome.status == "crash", outcome
    assert "was stopped" in outcome.error and "sandbox.max_write_gb = 0.05" in outcome.error
    assert outcome.metric is None
    assert not (task / "junk").exists() or not any((task / "junk").iterdir())
    assert (task / "fill.py").exists()


def test_a_run_within_its_disk_allowance_is_left_alone(tmp_path):
    task, config = _filler_task(tmp_path, max_write_gb=2.0)
    (task / "fill.py").write_text((task / "fill.py").read_text().replace("range(400)", "range(20)"))
    outcome = run_experiment(task, config, None, run_dir=tmp_path / "run")
    assert outcome.status == "ok" and outcome.metric == 1.0, outcome
    assert len(list((task / "junk").iterdir())) == 20


def test_the_loop_stops_before_a_run_when_the_disk_is_nearly_full(tiny_task, prepare):
    prepare(tiny_task)
    with open(tiny_task / "autoresearch.toml", "a") as f:
        f.write("\n[sandbox]\nmin_free_gb = 1000000\n")
    result = cli("run", "--agent", "tune", "--max-experiments", "2", "--tag", "full", cwd=tiny_task)
    assert "GB free on the disk" in result.stdout and "--resume" in result.stdout
    assert not (tiny_task / "results.tsv").exists() or (tiny_task / "results.tsv").read_text().count("\n") <= 1
    train = cli("train", cwd=tiny_task, check=False)
    assert train.returncode == 2 and "min_free_gb" in train.stderr


def test_a_boxed_run_is_not_charged_with_what_others_write_to_its_disk(tmp_path):
    own, other = tmp_path / "own", tmp_path / "other"
    own.mkdir()
    other.mkdir()
    (own / "old.bin").write_bytes(b"x" * (8 << 20))  # there before the run began: not its writing
    time.sleep(0.05)
    stops: list[str] = []
    watch = diskguard.DiskWatch(tmp_path, stops.append, max_write_gb=0.03, min_free_gb=0.001, own_folders=[own])
    watch.start()
    try:
        (other / "theirs.bin").write_bytes(b"x" * (48 << 20))  # another process's 48 MB, on the same disk
        os.sync()
        time.sleep(4 * diskguard.POLL_SECONDS)
        assert stops == [] and watch.reason is None
        (own / "mine.bin").write_bytes(b"x" * (40 << 20))  # and 40 MB of its own: past 0.03 GB
        os.sync()
        deadline = time.monotonic() + 5
        while not stops and time.monotonic() < deadline:
            time.sleep(diskguard.POLL_SECONDS)
    finally:
        watch.stop()
    assert len(stops) == 1 and "wrote 0.04 GB" in stops[0] and "max_write_gb = 0.03" in stops[0]
    assert diskguard.written_since([own], time.time() + 60) == 0  # nothing modified after a later moment
