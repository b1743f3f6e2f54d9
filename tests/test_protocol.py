"""A run's protocol: the settings its metric is measured under. A run does not resume under settings that
measure differently, and `compare` names the settings in which runs differ."""

import json
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder

from autoresearch import protocol
from autoresearch.config import TaskConfig, generic_config

SOLVE_PY = "RATE = 0.1\nprint(f'score: {1.0 - (RATE - 0.3) ** 2:.6f}')\n"


def test_the_protocol_holds_what_measures_and_only_for_the_built_in_contract_the_data():
    builtin = protocol.of(TaskConfig(), 60.0, "cuda:1")
    assert builtin["eval.tokens"] == TaskConfig().eval.tokens and builtin["device"] == "cuda"
    assert builtin["train.budget_seconds"] == 60.0 and builtin["metric.name"] == "val_bpb"
    assert "data.source" in builtin and "loop.seed" not in builtin and "keep.rule" not in builtin
    generic = protocol.of(generic_config("python solve.py", editable=["solve.py"], metric_name="score",
                                         maximize=True, regex=r"^score:\s*(\S+)"), 60.0, "-")
    assert not any(key.startswith(("data.", "eval.")) for key in generic) and generic["loop.editable"] == ["solve.py"]
    assert protocol.ident(builtin) == protocol.ident(dict(reversed(builtin.items())))
    assert protocol.ident(builtin) != protocol.ident({**builtin, "eval.tokens": 1})


def test_changes_and_differences_name_the_settings():
    a = {"eval.tokens": 100, "train.command": None, "loop.editable": ["a.py"]}
    b = {"eval.tokens": 200, "train.command": "python x.py", "loop.editable": ["a.py", "b.py"]}
    assert protocol.changes(a, b) == ['eval.tokens 100 -> 200', 'loop.editable ["a.py"] -> ["a.py", "b.py"]',
                                      "train.command (none) -> python x.py"]
    assert protocol.changes(a, b, ignore=protocol.STEERING) == ["eval.tokens 100 -> 200",
                                                                 "train.command (none) -> python x.py"]
    assert protocol.changes(a, dict(a)) == []
    assert protocol.differing([("r1", a), ("r2", b), ("r3", a)], ignore=frozenset({"loop.editable"})) == [
        "eval.tokens: 100 (r1, r3); 200 (r2)", "train.command: (none) (r1, r3); python x.py (r2)"]
    assert protocol.differing([("r1", a), ("r2", {**a, "device": "cpu"})]) == ["device: (none) (r1); cpu (r2)"]


@pytest.fixture
def task(tmp_path: Path) -> Path:
    return generic_task_folder(tmp_path, SOLVE_PY)


def _set(task: Path, old: str, new: str) -> None:
    path = task / "autoresearch.toml"
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))


def test_a_run_resumes_only_under_settings_that_measure_alike_and_compare_names_them(task):
    cli("run", "--agent", "tune", "--tag", "a", "--max-experiments", "2", cwd=task)
    _set(task, 'command = "python solve.py"', 'command = "python -u solve.py"')
    refused = cli("run", "--agent", "tune", "--tag", "a", "--resume", "--max-experiments", "3", cwd=task, check=False)
    assert refused.returncode != 0
    assert "train.command python solve.py -> python -u solve.py" in refused.stderr + refused.stdout
    assert "Put the settings in autoresearch.toml back" in refused.stderr + refused.stdout

    cli("run", "--agent", "tune", "--tag", "b", "--max-experiments", "2", cwd=task)  # a new run: its own settings
    _set(task, 'command = "python -u solve.py"', 'command = "python solve.py"')
    _set(task, 'editable = ["solve.py"]', 'editable = ["solve.py", "notes.md"]')  # steering, not measuring
    cli("run", "--agent", "tune", "--tag", "a", "--resume", "--max-experiments", "3", cwd=task)

    findings = json.loads(cli("compare", "--json", cwd=task).stdout)["findings"]
    unlike = [line for line in findings if "different settings" in line]
    assert len(unlike) == 1, findings
    assert "train.command: python solve.py (a); python -u solve.py (b)" in unlike[0]
    assert 'loop.editable: ["solve.py", "notes.md"] (a); ["solve.py"] (b)' in unlike[0]
