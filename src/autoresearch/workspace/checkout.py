"""The commands both checkouts share (`Checkout`): the main checkout (`Workspace`) and the worktree (`Worktree`).

A checkout runs git only through `Checkout._git`, which passes its fixed `GIT_DIR` and `GIT_WORK_TREE`
(`_locations`: git never looks for them itself) to `git._run`, with the checkout as the repository
whose stale lock files may be cleared (`_clear_lock`, see `locks`).

- Listing changes runs `git status --no-optional-locks`, so it takes no lock at all; `.autoresearch/`
  is left out by pathspec, submodules are not entered (`--ignore-submodules=all`).
- Staging (`_stage_all`) passes over the submodules the index records: to see whether one changed,
  git would run a status inside it, with whatever configuration its `.git` file names.
- Discarded commits stay in the object store (reflogs keep them, automatic gc is off), so
  `commit_exists` can still find any commit the experiment store recorded.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from autoresearch.workspace.git import GitError, _check_rev, _run
from autoresearch.workspace.locks import clear_stale_lock
from autoresearch.workspace.scope import _NOT_HARNESS


def _parse_status(out: str) -> list[str]:
    fields = out.split("\0")
    paths: set[str] = set()
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4:
            continue
        paths.add(entry[3:])
        if entry[0] in "RC":  # the next field is the original name of a rename or copy
            if i < len(fields) and fields[i]:
                paths.add(fields[i])
            i += 1
    return sorted(paths)


class Checkout:
    """Commands shared by the main checkout and the worktree: one checkout of one repository."""

    path: Path

    def _root(self) -> Path:
        """The main checkout's folder (the task folder)."""
        raise NotImplementedError

    def _scope_dirs(self) -> list[Path]:
        """Folders where a git process would be working on this repository."""
        raise NotImplementedError

    def _locations(self) -> dict[str, str]:
        """`GIT_DIR` and `GIT_WORK_TREE` of this checkout: git never looks for them itself."""
        raise NotImplementedError

    def _git(self, *args: str, ok: Sequence[int] = (0,), input: str | None = None,
             env: Mapping[str, str] | None = None, config: Sequence[str] = (), hint: str = "",
             errors: str = "surrogateescape", binary: bool = False) -> subprocess.CompletedProcess:
        return _run(args, self.path, ok=ok, input=input, env={**self._locations(), **(env or {})}, config=config,
                    hint=hint, errors=errors, scope=self, binary=binary)

    # -- lock recovery -------------------------------------------------------------------------------

    def _clear_lock(self, lock: Path, command: Sequence[str]) -> str | None:
        """Remove `lock` (relative to this checkout's folder, or absolute) if it is stale (see `locks`).

        Returns None when the command may be retried (the lock was stale and is gone, or its holder
        released it), else why the lock was left alone.
        """
        lock = lock if lock.is_absolute() else self.path / lock
        return clear_stale_lock(lock, self._scope_dirs, self._root(), command)

    # -- queries -------------------------------------------------------------------------------------

    def _resolve(self, rev: str) -> str | None:
        result = self._git("rev-parse", "--verify", "--quiet", f"{_check_rev(rev)}^{{commit}}", ok=(0, 1))
        return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else None

    def _commit_of(self, rev: str) -> str:
        sha = self._resolve(rev)
        if sha is None:
            raise GitError(f"{rev!r} is not a commit of the repository at {self._root()}",
                           command=["git", "rev-parse", "--verify", rev],
                           hint="pass a sha that the repository has (see `git log --all`), a branch or HEAD")
        return sha

    def head(self) -> str:
        """The full sha of the checkout's HEAD commit. GitError if there is no commit yet."""
        sha = self._resolve("HEAD")
        if sha is None:
            raise GitError(f"the repository at {self.path} has no commit yet", command=["git", "rev-parse", "HEAD"],
                           hint="call Workspace.ensure (what `autoresearch init` does) to make the first commit")
        return sha

    def commit_exists(self, sha: str) -> bool:
        """Whether `sha` (full or abbreviated, or any revision) names a commit in the object store,
        reachable or not (discarded experiments stay findable)."""
        try:
            return self._resolve(sha) is not None
        except GitError:
            return False

    def is_ancestor(self, a: str, b: str) -> bool:
        """Whether commit `a` is an ancestor of commit `b` (a commit is its own ancestor).
        GitError if either is not a commit."""
        a_sha, b_sha = self._commit_of(a), self._commit_of(b)
        return self._git("merge-base", "--is-ancestor", a_sha, b_sha, ok=(0, 1)).returncode == 0

    def log(self, n: int | None = None) -> list[tuple[str, str]]:
        """(sha, subject) of the commits reachable from HEAD, newest first; at most `n` of them."""
        if n is not None and n < 0:
            raise ValueError("n must be >= 0")
        if n == 0:
            return []
        args = ["log", "--format=%H %s", "--no-decorate"]
        if n is not None:
            args.append(f"--max-count={n}")
        out = self._git(*args, self.head(), "--", errors="replace").stdout
        return [(sha, subject) for sha, _, subject in (line.partition(" ") for line in out.splitlines()) if sha]

    def _stage_all(self, env: Mapping[str, str] | None = None) -> None:
        """`git add -A`, passing over the submodules the index records (gitlinks): to see whether one changed,
        git would run a status inside it, with whatever configuration its `.git` file names."""
        out = self._git("ls-files", "--stage", "-z", env=env).stdout
        links = [entry.split("\t", 1)[1] for entry in out.split("\0") if entry.startswith("160000 ")]
        self._git("add", "-A", "--", ".", *(f":(top,exclude,literal){path}" for path in links), env=env)

    def _changed(self) -> list[str]:
        out = self._git("--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=all",
                        "--no-renames", "--ignore-submodules=all", "--", ".", _NOT_HARNESS).stdout
        return _parse_status(out)
