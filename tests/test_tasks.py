"""The other two kinds of task folder, through the real CLI: generic tasks (any command, a metric read
from a regex or a JSON file, either direction) and folders in the reference layout. Also fix attempts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder, git

from autoresearch.config import ConfigError, MetricConfig, TaskConfig, generic_config, load_config
from autoresearch.run.reported import MetricNotFound, from_json, from_output
from autoresearch.store import Status, Store

# A generic task: maximise a score that peaks at RATE = 0.3 and WIDTH = 6; fast and deterministic.
SOLVE_PY = """\
import json, sys

RATE = 0.1  # the tune agent searches these constants
WIDTH = 4

score = 1.0 - (RATE - 0.3) ** 2 - 0.01 * (WIDTH - 6) ** 2
print(f"score: {score:.6f}")
if len(sys.argv) > 1:
    json.dump({"eval": {"score": score}}, open(sys.argv[1], "w"))
"""



def branch_subjects(task: Path, tag: str) -> list[str]:
    return git(task, "log", "--format=%s", f"autoresearch/{tag}").splitlines()


def results(task: Path) -> list[list[str]]:
    return [line.split("\t") for line in (task / "results.tsv").read_text().splitlines()]


@pytest.fixture
def generic_task(tmp_path: Path) -> Path:
    return generic_task_folder(tmp_path, SOLVE_PY, name="generic")


# ---------------------------------------------------------------------------------------------- pure parts


def test_the_metric_is_the_last_matching_line():
    lines = ["step 1 score: 0.1", "score: 0.5", "noise", "score: 0.75 (final)"]
    assert from_output(lines, r"score:\s*([0-9.]+)") == 0.75
    with pytest.raises(MetricNotFound, match="no line of the output matches"):
        from_output(["nothing here"], r"^score:\s*(\S+)")
    with pytest.raises(MetricNotFound, match="nan: the run diverged"):
        from_output(["score: nan"], r"^score:\s*(\S+)")
    with pytest.raises(MetricNotFound, match="is not a number"):
        from_output(["score: high"], r"^score:\s*(\S+)")


def test_the_metric_from_a_json_file(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(MetricNotFound, match="wrote no metrics.json"):
        from_json(path, "score")
    path.write_text(json.dumps({"eval": {"score": 0.25, "flag": True}}))
    assert from_json(path, "eval.score") == 0.25
    with pytest.raises(MetricNotFound, match="no key 'eval.loss'"):
        from_json(path, "eval.loss")
    with pytest.raises(MetricNotFound, match="not a number"):
        from_json(path, "eval.flag")
    path.write_text("{broken")
    with pytest.raises(MetricNotFound, match="not readable JSON"):
        from_json(path, "score")


def test_the_direction_decides_what_is_better():
    assert MetricConfig().better(0.9, 1.0) and not MetricConfig().better(1.0, 1.0)
    up = MetricConfig(name="accuracy", direction="maximize", source="regex", regex="(.*)")
    assert up.better(0.9, 0.8) and not up.better(0.8, 0.9)


@pytest.mark.parametrize("metric, message", [
    (MetricConfig(direction="up"), "use minimize or maximize"),
    (MetricConfig(source="regex", regex=r"score: \S+"), "has no group"),
    (MetricConfig(source="regex", regex="(unclosed"), "not a valid regular expression"),
    (MetricConfig(source="regex"), "metric.regex is empty"),
    (MetricConfig(source="json", json_file="m.json"), "needs json_file"),
    (MetricConfig(source="stdout"), "use evaluator, regex or json"),
    (MetricConfig(direction="maximize"), "evaluator measures val_bpb"),
])
def test_bad_metric_settings_are_named(metric, message):
    with pytest.raises(ConfigError, match=message):
        TaskConfig(metric=metric).validate()


def test_generic_settings_need_exactly_one_metric_source():
    with pytest.raises(ConfigError, match="exactly one"):
        generic_config("python x.py", editable=["x.py"], metric_name="s", maximize=False)
    with pytest.raises(ConfigError, match="FILE:KEY"):
        generic_config("python x.py", editable=["x.py"], metric_name="s", maximize=False, json_spec="m.json")


# ---------------------------------------------------------------------------------------------- end to end


def test_a_generic_task_runs_the_loop_and_maximises_its_metric(generic_task):
    config = load_config(generic_task)
    assert config.metric.maximize and config.train.command == "python solve.py" and not config.evaluated
    cli("prepare", cwd=generic_task)  # nothing to prepare, and says so
    one = cli("train", "--json", cwd=generic_task)
    assert json.loads(one.stdout.strip().splitlines()[-1])["metric"] == pytest.approx(1.0 - 0.04 - 0.04)

    bad = ("import json, sys\nRATE = 0.3\nWIDTH = 6\n")  # prints no score: a crash, not a keep
    patches = generic_task / "patches.json"
    patches.write_text(json.dumps([
        {"description": "RATE 0.1 -> 0.2", "edits": [{"file": "solve.py", "search": "RATE = 0.1", "replace": "RATE = 0.2"}]},
        {"description": "RATE 0.2 -> 0.05", "edits": [{"file": "solve.py", "search": "RATE = 0.2", "replace": "RATE = 0.05"}]},
        {"description": "forget to print", "files": {"solve.py": bad}},
        {"description": "WIDTH 4 -> 6", "edits": [{"file": "solve.py", "search": "WIDTH = 4", "replace": "WIDTH = 6"}]},
    ]))
    cli("run", "--agent", f"replay:{patches}", "--tag", "g", cwd=generic_task)
    rows = results(generic_task)
    assert rows[0] == ["commit", "score", "memory_gb", "status", "description"]
    assert [r[3] for r in rows[1:]] == ["keep", "keep", "discard", "crash", "keep"]
    assert float(rows[5][1]) == pytest.approx(1.0 - 0.01)  # RATE 0.2, WIDTH 6: the higher score was kept
    assert branch_subjects(generic_task, "g")[:3] == ["WIDTH 4 -> 6", "RATE 0.1 -> 0.2", "task"]
    with Store.open(generic_task) as store:
        crash = store.experiments("g")[3]
        assert crash.status is Status.CRASH and "no score" in crash.error and "matches" in crash.error
        assert store.incumbent("g").description == "WIDTH 4 -> 6"

    # one experiment in full: a discarded change is still there to read, and a crash says why
    shown = cli("show", "2", "--tag", "g", cwd=generic_task).stdout
    assert "#2 of g: discard · proposed by replay" in shown and "RATE 0.2 -> 0.05" in shown
    assert "-RATE = 0.2" in shown and "+RATE = 0.05" in shown and "not on the branch" in shown
    assert "against the best before it, #1 at 0.950000" in shown
    crashed = json.loads(cli("show", "3", "--tag", "g", "--json", "--log", "5", cwd=generic_task).stdout)
    assert crashed["status"] == "crash" and "no score" in crashed["error"] and crashed["best_before_seq"] == 1
    assert crashed["log_tail"] is not None and crashed["diff"].count("+RATE = 0.3") == 1
    baseline = json.loads(cli("show", "0", "--tag", "g", "--json", "--log", "3", cwd=generic_task).stdout)
    assert len(baseline["runs"]) == 3 and len(baseline["run_logs"]) == 3  # every seed's log, in the order run
    assert [Path(r["path"]).parent.name for r in baseline["run_logs"]] == ["0000", "run-2", "run-3"]
    assert all(any(line.startswith("score:") for line in r["tail"]) for r in baseline["run_logs"])
    assert "run 3 of 3, last 3 lines of" in cli("show", "0", "--tag", "g", "--log", "3", cwd=generic_task).stdout
    latest = cli("show", "--no-diff", cwd=generic_task).stdout
    assert latest.startswith("#4 of g: keep") and "(on the branch)" in latest and "diff --git" not in latest
    missing = cli("show", "9", cwd=generic_task, check=False)
    assert missing.returncode != 0 and "has experiments #0 to #4: there is no #9" in missing.stderr

    status = json.loads(cli("status", "--json", cwd=generic_task).stdout)
    assert status["metric_name"] == "score" and status["direction"] == "maximize"
    assert status["best_metric"] == pytest.approx(0.99)
    cli("report", cwd=generic_task)
    assert "score" in (generic_task / "report.md").read_text()


def test_the_loop_of_a_generic_task_does_not_load_torch(generic_task):
    """A task of its own command needs no device of ours: the loop process stays light (about 160 MB, not 340)."""
    code = ("import sys\nfrom autoresearch.cli import app\n"
            "try:\n    app(['run', '--agent', 'tune', '--tag', 'light', '--max-experiments', '2'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch loaded:', 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=generic_task, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "reached 2 experiments" in result.stdout and "torch loaded: False" in result.stdout


def test_a_generic_task_with_a_json_metric_and_the_tune_agent(tmp_path):
    task = tmp_path / "json-task"
    task.mkdir()
    (task / "solve.py").write_text(SOLVE_PY)
    cli("init", str(task), "--command", "python solve.py out/metrics.json", "--metric-json",
        "out/metrics.json:eval.score", "--maximize", "--editable", "solve.py", cwd=tmp_path)
    (task / ".gitignore").write_text("__pycache__/\nout/\n")
    git(task, "add", "-A")
    git(task, "commit", "-q", "--allow-empty", "-m", "json task")
    cli("run", "--agent", "tune", "--tag", "j", "--max-experiments", "5", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("j")
    assert len(history) == 5 and all(e.status in (Status.KEEP, Status.DISCARD) for e in history), \
        [(e.status, e.error) for e in history]
    kept = [e.metric for e in history if e.status is Status.KEEP]
    assert kept == sorted(kept) and all(e.metric <= kept[-1] for e in history)  # higher is better
    assert all(("RATE" in e.description or "WIDTH" in e.description) for e in history[1:])


def test_a_reference_layout_folder_is_run_as_it_is(tmp_path, monkeypatch):
    # Like the reference, prepare.py writes its data outside the folder (runs happen in a git worktree).
    monkeypatch.setenv("REFERENCE_DATA", str(tmp_path / "data.txt"))
    task = tmp_path / "reference"
    task.mkdir()
    (task / "prepare.py").write_text("import os\nopen(os.environ['REFERENCE_DATA'], 'w').write('ok')\n")
    (task / "train.py").write_text(
        "import os\nDEPTH = 8\nassert open(os.environ['REFERENCE_DATA']).read() == 'ok'\nprint('---')\n"
        "print(f'val_bpb:          {1.0 - DEPTH / 100:.6f}')\nprint('peak_vram_mb:     2048.0')\n")
    (task / "program.md").write_text("# my program\n")
    git(task, "init", "-q")
    git(task, "add", "-A")
    git(task, "commit", "-q", "--allow-empty", "-m", "reference layout")

    made = cli("init", str(task), cwd=tmp_path)
    assert "reference layout" in made.stdout
    assert (task / "program.md").read_text() == "# my program\n"  # the folder's own files are kept
    config = load_config(task)
    assert config.train.command == "python train.py" and config.metric.source == "regex"
    # where the reference's prepare.py keeps its data, and only that: the split key next to it stays hidden
    assert config.sandbox.read == ["~/.cache/autoresearch/data", "~/.cache/autoresearch/tokenizer"]
    # this prepare.py keeps it elsewhere: the box is told, as a user would tell it
    toml = (task / "autoresearch.toml").read_text()
    toml = toml.replace('read = ["~/.cache/autoresearch/data", "~/.cache/autoresearch/tokenizer"]',
                        f'read = ["{tmp_path / "data.txt"}"]')
    (task / "autoresearch.toml").write_text(toml.replace("env = []", 'env = ["REFERENCE_DATA"]'))
    cli("prepare", cwd=task)  # runs prepare.py
    assert (tmp_path / "data.txt").read_text() == "ok"

    patches = task / "patches.json"
    patches.write_text(json.dumps([
        {"description": "depth 9", "edits": [{"file": "train.py", "search": "DEPTH = 8", "replace": "DEPTH = 9"}]},
        {"description": "depth 7", "edits": [{"file": "train.py", "search": "DEPTH = 9", "replace": "DEPTH = 7"}]},
    ]))
    cli("run", "--agent", f"replay:{patches}", "--tag", "r", cwd=task)
    rows = results(task)
    assert rows == [["commit", "val_bpb", "memory_gb", "status", "description"],
                    [rows[1][0], "0.920000", "2.0", "keep", "baseline"],
                    [rows[2][0], "0.910000", "2.0", "keep", "depth 9"],
                    [rows[3][0], "0.930000", "2.0", "discard", "depth 7"]]


def test_a_crash_gets_bounded_fix_attempts(generic_task):
    broken = SOLVE_PY.replace('print(f"score: {score:.6f}")', 'print(f"score: {scor:.6f}")')
    patches = generic_task / "patches.json"
    patches.write_text(json.dumps([
        {"description": "WIDTH 4 -> 6 (with a typo)", "files": {"solve.py": broken.replace("WIDTH = 4", "WIDTH = 6")}},
        {"description": "still broken", "fix": True, "edits": [{"file": "solve.py", "search": "scor:", "replace": "scre:"}]},
        {"description": "typo fixed", "fix": True, "edits": [{"file": "solve.py", "search": "scre:", "replace": "score:"}]},
        {"description": "a typo nobody fixes", "files": {"solve.py": broken}},
        {"description": "not a fix", "edits": [{"file": "solve.py", "search": "RATE = 0.1", "replace": "RATE = 0.2"}]},
    ]))
    cli("run", "--agent", f"replay:{patches}", "--tag", "f", cwd=generic_task)
    with Store.open(generic_task) as store:
        history = store.experiments("f")
    described = [(e.status.value, e.description) for e in history]
    assert described == [
        ("keep", "baseline"),
        ("crash", "WIDTH 4 -> 6 (with a typo)"),
        ("crash", "WIDTH 4 -> 6 (with a typo); fix: still broken"),
        ("keep", "WIDTH 4 -> 6 (with a typo); fix: typo fixed"),
        ("crash", "a typo nobody fixes"),  # the next proposal is no fix: declined, the loop moves on
        ("keep", "not a fix"),
    ]
    assert "NameError" in history[1].error
    fixed = history[3]
    assert fixed.parent_commit == history[0].commit  # one change on the incumbent: typo and fix squashed
    assert "WIDTH = 6" in fixed.diff and "scor:" not in fixed.diff and "scre:" not in fixed.diff
    assert branch_subjects(generic_task, "f")[:3] == ["not a fix", "WIDTH 4 -> 6 (with a typo); fix: typo fixed",
                                                      "task"]


def test_init_for_a_generic_task_refuses_incomplete_input(tmp_path):
    missing = cli("init", str(tmp_path / "x"), "--command", "python x.py", "--metric-regex", "(.*)", cwd=tmp_path,
                  check=False)
    assert missing.returncode == 2 and "--editable" in missing.stderr
    both = cli("init", str(tmp_path / "y"), "--command", "python x.py", "--editable", "x.py", cwd=tmp_path,
               check=False)
    assert both.returncode == 2 and "exactly one" in both.stderr


# An "LLM" stand-in for the cmd agent: reads the prompt, edits the editable file, describes the change.
FAKE_AGENT = """\
import os, pathlib, sys
prompt = pathlib.Path(sys.argv[1]).read_text()
assert sys.argv[1] == os.environ["AUTORESEARCH_PROMPT_FILE"]
src = pathlib.Path("solve.py").read_text()
if "# Fix this crash" in prompt:
    pathlib.Path("solve.py").write_text(src.replace("scor:", "score:"))
    print("restored the score variable")
