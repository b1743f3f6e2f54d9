"""claude, codex and aider through the real CLI, with fake executables on PATH that accept the real flags,
print the real output formats and edit files in place (tests/fakebin)."""

import json
import os
from pathlib import Path

import pytest
from conftest import cli

from autoresearch.store import Status, Store

FAKEBIN = Path(__file__).resolve().parent / "fakebin"
SOLVE_PY = ("RATE = 0.1\nWIDTH = 4\nscore = 1.0 - (RATE - 0.3) ** 2 - 0.01 * (WIDTH - 6) ** 2\n"
            "print(f'score: {score:.6f}')\n")


@pytest.fixture
def task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", f"{FAKEBIN}{os.pathsep}{os.environ['PATH']}")
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "solve.py").write_text(SOLVE_PY)
    cli("init", str(folder), "--command", "python solve.py", "--metric-regex", r"^score:\s*(\S+)", "--maximize",
        "--editable", "solve.py", cwd=tmp_path)
    return folder


@pytest.mark.parametrize("agent", ["claude", "codex", "aider:test-model"])
def test_a_coding_agent_proposes_fixes_and_improves(task, agent):
    cli("run", "--agent", agent, "--tag", "a", "--max-experiments", "4", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("a")
    assert [(e.status, e.description) for e in history] == [
        (Status.KEEP, "baseline"),
        (Status.CRASH, "RATE 0.1 -> 0.3"),
        (Status.KEEP, "RATE 0.1 -> 0.3; fix: use the right variable name"),
        (Status.KEEP, "WIDTH 4 -> 6"),
    ]
    assert history[3].metric == pytest.approx(1.0) and history[1].agent == agent
    metrics = history[3].metrics
    assert metrics["agent_seconds"] > 0
    if agent == "claude":
        assert metrics["agent_cost_usd"] == pytest.approx(0.0123) and metrics["agent_tokens_in"] == 1000
    if agent == "codex":
        assert metrics["agent_tokens_in"] == 700 and metrics["agent_tokens_out"] == 40
    last_prompt = (task / ".autoresearch" / "agent" / "prompt.md").read_text()
    assert "RATE 0.1 -> 0.3; fix: use the right variable name" in last_prompt  # the memory of what was tried


def test_a_missing_executable_is_named_before_the_first_experiment(task, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    result = cli("run", "--agent", "codex", "--tag", "m", cwd=task, check=False)
    assert result.returncode == 2 and "codex is not on PATH" in result.stderr and "npm install" in result.stderr
    assert not (task / ".autoresearch" / "logs" / "m").exists()


def test_an_agent_error_is_a_rejected_proposal(task, tmp_path, monkeypatch):
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "claude").write_text("#!/bin/sh\necho '" + json.dumps(
        {"type": "result", "is_error": True, "result": "Credit balance is too low"}) + "'\n")
    (broken / "claude").chmod(0o755)
    monkeypatch.setenv("PATH", f"{broken}{os.pathsep}{os.environ['PATH']}")
    cli("run", "--agent", "claude", "--tag", "e", "--max-experiments", "2", cwd=task)
    with Store.open(task) as store:
        rejected = store.experiments("e")[1]
    assert rejected.status is Status.REJECTED and "Credit balance is too low" in rejected.error
