"""The confirm rule in the real loop, on a task whose metric is noisy and fast (no training): the baseline
measures the noise over several seeds, a change that does nothing is not kept, a clear gain is kept at once,
a gain within the noise is run again, a restart goes on from the runs already made."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, git

from autoresearch.store import Status, Store

# loss = 1 + (GAIN-free part) - GAIN + noise: the noise depends on the seed the harness passes
LOSS_PY = """import os, random
GAIN = 0.0
noise = random.Random(int(os.environ["AUTORESEARCH_SEED"]) * 7919 + 11).gauss(0.0, 0.01)
print(f"loss: {1.0 - GAIN + noise:.6f}")
"""


def make_task(tmp_path: Path, keep: str = "") -> Path:
    task = tmp_path / "noisy"
    task.mkdir()
    (task / "loss.py").write_text(LOSS_PY)
    cli("init", str(task), "--command", "python loss.py", "--metric-regex", r"^loss:\s*(\S+)", "--metric-name", "loss",
        "--editable", "loss.py", cwd=tmp_path)
    if keep:
        toml = (task / "autoresearch.toml").read_text()
        start = toml.index("[keep]")
        end = toml.find("\n[", start + 1)
        toml = toml[:start] + keep + (toml[end:] if end >= 0 else "")
        (task / "autoresearch.toml").write_text(toml)
    git(task, "add", "-A")
    git(task, "commit", "-q", "--allow-empty", "-m", "noisy task")
    return task


def patches(tmp_path: Path, changes: list[tuple[str, str]]) -> Path:
    path = tmp_path / "patches.json"
    path.write_text(json.dumps([{"description": d, "files": {"loss.py": LOSS_PY.replace("GAIN = 0.0", code)}}
                                for d, code in changes]))
    return path


def test_the_confirm_rule_keeps_real_gains_and_not_noise(tmp_path):
    task = make_task(tmp_path)
    agent = patches(tmp_path, [("nothing of substance", "GAIN = 0.0\nUNUSED = 1"),
                               ("a clear gain", "GAIN = 0.08"),
                               ("a small gain", "GAIN = 0.095")])
    result = cli("run", "--agent", f"replay:{agent}", "--tag", "n", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("n")
    base, null, clear, small = history
    assert base.status is Status.KEEP and len(base.metrics["runs"]) == 3 and base.metrics["run_seeds"] == [0, 1, 2]
    assert base.metric == pytest.approx(sum(base.metrics["runs"]) / 3)
    assert 0.002 < base.metrics["noise_sigma"] < 0.03 and base.metrics["noise_dof"] == 2
    assert null.status is Status.DISCARD, null.metrics
    assert clear.status is Status.KEEP and clear.metrics["confirm_runs"] == 0 and "at once" in clear.metrics["verdict"]
    assert clear.metrics["improvement"] == pytest.approx(base.metric - clear.metric)
    assert clear.metrics["z"] >= 3 and clear.metrics["improvement_stderr"] > 0
    # 0.015 better than the best: within the noise at first, so run again with fresh seeds
    assert small.metrics["confirm_runs"] >= 1 and len(small.metrics["runs"]) == small.metrics["confirm_runs"] + 1
    assert small.metrics["run_seeds"][:2] == [0, 1]
    assert "run again with a fresh seed (run 2)" in result.stdout and "(mean of 3 runs)" in result.stdout
    rows = (task / "results.tsv").read_text().splitlines()
    assert len(rows) == 1 + len(history)  # one row per experiment, whatever its number of runs
    # shown: in status, the report (with the gain's uncertainty) and the progress chart's band
    data = json.loads(cli("status", "--json", "--tag", "n", cwd=task).stdout)
    assert data["noise"]["sigma"] == pytest.approx(base.metrics["noise_sigma"], rel=0.5)
    assert data["noise"]["confirmation_runs"] == sum(e.metrics.get("confirm_runs", 0) for e in history) >= 1
    assert "noise: sigma" in cli("status", "--tag", "n", cwd=task).stdout
    cli("report", "--tag", "n", cwd=task)
    report = (task / "report.md").read_text()
    assert "**Noise:**" in report and f"{clear.metrics['improvement']:+.6f} ± " in report


def test_the_agent_is_told_the_measured_noise():
    from autoresearch.agents import ProposalContext
    from autoresearch.agents.prompt import build_prompt

    prompt = build_prompt(ProposalContext(program="", editable=["train.py"], history=[], best=None, noise=0.0042))
    assert "(none yet)" in prompt  # no history: no results section figures
    from autoresearch.store import Experiment

    base = Experiment(id=1, tag="t", seq=0, parent_commit="a", commit="a", diff="", description="baseline", agent="-",
                      seed=0, status=Status.KEEP, metric=1.0, metrics={"runs": [1.0, 1.01, 0.99]},
                      training_seconds=1.0, total_seconds=1.0, peak_memory_bytes=None, tokens=None, steps=None,
                      log_path=None, started_at=0.0, ended_at=1.0, error=None)
    prompt = build_prompt(ProposalContext(program="", editable=["train.py"], history=[base], best=base, noise=0.0042,
                                          keep_margin=0.0197))
    assert "differ by about 0.0042" in prompt and "(mean of 3 runs)" in prompt
    assert "beat the best by 0.0197 to be kept at once" in prompt
    again = build_prompt(ProposalContext(program="", editable=["train.py"], history=[base], best=base,
                                         best_measured=(1.0, 1.01, 0.99, 1.04)))
    assert "Best so far: val_bpb 1.010000 (mean of 4 runs)" in again  # the re-measurements count


def test_strict_keeps_what_is_lower_by_any_amount(tmp_path):
    task = make_task(tmp_path, keep='[keep]\nrule = "strict"\n')
    agent = patches(tmp_path, [(f"unused {i}", f"GAIN = 0.0\nUNUSED = {i}") for i in range(6)])
    cli("run", "--agent", f"replay:{agent}", "--tag", "s", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("s")
    assert all("runs" not in e.metrics for e in history)  # one run each
    # the unused constant changes nothing, but each seed-0 run is equal: strict keeps none of the ties...
    assert [e.status for e in history[1:]] == [Status.DISCARD] * 6


def test_a_restart_goes_on_from_the_runs_already_made(tmp_path):
    task = make_task(tmp_path)
    env = {**os.environ, "AUTORESEARCH_FAULT": "after-run", "COLUMNS": "200"}
    killed = subprocess.run([sys.executable, "-m", "autoresearch", "run", "--agent", "tune:random", "--tag", "r",
                             "--max-experiments", "1"], cwd=task, env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode != 0  # killed itself after the baseline's first run
    cli("run", "--agent", "tune:random", "--tag", "r", "--resume", "--max-experiments", "1", cwd=task)
    with Store.open(task) as store:
        (base,) = store.experiments("r")
    assert base.status is Status.KEEP and base.metrics["run_seeds"] == [0, 1, 2]  # run 1 was not run again
    assert len(list((Path(base.log_path).parent).glob("run-*"))) == 2


def test_the_best_is_measured_again_every_few_keeps(tmp_path):
    task = make_task(tmp_path, keep='[keep]\nrule = "confirm"\nrecalibrate_every = 1\nnoise_seeds = 2\n')
    agent = patches(tmp_path, [("a clear gain", "GAIN = 0.1"), ("nothing", "GAIN = 0.1\nUNUSED = 0")])
    result = cli("run", "--agent", f"replay:{agent}", "--tag", "c", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("c")
        kept = history[1]
        again = store.remeasured_runs(kept)
    assert kept.status is Status.KEEP and len(again) == 2  # noise_seeds more runs of the new best
    assert history[2].status is Status.DISCARD
    assert "is measured again" in result.stdout


@pytest.mark.parametrize("best_runs", [2, 1])
def test_a_best_kept_on_one_run_is_run_again(tmp_path, best_runs):
    task = make_task(tmp_path, keep=f'[keep]\nrule = "confirm"\nlearn_dof = 0\nrecalibrate_every = 0\n'
                                    f'best_runs = {best_runs}\n')
    agent = patches(tmp_path, [("a huge gain", "GAIN = 0.3"), ("nothing", "GAIN = 0.3\nUNUSED = 0")])
    result = cli("run", "--agent", f"replay:{agent}", "--tag", "b", cwd=task)
    with Store.open(task) as store:
        base, kept, null = store.experiments("b")
        again = store.remeasured_runs(kept)
        assert store.remeasured_runs(base) == []  # the baseline has its noise_seeds runs
    assert kept.status is Status.KEEP and kept.metrics["confirm_runs"] == 0  # kept at once, on one run
    assert null.status is Status.DISCARD
    if best_runs == 2:
        assert len(again) == 1 and abs(again[0] - kept.metric) < 0.1  # one more run of the same code
        assert "measured again: 1 more run, as it was kept on fewer runs than keep.best_runs" in result.stdout
        mean = (kept.metric + again[0]) / 2  # shown as measured: both runs, not the lucky first one alone
        assert json.loads(cli("status", "--json", "--tag", "b", cwd=task).stdout)["best_metric"] == pytest.approx(mean)
        row = (task / "results.tsv").read_text().splitlines()[2].split("\t")
        assert row[3] == "keep" and row[1] == f"{mean:.6f}"
    else:
        assert again == [] and "measured again" not in result.stdout


def test_a_new_best_whose_second_run_fails_is_not_run_again_and_again(tmp_path):
    task = make_task(tmp_path, keep='[keep]\nrule = "confirm"\nlearn_dof = 0\nrecalibrate_every = 0\n')
    flaky = "GAIN = 0.3\nif os.environ['AUTORESEARCH_SEED'] == '1':\n    raise SystemExit('seed 1 fails')"
    agent = patches(tmp_path, [("a huge gain that fails on seed 1", flaky), ("nothing", "GAIN = 0.0  # same"),
                               ("nothing again", "GAIN = 0.0  # again")])
    result = cli("run", "--agent", f"replay:{agent}", "--tag", "f", cwd=task)
    with Store.open(task) as store:
        base, kept, *rest = store.experiments("f")
        assert store.remeasured_runs(kept) == []  # its one extra run failed: nothing recorded
    assert kept.status is Status.KEEP and len(rest) == 2  # the loop went on with the next proposals
    assert result.stdout.count("measured again") == 1  # tried once, not before every proposal


def test_the_best_is_measured_again_on_request(tmp_path):
    task = make_task(tmp_path, keep='[keep]\nrule = "confirm"\nrecalibrate_every = 0\nnoise_seeds = 2\n')
    agent = patches(tmp_path, [("nothing", "GAIN = 0.0  # same"), ("nothing again", "GAIN = 0.0  # again")])
    cli("run", "--agent", f"replay:{agent}", "--tag", "q", "--max-experiments", "2", "--budget", "40", cwd=task)
    with Store.open(task) as store:
        base = store.experiments("q")[0]
        assert store.line("q").budget_seconds == 40  # the run's own budget, for status's progress bar
        assert store.remeasured_runs(base) == []  # recalibrate_every = 0: never on its own
    asked = cli("recalibrate", cwd=task)  # the latest tag, stopped: done when resumed
    assert "run q" in asked.stdout and "2 more runs, when it is resumed" in asked.stdout
    resumed = cli("run", "--agent", f"replay:{agent}", "--tag", "q", "--resume", "--max-experiments", "3", cwd=task)
    assert "measured again: 2 more runs, as asked" in resumed.stdout
    with Store.open(task) as store:
        assert len(store.remeasured_runs(base)) == 2
        assert len(store.experiments("q")) == 3
    again = cli("run", "--agent", f"replay:{agent}", "--tag", "q", "--resume", "--max-experiments", "4",
                "--recalibrate", cwd=task)
    assert again.stdout.count("measured again") == 1  # the served request is not served twice
    with Store.open(task) as store:
        assert len(store.remeasured_runs(base)) == 4


def test_bad_keep_settings_are_named():
    from autoresearch.config import ConfigError, config_from_dict

    keep = config_from_dict({"keep": {"widen_z": 1.5, "noise_seeds": 5}}).validate().keep
    assert keep.thresholds().widen_z == 1.5 and keep.noise_seeds == 5
    for bad, message in [({"rule": "lucky"}, "use confirm"), ({"widen_z": -1}, "widen_z = -1"), ({"learn_dof": -2}, "learn_dof = -2"),
                         ({"noise_seeds": 0}, "noise_seeds"), ({"best_runs": 0}, "best_runs = 0"),
                         ({"speed_tolerance": 1.5}, "speed_tolerance = 1.5: use a fraction"), ({"clear_z": 1.0}, "clear_z >= confirm_z")]:
        with pytest.raises(ConfigError, match=message):
            config_from_dict({"keep": bad}).validate()
