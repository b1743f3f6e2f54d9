"""`[keep] checks`: a user's commands veto a keep. They run in the candidate's box, in a copy of its commit,
through the real CLI loop; a failure makes the candidate rejected with their output, which the agent is shown."""

from __future__ import annotations

import json

from conftest import cli, generic_task_folder, git

from autoresearch.store import Status, Store

CHECK_PY = """\
import pathlib, sys
pathlib.Path("written-by-the-check.txt").write_text("a check's leftovers")
try:
    open(sys.argv[1], "rb").read(16)
    print("the store was readable")
except OSError:
    print("the store is out of sight")
if "RATE = 0.3" in pathlib.Path("solve.py").read_text():
    print("house rule: RATE stays below 0.3")
    sys.exit(3)
"""


def test_a_failed_check_rejects_a_change_the_rule_would_keep(tmp_path):
    task = generic_task_folder(tmp_path, "RATE = 0.1\nprint(f'score: {1 - (RATE - 0.3) ** 2:.6f}')\n")
    (task / "check.py").write_text(CHECK_PY)
    store_path = task / ".autoresearch" / "store.sqlite"
    toml = (task / "autoresearch.toml").read_text()
    assert "checks = []" in toml  # init writes the setting, empty
    (task / "autoresearch.toml").write_text(toml.replace("checks = []", f'checks = ["python check.py {store_path}"]'))
    git(task, "add", "-A")
    git(task, "commit", "-qm", "the house rules")
    steps = [("RATE 0.2", "RATE = 0.1", "RATE = 0.2"), ("RATE 0.3", "RATE = 0.2", "RATE = 0.3")]
    (tmp_path / "p.json").write_text(json.dumps([{"description": d, "edits": [
        {"file": "solve.py", "search": a, "replace": b}]} for d, a, b in steps]))
    done = cli("run", "--agent", f"replay:{tmp_path / 'p.json'}", "--tag", "c", cwd=task).stdout
    assert "#1 would be kept: the checks run" in done and "#2 would be kept: the checks run" in done

    with Store.open(task) as store:
        history = store.experiments("c")
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP, Status.REJECTED]
    vetoed = history[2]
    assert vetoed.error.startswith("checks failed: `python check.py") and "exited with 3" in vetoed.error
    assert "house rule: RATE stays below 0.3" in vetoed.error
    assert vetoed.metrics["checks_failed"] == 1
    import os

    if os.environ.get("AUTORESEARCH_REQUIRE_SANDBOX") or "bwrap" in history[1].metrics.get("isolation", ""):
        assert "the store is out of sight" in vetoed.error  # the box hides the harness's files
    # the branch holds the kept change only, and nothing a check wrote reached the worktree or the task
    assert "RATE = 0.2" in git(task, "show", "autoresearch/c:solve.py")
    assert not list(task.rglob("written-by-the-check.txt"))


def test_the_agent_is_shown_the_checks_that_vetoed_its_last_proposal():
    from autoresearch.agents import ProposalContext
    from autoresearch.agents.prompt import build_prompt
    from autoresearch.store import Experiment

    def experiment(seq, status, description, error=None, metrics=None):
        return Experiment(id=seq + 1, tag="t", seq=seq, parent_commit="a" * 40, commit="b" * 40, diff="",
                          description=description, agent="x", seed=0, status=status, metric=None,
                          metrics=metrics or {}, training_seconds=None, total_seconds=1.0, peak_memory_bytes=None,
                          tokens=None, steps=None, log_path=None, started_at=0.0, ended_at=1.0, error=error)

    vetoed = experiment(1, Status.REJECTED, "RATE 0.3", "checks failed: `ruff check train.py` exited with 1:\n"
                        "train.py:3:1: F401 `os` imported but unused", {"checks_failed": 1})
    history = [experiment(0, Status.KEEP, "baseline"), vetoed]
    prompt = build_prompt(ProposalContext(program="p", editable=["train.py"], history=history, best=history[0],
                                          complexity_cost=0.0001))
    assert "# The checks failed on the last proposal" in prompt and "F401 `os` imported but unused" in prompt
    assert "0.0001 val_bpb more for each line of code it adds" in prompt
    assert "why you expect the change to help" in prompt
    later = build_prompt(ProposalContext(program="p", editable=["train.py"], history=[*history, experiment(
        2, Status.DISCARD, "other")], best=history[0]))
    assert "# The checks failed" not in later and "Code has a price" not in later  # only right after the veto