elif "RATE 0.1 -> 0.3" not in prompt:
    pathlib.Path("solve.py").write_text(src.replace("RATE = 0.1", "RATE = 0.3").replace("{score:", "{scor:"))
    pathlib.Path(os.environ["AUTORESEARCH_DESCRIPTION_FILE"]).write_text("RATE 0.1 -> 0.3\\n")
else:
    raise SystemExit("out of ideas")
"""


def test_the_cmd_agent_runs_a_command_that_edits_and_fixes(generic_task, tmp_path):
    (tmp_path / "agent.py").write_text(FAKE_AGENT)
    cli("run", "--agent", f"cmd:python3 {tmp_path / 'agent.py'} {{prompt_file}}", "--tag", "c", "--max-experiments", "4",
        cwd=generic_task)
    with Store.open(generic_task) as store:
        history = store.experiments("c")
    assert [(e.status.value, e.description) for e in history] == [
        ("keep", "baseline"),
        ("crash", "RATE 0.1 -> 0.3"),
        ("keep", "RATE 0.1 -> 0.3; fix: restored the score variable"),
        ("rejected", "(no description)"),
    ]
    assert "out of ideas" in history[3].error and "exited with code 1" in history[3].error
    prompt = (generic_task / ".autoresearch" / "agent" / "prompt.md").read_text()
    assert "score (higher is better)" in prompt and "RATE 0.1 -> 0.3; fix:" in prompt


def test_an_unknown_agent_is_named(generic_task):
    result = cli("run", "--agent", "gpt", cwd=generic_task, check=False)
    assert result.returncode == 2 and "unknown agent 'gpt'" in result.stderr and "cmd:<command>" in result.stderr


def test_the_prompt_carries_the_program_the_memory_and_the_crash():
    from autoresearch.agents import ProposalContext
    from autoresearch.agents.prompt import build_prompt
    from autoresearch.store import Experiment

    def exp(seq, status, metric, description, error=None, diff=""):
        return Experiment(id=seq + 1, tag="t", seq=seq, parent_commit="p", commit="c", diff=diff,
                          description=description, agent="cmd", seed=0, status=status, metric=metric, metrics={},
                          training_seconds=None, total_seconds=None, peak_memory_bytes=None, tokens=None,
                          steps=None, log_path=None, started_at=0.0, ended_at=1.0, error=error)

    base = exp(0, Status.KEEP, 0.5, "baseline")
    crash = exp(1, Status.CRASH, None, "wider | faster", error="line\n" * 100 + "ZeroDivisionError", diff="+x = 1/0")
    context = ProposalContext(program="Find the best RATE.", editable=["solve.py"], history=[base, crash],
                              best=base, failure=crash)
    prompt = build_prompt(context, metric_name="score", maximize=True)
    assert "Find the best RATE." in prompt and "Editable files (paths or globs): solve.py" in prompt
    assert "score (higher is better)" in prompt and "Best so far: score 0.500000" in prompt
    assert "| 1 | crash | - | - | +1/-0 | wider \\| faster (ZeroDivisionError) |" in prompt  # escaped cells, the cause
    assert "- #1 crash: wider \\| faster: ZeroDivisionError" in prompt
    assert "# Fix this crash" in prompt and "+x = 1/0" in prompt and "ZeroDivisionError" in prompt
    assert prompt.count("line\n") == 39  # only the log's tail
    plain = build_prompt(ProposalContext(program="", editable=["train.py"], history=[], best=None))
    assert "val_bpb (lower is better)" in plain and "(none yet)" in plain and "Fix this crash" not in plain


def test_the_prompt_keeps_its_size_and_summarises_what_it_cuts():
    from autoresearch.agents import ProposalContext
    from autoresearch.agents.prompt import build_prompt
    from autoresearch.store import Experiment

    def exp(seq, status, metric, description, stderr=None):
        return Experiment(id=seq + 1, tag="t", seq=seq, parent_commit="p", commit="c", diff="",
                          description=description, agent="a", seed=0, status=status, metric=metric,
                          metrics={} if stderr is None else {"val_bpb_stderr": stderr}, training_seconds=None,
                          total_seconds=None, peak_memory_bytes=None, tokens=None, steps=None, log_path=None,
                          started_at=0.0, ended_at=1.0, error=None)

    history = [exp(0, Status.KEEP, 1.0, "baseline", 0.0015)]
    history += [exp(i, Status.DISCARD, 1.0 + i / 1000, f"idea number {i} with a long explanation " * 2, 0.0015)
                for i in range(1, 300)]
    history[7] = exp(7, Status.DISCARD, 1.0001, "almost as good", 0.0015)
    context = ProposalContext(program="Be bold.", editable=["train.py"], history=history, best=history[0],
                              budget_seconds=300)
    prompt = build_prompt(context, max_chars=8000)
    assert len(prompt) <= 8000
    assert "Be bold." in prompt and "training budget of 300 s" in prompt and "±0.0015" in prompt
    assert "300 experiments: 1 keep, 299 discard." in prompt
    assert "| 299 | discard |" in prompt and "| 279 |" not in prompt  # the recent window, one row each
    assert "# Earlier experiments (#0 to #279), summarised" in prompt and "more." in prompt
    assert "- #7: almost as good (val_bpb 1.000100, worse by 0.000100)" in prompt  # a near miss is kept in view
    assert len(build_prompt(context)) > 8000  # the default budget shows more
    assert "No change has been kept in the last 299 experiments" in prompt  # a stall is pointed out
    def stall(n):  # the baseline, then n discards
        return build_prompt(ProposalContext(program="", editable=["train.py"], history=history[:n + 1],
                                            best=history[0]))
    assert "No change has been kept" not in stall(9)
    assert "No change has been kept in the last 10 experiments" in stall(10)
