"""A change whose code was measured already is not run again: what counts as the same code, the worktree's
editable files, the loop end to end with the replay agent, and the tune agent's view of such a rejection."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import cli
from optuna.trial import TrialState
from test_loop import REAL_EDIT, loop_task, make_loop  # noqa: F401  (loop_task is a fixture)
from test_tune import TAG, context, run, task, worktree  # noqa: F401  (task is a fixture)

from autoresearch.agents.prompt import build_prompt
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


def test_the_loop_does_not_run_a_change_it_measured_already(loop_task):  # noqa: F811
    baseline = (loop_task / "train.py").read_text()
    line = "ROPE_BASE = 10000.0  # rotary embedding base frequency"
    assert line in baseline
    warmdown = baseline.replace(REAL_EDIT["search"], REAL_EDIT["replace"])
    proposals = [
        {"description": "longer warmdown", "edits": [REAL_EDIT]},
        {"description": "tidy a comment", "edits": [{"file": "train.py", "search": line,
                                                     "replace": "\n# rotary embeddings\nROPE_BASE = 1e4\n"}]},
        {"description": "warmdown 0.50, say it again",
         "files": {"train.py": warmdown.replace("WARMDOWN_FRAC = 0.5", "WARMDOWN_FRAC=0.50  # again")}},
        {"description": "back to the start", "files": {"train.py": "# the baseline\n" + baseline}},
        {"description": "less momentum", "edits": [{"file": "train.py", "search": "MUON_MOMENTUM = 0.95",
                                                     "replace": "MUON_MOMENTUM = 0.9"}]},
    ]
    loop = make_loop(loop_task, proposals)
    assert loop.run().startswith("all 5 replay proposals used")
    history = loop.store.experiments("t")
    prompt = build_prompt(loop.proposer.context())
    loop.close()
    assert [e.status for e in history[2:5]] == [Status.REJECTED] * 3
    assert {e.status for e in (history[0], history[1], history[5])} <= {Status.KEEP, Status.DISCARD}
    assert all(e.code_hash for e in (history[0], history[1], history[5]))
    assert len({e.code_hash for e in (history[0], history[1], history[5])}) == 3
    kept_warmdown = history[1].status is Status.KEEP
    # a comment-only change measures the best again; whatever the first change's fate, it is named
    assert "already measured" in history[2].error and "the best" in history[2].error
    assert history[2].metrics["same_code_as"] == (1 if kept_warmdown else 0)
    assert history[3].metrics["same_code_as"] == 1 and "#1" in history[3].error
    assert ("the best" if kept_warmdown else "discarded with val_bpb") in history[3].error
    assert history[4].metrics["same_code_as"] == 0 and "#0" in history[4].error
    assert ("kept earlier" if kept_warmdown else "the best") in history[4].error
    # nothing ran for them: no log, no commit, and the branch holds kept changes only
    assert [e.log_path for e in history[2:5]] == [None] * 3 and all(e.commit is None for e in history[2:5])
    logs = sorted(p.name for p in (loop_task / ".autoresearch" / "logs" / "t").iterdir())
    assert logs == ["0000", "0001", "0005"]
    subjects = subprocess.run(["git", "log", "--format=%s", "autoresearch/t"], cwd=loop_task, check=True,
                              capture_output=True, text=True).stdout
    assert "tidy a comment" not in subjects and "back to the start" not in subjects
    # the agent is told the rule and sees why each was not run
    assert "measured already (comments and layout aside) is not run again" in prompt
    assert prompt.count("already measured") >= 3
    # status and the report count them
    assert "3 rejected (3 already measured)" in cli("status", "--tag", "t", cwd=loop_task).stdout
    assert json.loads(cli("status", "--json", "--tag", "t", cwd=loop_task).stdout)["already_measured"] == 3
    cli("report", "--tag", "t", cwd=loop_task)
    assert "3 of the rejected repeated code already measured" in (loop_task / "report.md").read_text()


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
