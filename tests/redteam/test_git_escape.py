"""Git as a way out: coding agents write git's configuration, which names programs (filters, fsmonitor, hooks) that
git starts when the harness runs it, outside every box. Run through the real command line. (A candidate train.py
that does the same through the worktree's `.git` file is the red team's `git-escape`: redteam_suite.py.)

- A `cmd:` agent writes a filter, an fsmonitor, a hook and an include into the task's `.git` folder, and a
  `.gitattributes`: in the agent's box git's files are read-only; without it (`[agent] box = false`) the harness
  finds the change right after the session, puts it back and rejects the proposal.

Either way the payload (a command that leaves a marker file) never runs and the repository stays whole.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import cli
from repo_whole import assert_repository_whole

from autoresearch.run import sandbox
from autoresearch.store import Status, Store

pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out

# A `cmd:` agent: argv[1] the task folder, argv[2] the payload's file.
AGENT = r'''
import os, subprocess, sys
task, marker = sys.argv[1], sys.argv[2]
run = f"touch {marker}; cat"
said = []
def attempt(name, path, text):
    try:
        with open(path, "a") as f:
            f.write(text)
        said.append(name + " written")
    except OSError as err:
        said.append(f"{name} refused")
git = os.path.join(task, ".git")
open(os.path.join(task, "theirs.cfg"), "w").write(f'[core]\n\tfsmonitor = "{run}"\n')
attempt("config", os.path.join(git, "config"),
        f'[filter "evil"]\n\tclean = "{run}"\n\tsmudge = "{run}"\n[include]\n\tpath = {task}/theirs.cfg\n')
attempt("hook", os.path.join(git, "hooks", "pre-commit"), f"#!/bin/sh\n{run}\n")
attempt("link", ".git", "\n")
open(".gitattributes", "w").write("* filter=evil\n")
text = open("solve.py").read()
open("solve.py", "w").write(text.replace("RATE = 0.1", "RATE = 0.2"))  # as long as before: git must read it
log = subprocess.run(["git", "log", "-1", "--format=%s"], capture_output=True, text=True)
said.append("git log " + ("read" if log.returncode == 0 and log.stdout.strip() else "failed"))
print("Description: " + "; ".join(said))
'''

TAG = "escape"
SOLVE_PY = "RATE = 0.1\nscore = 1.0 - (RATE - 0.3) ** 2\nprint(f'score: {score:.6f}')\n"


@pytest.fixture
def generic_task(tmp_path: Path) -> Path:
    task = tmp_path / "task"
    task.mkdir()
    (task / "solve.py").write_text(SOLVE_PY)
    cli("init", str(task), "--command", "python solve.py", "--metric-regex", r"^score:\s*(\S+)", "--maximize",
        "--editable", "solve.py", cwd=tmp_path)
    return task


@pytest.mark.parametrize("box", [True, False])
def test_an_agent_that_writes_git_configuration_runs_nothing_outside(generic_task, tmp_path, box):
    task = generic_task
    if box and sandbox.isolation() != "bwrap":
        pytest.skip("the agent's box needs bubblewrap")
    toml = (task / "autoresearch.toml").read_text()
    assert "box = true" in toml
    if not box:
        (task / "autoresearch.toml").write_text(toml.replace("box = true", "box = false"))
    (tmp_path / "agent.py").write_text(AGENT)
    marker = tmp_path / "PAYLOAD-RAN"
    cli("run", "--agent", f"cmd:python3 {tmp_path / 'agent.py'} {task} {marker}", "--tag", "a",
        "--max-experiments", "2", cwd=task)
    with Store.open(task) as store:
        proposal = store.experiments("a")[1]
    assert proposal.status is Status.REJECTED, proposal.error
    if box:  # nothing of git's reached, but git could be read; the .gitattributes is an edit out of scope
        assert proposal.description == "config refused; hook refused; link refused; git log read", proposal.error
        assert "edits outside the editable files" in proposal.error and ".gitattributes" in proposal.error
    else:
        assert "the agent changed the repository's git configuration" in proposal.error, proposal.error
        assert ".git/config" in proposal.error and ".git/hooks/pre-commit" in proposal.error
        assert "restored; proposal rejected" in proposal.error
    assert not marker.exists()
    assert_repository_whole(task, task / ".autoresearch" / "worktrees" / "a")
