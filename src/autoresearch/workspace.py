"""The only place in the project that runs git: the task's repository and the harness's worktree.

The task folder is a git repository (`Workspace`). The research loop works in a linked worktree
(`Worktree`) on a branch of its own: the agent edits files there, the harness checks which files
changed, commits a proposal, and later keeps it (the branch stays) or discards it (`reset_hard` to
the best commit). Nothing else in the project calls git.

Every git command runs as `git -c ... <args>` through `subprocess.run`, with a fixed environment:

- no hooks (`core.hooksPath=/dev/null`), no signing, no fsmonitor, no automatic gc/maintenance
  (a detached background gc could hold locks while the next command runs), no colour, no pager,
  no editor, no terminal prompts (`GIT_TERMINAL_PROMPT=0`), locale C (so messages can be parsed);
- every `GIT_*` variable of the caller is dropped (a `GIT_DIR` or `GIT_INDEX_FILE` inherited from a
  hook would silently point git at another repository or index);
- the user's own identity is used when git has one; otherwise commits are made as
  `autoresearch <autoresearch@localhost>`.

Git runs programs named in its configuration (filters, diff and merge drivers, fsmonitor, hooks) and
reads configuration from files that code the harness does not trust can write: the worktree's `.git`
file (candidate code runs in the worktree), `.gitattributes` and `.gitmodules` in it, nested
repositories, the user's global configuration (a coding agent runs as the user). So every command
runs locked down:

- no system or global configuration (`GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`, no
  system or global attributes file): of the user's own configuration only the identity,
  `safe.directory`, `core.excludesFile` and `init.defaultBranch` are read (reading runs nothing),
  once, in an empty folder, and passed on with `-c`;
- a fixed `GIT_DIR` and `GIT_WORK_TREE`: for the worktree, its entry in the repository's own folder
  (`<git_dir>/worktrees/<name>`, found from the `gitdir` records there), never what its `.git`
  file says. A `.git` file that says something else is put back (`Worktree.restore_link`, also at
  every `reset_hard` and when the worktree is opened);
- submodules are never entered (a status inside one would read the configuration its `.git` file
  names): `submodule.recurse=false`, `--ignore-submodules=all` where git compares files, `git add`
  passes over the submodules the index records, and no transport at all (`protocol.allow=never`);
  diffs run no external diff or textconv program;
- so the only configuration git reads is the repository's own (`.git/config`, `config.worktree`,
  `info/attributes`), out of reach of candidate code, and of a boxed agent (read-only in its box).
  An agent without a box could write it: `Workspace.config_snapshot` and `restore_config` let the
  loop check it around each agent session, before any git command runs over the agent's edits.

Every failure raises `GitError`, which names the command, quotes git's message and says how to fix it.

Crash safety (the loop may be killed with `kill -9` at any moment and resumed):

- A `*.lock` file left by a killed git process (`index.lock`, a ref lock, ...) is removed, with a
  warning in the log, and the command is retried (once per lock file: one killed git may leave a
  worktree's `HEAD.lock` and its branch's ref lock both), when the lock is at least
  `STALE_LOCK_SECONDS` old (a younger one is waited for) and no git process that could hold it is
  running: one working in the repository's folders and started before the lock was written
  (checked in `/proc` where it exists; elsewhere only the age counts). While such a process runs
  the command waits, up to `LOCK_WAIT_SECONDS`, then fails with a `GitError` naming it.
- `Workspace.open_worktree` reuses a worktree still registered at the path (uncommitted files are
  kept: the caller decides, from its own records, whether to `discard_changes`), recreates one whose
  folder was deleted or whose `git worktree add` was interrupted, and repairs links broken by moving
  the task folder. Processes take turns at it (an `flock` in the git folder): git does not serialise
  adding, pruning and removing worktrees between processes, and `run --parallel` opens them all at once.
- Listing changes runs `git status --no-optional-locks`, so it takes no lock at all; `diff` stages
  into a temporary index, so it never leaves anything staged in the real one.
- `reset_hard` can simply be repeated. A `commit` killed before git finished leaves at most staged
  changes (commit again, or `discard_changes`); one killed after git finished leaves the branch a
  commit ahead of what the caller recorded: compare `branch_head` with the experiment store, then
  `reset_hard` to the recorded commit (or adopt the new one: its message is the description).
- Discarded commits stay in the object store (reflogs keep them, automatic gc is off), so
  `commit_exists` can still find any commit the experiment store recorded.

The harness folder `.autoresearch/` is never committed, listed, diffed or cleaned: `Workspace.ensure`
makes the task's `.gitignore` list it (and commits that), the repository's own `info/exclude` lists it
too (shared by every worktree, out of reach of an agent editing `.gitignore`), listings and cleaning
exclude it by pathspec, and staging unstages it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch.runlock import exclusive

log = logging.getLogger(__name__)

HARNESS_DIR = ".autoresearch"
TASK_COMMIT_MESSAGE = "autoresearch: task"
IGNORE_COMMIT_MESSAGE = "autoresearch: ignore .autoresearch/"
FALLBACK_NAME = "autoresearch"
FALLBACK_EMAIL = "autoresearch@localhost"
MIN_GIT_VERSION = (2, 20)

#: At most this many stale lock files are cleared for one command (each one once).
MAX_STALE_LOCKS = 8
#: A lock file at least this old, with no git process running in the repository, is stale.
STALE_LOCK_SECONDS = 5.0
#: How long to wait for a live git process in the repository to release its lock.
LOCK_WAIT_SECONDS = 30.0
#: No single git command of the harness should take anywhere near this long.
GIT_TIMEOUT_SECONDS = 600.0

_CONFIG = (
    f"core.hooksPath={os.devnull}",
    "core.fsmonitor=false",
    f"core.attributesFile={os.devnull}",
    "commit.gpgSign=false",
    "tag.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "color.ui=false",
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
    "status.submoduleSummary=false",
    "submodule.recurse=false",
    "protocol.allow=never",
    "protocol.file.allow=never",
    "advice.detachedHead=false",
)
# What git reads instead of the system and global configuration (and attributes).
_LOCKED_ENV = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_ATTR_NOSYSTEM": "1"}
# The user's own settings that are passed on (`_user_settings`): none of them makes git run anything.
_USER_KEYS = ("user.name", "user.email", "safe.directory", "core.excludesfile", "init.defaultbranch")
_GLOBAL_CONFIG_VERSION = (2, 32)  # the first git that knows GIT_CONFIG_GLOBAL
# The repository's files through which git could be made to run a program or to see other files.
_CONFIG_FILES = ("config", "config.worktree", "info/attributes", "info/exclude")
_ADMIN_FILES = ("config.worktree", "commondir", "gitdir")  # of each worktree's entry
_SNAPSHOT_MAX_BYTES = 1 << 20  # a bigger file is fingerprinted by its digest (it cannot be put back)
# Listing and cleaning exclude the harness's own folder by pathspec (`git add` refuses such a pathspec
# when the folder is ignored: staging unstages it afterwards instead).
_NOT_HARNESS = f":(top,exclude){HARNESS_DIR}"
_LOCK_ERROR = re.compile(r"Unable to create '([^']+\.lock)': File exists")
_HARNESS_IGNORE_LINES = {f"{HARNESS_DIR}/", HARNESS_DIR, f"/{HARNESS_DIR}/", f"/{HARNESS_DIR}",
                         f"{HARNESS_DIR}/*", f"/{HARNESS_DIR}/*", f"{HARNESS_DIR}/**", f"/{HARNESS_DIR}/**"}

# (pattern in git's stderr, how to fix it): problems of the machine or the repository, whatever the command.
_KNOWN_PROBLEMS = (
    (re.compile(r"not a git repository", re.I),
     "the folder is not a git repository: run `autoresearch init` in the task folder (or `git init`)"),
    (re.compile(r"dubious ownership", re.I),
     "the repository belongs to another user: fix its ownership, or trust it with "
     "`git config --global --add safe.directory <path>`"),
    (_LOCK_ERROR,
     "another git process is using the repository; if none is running, delete the .lock file named above"),
    (re.compile(r"No space left on device", re.I), "the disk is full: free some space and resume"),
    (re.compile(r"Permission denied|Operation not permitted", re.I),
     "git may not write there: check the permissions of the task folder and its .git folder"),
    (re.compile(r"Please tell me who you are", re.I),
     "set an identity: `git config --global user.name NAME` and `git config --global user.email EMAIL`"),
)


class GitError(Exception):
    """A git command failed, or git cannot be used here.

    `command` is the git command line (None when git could not be started), `stderr` git's own
    message, `hint` what to do about it. `str()` gives all three.
    """

    def __init__(self, message: str, *, command: Sequence[str] | None = None, stderr: str = "",
                 hint: str = "") -> None:
        self.message = message
        self.command = list(command) if command is not None else None
        self.stderr = stderr.strip()
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        lines = [self.message]
        if self.command:
            lines.append("  command: " + " ".join(self.command))
        if self.stderr:
            lines.append("  git said: " + self.stderr.replace("\n", "\n            "))
        if self.hint:
            lines.append("  fix: " + self.hint)
        return "\n".join(lines)


class NothingToCommit(GitError):
    """`Worktree.commit` found no change to commit."""


# --------------------------------------------------------------------------------------------------
# Scope: which changed paths the agent may touch (pure, no git).

def _normalise(path: str) -> str:
    path = path.replace("\\", "/") if os.sep == "\\" else path
    while path.startswith("./"):
        path = path[2:]
    return path


def _check_pattern(pattern: str) -> str:
    pattern = _normalise(pattern.strip())
    parts = pattern.rstrip("/").split("/")
    if not pattern or pattern.startswith("/") or ".." in parts or "" in parts:
        raise ValueError(f"editable entry {pattern!r} must be a path relative to the task folder, "
                         "like 'train.py', 'src/*.py', '**/*.py' or 'configs/'")
    return pattern


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:[^/]*/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = i + 1
            if j < n and pattern[j] in "!^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:  # no closing bracket: a literal "["
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1:j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z")


def matches_scope(path: str, editable: Sequence[str]) -> bool:
    """Whether `path` (relative to the task folder, with '/') is covered by the `editable` entries.

    An entry is one of:
    - an exact path: `train.py` covers only `train.py`;
    - a folder, ending in `/`: `configs/` covers everything below `configs`;
    - a glob, anchored at the task folder: `*` and `?` never cross a `/`, `**/` spans any number
      of folders (also none), `[abc]` / `[!abc]` are character classes. `src/*.py` covers
      `src/a.py` but not `src/x/a.py` nor `a.py`; `**/*.py` covers every `.py` file.
    Matching is case-sensitive. A leading `./` is ignored. Raises ValueError for an entry that is
    empty, absolute or contains `..`.
    """
    path = _normalise(path)
    for entry in editable:
        pattern = _check_pattern(entry)
        if pattern.endswith("/") and not any(ch in pattern for ch in "*?["):
            if path.startswith(pattern) or path == pattern.rstrip("/"):
                return True
        elif any(ch in pattern for ch in "*?["):
            if _glob_regex(pattern).match(path):
                return True
        elif path == pattern:
            return True
    return False


# --------------------------------------------------------------------------------------------------
# Running git.

def _environment(extra: Mapping[str, str] | None = None, *, locked: bool = True) -> dict[str, str]:
    """The environment of a git command: the caller's without its `GIT_*` variables, plus `extra`. `locked`
    (every command but the one reading the user's settings): no system or global configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.pop("LANGUAGE", None)
    env.update(LC_ALL="C", LANG="C", GIT_TERMINAL_PROMPT="0", GIT_PAGER="cat", PAGER="cat",
               GIT_EDITOR="true", GIT_ASKPASS="true", SSH_ASKPASS="true")
    if locked:
        env.update(_LOCKED_ENV)
        if _checked_gits.get(env.get("PATH", ""), _GLOBAL_CONFIG_VERSION) < _GLOBAL_CONFIG_VERSION:
            # an older git ignores GIT_CONFIG_GLOBAL: it finds no global configuration where there is no home
            env.update(HOME=os.path.join(os.devnull, "no-home"), XDG_CONFIG_HOME=os.path.join(os.devnull, "no-home"))
    if extra:
        env.update(extra)
    return env


_checked_gits: dict[str, tuple[int, int]] = {}  # PATH -> the version of the git found on it


def _user_settings() -> list[str]:
    """`key=value` settings taken from the user's own system and global git configuration: the identity,
    `safe.directory`, `core.excludesFile` and `init.defaultBranch` (`_USER_KEYS`). Read with `git config --list`
    in an empty folder (reading configuration runs nothing), once per home folder; every other setting there
    is left out, since a program the harness does not trust (a coding agent, as the user) could have written it."""
    key = (os.environ.get("PATH", ""), os.environ.get("HOME", ""), os.environ.get("XDG_CONFIG_HOME", ""))
    if key in _user_cache:
        return _user_cache[key]
    found: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="autoresearch-git-") as empty:
        for scope in ("--system", "--global"):
            try:
                result = subprocess.run(["git", "config", "--list", "-z", "--includes", scope], cwd=empty,
                                        capture_output=True, env=_environment(locked=False), stdin=subprocess.DEVNULL,
                                        timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                continue
            for item in result.stdout.decode(errors="surrogateescape").split("\0"):
                name, _, value = item.partition("\n")
                if name.lower() in _USER_KEYS and value and "\n" not in value:
                    found.setdefault(name.lower(), []).append(value)
    settings = [f"safe.directory={value}" for value in found.get("safe.directory", [])]
    for name in ("user.name", "user.email", "core.excludesfile", "init.defaultbranch"):
        if found.get(name):
            value = found[name][-1]  # the last one counts, as in git
            settings.append(f"{name}={os.path.expanduser(value) if name == 'core.excludesfile' else value}")
    _user_cache[key] = settings
    return settings


_user_cache: dict[tuple[str, str, str], list[str]] = {}


def _user_setting(name: str) -> str | None:
    """The value of `name` (lower case) in the user's own configuration, as `_user_settings` passes it on."""
    values = [s.partition("=")[2] for s in _user_settings() if s.partition("=")[0] == name]
    return values[-1] if values else None


def _check_git() -> None:
    """Raise GitError unless a git of at least MIN_GIT_VERSION is on PATH (checked once per PATH)."""
    path = os.environ.get("PATH", "")
    if path in _checked_gits:
        return
    try:
        result = subprocess.run(["git", "--version"], capture_output=True, text=True, env=_environment(),
                                stdin=subprocess.DEVNULL, timeout=60)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as e:
        raise GitError(f"git cannot be run: {e}",
                       hint="install git (e.g. `apt-get install git`, `brew install git`) and make sure "
                            "it is on PATH") from None
    match = re.search(r"(\d+)\.(\d+)", result.stdout)
    if result.returncode != 0 or not match:
        raise GitError("`git --version` failed", command=["git", "--version"], stderr=result.stderr,
                       hint="reinstall git (e.g. `apt-get install git`)")
    version = (int(match.group(1)), int(match.group(2)))
    if version < MIN_GIT_VERSION:
        raise GitError(f"git {version[0]}.{version[1]} is too old; autoresearch needs git >= "
                       f"{MIN_GIT_VERSION[0]}.{MIN_GIT_VERSION[1]}", hint="upgrade git")
    _checked_gits[path] = version


def _boot_time() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _git_processes(dirs: Sequence[Path], since: float) -> list[str]:
    """Live git processes that may hold a lock written at time `since`: 'pid: cmdline' of each one
    that is not ours, started before `since` (a later one cannot have taken the lock) and works in
    one of `dirs`.

    Empty where `/proc` does not exist: then lock staleness is judged by age alone.
    """
    proc = Path("/proc")
    try:
        boot, tick = _boot_time(), os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return []
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if not (entry / "comm").read_text().strip().startswith("git"):
                continue
            started = boot + int((entry / "stat").read_text().rpartition(")")[2].split()[19]) / tick
            cwd = Path(os.readlink(entry / "cwd"))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue
        if started > since + 1.0 or "fsmonitor--daemon" in cmdline:
            continue
        if any(cwd == d or d in cwd.parents for d in dirs):
            found.append(f"{entry.name}: {cmdline}")
    return found


def _command(args: Sequence[str], config: Sequence[str] = ()) -> list[str]:
    """`git -c <_CONFIG, the user's settings that are passed on, config> <args>`."""
    passed = [s for s in _user_settings() if not s.startswith("user.")]  # the identity only where it commits
    return ["git", *(a for c in (*_CONFIG, *passed, *config) for a in ("-c", c)), *args]


def _run(args: Sequence[str], cwd: Path, *, ok: Sequence[int] = (0,), input: str | None = None,
         env: Mapping[str, str] | None = None, config: Sequence[str] = (), hint: str = "",
         errors: str = "surrogateescape", scope: _Repo | None = None,
         binary: bool = False) -> subprocess.CompletedProcess:
    """Run `git -c <_CONFIG and config> <args>` in `cwd`, locked down (see the module docstring); raise
    GitError unless its exit status is in `ok`. `binary`: its output as bytes, as git wrote it.

    With `scope` (the repository), a failure caused by a stale lock file is repaired, once per lock file: a
    killed git may leave several (a worktree's HEAD.lock and its branch's ref lock).
    """
    _check_git()
    command = _command(args, config)
    shown = ["git", *args]
    held = ""
    cleared: set[str] = set()
    while True:
        try:
            result = subprocess.run(command, cwd=cwd, input=input, capture_output=True, text=not binary,
                                    encoding=None if binary else "utf-8", errors=None if binary else errors,
                                    env=_environment(env), stdin=None if input is not None else subprocess.DEVNULL,
                                    timeout=GIT_TIMEOUT_SECONDS)
        except FileNotFoundError as e:
            if not Path(cwd).is_dir():
                raise GitError(f"folder {cwd} does not exist", command=shown,
                               hint="create it, or check the path") from None
            raise GitError(f"git cannot be run: {e}", command=shown,
                           hint="install git (e.g. `apt-get install git`) and make sure it is on PATH") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git did not finish within {GIT_TIMEOUT_SECONDS:.0f} s in {cwd}", command=shown,
                           hint="look for a hung git process or a very slow disk; a lock it leaves is "
                                "cleared on the next try") from None
        if result.returncode in ok:
            return result
        stderr = result.stderr.decode(errors="replace") if binary else result.stderr
        lock = _LOCK_ERROR.search(stderr)
        if lock and scope is not None and lock.group(1) not in cleared and len(cleared) < MAX_STALE_LOCKS:
            why = scope._clear_lock(Path(lock.group(1)), shown)
            if why is None:
                cleared.add(lock.group(1))
                continue
            held = why
        break
    raise GitError(f"git {args[0] if args else ''} failed (exit {result.returncode}) in {cwd}",
                   command=shown, stderr=stderr, hint=held or _hint(stderr, hint))


