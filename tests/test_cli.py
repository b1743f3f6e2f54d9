"""The real command line, end to end, with tiny budgets."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder
from fakehub import FakeHub
from test_sources import FILES


def test_init_creates_a_task_and_refuses_to_clobber_it(tmp_path):
    cli("init", "t", cwd=tmp_path)
    task = tmp_path / "t"
    for name in ("train.py", "program.md", "autoresearch.toml", ".gitignore"):
        assert (task / name).exists()
    assert (task / ".git").is_dir()
    assert "budget_seconds = 60.0" in (task / "autoresearch.toml").read_text()
    again = cli("init", "t", cwd=tmp_path, check=False)
    assert again.returncode == 2 and "--force" in again.stderr


def test_prepare_train_and_bench_end_to_end(tiny_task):
    first = cli("prepare", cwd=tiny_task)
    assert "built in" in first.stdout and "floor bpb" in first.stdout
    for split in ("train", "val", "test"):
        assert split in first.stdout
    second = cli("prepare", cwd=tiny_task)
    assert "reused verified cache" in second.stdout

    run = cli("train", "--budget", "5", "--json", cwd=tiny_task)
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["status"] == "ok"
    from autoresearch.config import load_config
    from autoresearch.data.prepare import open_dataset
    stats = open_dataset(load_config(tiny_task).data).split_stats("val")
    assert stats.floor_bpb < summary["val_bpb"] < stats.unigram_bpb
    assert 4.0 <= summary["training_seconds"] < 15 and summary["steps"] > 0 and summary["params"] > 0
    assert summary["total_seconds"] >= summary["training_seconds"]
    assert "step" in run.stderr  # live progress goes to stderr with --json

    human = cli("train", "--budget", "2", "--seed", "1", cwd=tiny_task)
    assert "val_bpb:" in human.stdout and "training_seconds:" in human.stdout

    bench = cli("bench", "--budget", "3", "--json", cwd=tiny_task)
    figures = json.loads(bench.stdout.strip().splitlines()[-1])
    assert figures["status"] == "ok" and figures["tokens_per_s"] > 0 and figures["startup_seconds"] >= 0


def test_train_without_data_says_to_prepare(tiny_task):
    result = cli("train", "--budget", "2", cwd=tiny_task, check=False)
    assert result.returncode == 2 and "autoresearch prepare" in result.stderr


def test_a_crashing_train_py_is_reported_with_its_traceback(tiny_task):
    cli("prepare", cwd=tiny_task)
    (tiny_task / "train.py").write_text("raise RuntimeError('boom at start-up')\n")
    result = cli("train", "--budget", "2", "--json", cwd=tiny_task, check=False)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert result.returncode == 1 and summary["status"] == "crash" and "boom at start-up" in summary["error"]


def test_an_over_budget_train_py_is_killed(tiny_task):
    cli("prepare", cwd=tiny_task)
    toml = (tiny_task / "autoresearch.toml").read_text()
    (tiny_task / "autoresearch.toml").write_text(toml.replace("startup_allowance_seconds = 120.0",
                                                              "startup_allowance_seconds = 2.0"))
    (tiny_task / "train.py").write_text("import time\nprint('hanging')\ntime.sleep(600)\n")
    result = cli("train", "--budget", "1", "--json", cwd=tiny_task, check=False, timeout=60)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "timeout" and summary["total_seconds"] < 20


@pytest.mark.parametrize("data", ["s3://bucket/x", "hf:", "hf:noslash", "./does-not-exist"])
def test_unknown_data_forms_are_refused(tiny_task, data):
    result = cli("prepare", "--data", data, cwd=tiny_task, check=False)
    assert result.returncode == 2 and "builtin" in result.stderr + result.stdout


def test_bad_settings_name_the_setting(tiny_task):
    path = tiny_task / "autoresearch.toml"
    path.write_text(path.read_text().replace("vocab_size = 512", "vocab_size = 17"))
    result = cli("prepare", cwd=tiny_task, check=False)
    assert result.returncode == 2 and "vocab_size" in result.stderr


def test_prepare_from_a_hub_dataset_through_a_local_server(tiny_task, monkeypatch, tmp_path):
    with FakeHub() as hub:
        hub.add_dataset("owner/data", FILES)
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        path = tiny_task / "autoresearch.toml"
        path.write_text(path.read_text().replace("vocab_size = 512", "vocab_size = 256"))
        result = cli("prepare", "--data", "hf:owner/data", cwd=tiny_task)
    assert 'source = "hf:owner/data"' in path.read_text()
    assert "owner/data" in result.stdout and "val" in result.stdout
    assert len(hub.file_gets()) == 3


def test_the_installed_console_script_runs(tmp_path):
    script = Path(sys.executable).parent / "autoresearch"  # installed next to the interpreter by pip
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "prepare" in result.stdout


def test_text_from_agents_is_printed_as_it_is_never_as_markup(tmp_path):
    # rich reads [tags] in what it prints: a description with "[/2]" in it once crashed the loop's printer
    task = generic_task_folder(tmp_path, "RATE = 0.1\nprint(f'score: {RATE:.6f}')\n")
    patches = task / "patches.json"
    described = "use RATE[/2] and [bold]louder[/bold]"
    patches.write_text(json.dumps([{"description": described,
                                    "edits": [{"file": "solve.py", "search": "RATE = 0.1", "replace": "RATE = 0.2"}]}]))
    done = cli("run", "--agent", f"replay:{patches}", "--tag", "m", cwd=task)
    assert f"experiment 1: {described}" in done.stdout
