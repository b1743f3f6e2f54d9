"""The task folder's repository (`Workspace`, its main checkout): making it one, its branches, its worktrees.

- `Workspace.ensure` makes the task folder a repository with at least one commit. The harness folder
  `.autoresearch/` is never committed: `ensure` makes the task's `.gitignore` list it (and commits
  that), and the repository's own `info/exclude` lists it too (shared by every worktree, out of reach
  of an agent editing `.gitignore`).
- A task folder is the root of a repository of its own: one inside another repository's work tree is
  refused (the harness commits and hard-resets everything in its checkout) unless asked for `nested`.
- The worktree's `GIT_DIR` is its entry in the repository's own folder (`<git_dir>/worktrees/<name>`),
  found from the `gitdir` records there (`_admin_dir`), never from what its `.git` file says; a `.git`
  file that says something else is put back (`_restore_link`).

Crash safety (the loop may be killed with `kill -9` at any moment and resumed):
`Workspace.open_worktree` reuses a worktree still registered at the path (uncommitted files are
kept: the caller decides, from its own records, whether to `discard_changes`), recreates one whose
folder was deleted or whose `git worktree add` was interrupted, and repairs links broken by moving
the task folder. Processes take turns at it (an `flock` in the git folder): git does not serialise
adding, pruning and removing worktrees between processes, and `run --parallel` opens them all at once.

The repository's configuration files are checked around an agent session with `config_snapshot` and
`restore_config` (see `snapshot`).
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from autoresearch.runlock import exclusive
from autoresearch.workspace.checkout import Checkout
from autoresearch.workspace.git import GitError, _check_git, _hint, _run, _user_setting
from autoresearch.workspace.scope import HARNESS_DIR
from autoresearch.workspace.snapshot import ConfigSnapshot, config_paths, restore_snapshot, take_snapshot
from autoresearch.workspace.worktree import Worktree

log = logging.getLogger(__name__)

TASK_COMMIT_MESSAGE = "autoresearch: task"
IGNORE_COMMIT_MESSAGE = "autoresearch: ignore .autoresearch/"
FALLBACK_NAME = "autoresearch"
FALLBACK_EMAIL = "autoresearch@localhost"
_HARNESS_IGNORE_LINES = {f"{HARNESS_DIR}/", HARNESS_DIR, f"/{HARNESS_DIR}/", f"/{HARNESS_DIR}",
                         f"{HARNESS_DIR}/*", f"/{HARNESS_DIR}/*", f"{HARNESS_DIR}/**", f"/{HARNESS_DIR}/**"}


@dataclass(frozen=True)
class _Registered:
    path: Path
    branch: str | None  # None: detached
    locked: str | None  # the lock reason ("" when locked without one), None when not locked


class Workspace(Checkout):
    """The task folder's repository (its main checkout). Use `Workspace.ensure` to create one.

    `root` is the task folder (resolved), `git_dir` the repository's common .git folder.
    """

    def __init__(self, task_dir: Path) -> None:
        """Open the repository whose work tree root is `task_dir`; GitError if it is not one."""
        root = Path(task_dir).resolve()
        if not root.is_dir():
            raise GitError(f"task folder {root} does not exist",
                           hint="create it with `autoresearch init <folder>`, or check the path")
        self.path = root
        top = _toplevel(root)
        if top != root:
            where = f"inside the repository at {top}" if top else "not a git repository"
            raise GitError(f"{root} is not the root of a git repository ({where})",
                           hint="run `autoresearch init` in the task folder, or call Workspace.ensure")
        self.root = root
        own, common = _run(["rev-parse", "--absolute-git-dir", "--git-common-dir"], root).stdout.splitlines()[:2]
        self.git_dir = (root / common).resolve()
        self._own_git_dir = Path(own).resolve()  # the main checkout's (the common one, unless it is a linked worktree)
        self._identity: list[str] | None = None

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

    @classmethod
    def ensure(cls, task_dir: Path, *, nested: bool = False) -> Workspace:
        """Make `task_dir` (an existing folder) a repository with at least one commit, and open it.

        - Not in any repository: `git init`.
        - Inside another repository's work tree but not its root: refused with GitError, because
          the harness commits and hard-resets everything in its checkout; with `nested=True` (what
          `autoresearch init` asks for when the user names a new task folder inside a clone) a
          repository of its own is created there instead.
        - `.gitignore` (as committed at HEAD) must list `.autoresearch/`: the line is appended if
          missing. With no commit yet, every file that is not ignored is committed as
          "autoresearch: task"; otherwise only `.gitignore` is committed, as
          "autoresearch: ignore .autoresearch/" (other staged changes stay staged, uncommitted).
        - `.autoresearch/` already tracked: GitError (its fix: untrack it).
        Running it again changes nothing.
        """
        _check_git()
        root = Path(task_dir).resolve()
        if not root.is_dir():
            raise GitError(f"task folder {root} does not exist",
                           hint="create it with `autoresearch init <folder>`, or check the path")
        top = _toplevel(root)
        if top is not None and top != root and not nested:
            raise GitError(f"{root} is inside the git repository at {top} but is not its root",
                           hint=f"a task folder must be a repository of its own: run `git init` in {root} "
                                "(or `autoresearch init`), or move the folder out of that repository")
        if top != root:
            _run(["init", "-q"], root)
            log.info("initialised a git repository in %s", root)
        ws = cls(root)
        ws._first_commit()
        return ws

    def _exclude_harness_dir(self) -> None:
        """List `.autoresearch/` in the repository's own info/exclude too: shared by every worktree,
        never committed, out of the agent's reach (it can edit `.gitignore` in its worktree)."""
        exclude = self.git_dir / "info" / "exclude"
        text = exclude.read_text(errors="replace") if exclude.exists() else ""
        if not _lists_harness_dir(text):
            exclude.parent.mkdir(parents=True, exist_ok=True)
            with open(exclude, "a") as f:
                f.write(("" if not text or text.endswith("\n") else "\n") + f"/{HARNESS_DIR}/\n")

    def _first_commit(self) -> None:
        self._exclude_harness_dir()
        has_commit = self._resolve("HEAD") is not None
        if has_commit:
            tracked = self._git("ls-files", "-z", "--", HARNESS_DIR).stdout
            if tracked:
                raise GitError(f"{HARNESS_DIR}/ is tracked by the repository at {self.root}",
                               hint=f"untrack it: `git rm -r --cached {HARNESS_DIR}` and commit")
        committed = ""
        if has_commit:
            shown = self._git("show", "HEAD:.gitignore", ok=(0, 128), errors="replace")
            committed = shown.stdout if shown.returncode == 0 else ""
        needs_line = not _lists_harness_dir(committed)
        if needs_line:
            gitignore = self.root / ".gitignore"
            text = gitignore.read_text(errors="replace") if gitignore.exists() else ""
            if not _lists_harness_dir(text):
                with open(gitignore, "a") as f:
                    f.write(("" if not text or text.endswith("\n") else "\n") + f"{HARNESS_DIR}/\n")
                log.info("added %s/ to %s", HARNESS_DIR, gitignore)
        if not has_commit:
            self._git("add", "-A")
            self._git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", HARNESS_DIR)
            self._git("commit", "-q", "--no-verify", "--allow-empty", "-m", TASK_COMMIT_MESSAGE,
                      config=self._identity_config())
            log.info("committed the task files in %s as %r", self.root, TASK_COMMIT_MESSAGE)
        elif needs_line:
            self._git("add", "--", ".gitignore")
            self._git("commit", "-q", "--no-verify", "-m", IGNORE_COMMIT_MESSAGE, "--only", "--", ".gitignore",
                      config=self._identity_config())
            log.info("committed .gitignore in %s as %r", self.root, IGNORE_COMMIT_MESSAGE)

    def _identity_config(self) -> list[str]:
        """`user.name=...`, `user.email=...` settings for what the repository's own configuration lacks: the
        user's own (global or system) identity, else the fallback."""
        if self._identity is None:
            self._identity = [f"{key}={_user_setting(key) or fallback}"
                              for key, fallback in (("user.name", FALLBACK_NAME), ("user.email", FALLBACK_EMAIL))
                              if not self._git("config", "--get", key, ok=(0, 1)).stdout.strip()]
        return self._identity

    def _root(self) -> Path:
        return self.root

    def _locations(self) -> dict[str, str]:
        return {"GIT_DIR": str(self._own_git_dir), "GIT_WORK_TREE": str(self.root)}

    def _scope_dirs(self) -> list[Path]:
        return [self.root, self.git_dir, *(link.parent for _, link in self._worktree_records() if link is not None)]

    # -- branches ------------------------------------------------------------------------------------

    def _check_branch(self, name: str) -> str:
        if not name or name.startswith("-") or self._git("check-ref-format", "--branch", name,
                                                         ok=(0, 1, 128)).returncode != 0:
            raise GitError(f"{name!r} is not a valid branch name",
                           hint="use letters, digits, '-', '_', '.' and '/', e.g. 'autoresearch/run-1'")
        return name

    def branch_exists(self, name: str) -> bool:
        """Whether the local branch `name` exists."""
        ref = f"refs/heads/{self._check_branch(name)}"
        return self._git("show-ref", "--verify", "--quiet", ref, ok=(0, 1)).returncode == 0

    def branch_head(self, name: str) -> str:
        """The sha the branch `name` points to. GitError if there is no such branch."""
        sha = self._resolve(f"refs/heads/{self._check_branch(name)}")
        if sha is None:
            raise GitError(f"there is no branch {name!r} in {self.root}",
                           hint="create it first with Workspace.create_branch")
        return sha

    def create_branch(self, name: str, start: str = "HEAD") -> None:
        """Create branch `name` at commit `start`. GitError if it exists already or `start` is no commit."""
        if self.branch_exists(name):
            raise GitError(f"branch {name!r} already exists in {self.root} (at {self.branch_head(name)[:12]})",
                           hint="pick another name, or open the existing branch with open_worktree to resume it")
        self._git("branch", "--no-track", name, self._commit_of(start))

    def reset_branch(self, name: str, start: str) -> None:
        """Point branch `name` at commit `start`, creating it if needed (a result rewritten from scratch). The
        branch must not be checked out in a worktree."""
        self._git("branch", "-f", "--no-track", self._check_branch(name), self._commit_of(start))

    def tree_of(self, commit: str) -> str:
        """The sha of `commit`'s tree: two commits with the same files have the same tree."""
        return self._git("rev-parse", f"{self._commit_of(commit)}^{{tree}}").stdout.strip()

    # -- worktrees -----------------------------------------------------------------------------------

    def _registered(self) -> list[_Registered]:
        out = self._git("worktree", "list", "--porcelain").stdout
        entries = []
        for block in out.split("\n\n"):
            fields = {}
            for line in block.splitlines():
                key, _, value = line.partition(" ")
                fields[key] = value
            if "worktree" not in fields:
                continue
            branch = fields.get("branch")
            entries.append(_Registered(
                path=Path(fields["worktree"]).resolve(),
                branch=branch[len("refs/heads/"):] if branch and branch.startswith("refs/heads/") else None,
                locked=fields.get("locked")))
        return entries

    def _worktree_records(self) -> list[tuple[Path, Path | None]]:
        """(entry, the `.git` file its `gitdir` record names, None when unreadable) for each entry the repository
        keeps for a linked worktree (`<git_dir>/worktrees/<name>`), sorted."""
        try:
            entries = sorted((self.git_dir / "worktrees").iterdir())
        except OSError:
            return []
        records = []
        for admin in entries:
            try:
                recorded = (admin / "gitdir").read_text(errors="surrogateescape").strip()
            except OSError:
                recorded = ""
            link = Path(os.path.normpath(recorded if os.path.isabs(recorded) else admin / recorded)) if recorded else None
            records.append((admin, link))
        return records

    def _admin_dir(self, path: Path) -> Path | None:
        """The folder where the repository keeps the worktree at `path` (resolved): `<git_dir>/worktrees/<name>`,
        found from the repository's own records (each entry's `gitdir` file names its worktree's `.git`), never
        from what the worktree's `.git` file says. None when no entry names `path`."""
        for admin, link in self._worktree_records():
            if link is not None and link.name == ".git" and Path(os.path.realpath(link.parent)) == path \
                    and (admin / "HEAD").is_file():
                return admin
        return None

    def _valid_worktree(self, path: Path) -> bool:
        """Whether the repository has an entry for the worktree at `path` and its `.git` file points at it."""
        admin = self._admin_dir(path)
        return admin is not None and (admin / "commondir").is_file() and _link_target(path) == admin

    def _restore_link(self, path: Path, admin: Path | None = None) -> bool:
        """Make the `.git` file of the worktree at `path` point at its entry `admin` (by default, the one the
        repository's records give) again, as `git worktree add` wrote it, if it says anything else (or is a
        folder, a link, or missing). Returns whether it had to be put back."""
        admin = admin or self._admin_dir(path)
        if admin is None or not path.is_dir() or path.is_symlink() or _link_target(path) == admin:
            return False
        link = path / ".git"
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        else:
            link.unlink(missing_ok=True)
        link.write_text(f"gitdir: {admin}\n")
        log.warning("the .git file of the worktree %s no longer pointed git at %s (written by code run there?); "
                    "put back", path, admin)
        return True

    def _links_here(self, path: Path) -> bool:
        """Whether `path/.git` is a worktree link into this repository (even a broken one)."""
        link = path / ".git"
        try:
            text = link.read_text().strip() if link.is_file() else ""
        except OSError:
            return False
        target = text[len("gitdir:"):].strip() if text.startswith("gitdir:") else ""
        return bool(target) and Path(target).resolve().parent == (self.git_dir / "worktrees").resolve()

    def _check_worktree_path(self, path: Path) -> None:
        if path == self.root or path in self.root.parents or path == self.git_dir or self.git_dir in path.parents:
            raise GitError(f"{path} cannot hold a worktree of {self.root}",
                           hint="use a folder of its own, e.g. <task>/.autoresearch/worktree")

    def _drop_worktree(self, path: Path, why: str) -> None:
        log.warning("recreating the worktree at %s: %s", path, why)
        self._git("worktree", "unlock", str(path), ok=(0, 1, 128))
        if path.exists():
            shutil.rmtree(path)
        self._git("worktree", "prune")

    def open_worktree(self, path: Path, branch: str) -> Worktree:
        """A worktree at `path` with `branch` checked out, created or reused.

        - Registrations whose folder is gone are pruned first.
        - Already registered at `path` with `branch`: reused as it is, uncommitted changes included
          (after a crash the caller decides whether to `discard_changes`). A different branch there:
          GitError.
        - Registered at `path` but broken (its `git worktree add` was interrupted, or its folder
          lost its link) or a folder at `path` that links into this repository: deleted and created
          again, with a warning in the log. Links broken by moving the task folder are repaired.
        - Any other non-empty folder at `path`: GitError; it is never deleted.
        - `branch` missing, or checked out in another worktree: GitError.
        """
        path = Path(path).resolve()
        self._check_worktree_path(path)
        if not self.branch_exists(branch):
            raise GitError(f"there is no branch {branch!r} in {self.root}",
                           hint="create it first with Workspace.create_branch")
        self._exclude_harness_dir()
        with self._worktrees_lock():
            return self._open_worktree(path, branch)

    def _worktrees_lock(self):
        """Held while this repository's worktrees are added, pruned or removed: git does not serialise these
        between processes (one's `worktree prune` can remove the `worktrees` folder another's `worktree add`
        is filling, or an `add` can read another's half-written entry), and loops started at once in one
        folder (`run --parallel`) all open their worktrees at the same moment."""
        return exclusive(self.git_dir / "autoresearch-worktrees.lock")

    def _open_worktree(self, path: Path, branch: str) -> Worktree:
        self._restore_link(path)  # what a killed run left there is never read; people's git use needs it
        if (path / ".git").is_file() and not self._valid_worktree(path):
            self._git("worktree", "repair", str(path), ok=(0, 1, 128, 129))  # 129: git < 2.29
        self._git("worktree", "prune")
        entry = next((e for e in self._registered() if e.path == path), None)
        if entry is not None and entry.locked == "initializing":
            self._drop_worktree(path, "its creation was interrupted")
            entry = None
        elif entry is not None and not self._valid_worktree(path):
            self._drop_worktree(path, "its folder is missing or damaged")
            entry = None
        if entry is not None:
            if entry.branch != branch:
                raise GitError(f"the worktree at {path} has {entry.branch or 'a detached HEAD'} checked out, "
                               f"not {branch!r}",
                               hint="open it with its own branch, or remove it with Workspace.remove_worktree")
            return Worktree(path, branch, self)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            if path.is_dir() and self._links_here(path):
                self._drop_worktree(path, "its folder is no longer registered")
            else:
                raise GitError(f"{path} exists and is not a worktree of {self.root}",
                               hint="move that folder away, or choose another worktree path")
        holder = next((e for e in self._registered() if e.branch == branch), None)
        if holder is not None:
            raise GitError(f"branch {branch!r} is checked out in {holder.path}",
                           hint=f"check out another branch there, or remove that worktree "
                                f"(`git worktree remove {holder.path}`)")
        self._git("worktree", "add", "--quiet", str(path), branch)
        log.info("added worktree %s for branch %s", path, branch)
        return Worktree(path, branch, self)

    def remove_worktree(self, path: Path) -> None:
        """Delete the worktree at `path` (uncommitted changes are lost) and its registration.
        Nothing happens if no worktree is registered there."""
        path = Path(path).resolve()
        self._check_worktree_path(path)
        with self._worktrees_lock():
            self._git("worktree", "prune")
            if any(e.path == path for e in self._registered()):
                self._restore_link(path)  # git removes only a worktree whose .git file points back
                self._git("worktree", "unlock", str(path), ok=(0, 1, 128))
                self._git("worktree", "remove", "--force", "--force", str(path))

    def dirty_files(self) -> list[str]:
        """Paths (relative to the task folder, sorted) with uncommitted changes in the main checkout:
        modified, staged, deleted, untracked and not ignored; `.autoresearch/` is left out.
        Reads only; takes no lock."""
        return self._changed()

    # -- the repository's configuration ------------------------------------------------------------------

    def _config_paths(self) -> tuple[list[Path], list[Path]]:
        """The files through which git could be made to run something or to see other files: inside the git
        folder, and the `.git` files of the checkouts that are links (`snapshot.config_paths`)."""
        return config_paths(self.git_dir, self._own_git_dir, self.root, self._worktree_records())

    def config_snapshot(self) -> ConfigSnapshot:
        """What the repository's configuration files hold now (`_config_paths`): take it before an agent
        session, give it to `restore_config` right after. Reads files only; runs no git."""
        return take_snapshot(*self._config_paths())

    def restore_config(self, before: ConfigSnapshot) -> list[str]:
        """Put back what changed since the snapshot `before` (`config_changes`): a changed file gets its old
        content and mode, a removed one is written again, a new one in the git folder is deleted (a new file
        outside it is only named). Returns the changed paths (relative to the task folder, sorted); [] when
        nothing changed. Runs no git."""
        return restore_snapshot(before, *self._config_paths(), git_dir=self.git_dir, root=self.root)