def _hint(stderr: str, fallback: str) -> str:
    for pattern, fix in _KNOWN_PROBLEMS:
        if pattern.search(stderr):
            return fix
    return fallback or "see git's message above"


def _check_rev(rev: str) -> str:
    if not rev or rev.startswith("-") or any(c.isspace() or c == "\0" for c in rev):
        raise GitError(f"{rev!r} is not a commit or revision name",
                       hint="pass a commit sha, a branch name or HEAD")
    return rev


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


class _Repo:
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
        """Remove `lock` if it is stale (see the module docstring).

        Returns None when the command may be retried (the lock was stale and is gone, or its holder
        released it), else why the lock was left alone.
        """
        lock = lock if lock.is_absolute() else self.path / lock
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                written = lock.stat().st_mtime
            except FileNotFoundError:
                return None  # released meanwhile by the process that held it
            age = time.time() - written
            busy = _git_processes(self._scope_dirs(), since=written)
            if not busy and age >= STALE_LOCK_SECONDS:
                try:
                    lock.unlink()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    return f"the stale lock {lock} cannot be removed ({e}): delete it by hand"
                log.warning("removed stale git lock %s (%.0f s old, no git process running in %s), "
                            "left by a git process that was killed; retrying: %s",
                            lock, age, self._root(), " ".join(command))
                return None
            if time.monotonic() >= deadline:
                return (f"{lock} is still held after {LOCK_WAIT_SECONDS:.0f} s by git processes working in the "
                        f"repository ({'; '.join(busy)}): let them finish or end them, then resume")
            time.sleep(0.1)

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


# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Registered:
    path: Path
    branch: str | None  # None: detached
    locked: str | None  # the lock reason ("" when locked without one), None when not locked


class Workspace(_Repo):
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
        folder (its config, config.worktree files, info/attributes, info/exclude, the hooks folder's entries,
        each worktree entry's records), and the `.git` files of the checkouts that are links."""
        common = self.git_dir
        inside = [common / name for name in _CONFIG_FILES] + [common / "hooks"]
        try:
            inside += sorted((common / "hooks").iterdir()) if (common / "hooks").is_dir() else []
        except OSError:
            pass
        links = [self.root / ".git"] if self._own_git_dir != common else []
        if self._own_git_dir != common:
            inside += [self._own_git_dir / name for name in _ADMIN_FILES]
        for admin, link in self._worktree_records():
            inside += [admin / name for name in _ADMIN_FILES]
            if link is not None:
                links.append(link)
        return inside, links

    def config_snapshot(self) -> ConfigSnapshot:
        """What the repository's configuration files hold now (`_config_paths`): take it before an agent
        session, give it to `restore_config` right after. Reads files only; runs no git."""
        inside, links = self._config_paths()
        return ConfigSnapshot({str(p): entry for p in (*inside, *links) if (entry := _file_entry(p)) is not None})

    def restore_config(self, before: ConfigSnapshot) -> list[str]:
        """Put back what changed since the snapshot `before` (`config_changes`): a changed file gets its old
        content and mode, a removed one is written again, a new one in the git folder is deleted (a new file
        outside it is only named). Returns the changed paths (relative to the task folder, sorted); [] when
        nothing changed. Runs no git."""
        inside, links = self._config_paths()
        now = ConfigSnapshot({p: entry for p in {*map(str, inside), *map(str, links), *before.files}
                              if (entry := _file_entry(Path(p))) is not None})
        changed = config_changes(before, now)
        for name in sorted(changed, key=len):  # a folder before what is in it
            path = Path(name)
            if name in before.files:
                _put_entry(path, before.files[name])
            elif self.git_dir in path.parents:
                _remove_entry(path)
        if changed:
            log.warning("git configuration changed in %s, put back: %s", self.root, ", ".join(changed))
        return [os.path.relpath(p, self.root) for p in changed]


@dataclass(frozen=True)
class ConfigSnapshot:
    """The repository's configuration files at one moment (`Workspace.config_snapshot`): path -> (kind, content,
    mode), kind "file" (content: its bytes), "digest" (a big file: the SHA-256 of its bytes), "link" (content:
    its target) or "folder" (no content); a missing file has no entry."""

    files: Mapping[str, tuple[str, bytes, int]]


def config_changes(before: ConfigSnapshot, after: ConfigSnapshot) -> list[str]:
    """The paths whose entry differs between two snapshots: changed, added or removed; sorted."""
    return sorted(p for p in {*before.files, *after.files} if before.files.get(p) != after.files.get(p))


def _file_entry(path: Path) -> tuple[str, bytes, int] | None:
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode):
            return ("link", os.fsencode(os.readlink(path)), 0)
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            return ("folder", b"", mode)
        if not stat.S_ISREG(info.st_mode):
            return ("other", b"", mode)
        with open(path, "rb") as f:
            if info.st_size <= _SNAPSHOT_MAX_BYTES:
                return ("file", f.read(), mode)
            digest = hashlib.sha256()
            while chunk := f.read(1 << 20):
                digest.update(chunk)
            return ("digest", digest.digest(), mode)
    except OSError:
        return None


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _put_entry(path: Path, entry: tuple[str, bytes, int]) -> None:
    kind, content, mode = entry
    if kind == "folder" and path.is_dir() and not path.is_symlink():
        os.chmod(path, mode)
        return
    if kind in ("digest", "other"):
        return  # its content was not kept: it is only named
    _remove_entry(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "link":
        os.symlink(os.fsdecode(content), path)
    elif kind == "folder":
        path.mkdir(mode=mode)
    else:
        path.write_bytes(content)
        os.chmod(path, mode)


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


class Worktree(_Repo):
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

    def apply_change(self, commit: str) -> list[str]:
        """Apply the change that `commit` made to its parent onto the files here, uncommitted: a three-way
        merge, as a rebase does it. Returns [] when it applied; when it conflicts, the files are restored to
        HEAD and the conflicting paths are returned. The files must have no uncommitted changes."""
        sha = self._commit_of(commit)
        if self._git("cherry-pick", "--no-commit", sha, ok=(0, 1)).returncode == 0:
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
