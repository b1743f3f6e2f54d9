"""The task repository and the harness's worktree, with real git in temporary folders (no mocks)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from autoresearch.workspace import (
    ConfigSnapshot,
    GitError,
    NothingToCommit,
    Workspace,
    Worktree,
    config_changes,
    matches_scope,
)
from autoresearch.workspace import locks as ws_locks
from autoresearch.workspace.git import _user_cache

BRANCH = "autoresearch/run-1"


@pytest.fixture(autouse=True)
def no_user_git_config(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No global git configuration: the identity fallback is exercised, the user's settings don't leak in."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))


def git(cwd: Path, *args: str) -> str:
    """Plain git, as a user would run it (the tests' own setup and checks)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    result = subprocess.run(["git", "-c", "user.name=tester", "-c", "user.email=t@example.com", *args], cwd=cwd,
                            capture_output=True, text=True, env={**env, "LC_ALL": "C"})
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def make_task(root: Path, files: dict[str, str] | None = None) -> Path:
    task = root / "task"
    task.mkdir()
    for name, text in (files or {"train.py": "lr = 0.1\n", "program.md": "# research\n"}).items():
        (task / name).parent.mkdir(parents=True, exist_ok=True)
        (task / name).write_text(text)
    return task


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.ensure(make_task(tmp_path, {"train.py": "lr = 0.1\n", "program.md": "# research\n",
                                                 "lib/util.py": "X = 1\n", "data.bin": "old\n"}))


@pytest.fixture
def wt(ws: Workspace) -> Worktree:
    ws.create_branch(BRANCH)
    return ws.open_worktree(ws.root / ".autoresearch" / "worktree", BRANCH)


def lock_path(checkout: Path, name: str) -> Path:
    return checkout / git(checkout, "rev-parse", "--git-path", name).strip()


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# -- scope (pure) -------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, editable, expected", [
    ("train.py", ["train.py"], True),
    ("./train.py", ["train.py"], True),
    ("train.py", ["./train.py"], True),
    ("train.pyc", ["train.py"], False),
    ("sub/train.py", ["train.py"], False),
    ("src/a.py", ["src/*.py"], True),
    ("src/x/a.py", ["src/*.py"], False),
    ("a.py", ["src/*.py"], False),
    ("src/a.pyc", ["src/*.py"], False),
    ("a.py", ["*.py"], True),
    ("sub/a.py", ["*.py"], False),
    ("sub/deep/a.py", ["**/*.py"], True),
    ("a.py", ["**/*.py"], True),
    ("src/x/y/a.py", ["src/**"], True),
    ("src/x/a.py", ["src/**/a.py"], True),
    ("src/a.py", ["src/**/a.py"], True),
    ("configs/a/b.yaml", ["configs/"], True),
    ("configs", ["configs/"], True),
    ("configsx/a", ["configs/"], False),
    ("model1.py", ["model?.py"], True),
    ("model12.py", ["model?.py"], False),
    ("model1.py", ["model[0-9].py"], True),
    ("modelx.py", ["model[!0-9].py"], True),
    ("model1.py", ["model[!0-9].py"], False),
    ("Train.py", ["train.py"], False),
    ("a+b(1).py", ["a+b(1).py"], True),
    ("x.py", [], False),
    ("notes.md", ["train.py", "*.md"], True),
])
def test_matches_scope(path, editable, expected):
    assert matches_scope(path, editable) is expected


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../train.py", "a/../b", "a//b"])
def test_matches_scope_rejects_entries_outside_the_task(bad):
    with pytest.raises(ValueError, match="relative to the task folder"):
        matches_scope("train.py", [bad])


# -- ensure -------------------------------------------------------------------------------------------

def test_ensure_on_an_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    ws = Workspace.ensure(folder)
    assert ws.root == folder.resolve() and (folder / ".git").is_dir()
    assert ws.log() == [(ws.head(), "autoresearch: task")]
    assert (folder / ".gitignore").read_text() == ".autoresearch/\n"
    assert git(folder, "log", "-1", "--format=%an <%ae>").strip() == "autoresearch <autoresearch@localhost>"
    assert ws.dirty_files() == []


def test_ensure_commits_the_task_files_but_not_harness_or_ignored_ones(tmp_path):
    task = make_task(tmp_path, {"train.py": "lr = 0.1\n", "sub/helper.py": "pass\n", ".gitignore": "*.log",
                                "run.log": "noise\n", ".autoresearch/state.json": "{}\n"})
    ws = Workspace.ensure(task)
    tracked = git(task, "ls-files").split()
    assert tracked == [".gitignore", "sub/helper.py", "train.py"]
    assert (task / ".gitignore").read_text() == "*.log\n.autoresearch/\n"
    assert ws.dirty_files() == []
    head = ws.head()
    again = Workspace.ensure(task)  # idempotent
    assert again.head() == head and again.log() == ws.log()


