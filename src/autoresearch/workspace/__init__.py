"""The only place in the project that runs git: the task's repository and the harness's worktree.

The task folder is a git repository (`Workspace`). The research loop works in a linked worktree
(`Worktree`) on a branch of its own: the agent edits files there, the harness checks which files
changed, commits a proposal, and later keeps it (the branch stays) or discards it (`reset_hard` to
the best commit). Nothing else in the project calls git, and within this package only the module
`git` starts it: every command of a checkout through `git._run`, locked down (no system or global
configuration, no hooks, filters or fsmonitor, a fixed `GIT_DIR`/`GIT_WORK_TREE`, never inside
submodules) in a fixed environment.

Every failure raises `GitError`, which names the command, quotes git's message and says how to fix it.

The harness folder `.autoresearch/` is never committed, listed, diffed or cleaned: `Workspace.ensure`
makes the task's `.gitignore` list it (and commits that), the repository's own `info/exclude` lists it
too (shared by every worktree, out of reach of an agent editing `.gitignore`), listings and cleaning
exclude it by pathspec, and staging unstages it again.

Crash safety: the loop may be killed with `kill -9` at any moment and resumed; each module says what
that leaves and how it is repaired.

Modules (each docstring states its invariants):

- `git`: running git, its fixed environment and lock-down, the user's settings passed on, `GitError`;
- `locks`: stale lock files left by a killed git (`STALE_LOCK_SECONDS`, `LOCK_WAIT_SECONDS` live there);
- `scope`: which paths the agent may change (`matches_scope`), the harness folder (pure, no git);
- `checkout`: the commands both checkouts share (queries, staging, listing changes);
- `repo`: `Workspace`, the task folder's repository: `ensure`, branches, worktrees;
- `worktree`: `Worktree`: changes, editable files, diff, commit, resets;
- `snapshot`: `ConfigSnapshot`, the repository's configuration checked around an agent session.
"""

from autoresearch.workspace.git import GitError, NothingToCommit
from autoresearch.workspace.repo import (
    FALLBACK_EMAIL,
    FALLBACK_NAME,
    IGNORE_COMMIT_MESSAGE,
    TASK_COMMIT_MESSAGE,
    Workspace,
)
from autoresearch.workspace.scope import HARNESS_DIR, matches_scope
from autoresearch.workspace.snapshot import ConfigSnapshot, config_changes
from autoresearch.workspace.worktree import Worktree

__all__ = [
    "FALLBACK_EMAIL",
    "FALLBACK_NAME",
    "HARNESS_DIR",
    "IGNORE_COMMIT_MESSAGE",
    "TASK_COMMIT_MESSAGE",
    "ConfigSnapshot",
    "GitError",
    "NothingToCommit",
    "Workspace",
    "Worktree",
    "config_changes",
    "matches_scope",
]
