"""A change whose code was measured already is not run again: what counts as the same code, the worktree's
editable files, the loop with the replay agent (on the fake runner), and the tune agent's view of such a rejection."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import cli
from loopkit import fake_loop, make_task, proposals, settings
from optuna.trial import TrialState
from test_tune import TAG, context, run, task, worktree  # noqa: F401  (task is a fixture)

from autoresearch.agents.prompt import build_prompt
from autoresearch.agents.replay import ReplayAgent
from autoresearch.agents.tune import TuneAgent
from autoresearch.decide.same_code import code_hash
from autoresearch.store import Status, Store
from autoresearch.workspace import Workspace

SOURCE = b'''"""Doc."""
LR = 0.04  # the learning rate
def step(x):
    return x * LR
'''


def test_comments_and_layout_do_not_count_but_the_code_does():
    same = {
        "comments and blank lines": b'"""Doc."""\n# a new comment\n\nLR = 0.04\n\ndef step(x):\n    return x * LR  # why\n',
        "spacing, line breaks, quotes": b"'''Doc.'''\nLR=0.040\ndef step(\n    x,\n):\n    return (x*LR)\n",
    }
    different = {
        "a value": SOURCE.replace(b"0.04", b"0.05"),
        "a name": SOURCE.replace(b"step", b"stride"),
        "an operator": SOURCE.replace(b"x * LR", b"x / LR"),
        "the docstring": SOURCE.replace(b"Doc.", b"Doc!"),
    }
    base = code_hash({"train.py": SOURCE})
    for what, source in same.items():
        assert code_hash({"train.py": source}) == base, what
    for what, source in different.items():
        assert code_hash({"train.py": source}) != base, what
    # the set of files counts, and so does where the code is
    assert code_hash({"train.py": SOURCE, "extra.py": b""}) != base
    assert code_hash({"model.py": SOURCE}) != base
    # other files, and Python that does not parse, are compared byte for byte
    assert code_hash({"train.py": SOURCE, "c.toml": b"a = 1\n"}) != code_hash({"train.py": SOURCE, "c.toml": b"a=1\n"})
    assert code_hash({"train.py": b"def (:\n"}) != code_hash({"train.py": b"def (:  \n"})
    assert code_hash({"train.py": b"x = 1\x00"}) != code_hash({"train.py": b"x = 1"})  # no crash on a NUL byte


def test_editable_files_are_the_covered_files_on_disk_committed_or_not(tmp_path: Path):
    folder = tmp_path / "task"
    (folder / "sub").mkdir(parents=True)
    (folder / "train.py").write_text("a = 1\n")
    (folder / "prepare.py").write_text("harness\n")
    (folder / "sub" / "m.py").write_text("b = 2\n")
    (folder / ".gitignore").write_text("*.log\n")
    workspace = Workspace.ensure(folder)
    workspace.create_branch("autoresearch/w")
    tree = workspace.open_worktree(folder / ".autoresearch" / "worktrees" / "w", "autoresearch/w")
    (tree.path / "new.py").write_text("c = 3\n")  # untracked, not ignored: a commit would record it
    (tree.path / "run.log").write_text("ignored\n")
    (tree.path / "sub" / "m.py").unlink()  # deleted, not committed yet
    (tree.path / "link.py").symlink_to("train.py")
    files = tree.editable_files(["*.py", "sub/", "*.log"])
    assert files == {"train.py": b"a = 1\n", "new.py": b"c = 3\n", "prepare.py": b"harness\n",
                     "link.py": b"symlink:train.py"}
    assert set(tree.editable_files(["train.py"])) == {"train.py"}


BASELINE_PY = "LOSS = 1.0\nROPE_BASE = 10000.0  # rotary embedding base frequency\nMOMENTUM = 0.95\n"


@pytest.mark.parametrize("first", ["kept", "discarded"])
def test_the_loop_does_not_run_a_change_it_measured_already(tmp_path, first):
    folder = make_task(tmp_path, train_py=BASELINE_PY)
    changed = BASELINE_PY.replace("LOSS = 1.0", "LOSS = 0.9" if first == "kept" else "LOSS = 1.1")
    changes = proposals(
        ("the first change", changed),
        ("tidy a comment", (changed if first == "kept" else BASELINE_PY).replace(
            "ROPE_BASE = 10000.0  # rotary embedding base frequency", "\n# rotary embeddings\nROPE_BASE = 1e4\n")),
        ("the first change, say it again", changed.replace("MOMENTUM = 0.95", "MOMENTUM=0.950  # again")),
        ("back to the start", "# the baseline\n" + BASELINE_PY),
        ("less momentum", BASELINE_PY.replace("MOMENTUM = 0.95", "MOMENTUM = 0.9")))
    loop, runner = fake_loop(folder, agent=ReplayAgent(changes), config=settings(keep={"rule": "strict"}))
    try:
        assert loop.run().startswith("all 5 replay proposals used")
        history = loop.store.experiments("t")
        prompt = build_prompt(loop.proposer.context())
    finally:
        loop.close()
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP if first == "kept" else Status.DISCARD,
                                           Status.REJECTED, Status.REJECTED, Status.REJECTED, Status.DISCARD]
    assert len(runner.requests) == 3  # the baseline, the first change, less momentum: nothing else ran
    assert len({e.code_hash for e in (history[0], history[1], history[5])}) == 3
    # a comment-only change of the best measures the best again; the others name what they repeat and its fate
    assert "already measured" in history[2].error and "the best" in history[2].error
    assert history[2].metrics["same_code_as"] == (1 if first == "kept" else 0)
    assert history[3].metrics["same_code_as"] == 1 and "#1" in history[3].error
    assert ("the best" if first == "kept" else "discarded with val_bpb") in history[3].error
    assert history[4].metrics["same_code_as"] == 0 and "#0" in history[4].error
    assert ("kept earlier" if first == "kept" else "the best") in history[4].error
    # nothing ran for them: no log, no commit, and the branch holds kept changes only
    assert [e.log_path for e in history[2:5]] == [None] * 3 and all(e.commit is None for e in history[2:5])
    logs = sorted(p.name for p in (folder / ".autoresearch" / "logs" / "t").iterdir())
    assert logs == ["0000", "0001", "0005"]
    subjects = subprocess.run(["git", "log", "--format=%s", "autoresearch/t"], cwd=folder, check=True,
                              capture_output=True, text=True).stdout
    assert "tidy a comment" not in subjects and "back to the start" not in subjects
    # the agent is told the rule and sees why each was not run
    assert "measured already (comments and layout aside) is not run again" in prompt
    assert prompt.count("already measured") >= 3
    if first == "kept":  # status and the report count them
        (folder / "autoresearch.toml").write_text("")  # the defaults: the commands read the store
        assert "3 rejected (3 already measured)" in cli("status", "--tag", "t", cwd=folder).stdout
        assert json.loads(cli("status", "--json", "--tag", "t", cwd=folder).stdout)["already_measured"] == 3
        cli("report", "--tag", "t", cwd=folder)
        assert "3 of the rejected repeated code already measured" in (folder / "report.md").read_text()


def test_tune_learns_the_earlier_result_of_a_trial_the_loop_did_not_run(task):  # noqa: F811
    with Store.open(task) as store:
        history = [run(store, "baseline", "-", Status.KEEP, 1.5)]
        history.append(run(store, "LR 0.04 -> 0.05", "replay", Status.DISCARD, 1.7))
        agent = TuneAgent(task, "cpu")
        description = agent.propose(worktree(task), context(history)).description
        rejected = store.record(status="rejected", tag=TAG, parent_commit="0" * 40, diff="", description=description,
                                agent="tune", seed=0, error="already measured", metrics={"same_code_as": 1})
        agent.propose(worktree(task), context([*history, rejected]))
        trials = agent.study(TAG).trials
        agent.close()
    linked = [t for t in trials if "experiment_seq" in t.user_attrs]
    assert [(t.state, t.value) for t in linked] == [(TrialState.COMPLETE, 1.7), (TrialState.RUNNING, None)]
