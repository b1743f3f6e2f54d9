"""Running git: every command of the harness goes through `_run`, locked down, and fails with `GitError`.

Every git command runs as `git -c ... <args>` through `subprocess.run`, with a fixed environment:

- no hooks (`core.hooksPath=/dev/null`), no signing, no fsmonitor, no automatic gc/maintenance
  (a detached background gc could hold locks while the next command runs), no colour, no pager,
  no editor, no terminal prompts (`GIT_TERMINAL_PROMPT=0`), locale C (so messages can be parsed);
- every `GIT_*` variable of the caller is dropped (a `GIT_DIR` or `GIT_INDEX_FILE` inherited from a
  hook would silently point git at another repository or index);
- the user's own identity is used when git has one; otherwise commits are made as
  `autoresearch <autoresearch@localhost>` (`Workspace._identity_config`).

Git runs programs named in its configuration (filters, diff and merge drivers, fsmonitor, hooks) and
reads configuration from files that code the harness does not trust can write: the worktree's `.git`
file (candidate code runs in the worktree), `.gitattributes` and `.gitmodules` in it, nested
repositories, the user's global configuration (a coding agent runs as the user). So every command
runs locked down:

- no system or global configuration (`GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`, no
  system or global attributes file): of the user's own configuration only the identity,
  `safe.directory`, `core.excludesFile` and `init.defaultBranch` are read (reading runs nothing),
  once, in an empty folder, and passed on with `-c`;
- a fixed `GIT_DIR` and `GIT_WORK_TREE`, which each checkout passes in (`Checkout._locations`): for the
  worktree, its entry in the repository's own folder (`<git_dir>/worktrees/<name>`, found from the
  `gitdir` records there), never what its `.git` file says. A `.git` file that says something else is
  put back (`Worktree.restore_link`, also at every `reset_hard` and when the worktree is opened);
- submodules are never entered (a status inside one would read the configuration its `.git` file
  names): `submodule.recurse=false`, `--ignore-submodules=all` where git compares files, `git add`
  passes over the submodules the index records (`Checkout._stage_all`), and no transport at all
  (`protocol.allow=never`); diffs run no external diff or textconv program;
- so the only configuration git reads is the repository's own (`.git/config`, `config.worktree`,
  `info/attributes`), out of reach of candidate code, and of a boxed agent (read-only in its box);
  an agent without a box could write it: see `snapshot`.

Every failure raises `GitError`, which names the command, quotes git's message and says how to fix it.
A failure caused by a `*.lock` file that a killed git left is repaired and the command retried, at most
once per lock file and for at most `MAX_STALE_LOCKS` of them (whether a lock is stale: see `locks`).

This module knows nothing of checkouts: `_run` takes the folder, the environment and the repository
(for lock recovery) from its caller. The git version (at least `MIN_GIT_VERSION`) and the user's
settings are read once and cached per PATH / home folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autoresearch.workspace.checkout import Checkout

MIN_GIT_VERSION = (2, 20)

#: At most this many stale lock files are cleared for one command (each one once).
MAX_STALE_LOCKS = 8
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
_LOCK_ERROR = re.compile(r"Unable to create '([^']+\.lock)': File exists")

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


def _command(args: Sequence[str], config: Sequence[str] = ()) -> list[str]:
    """`git -c <_CONFIG, the user's settings that are passed on, config> <args>`."""
    passed = [s for s in _user_settings() if not s.startswith("user.")]  # the identity only where it commits
    return ["git", *(a for c in (*_CONFIG, *passed, *config) for a in ("-c", c)), *args]


def _run(args: Sequence[str], cwd: Path, *, ok: Sequence[int] = (0,), input: str | None = None,
         env: Mapping[str, str] | None = None, config: Sequence[str] = (), hint: str = "",
         errors: str = "surrogateescape", scope: Checkout | None = None,
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

