"""The harness's linked worktree (`Worktree`): where the agent edits, the harness checks, commits and resets.

The worktree is a checkout of the task's repository on a branch of its own. Its `GIT_DIR` is its entry
in the repository's own folder (`admin_dir`, found by `Workspace`), never what its `.git` file says:
code run there may rewrite that file, and `restore_link` (also at every `reset_hard` and when the
worktree is opened) puts it back. All paths it returns are relative to the worktree, with '/'.

- What changed (`changed_files`, `changed_tracked_files`) and what the agent may edit
  (`editable_files`, `out_of_scope`, `files_at`, `put_files`, by `scope.matches_scope`): `.autoresearch/`
  and ignored files are never listed, read-only queries take no lock.
- `diff` stages into a temporary index, so it never leaves anything staged in the real one.
- `commit` stages every change except `.autoresearch/` (staging unstages it again) and commits it.

Crash safety (the loop may be killed with `kill -9` at any moment and resumed): `reset_hard` can simply
be repeated. A `commit` killed before git finished leaves at most staged changes (commit again, or
`discard_changes`); one killed after git finished leaves the branch a commit ahead of what the caller
recorded: compare `Workspace.branch_head` with the experiment store, then `reset_hard` to the recorded
commit (or adopt the new one: its message is the description). Cleaning never touches `.autoresearch/`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.workspace.checkout import Checkout
from autoresearch.workspace.git import GitError, NothingToCommit
from autoresearch.workspace.scope import _NOT_HARNESS, HARNESS_DIR, matches_scope

if TYPE_CHECKING:
    from autoresearch.workspace.repo import Workspace


class Worktree(Checkout):
    """The harness's linked worktree: `path` (resolved) with `branch` checked out.

    Obtain one from `Workspace.open_worktree`. All paths it returns are relative to `path`, with '/'.
    """

    def __init__(self, path: Path, branch: str, workspace: Workspace) -> None:
        self.path = Path(path).resolve()
        self.branch = branch
        self.workspace = workspace
        admin = workspace._admin_dir(self.path)
        if admin is None:
            raise GitError(f"{self.path} is not a worktree of the repository at {workspace.root}",
                           hint="open it with Workspace.open_worktree")
        self.admin_dir = admin  # its entry in the repository's folder: git's GIT_DIR for it

    def __repr__(self) -> str:
        return f"Worktree({str(self.path)!r}, branch={self.branch!r})"

    def _root(self) -> Path:
        return self.workspace.root

    def _scope_dirs(self) -> list[Path]:
        return self.workspace._scope_dirs()

    def _locations(self) -> dict[str, str]:
        return {"GIT_DIR": str(self.admin_dir), "GIT_WORK_TREE": str(self.path)}

    def restore_link(self) -> bool:
        """Put the worktree's `.git` file back as git wrote it if anything changed it (the harness's own
        commands never read it; people's git in the worktree does). Returns whether it had to."""
        return self.workspace._restore_link(self.path, self.admin_dir)

    def changed_files(self) -> list[str]:
        """Paths that differ from HEAD, sorted: modified, added, deleted, both names of a rename,
        untracked files (each file, not its folder). Ignored files and `.autoresearch/` are left
        out. Exactly the paths `commit` would record. Reads only; takes no lock."""
        return self._changed()

    def changed_tracked_files(self, against: str = "HEAD") -> list[str]:
        """Paths committed in `against` whose file differs from it (modified, deleted, replaced), sorted; new
        untracked files are not listed. Reads only; takes no lock."""
        out = self._git("--no-optional-locks", "diff", "--name-only", "--no-renames", "--ignore-submodules=all",
                        "--no-ext-diff", "--no-textconv", "-z", against, "--", ".", _NOT_HARNESS).stdout
        return sorted(p for p in out.split("\0") if p)

    def editable_files(self, editable: Sequence[str]) -> dict[str, bytes]:
        """The files here that `editable` covers (see `matches_scope`), as they are on disk, committed or not:
        path -> content. Ignored files and `.autoresearch/` are left out; a symbolic link is its target's
        name, not the file it points to. Reads only; takes no lock."""
        out = self._git("--no-optional-locks", "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                        "--", ".", _NOT_HARNESS).stdout
        files: dict[str, bytes] = {}
        for rel in sorted({p for p in out.split("\0") if p}):
            if not matches_scope(rel, editable):
                continue
            path = self.path / rel
            try:
                if path.is_symlink():
                    files[rel] = b"symlink:" + os.fsencode(os.readlink(path))
                else:
                    files[rel] = path.read_bytes()
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                continue  # deleted and not yet committed, or a nested repository
        return files

    def out_of_scope(self, editable: Sequence[str]) -> list[str]:
        """The changed paths (see `changed_files`) that no entry of `editable` covers (see `matches_scope`)."""
        return [p for p in self.changed_files() if not matches_scope(p, editable)]

    def diff(self) -> str:
        """Unified diff of the files against HEAD, untracked files included as new files, renames
        detected; binary files are named, not shown. Built in a temporary index, so the real index
        is untouched and nothing is left staged, even if the process is killed meanwhile."""
        head = self.head()
        with tempfile.TemporaryDirectory(prefix="autoresearch-diff-") as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            self._git("read-tree", head, env=env)
            self._stage_all(env=env)
            self._git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", HARNESS_DIR, env=env)
            return self._git("diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "--find-renames",
                             "--src-prefix=a/", "--dst-prefix=b/", head, "--", env=env, errors="replace").stdout

    def commit(self, message: str) -> str:
        """Stage every change (not ignored files, never `.autoresearch/`) and commit it on the branch
        with `message` (kept as given, multi-line and '#' lines included; only surrounding blank
        lines and trailing spaces are trimmed). Returns the new commit's sha.

        GitError if `message` is blank; NothingToCommit (a GitError) if nothing changed.
        """
        if not message or not message.strip():
            raise GitError("refusing to commit with an empty message", command=["git", "commit"],
                           hint="describe the change in the commit message")
        self._stage_all()
        self._git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", HARNESS_DIR)
        head = self.head()
        if self._git("diff", "--cached", "--quiet", "--no-ext-diff", head, "--", ok=(0, 1)).returncode == 0:
            raise NothingToCommit(f"nothing to commit in {self.path}: no file differs from {head[:12]}",
                                  command=["git", "commit"],
                                  hint="change a file before committing, or skip the commit")
        self._git("commit", "-q", "--no-verify", "--cleanup=whitespace", "-F", "-", input=message,
                  config=self.workspace._identity_config())
        return self.head()

    def reset_hard(self, commit: str) -> None:
        """Move the branch to `commit` and make the files exactly that commit's: tracked files are
        restored, untracked files and folders that are not ignored are deleted (nested repositories
        too). Ignored files and `.autoresearch/` are kept; the `.git` file is put back (`restore_link`). GitError
        if `commit` is not a commit."""
        self.restore_link()
        sha = self._commit_of(commit)
        self._git("reset", "--hard", "-q", sha)
        self._git("clean", "-f", "-f", "-d", "-q", "--", ".", _NOT_HARNESS)

    def reset_soft(self, commit: str) -> None:
        """Move the branch to `commit` and leave the files as they are: everything since `commit` becomes
        uncommitted changes (what `changed_files`, `diff` and `commit` see). GitError if not a commit."""
        self._git("reset", "--soft", "-q", self._commit_of(commit))

    def apply_change(self, commit: str, *, prefer_change: bool = False) -> list[str]:
        """Apply the change that `commit` made to its parent onto the files here, uncommitted: a three-way
        merge, as a rebase does it. Returns [] when it applied; when it conflicts, the files are restored to
        HEAD and the conflicting paths are returned. The files must have no uncommitted changes.
        `prefer_change`: a conflicting hunk takes the change's lines (`-X theirs`), so it never conflicts."""
        sha = self._commit_of(commit)
        prefer = ["--strategy-option=theirs"] if prefer_change else []
        if self._git("cherry-pick", "--no-commit", *prefer, sha, ok=(0, 1)).returncode == 0:
            return []
        conflicts = self._git("diff", "--name-only", "--no-ext-diff", "--ignore-submodules=all", "--diff-filter=U",
                              "-z").stdout.split("\0")
        self.reset_hard(self.head())  # also ends the cherry-pick
        return sorted(path for path in conflicts if path) or ["(unknown)"]

    def restore_files(self, commit: str) -> None:
        """Make the working copy's files those of `commit` (files it lacks are removed), with HEAD left where
        it is: to run an earlier commit's code. `discard_changes` undoes it."""
        self._git("restore", f"--source={self._commit_of(commit)}", "--worktree", "--", ".")

    def _covered(self, rev: str, editable: Sequence[str], *, regular: bool = False) -> set[str]:
        """The paths of commit `rev` that `editable` covers; `regular`: plain files only (no links)."""
        out = self._git("--no-optional-locks", "ls-tree", "-r", "-z", rev, "--", ".").stdout
        paths = set()
        for line in filter(None, out.split("\0")):
            meta, path = line.split("\t", 1)
            if matches_scope(path, editable) and (not regular or meta.split()[0] in ("100644", "100755")):
                paths.add(path)
        return paths

    def files_at(self, commit: str, editable: Sequence[str]) -> dict[str, bytes]:
        """The plain files of `commit` that `editable` covers: path -> content. Reads only; takes no lock."""
        sha = self._commit_of(commit)
        files = {}
        for path in sorted(self._covered(sha, editable, regular=True)):
            files[path] = self._git("--no-optional-locks", "cat-file", "blob", f"{sha}:{path}",
                                    binary=True).stdout  # bytes, as stored
        return files

    def export(self, commit: str, folder: Path) -> None:
        """Write the files of `commit` (all of them, as `git archive` gives them) into `folder`, which must be
        empty or missing: a copy of the code that nothing done in it can change here. Reads only."""
        import io
        import tarfile

        archive = self._git("--no-optional-locks", "archive", "--format=tar", self._commit_of(commit), binary=True)
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(folder, filter="data")  # no links out of the folder, no device files
            else:  # Python < 3.10.12: git's archive of a tree has no absolute or `..` paths to begin with
                tar.extractall(folder)

    def put_files(self, files: Mapping[str, bytes], editable: Sequence[str]) -> None:
        """Make the files that `editable` covers exactly `files` (path -> content), uncommitted, with HEAD left
        where it is: covered files not in `files` are removed, every other file stays as it is. With `files_at`,
        takes up another branch's code without its other files. ValueError for a path `editable` does not
        cover, or one that leaves the folder: nothing is written then."""
        for path in files:
            parts = Path(path).parts
            if not path or Path(path).is_absolute() or ".." in parts or parts[:1] == (HARNESS_DIR,) \
                    or not matches_scope(path, editable):
                raise ValueError(f"{path!r} is not a file the agent may edit here ({', '.join(editable)})")
        for rel in sorted(self._covered("HEAD", editable) - set(files)):
            (self.path / rel).unlink(missing_ok=True)
        for rel, content in sorted(files.items()):
            target = self.path / rel
            if target.is_symlink():
                target.unlink()
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    def discard_changes(self) -> None:
        """Throw away every uncommitted change: `reset_hard(HEAD)` (which also puts back the `.git` file)."""
        self.reset_hard(self.head())

    def remove_ignored(self, keep: Sequence[str] = ()) -> None:
        """Delete the files here that the ignore rules hide (a `__pycache__`, a cache, anything a run or an agent
        left that is never committed), except those matching the patterns in `keep` and `.autoresearch/`. No file
        the repository tracks, and no untracked file that is not ignored, is touched."""
        # With -X a pathspec does not keep an ignored folder: an exception to the ignore rules does (`!pattern`).
        kept = [a for pattern in (f"/{HARNESS_DIR}/", *keep)
                for a in ("-e", f"!{pattern}", "-e", f"!{pattern.rstrip('/')}/**")]
        self._git("clean", "-f", "-f", "-d", "-X", "-q", *kept, "--", ".")

    def current_branch(self) -> str | None:
        """The branch checked out in the worktree, None when HEAD is detached."""
        out = self._git("symbolic-ref", "-q", "HEAD", ok=(0, 1)).stdout.strip()
        return out[len("refs/heads/"):] if out.startswith("refs/heads/") else None
