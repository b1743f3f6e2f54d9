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
    with Store.open(task) as store:  # each proposal's prompt and what the program printed, for the dashboard
        said = store.transcript(history[3].id)
    assert "RATE 0.1 -> 0.3; fix: use the right variable name" in said["prompt"] and said["answer"].strip()
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


@pytest.mark.skipif(__import__("autoresearch.run.sandbox", fromlist=["x"]).isolation() != "bwrap",
                    reason="the agent's box needs bubblewrap")
def test_a_cmd_agent_cannot_reach_the_store_the_logs_or_the_data(task, tmp_path):
    agent = tmp_path / "snoop.py"
    agent.write_text(
        "import os, sys\n"
        "task = sys.argv[1]\n"
        "seen = [p for p in (os.path.join(task, '.autoresearch', 'store.sqlite'), os.path.join(task, 'report.md'),\n"
        "                    os.path.join(task, 'report.html'),\n"
        "                    os.environ['AUTORESEARCH_CACHE'], os.path.join(task, '.autoresearch', 'logs'))\n"
        "        if os.path.exists(p) and (os.path.isdir(p) and os.listdir(p) or os.path.isfile(p) and open(p, 'rb').read())]\n"
        "prompt = open(os.environ['AUTORESEARCH_PROMPT_FILE']).read()\n"
        "src = open('solve.py').read().replace('RATE = 0.1', 'RATE = 0.2')\n"
        "open('solve.py', 'w').write(src)\n"
        "print('Description: saw ' + (', '.join(os.path.basename(p) for p in seen) or 'nothing') +\n"
        "      ('; prompt read' if prompt else ''))\n")
    (task / "report.md").write_text("| 1 | test_bpb 0.5 |\n")
    (task / "report.html").write_text("<td>test_bpb 0.5</td>\n")
    cache = Path(os.environ["AUTORESEARCH_CACHE"])
    (cache / "data").mkdir(parents=True, exist_ok=True)
    (cache / "data" / "test.npy").write_text("hidden split")
    cli("run", "--agent", f"cmd:python3 {agent} {task}", "--tag", "s", "--max-experiments", "2", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("s")
    assert history[1].description == "saw nothing; prompt read", history[1].description
    assert history[1].status is Status.KEEP  # its edit went through the box to the real worktree
    toml = (task / "autoresearch.toml").read_text()
    assert "box = true" in toml
    (task / "autoresearch.toml").write_text(toml.replace("box = true", "box = false"))
    cli("run", "--agent", f"cmd:python3 {agent} {task}", "--tag", "u", "--max-experiments", "2", cwd=task)
    with Store.open(task) as store:
        unboxed = store.experiments("u")[1].description
    assert "store.sqlite" in unboxed and "report.md" in unboxed and "report.html" in unboxed  # the test looks