def _toplevel(folder: Path) -> Path | None:
    """The root of the work tree that `folder` is in; None when it is in no repository."""
    result = _run(["rev-parse", "--show-toplevel"], folder, ok=(0, 128))
    out = result.stdout.strip()
    if result.returncode == 0 and out:
        return Path(out).resolve()
    if "not a git repository" in result.stderr:
        return None
    raise GitError(f"cannot tell which git repository {folder} belongs to", command=["git", "rev-parse",
                   "--show-toplevel"], stderr=result.stderr,
                   hint=_hint(result.stderr, "make the task folder an ordinary (non-bare) git work tree"))


def _link_target(worktree: Path) -> Path | None:
    """Where the `.git` file of the folder `worktree` points (normalised), None when it is no such file (a
    folder, a link, something else, too big, or not `gitdir: <path>`). Reads the file only."""
    link = worktree / ".git"
    try:
        if link.is_symlink() or not link.is_file():
            return None
        with open(link, "rb") as f:
            data = f.read(4097)
    except OSError:
        return None
    text = data.decode(errors="surrogateescape").strip()
    if len(data) > 4096 or not text.startswith("gitdir:") or "\n" in text:
        return None
    target = text[len("gitdir:"):].strip()
    return Path(os.path.normpath(target if os.path.isabs(target) else worktree / target)) if target else None


def _lists_harness_dir(gitignore_text: str) -> bool:
    return any(line.strip() in _HARNESS_IGNORE_LINES for line in gitignore_text.splitlines())