def test_ensure_in_an_existing_repository_commits_only_the_gitignore_line(tmp_path):
    task = make_task(tmp_path)
    git(task, "init", "-q")
    git(task, "config", "user.name", "Ada")
    git(task, "config", "user.email", "ada@example.com")
    git(task, "add", "-A")
    git(task, "commit", "-q", "-m", "mine")
    (task / "notes.txt").write_text("staged, not mine to commit\n")
    git(task, "add", "notes.txt")
    ws = Workspace.ensure(task)
    assert [subject for _, subject in ws.log()] == ["autoresearch: ignore .autoresearch/", "mine"]
    assert git(task, "show", "--name-only", "--format=%an", "HEAD").split() == ["Ada", ".gitignore"]
    assert git(task, "diff", "--cached", "--name-only").split() == ["notes.txt"]
    assert ws.dirty_files() == ["notes.txt"]


def test_ensure_refuses_a_subfolder_of_another_repository_unless_nested(tmp_path):
    outer = make_task(tmp_path)
    git(outer, "init", "-q")
    inner = outer / "experiments"
    inner.mkdir()
    (inner / "train.py").write_text("lr = 1\n")
    with pytest.raises(GitError) as info:
        Workspace.ensure(inner)
    assert "not its root" in str(info.value) and "git init" in info.value.hint
    ws = Workspace.ensure(inner, nested=True)
    assert ws.root == inner.resolve() and (inner / ".git").is_dir()
    assert git(inner, "ls-files").split() == [".gitignore", "train.py"]


def test_ensure_refuses_a_tracked_harness_folder(tmp_path):
    task = make_task(tmp_path, {"train.py": "x\n", ".autoresearch/state.json": "{}\n"})
    git(task, "init", "-q")
    git(task, "add", "-A")
    git(task, "commit", "-q", "-m", "oops")
    with pytest.raises(GitError, match="tracked") as info:
        Workspace.ensure(task)
    assert "git rm -r --cached .autoresearch" in info.value.hint


def test_opening_a_folder_that_is_no_repository_says_how_to_fix_it(tmp_path):
    with pytest.raises(GitError) as info:
        Workspace(tmp_path)
    assert "autoresearch init" in str(info.value)
    with pytest.raises(GitError, match="does not exist"):
        Workspace.ensure(tmp_path / "missing")


