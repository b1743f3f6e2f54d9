"""The research loop end to end with the replay agent: failures, decisions, git, store, resume."""

import json
import subprocess
from pathlib import Path

import pytest
from conftest import cli

from autoresearch.agents.replay import ReplayAgent
from autoresearch.config import ConfigError, config_from_dict, load_config
from autoresearch.data.prepare import open_dataset
from autoresearch.loop import Loop
from autoresearch.store import Status, Store

NAN_EDIT = {"file": "train.py", "search": "accum_steps, autocast)  # a GPU", "replace": "accum_steps, autocast) * float('nan')  # a GPU"}
REAL_EDIT = {"file": "train.py", "search": "WARMDOWN_FRAC = 0.4", "replace": "WARMDOWN_FRAC = 0.5"}

FOREVER = """import json, time
print("@autoresearch " + json.dumps({"event": "start", "params": 1, "device": "cpu"}), flush=True)
time.sleep(600)
"""
PROPOSALS = [
    {"description": "edit the protocol", "files": {"autoresearch.toml": "[train]\nbudget_seconds = 999.0\n"}},
    {"description": "change nothing"},
    {"description": "syntax error", "files": {"train.py": "def broken(:\n"}},
    {"description": "exit with an error", "files": {"train.py": "import sys\nsys.exit(3)\n"}},
    {"description": "train forever", "files": {"train.py": FOREVER}},  # starts, then never stops
    {"description": "NaN loss", "edits": [NAN_EDIT]},
    {"description": "longer warmdown", "edits": [REAL_EDIT]},
]


@pytest.fixture
def loop_task(tiny_task: Path, prepare) -> Path:
    toml = (tiny_task / "autoresearch.toml").read_text()
    toml = toml.replace("budget_seconds = 5.0", "budget_seconds = 2.0")
    toml = toml.replace("startup_allowance_seconds = 120.0", "startup_allowance_seconds = 25.0")
    (tiny_task / "autoresearch.toml").write_text(toml.replace("[loop]\n", '[loop]\neditable = ["train.py"]\n'))
    subprocess.run(["git", "commit", "-qam", "tiny settings"], cwd=tiny_task, check=True)
    prepare(tiny_task)
    return tiny_task


def make_loop(task: Path, proposals: list[dict], **kw) -> Loop:
    config = load_config(task)
    return Loop(task, config, open_dataset(config.data), ReplayAgent(proposals), tag="t", **kw)


def branch_log(task: Path) -> list[str]:
    out = subprocess.run(["git", "log", "--format=%s", "autoresearch/t"], cwd=task, capture_output=True,
                         text=True, check=True).stdout
    return out.splitlines()


def test_every_failure_is_recorded_and_the_loop_goes_on(loop_task):
    loop = make_loop(loop_task, PROPOSALS)
    assert loop.run().startswith("all 7 replay proposals used")
    history = loop.store.experiments("t")
    loop.close()
    statuses = [e.status for e in history]
    assert statuses[:7] == [Status.KEEP, Status.REJECTED, Status.REJECTED, Status.CRASH, Status.CRASH,
                            Status.TIMEOUT, Status.CRASH]
    # the strict rule: the real change is kept exactly when it trained to a lower val_bpb than the baseline
    assert statuses[7] is (Status.KEEP if history[7].metric < history[0].metric else Status.DISCARD)
    assert "autoresearch.toml" in history[1].error and "empty" in history[2].error
    assert "SyntaxError" in history[3].error and "nan" in history[6].error.lower()
    assert "past its budget" in history[5].error  # killed at the budget and its overrun, the clock from its start
    assert history[0].description == "baseline" and history[0].metric > 0

    # git: the branch holds the task's commits plus kept experiments only
    kept = [e.description for e in history[1:] if e.status == Status.KEEP]
    assert branch_log(loop_task)[: len(kept)] == list(reversed(kept))
    assert "syntax error" not in branch_log(loop_task)
    # results.tsv: one line per finished experiment, in the reference format
    lines = (loop_task / "results.tsv").read_text().splitlines()
    assert lines[0] == "commit\tval_bpb\tmemory_gb\tstatus\tdescription" and len(lines) == 9
    assert lines[1].split("\t")[3:] == ["keep", "baseline"]
    assert lines[2].split("\t")[:2] == ["-------", "0.000000"]
    # the user's own checkout is untouched
    assert "WARMDOWN_FRAC = 0.4" in (loop_task / "train.py").read_text()
    # every run that trained used a prestarted interpreter (the baseline's started just before it, the others
    # during the run before), which measured the machine's speed first
    trained = [e for e in history if e.status in (Status.KEEP, Status.DISCARD)]
    assert len(trained) >= 2 and all(e.metrics.get("prestarted") for e in trained)
    assert all(len(e.metrics["run_speeds"]) == 1 and e.metrics["run_speeds"][0] > 0 for e in trained)
    # the model a run saved stays for the kept experiments only (`loop.keep_models = "kept"`)
    for e in trained:
        assert (Path(e.log_path).parent / "model" / "model.pt").is_file() == (e.status is Status.KEEP), e


