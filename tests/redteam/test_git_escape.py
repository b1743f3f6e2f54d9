"""Git as a way out: candidate code and coding agents write git's configuration, which names programs (filters,
fsmonitor, hooks) that git starts when the harness runs it, outside every box. Run through the real command line.

- A candidate train.py points the worktree's `.git` file at a repository of its own whose configuration runs a
  payload from a filter and an fsmonitor, and writes `.gitattributes` naming that filter: in the bubblewrap box
  the `.git` file is covered, and without any box (`AUTORESEARCH_SANDBOX=off`) the harness never reads it.
- A `cmd:` agent writes a filter, an fsmonitor, a hook and an include into the task's `.git` folder, and a
  `.gitattributes`: in the agent's box git's files are read-only; without it (`[agent] box = false`) the harness
  finds the change right after the session, puts it back and rejects the proposal.

Either way the payload (a command that leaves a marker file) never runs and the repository stays whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TOML, cli

from autoresearch.run import sandbox
from autoresearch.store import Status, Store

pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out

# What train.py does first when it trains (not when the evaluation worker imports it); {marker}: the payload's file.
CANDIDATE_ATTACK = '''
import os as _os, subprocess as _sp
_run = "touch {marker}; cat"
_theirs = _os.path.abspath("theirs.git")
_env = dict(_os.environ, GIT_DIR=_theirs, GIT_WORK_TREE=_os.getcwd(), GIT_CONFIG_GLOBAL="/dev/null")
try:  # a repository of its own, which records the worktree's files as they are
    for _args in (["init", "-q"], ["add", "train.py"], ["-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qm", "x"]):
        _sp.run(["git", *_args], env=_env, check=True, capture_output=True)
    with open(_theirs + "/config", "a") as _f:
        _f.write('[filter "evil"]\\n\\tclean = "' + _run + '"\\n\\tsmudge = "' + _run + '"\\n\\trequired = true\\n'
                 '[core]\\n\\tfsmonitor = "' + _run + '"\\n')
    print("REDTEAM git-escape made its repository")
except (OSError, _sp.CalledProcessError) as _err:
    print("REDTEAM git-escape could not make its repository", _err)
open(".gitattributes", "w").write("* filter=evil\\n")
try:
    with open(".git", "w") as _f:
        _f.write("gitdir: " + _theirs + "\\n")
    print("REDTEAM git-escape rewrote .git")
except OSError as _err:
    print("REDTEAM git-escape blocked", _err.errno)
_os.utime("train.py")  # git must read the file again to compare it: through the filter, if it ran one
'''

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


def plain_git(task: Path, *args: str) -> subprocess.CompletedProcess:
    """git as a careful user runs it (none of the user's configuration, no hooks, no fsmonitor)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return subprocess.run(["git", "-c", f"core.hooksPath={os.devnull}", "-c", "core.fsmonitor=false", *args],
                          cwd=task, capture_output=True, text=True,
                          env={**env, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})


def assert_repository_whole(task: Path, worktree: Path) -> None:
    assert plain_git(task, "fsck", "--no-progress").returncode == 0
    assert "evil" not in (task / ".git" / "config").read_text()
    assert not (task / ".git" / "hooks" / "pre-commit").exists()
    assert (worktree / ".git").read_text() == f"gitdir: {task / '.git' / 'worktrees' / worktree.name}\n"
    status = plain_git(worktree, "status", "--porcelain")  # the user's own git works in the worktree
    assert status.returncode == 0 and status.stdout == "", status.stdout + status.stderr


@pytest.fixture(scope="module")
def trained_task(tmp_path_factory):
    """The tiny built-in task, prepared (with a data cache of its own) and its baseline measured once, for the runs
    of both layers, which resume it."""
    root = tmp_path_factory.mktemp("git-escape")
    cache, task = root / "cache", root / "task"
    env = {**os.environ, "AUTORESEARCH_CACHE": str(cache), "COLUMNS": "200"}

    def run(*args: str, cwd: Path) -> None:
        done = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr

    run("init", str(task), cwd=root)
    (task / "autoresearch.toml").write_text(TINY_TOML.replace("budget_seconds = 5.0", "budget_seconds = 2.0"))
    run("prepare", cwd=task)
    (root / "none.json").write_text("[]")
    run("run", "--agent", f"replay:{root / 'none.json'}", "--tag", TAG, "--max-experiments", "1", cwd=task)
    return root, task, cache


@pytest.mark.parametrize("layer", ["bwrap", "off"])
def test_a_candidate_that_rewrites_the_git_file_runs_nothing_outside(trained_task, layer, monkeypatch):
    root, task, cache = trained_task
    if layer == "bwrap" and sandbox.isolation() != "bwrap":
        pytest.skip("no bubblewrap box here")
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(cache))
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "off" if layer == "off" else "")
    marker = root / f"PAYLOAD-RAN-{layer}"  # in the code: each layer's attack is code of its own
    train = (task / "train.py").read_text()
    attack = f"if __name__ == '__main__':\n    exec({CANDIDATE_ATTACK.format(marker=marker)!r})\n\n" + train
    proposals = root / f"proposals-{layer}.json"
    proposals.write_text(json.dumps([{"description": f"git escape {layer}", "files": {"train.py": attack}}] * 3))
    with Store.open(task) as store:
        count = len(store.experiments(TAG))
    cli("run", "--agent", f"replay:{proposals}", "--tag", TAG, "--resume", "--max-experiments", str(count + 1),
        cwd=task)
    with Store.open(task) as store:
        escape = store.experiments(TAG)[-1]
    assert escape.description == f"git escape {layer}" and escape.seq == count
    log = Path(escape.log_path).read_text(errors="replace")
    assert "REDTEAM git-escape made its repository" in log, log[-2000:]
    assert ("REDTEAM git-escape blocked" if layer == "bwrap" else "REDTEAM git-escape rewrote .git") in log
    # measured (or void), like any run: the harness's git went on working; a machine loaded with other work may
    # push the tiny run past its budget, which says nothing about git
    assert escape.status in (Status.KEEP, Status.DISCARD, Status.TAMPERED, Status.TIMEOUT), (escape.status, escape.error)
    assert escape.status is not Status.KEEP or escape.metric > 0.05  # the harness's own measurement
    assert not marker.exists()
    worktree = task / ".autoresearch" / "worktrees" / TAG
    assert not (worktree / ".gitattributes").exists() and not (worktree / "theirs.git").exists()
    assert_repository_whole(task, worktree)


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