def test_missing_git_says_install_git(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(GitError) as info:
        Workspace.ensure(tmp_path)
    assert "install git" in str(info.value)


def test_inherited_git_variables_and_user_hooks_are_ignored(ws, monkeypatch):
    hooks = ws.root / "myhooks"
    hooks.mkdir()
    for name in ("pre-commit", "commit-msg", "post-checkout", "reference-transaction"):
        (hooks / name).write_text("#!/bin/sh\nexit 1\n")
        (hooks / name).chmod(0o755)
    git(ws.root, "config", "core.hooksPath", str(hooks))
    monkeypatch.setenv("GIT_DIR", "/nonexistent")
    monkeypatch.setenv("GIT_INDEX_FILE", "/nonexistent/index")
    ws.create_branch(BRANCH)
    wt = ws.open_worktree(ws.root / ".autoresearch" / "wt", BRANCH)
    (wt.path / "train.py").write_text("lr = 0.2\n")
    assert wt.commit("hooks would have refused this") == wt.head()


# -- branches -----------------------------------------------------------------------------------------

def test_branches(ws):
    assert not ws.branch_exists(BRANCH)
    ws.create_branch(BRANCH)
    assert ws.branch_exists(BRANCH) and ws.branch_head(BRANCH) == ws.head()
    with pytest.raises(GitError, match="already exists"):
        ws.create_branch(BRANCH)
    with pytest.raises(GitError, match="not a valid branch name"):
        ws.create_branch("bad..name")
    with pytest.raises(GitError, match="not a valid branch name"):
        ws.branch_exists("--force")
    with pytest.raises(GitError, match="no branch"):
        ws.branch_head("nope")
    with pytest.raises(GitError, match="not a commit"):
        ws.create_branch("other", start="0" * 40)


# -- worktrees ----------------------------------------------------------------------------------------

def test_worktree_is_added_and_reused_after_a_crash(ws):
    ws.create_branch(BRANCH)
    path = ws.root / ".autoresearch" / "worktree"
    wt = ws.open_worktree(path, BRANCH)
    assert wt.path == path.resolve() and wt.branch == BRANCH and wt.current_branch() == BRANCH
    assert (path / "train.py").read_text() == "lr = 0.1\n" and wt.head() == ws.head()
    assert ws.dirty_files() == []  # the worktree inside .autoresearch/ does not dirty the task
    (path / "train.py").write_text("lr = 0.3\n")
    del wt  # the process dies; a new one opens the same worktree
    again = ws.open_worktree(path, BRANCH)
    assert again.changed_files() == ["train.py"]  # uncommitted work is kept: the caller decides
    ws.create_branch("other")
    with pytest.raises(GitError, match="checked out"):
        ws.open_worktree(path, "other")
    with pytest.raises(GitError, match="checked out in"):
        ws.open_worktree(ws.root / ".autoresearch" / "second", BRANCH)
    with pytest.raises(GitError, match="no branch"):
        ws.open_worktree(ws.root / ".autoresearch" / "third", "missing")


def test_worktree_deleted_by_the_user_is_recreated(wt, caplog):
    (wt.path / "train.py").write_text("lost\n")
    shutil.rmtree(wt.path)
    with caplog.at_level(logging.INFO, logger="autoresearch.workspace"):
        again = wt.workspace.open_worktree(wt.path, BRANCH)
    assert (again.path / "train.py").read_text() == "lr = 0.1\n" and again.changed_files() == []
    assert len(git(wt.workspace.root, "worktree", "list").splitlines()) == 2


def test_interrupted_worktree_add_is_redone(wt, caplog):
    git(wt.workspace.root, "worktree", "lock", "--reason", "initializing", str(wt.path))
    (wt.path / "train.py").unlink()  # a checkout that never finished
    with caplog.at_level(logging.WARNING, logger="autoresearch.workspace"):
        again = wt.workspace.open_worktree(wt.path, BRANCH)
    assert "interrupted" in caplog.text
    assert again.changed_files() == [] and (again.path / "train.py").exists()
    assert "locked" not in git(wt.workspace.root, "worktree", "list", "--porcelain")


def test_worktree_survives_moving_the_task_folder(wt, tmp_path, caplog):
    (wt.path / "train.py").write_text("lr = 0.5\n")
    moved = tmp_path / "moved"
    wt.workspace.root.rename(moved)
    ws = Workspace.ensure(moved)
    with caplog.at_level(logging.WARNING, logger="autoresearch.workspace"):
        again = ws.open_worktree(moved / ".autoresearch" / "worktree", BRANCH)
    assert caplog.text == ""  # repaired in place, not recreated: the uncommitted change is still there
    assert again.changed_files() == ["train.py"]
    sha = again.commit("after the move")
    assert ws.branch_head(BRANCH) == sha and (again.path / ".git").read_text().startswith(f"gitdir: {moved}")


def test_worktree_path_holding_other_files_is_refused(ws):
    ws.create_branch(BRANCH)
    path = ws.root / ".autoresearch" / "busy"
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("mine\n")
    with pytest.raises(GitError, match="not a worktree"):
        ws.open_worktree(path, BRANCH)
    assert (path / "keep.txt").read_text() == "mine\n"
    with pytest.raises(GitError, match="cannot hold a worktree"):
        ws.open_worktree(ws.root, BRANCH)


def test_remove_worktree(wt):
    wt.workspace.remove_worktree(wt.path)
    assert not wt.path.exists()
    wt.workspace.remove_worktree(wt.path)  # nothing there: no error
    assert wt.workspace.open_worktree(wt.path, BRANCH).head() == wt.workspace.head()


# -- changes ------------------------------------------------------------------------------------------

def test_changed_files_covers_every_kind_of_change(wt):
    (wt.path / ".gitignore").write_text(".autoresearch/\n*.log\n")
    wt.commit("ignore logs")
    p = wt.path
    (p / "train.py").write_text("lr = 0.2\n")  # modified
    (p / "program.md").unlink()  # deleted
    (p / "lib" / "util.py").rename(p / "lib" / "helpers.py")  # renamed
    (p / "new" / "deep").mkdir(parents=True)
    (p / "new" / "deep" / "a.py").write_text("a\n")  # untracked, in a new folder
    (p / "added.py").write_text("b\n")
    git(p, "add", "added.py")  # staged by someone
    (p / "run.log").write_text("ignored\n")
    (p / ".autoresearch").mkdir()
    (p / ".autoresearch" / "x").write_text("harness\n")
    assert wt.changed_files() == ["added.py", "lib/helpers.py", "lib/util.py", "new/deep/a.py", "program.md",
                                  "train.py"]
    git(p, "add", "-A")  # staged renames are reported by both names as well
    assert wt.changed_files() == ["added.py", "lib/helpers.py", "lib/util.py", "new/deep/a.py", "program.md",
                                  "train.py"]


def test_diff_shows_untracked_files_and_stages_nothing(wt):
    (wt.path / "train.py").write_text("lr = 0.2\n")
    (wt.path / "model.py").write_text("class Model:\n    pass\n")
    before = git(wt.path, "status", "--porcelain")
    diff = wt.diff()
    assert "diff --git a/model.py b/model.py\nnew file mode 100644" in diff
    assert "+class Model:" in diff and "-lr = 0.1\n+lr = 0.2" in diff
    assert git(wt.path, "diff", "--cached", "--name-only") == ""
    assert git(wt.path, "status", "--porcelain") == before == " M train.py\n?? model.py\n"
    wt.discard_changes()
    assert wt.diff() == ""


def test_out_of_scope(wt):
    (wt.path / "train.py").write_text("lr = 0.2\n")
    (wt.path / "lib" / "util.py").write_text("X = 2\n")
    (wt.path / "lib" / "sub").mkdir()
    (wt.path / "lib" / "sub" / "deep.py").write_text("\n")
    (wt.path / "program.md").write_text("# mine now\n")
    assert wt.out_of_scope(["train.py"]) == ["lib/sub/deep.py", "lib/util.py", "program.md"]
    assert wt.out_of_scope(["train.py", "lib/*.py"]) == ["lib/sub/deep.py", "program.md"]
    assert wt.out_of_scope(["train.py", "lib/", "*.md"]) == []


# -- commits and resets -------------------------------------------------------------------------------

def test_commit_records_the_description(wt):
    base = wt.head()
    (wt.path / "train.py").write_text("lr = 0.2\n")
    (wt.path / "model.py").write_text("pass\n")
    (wt.path / ".autoresearch").mkdir()
    (wt.path / ".autoresearch" / "run.json").write_text("{}\n")
    message = "Raise the learning rate\n\n# Why\nLoss plateaued early.\n- see run 3"
    sha = wt.commit(message)
    assert len(sha) == 40 and sha == wt.head() == wt.workspace.branch_head(BRANCH)
    assert git(wt.path, "log", "-1", "--format=%B").strip() == message
    assert wt.log(1) == [(sha, "Raise the learning rate")]
    assert wt.log() == [(sha, "Raise the learning rate"), (base, "autoresearch: task")]
    assert wt.log(0) == []
    assert git(wt.path, "show", "--name-only", "--format=", "HEAD").split() == ["model.py", "train.py"]
    assert wt.changed_files() == [] and wt.is_ancestor(base, sha) and not wt.is_ancestor(sha, base)
    assert wt.workspace.head() == base  # the task's own checkout does not move


def test_commit_refuses_no_change_and_an_empty_message(wt):
    with pytest.raises(NothingToCommit) as info:
        wt.commit("nothing")
    assert isinstance(info.value, GitError) and "nothing to commit" in str(info.value)
    (wt.path / "train.py").write_text("lr = 0.2\n")
    with pytest.raises(GitError, match="empty message"):
        wt.commit("  \n ")
    assert wt.changed_files() == ["train.py"]


def test_commit_uses_the_users_identity_when_there_is_one(wt):
    git(wt.workspace.root, "config", "user.name", "Ada")
    git(wt.workspace.root, "config", "user.email", "ada@example.com")
    fresh = Workspace(wt.workspace.root).open_worktree(wt.path, BRANCH)
    (fresh.path / "train.py").write_text("lr = 0.2\n")
    fresh.commit("mine")
    assert git(fresh.path, "log", "-1", "--format=%an <%ae>").strip() == "Ada <ada@example.com>"


def test_reset_hard_restores_files_removes_untracked_ones_and_moves_the_branch(wt):
    ws = wt.workspace
    base = wt.head()
    (wt.path / "train.py").write_text("lr = 0.2\n")
    (wt.path / "extra.py").write_text("kept in the commit\n")
    worse = wt.commit("worse")
    (wt.path / "train.py").write_text("lr = 9\n")
    (wt.path / "data.bin").unlink()
    (wt.path / "scratch" / "nested").mkdir(parents=True)
    (wt.path / "scratch" / "nested" / "junk.py").write_text("junk\n")
    (wt.path / "inner").mkdir()
    git(wt.path / "inner", "init", "-q")  # a nested repository the agent made
    (wt.path / "lib" / "util.py").unlink()
    (wt.path / "lib" / "util.py").mkdir()  # a folder where a tracked file was
    (wt.path / "lib" / "util.py" / "x").write_text("x\n")
    (wt.path / ".autoresearch").mkdir()
    (wt.path / ".autoresearch" / "cache").write_text("harness\n")
    wt.reset_hard(base)
    assert wt.head() == base == ws.branch_head(BRANCH)
    assert (wt.path / "train.py").read_text() == "lr = 0.1\n"
    assert (wt.path / "data.bin").read_text() == "old\n" and (wt.path / "lib" / "util.py").read_text() == "X = 1\n"
    for gone in ("extra.py", "scratch", "inner"):
        assert not (wt.path / gone).exists(), gone
    assert (wt.path / ".autoresearch" / "cache").exists()  # the harness's folder is left alone
    assert wt.changed_files() == [] and git(wt.path, "status", "--porcelain") == ""
    assert wt.commit_exists(worse) and not wt.is_ancestor(worse, wt.head())  # discarded, still findable
    wt.reset_hard(worse)  # forward again, by sha
    assert wt.head() == worse and (wt.path / "extra.py").exists()


def test_discard_changes(wt):
    (wt.path / "train.py").write_text("lr = 0.2\n")
    (wt.path / "new.py").write_text("\n")
    head = wt.head()
    wt.discard_changes()
    assert wt.head() == head and wt.changed_files() == []


def test_apply_change_rebases_a_change_made_on_an_older_commit(wt):
    ws = wt.workspace
    lines = [f"line {i}" for i in range(12)]
    (wt.path / "train.py").write_text("\n".join(lines) + "\n")
    base = wt.commit("twelve lines")
    ws.create_branch("drafts", base)
    other = ws.open_worktree(ws.root / ".autoresearch" / "other", "drafts")
    (other.path / "train.py").write_text("\n".join(lines[:10] + ["line 10 (draft)", "line 11"]) + "\n")
    (other.path / "new.py").write_text("added by the draft\n")
    independent = other.commit("draft: edits near the end, adds a file")
    other.reset_hard(base)
    (other.path / "train.py").write_text("\n".join(["line 0 (draft)"] + lines[1:]) + "\n")
    conflicting = other.commit("draft: edits the first line")
    (wt.path / "train.py").write_text("\n".join(["line 0 (kept)"] + lines[1:]) + "\n")
    kept = wt.commit("kept: edits the first line")

    assert wt.apply_change(independent) == []
    assert wt.head() == kept  # uncommitted: the caller checks and commits
    text = (wt.path / "train.py").read_text()
    assert text.startswith("line 0 (kept)\n") and "line 10 (draft)\n" in text
    assert (wt.path / "new.py").read_text() == "added by the draft\n"
    assert sorted(wt.changed_files()) == ["new.py", "train.py"]
    wt.discard_changes()

    assert wt.apply_change(conflicting) == ["train.py"]
    assert wt.head() == kept and wt.changed_files() == []
    assert (wt.path / "train.py").read_text().startswith("line 0 (kept)\n")
    assert "<<<<<<<" not in (wt.path / "train.py").read_text()
    assert wt.apply_change(independent) == []  # no cherry-pick is left in progress


def test_queries_reject_unknown_commits_with_a_fix(wt):
    assert not wt.commit_exists("0" * 40) and not wt.commit_exists("--all") and not wt.commit_exists("")
    assert wt.commit_exists(wt.head()[:10]) and wt.commit_exists("HEAD")
    with pytest.raises(GitError) as info:
        wt.reset_hard("f" * 40)
    assert "not a commit" in str(info.value) and "fix:" in str(info.value)
    with pytest.raises(GitError, match="not a commit"):
        wt.is_ancestor("HEAD", "nope")
    with pytest.raises(GitError):
        wt.reset_hard("--hard")


def test_git_failures_name_the_command_and_the_fix(wt):
    shutil.rmtree(wt.workspace.git_dir)
    with pytest.raises(GitError) as info:
        wt.changed_files()
    text = str(info.value)
    assert "command: git" in text and "git said:" in text and "fix:" in text and "autoresearch init" in text


# -- crash leftovers ----------------------------------------------------------------------------------

def test_stale_index_lock_is_removed_and_the_command_retried(wt, caplog):
    lock = lock_path(wt.path, "index.lock")
    lock.write_text("")
    age(lock, 60)
    (wt.path / "train.py").write_text("lr = 0.2\n")
    with caplog.at_level(logging.WARNING, logger="autoresearch.workspace"):
        sha = wt.commit("after a crash")
    assert sha == wt.head() and not lock.exists()
    assert "removed stale git lock" in caplog.text and str(lock) in caplog.text


def test_stale_ref_lock_and_main_checkout_lock_are_removed(wt, caplog):
    ref_lock = wt.workspace.git_dir / "refs" / "heads" / (BRANCH + ".lock")
    ref_lock.write_text("")
    age(ref_lock, 60)
    (wt.path / "train.py").write_text("lr = 0.2\n")
    with caplog.at_level(logging.WARNING, logger="autoresearch.workspace"):
        wt.commit("ref was locked")
    assert not ref_lock.exists() and wt.workspace.branch_head(BRANCH) == wt.head()
    (wt.workspace.root / ".gitignore").write_text("# emptied by the user\n")
    git(wt.workspace.root, "commit", "-q", "-am", "user empties .gitignore")
    main_lock = wt.workspace.git_dir / "index.lock"
    main_lock.write_text("")
    age(main_lock, 60)
    ws = Workspace.ensure(wt.workspace.root)  # must commit .gitignore in the main checkout
    assert ws.log(1)[0][1] == "autoresearch: ignore .autoresearch/" and not main_lock.exists()


def test_every_stale_lock_a_killed_git_left_is_removed(wt, caplog):
    """A `git reset --hard` killed midway left both the worktree's HEAD.lock and its branch's ref lock (seen in
    bench/night.py): each is cleared in turn, and the reset goes through."""
    first = wt.head()
    (wt.path / "train.py").write_text("lr = 0.2\n")
    wt.commit("to be reset")
    locks = [lock_path(wt.path, "HEAD.lock"), wt.workspace.git_dir / "refs" / "heads" / (BRANCH + ".lock")]
    for lock in locks:
        lock.write_text("")
        age(lock, 60)
    with caplog.at_level(logging.WARNING, logger="autoresearch.workspace"):
        wt.reset_hard(first)
    assert wt.head() == first and wt.workspace.branch_head(BRANCH) == first
    assert not any(lock.exists() for lock in locks)
    assert all(str(lock) in caplog.text for lock in locks)


def test_young_lock_without_a_git_process_is_removed_after_the_grace_period(wt, monkeypatch):
    monkeypatch.setattr(ws_locks, "STALE_LOCK_SECONDS", 0.3)
    lock = lock_path(wt.path, "index.lock")
    lock.write_text("")  # a restart right after kill -9: the lock is fresh but nobody holds it
    (wt.path / "train.py").write_text("lr = 0.2\n")
    start = time.monotonic()
    wt.commit("soon after a crash")
    assert not lock.exists() and time.monotonic() - start >= 0.2


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc to see live git processes")
def test_lock_held_by_a_live_git_process_is_left_alone(wt, monkeypatch):
    monkeypatch.setattr(ws_locks, "LOCK_WAIT_SECONDS", 0.5)
    monkeypatch.setattr(ws_locks, "STALE_LOCK_SECONDS", 0.0)
    holder = subprocess.Popen(["git", "cat-file", "--batch"], cwd=wt.path, stdin=subprocess.PIPE,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = lock_path(wt.path, "index.lock")
    try:
        time.sleep(0.05)
        lock.write_text("")  # written after the process started: it may be that process's lock
        (wt.path / "train.py").write_text("lr = 0.2\n")
        with pytest.raises(GitError) as info:
            wt.commit("while another git works here")
        assert lock.exists() and "still held" in info.value.hint and str(holder.pid) in info.value.hint
    finally:
        holder.communicate(timeout=10)
    assert wt.commit("after it finished") == wt.head() and not lock.exists()


@pytest.mark.skipif(not Path("/proc/self/cwd").exists(), reason="needs /proc to see live git processes")
def test_git_process_started_after_the_lock_does_not_keep_it(wt, monkeypatch):
    lock = lock_path(wt.path, "index.lock")
    lock.write_text("")
    age(lock, 60)
    later = subprocess.Popen(["git", "cat-file", "--batch"], cwd=wt.path, stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        (wt.path / "train.py").write_text("lr = 0.2\n")
        assert wt.commit("a newer git process cannot hold an older lock") == wt.head() and not lock.exists()
    finally:
        later.communicate(timeout=10)


def _open_in_another_process(args: tuple[str, int]) -> str | None:
    root, i = args
    try:
        Workspace(Path(root)).open_worktree(Path(root) / ".autoresearch" / "worktrees" / f"run{i}", f"b{i}")
        return None
    except GitError as err:
        return str(err)


def test_loops_started_at_once_open_their_worktrees_without_tripping_over_each_other(tmp_path: Path) -> None:
    """Unlocked, about 1 round in 75 failed here (git's `worktree add` read another's half-written entry, or a
    `worktree prune` removed the folder another `add` was filling): `run --parallel` starts its loops at once."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(4) as pool:
        for round_ in range(100):
            (tmp_path / str(round_)).mkdir()
            ws = Workspace.ensure(make_task(tmp_path / str(round_)))
            for i in range(4):
                ws.create_branch(f"b{i}")
            failures = [e for e in pool.map(_open_in_another_process, [(str(ws.root), i) for i in range(4)]) if e]
            assert not failures, failures[0]
            assert len({e.path for e in ws._registered()}) == 5  # the checkout and the 4 worktrees


# -- git runs nothing that candidate code or an agent wrote ------------------------------------------------

def payload(marker: Path) -> str:
    """A shell command that leaves `marker` behind: what must never run."""
    return f"touch {marker}; cat"


def hostile_config(marker: Path) -> str:
    """Git configuration that runs the payload from every place a git command could start a program."""
    run = payload(marker)
    return (f'[filter "evil"]\n\tclean = "{run}"\n\tsmudge = "{run}"\n\trequired = true\n'
            f'[diff "evil"]\n\ttextconv = "{run}"\n\tcommand = "{run}"\n[merge "evil"]\n\tdriver = "{run}"\n'
            f'[core]\n\tfsmonitor = "{run}"\n\tsshCommand = "{run}"\n\tpager = "{run}"\n'
            f'[diff]\n\texternal = "{run}"\n')


def hostile_gitdir(source: Path, folder: Path, marker: Path, checkout: Path | None = None) -> Path:
    """A copy of the git folder `source` (so that it agrees with the files git will look at), with
    `hostile_config` and hooks of its own that run the payload. `checkout`: the entry of a linked worktree
    of `source`, whose HEAD and index the copy takes."""
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("worktrees"))
    for name in ("HEAD", "index") if checkout is not None else ():
        shutil.copy(checkout / name, folder / name)
    hooks = folder / "hooks"
    hooks.mkdir(exist_ok=True)
    for name in ("pre-commit", "commit-msg", "post-commit", "post-checkout", "reference-transaction",
                 "post-index-change", "pre-auto-gc", "post-rewrite"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / name).chmod(0o755)
    with open(folder / "config", "a") as f:
        f.write(hostile_config(marker) + f"[core]\n\thooksPath = {hooks}\n")
    return folder


def plain_git(cwd: Path, *args: str) -> str:
    """git as a careful user runs it in the worktree: no global configuration (the tests' own is hostile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    result = subprocess.run(["git", "-c", f"core.hooksPath={os.devnull}", "-c", "core.fsmonitor=false", *args],
                            cwd=cwd, capture_output=True, text=True,
                            env={**env, "LC_ALL": "C", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"})
    assert result.returncode == 0, f"git {' '.join(args)}: {result.stderr}"
    return result.stdout


def test_a_rewritten_git_file_and_hostile_configuration_run_nothing(wt, tmp_path):
    """Candidate code made the worktree's `.git` file point at a repository of its own whose configuration runs a
    program from a filter, an fsmonitor and hooks, and wrote `.gitattributes` naming that filter; the user's
    global configuration names one too. Every method still works on the real repository and runs nothing."""
    ws, marker = wt.workspace, tmp_path / "PAYLOAD-RAN"
    base, original = wt.head(), (wt.path / ".git").read_text()
    (wt.path / "train.py").write_text("lr = 0.2\n")  # the attacker's repository records this state as clean
    evil = hostile_gitdir(ws.git_dir, tmp_path / "evil.git", marker, checkout=wt.admin_dir)
    plain_git(wt.path, f"--git-dir={evil}", "add", "train.py")
    plain_git(wt.path, f"--git-dir={evil}", "-c", "user.name=m", "-c", "user.email=m@x", "commit", "-qm", "theirs")
    home = Path(os.environ["HOME"])
    (home / ".gitconfig").write_text("[user]\n\tname = Ada\n\temail = ada@example.com\n" + hostile_config(marker)
                                     + f"[core]\n\thooksPath = {evil / 'hooks'}\n")
    (home / ".config" / "git").mkdir(parents=True)
    (home / ".config" / "git" / "attributes").write_text("* filter=evil diff=evil merge=evil\n")
    (wt.path / ".git").write_text(f"gitdir: {evil}\n")
    (wt.path / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
    time.sleep(0.01)
    (wt.path / "train.py").write_text("lr = 0.3\n")  # a change git must hash (through the filter, if it ran one)
    _user_cache.clear()
    fresh = Workspace(ws.root).open_worktree(wt.path, BRANCH)  # reads the user's identity from that file
    assert not fresh.restore_link()  # opening it put the .git file back already
    (wt.path / ".git").write_text(f"gitdir: {evil}\n")

    assert fresh.changed_files() == [".gitattributes", "train.py"]
    assert fresh.changed_tracked_files() == ["train.py"]
    assert fresh.out_of_scope(["train.py"]) == [".gitattributes"]
    diff = fresh.diff()
    assert "-lr = 0.1\n+lr = 0.3" in diff and "b/.gitattributes" in diff
    assert fresh.editable_files(["*.py"]) == {"train.py": b"lr = 0.3\n"}
    sha = fresh.commit("through a rewritten .git file")
    assert ws.branch_head(BRANCH) == sha and fresh.log(1) == [(sha, "through a rewritten .git file")]
    assert git(ws.root, "log", "-1", "--format=%an", sha).strip() == "Ada"  # the user's identity, nothing else
    assert fresh.files_at(sha, ["train.py", ".gitattributes"]) == {
        "train.py": b"lr = 0.3\n", ".gitattributes": b"* filter=evil diff=evil merge=evil\n"}
    assert fresh.changed_tracked_files(base) == [".gitattributes", "train.py"]
    fresh.reset_hard(base)
    assert (wt.path / ".git").read_text() == original  # put back
    assert (wt.path / "train.py").read_text() == "lr = 0.1\n" and not (wt.path / ".gitattributes").exists()

    (wt.path / ".git").write_text(f"gitdir: {evil}\n")
    assert fresh.apply_change(sha) == [] and fresh.changed_files() == [".gitattributes", "train.py"]
    (wt.path / ".git").unlink()
    (wt.path / ".git").mkdir()  # a folder now
    (wt.path / ".git" / "config").write_text(hostile_config(marker))
    fresh.discard_changes()
    assert (wt.path / ".git").read_text() == original and fresh.changed_files() == []
    assert plain_git(wt.path, "status", "--porcelain") == ""  # the user's own git works there again
    assert not marker.exists()
    assert plain_git(tmp_path, f"--git-dir={evil}", "log", "--format=%s") == "theirs\n" + \
        plain_git(tmp_path, f"--git-dir={evil}", "log", "--format=%s", "--skip=1")  # nothing was committed there


def test_status_never_enters_a_submodule(wt, tmp_path):
    """A registered submodule whose `.git` file points at a hostile git folder: git would run a status in it, with
    that folder's configuration, were it allowed to look into submodules."""
    marker = tmp_path / "PAYLOAD-RAN"
    sub = wt.path / "sub"
    sub.mkdir()
    git(sub, "init", "-q")
    (sub / "a.txt").write_text("a\n")
    git(sub, "add", "-A")
    git(sub, "commit", "-qm", "sub")
    (wt.path / ".gitmodules").write_text('[submodule "sub"]\n\tpath = sub\n\turl = ./sub\n')
    wt.commit("a submodule")
    git(wt.path, "submodule", "init")
    assert "160000" in git(wt.path, "ls-files", "-s", "sub")
    evil = hostile_gitdir(sub / ".git", tmp_path / "sub.git", marker)
    shutil.rmtree(sub / ".git")
    (sub / ".git").write_text(f"gitdir: {evil}\n")
    (sub / ".gitattributes").write_text("* filter=evil\n")
    time.sleep(0.01)
    (sub / "a.txt").write_text("b\n")  # as long as before: only its content (through the filter) tells
    (wt.path / "train.py").write_text("lr = 0.2\n")
    assert wt.changed_files() == ["train.py"] and wt.changed_tracked_files() == ["train.py"]
    assert "+lr = 0.2" in wt.diff()
    sha = wt.commit("beside a submodule")  # staging passes over the submodule
    assert git(wt.path, "show", "--format=", "--name-only", sha).split() == ["train.py"]
    (wt.path / "train.py").write_text("lr = 0.3\n")
    wt.discard_changes()
    assert not marker.exists()


def test_a_changed_git_configuration_is_found_and_put_back(wt):
    ws = wt.workspace
    before = ws.config_snapshot()
    config = ws.git_dir / "config"
    text = config.read_text()
    config.write_text(text + '[filter "evil"]\n\tclean = touch x\n[include]\n\tpath = /tmp/theirs\n')
    (ws.git_dir / "info" / "attributes").write_text("* filter=evil\n")
    hook = ws.git_dir / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\ntouch x\n")
    sample = next((ws.git_dir / "hooks").glob("*.sample"))
    mode = sample.stat().st_mode & 0o777
    sample.chmod(mode ^ 0o111)  # made executable, or not
    (wt.admin_dir / "config.worktree").write_text("[core]\n\tfsmonitor = touch x\n")
    (wt.path / ".git").write_text("gitdir: /elsewhere\n")
    assert config_changes(before, ws.config_snapshot())  # found by comparing
    changed = ws.restore_config(before)
    name = wt.admin_dir.name
    assert sorted(changed) == sorted([".git/config", ".git/info/attributes", ".git/hooks/pre-commit",
                                      f".git/hooks/{sample.name}", f".git/worktrees/{name}/config.worktree",
                                      ".autoresearch/worktree/.git"])
    assert config.read_text() == text and not hook.exists() and not (wt.admin_dir / "config.worktree").exists()
    assert not (ws.git_dir / "info" / "attributes").exists() and sample.stat().st_mode & 0o777 == mode
    assert wt.changed_files() == [] and (wt.path / ".git").read_text() == f"gitdir: {wt.admin_dir}\n"
    assert ws.restore_config(before) == [] and ws.config_snapshot() == before
    config.unlink()  # a removed file is written again
    assert ws.restore_config(before) == [".git/config"] and config.read_text() == text


def test_config_changes_compares_snapshots():
    a = ConfigSnapshot({"/r/.git/config": ("file", b"x", 0o644), "/r/.git/hooks": ("folder", b"", 0o755)})
    assert config_changes(a, a) == []
    b = ConfigSnapshot({"/r/.git/config": ("file", b"x", 0o755), "/r/.git/hooks/h": ("file", b"", 0o755)})
    assert config_changes(a, b) == ["/r/.git/config", "/r/.git/hooks", "/r/.git/hooks/h"]


def test_remove_ignored_deletes_what_the_ignore_rules_hide_and_nothing_else(tmp_path):
    from autoresearch.workspace import Workspace

    task = tmp_path / "task"
    task.mkdir()
    (task / ".gitignore").write_text("__pycache__/\n*.bin\n.venv/\n")
    (task / "train.py").write_text("x = 1\n")
    ws = Workspace.ensure(task)
    ws.create_branch("b")
    wt = ws.open_worktree(task / ".autoresearch" / "worktrees" / "b", "b")
    for rel in ("__pycache__/train.cpython-311.pyc", "weights.bin", "sub/__pycache__/m.pyc", ".venv/lib/x.py",
                ".autoresearch/model/model.pt", ".autoresearch/scratch/1/tmp", "untracked.py"):
        (wt.path / rel).parent.mkdir(parents=True, exist_ok=True)
        (wt.path / rel).write_text("left by a run")
    wt.remove_ignored(keep=(".venv/",))
    left = sorted(str(p.relative_to(wt.path)) for p in wt.path.rglob("*") if p.is_file() and ".git" != p.name)
    assert left == [".autoresearch/model/model.pt", ".autoresearch/scratch/1/tmp", ".gitignore", ".venv/lib/x.py",
                    "train.py", "untracked.py"]
    wt.remove_ignored()
    assert not (wt.path / ".venv").exists() and (wt.path / ".autoresearch" / "model" / "model.pt").exists()