def test_run_command_refuses_bad_input(loop_task, tmp_path):
    missing = cli("run", "--agent", "replay:nope.json", cwd=loop_task, check=False)
    assert missing.returncode == 2 and "replay file" in missing.stderr
    unknown = cli("run", "--agent", "wizard", cwd=loop_task, check=False)
    assert unknown.returncode == 2 and "unknown agent" in unknown.stderr
    nowhere = cli("run", "--agent", "replay:x.json", "--dir", str(tmp_path / "missing"), cwd=tmp_path, check=False)
    assert nowhere.returncode == 2 and "autoresearch init" in nowhere.stderr


def test_run_command_end_to_end_with_status_and_report(loop_task):
    patches = loop_task.parent / "patches.json"
    patches.write_text(json.dumps([{"description": "longer warmdown", "edits": [REAL_EDIT]}]))
    result = cli("run", "--agent", f"replay:{patches}", "--tag", "t", "--max-experiments", "5", cwd=loop_task)
    assert "loop stopped: all 1 replay proposals used" in result.stdout.replace("\n", " ")
    assert len((loop_task / "results.tsv").read_text().splitlines()) == 3
    again = cli("run", "--agent", f"replay:{patches}", "--tag", "t", cwd=loop_task, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr
    status = json.loads(cli("status", "--json", cwd=loop_task).stdout)
    assert status["experiments"][0]["description"] == "baseline" and len(status["experiments"]) == 2
    assert "baseline" in cli("status", cwd=loop_task).stdout
    written = cli("report", "--out", "rep", cwd=loop_task).stdout
    for name in ("results.tsv", "progress.png", "report.md"):
        assert name in written and (loop_task / "rep" / name).exists()
    # the baseline was kept: probed, and measured on the hidden test split (for the report, not the agent)
    with Store.open(loop_task) as store:
        baseline = store.experiments("t")[0]
    assert baseline.metrics["causal_tv"] < 0.01 and 0 < baseline.metrics["test_bpb"] < 10
    assert "test_bpb" not in json.dumps(status) and "test" not in (loop_task / "results.tsv").read_text()
    report = (loop_task / "rep" / "report.md").read_text()
    assert "## Validation vs the hidden test split" in report and "- **Sandbox:**" in report


def test_the_tune_agent_runs_in_the_loop(loop_task):
    result = cli("run", "--tag", "tuned", "--max-experiments", "2", cwd=loop_task)
    assert "loop stopped: reached 2 experiments" in result.stdout.replace("\n", " ")
    status = json.loads(cli("status", "--json", "--tag", "tuned", cwd=loop_task).stdout)
    descriptions = [e["description"] for e in status["experiments"]]
    assert descriptions[0] == "baseline" and all("->" in d for d in descriptions[1:])


def test_the_keep_models_setting_is_checked():
    assert config_from_dict({}).loop.keep_models == "kept"
    with pytest.raises(ConfigError, match="loop.keep_models = 'best': use kept"):
        config_from_dict({"loop": {"keep_models": "best"}}).validate()


def test_a_hopeless_run_is_stopped_early_recorded_as_pruned_and_not_run_again(tiny_task, prepare):
    toml = (tiny_task / "autoresearch.toml").read_text().replace("budget_seconds = 5.0", "budget_seconds = 10.0")
    (tiny_task / "autoresearch.toml").write_text(toml.replace("enabled = false", "enabled = true"))
    subprocess.run(["git", "commit", "-qam", "pruning on"], cwd=tiny_task, check=True)
    prepare(tiny_task)
    frozen = {"file": "train.py", "search": "    if progress < WARMUP_FRAC:",
              "replace": "    if progress >= 0:  # the weights never move\n        return 0.0\n    if progress < WARMUP_FRAC:"}
    patches = tiny_task.parent / "patches.json"
    patches.write_text(json.dumps([{"description": "learn nothing", "edits": [frozen]},
                                   {"description": "learn nothing again", "edits": [frozen]}]))
    out = cli("run", "--agent", f"replay:{patches}", "--tag", "p", cwd=tiny_task).stdout
    assert "-> pruned stopped early at" in out
    with Store.open(tiny_task) as store:
        baseline, hopeless, again = store.experiments("p")
    assert (baseline.status, hopeless.status, again.status) == (Status.KEEP, Status.PRUNED, Status.REJECTED)
    assert hopeless.metric is None and hopeless.error.startswith("stopped early at ")
    assert "for the best at" in hopeless.error and "above their final" in hopeless.error
    assert again.metrics["same_code_as"] == hopeless.seq  # stopped as hopeless is measured: not run again
    log = Path(hopeless.log_path).read_text()
    steps = [json.loads(line.split(" ", 1)[1]) for line in log.splitlines() if line.startswith("@autoresearch ")]
    elapsed = [e["elapsed"] for e in steps if e["event"] == "step"]
    assert 3.5 <= elapsed[-1] <= 7.5 and not [e for e in steps if e["event"] == "done"]  # cut at 35-75% of 10 s
    assert "[autoresearch: stopped early at" in log
    tsv = (tiny_task / "results.tsv").read_text()
    assert "\tpruned\t" in tsv and "learn nothing" in tsv
    shown = cli("show", str(hopeless.seq), cwd=tiny_task).stdout
    assert "pruned" in shown and "stopped early" in shown
    cli("report", "--tag", "p", cwd=tiny_task)
    report = (tiny_task / "report.md").read_text()
    assert "1 pruned" in report and "## Stopped early as hopeless" in report
