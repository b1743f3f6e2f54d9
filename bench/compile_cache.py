"""What the compile cache's design costs at start-up: each run starts from a fresh copy of the cache the
baseline's first run compiled (the frozen cache), and what it writes is thrown away.

Usage: python bench/compile_cache.py [--runs 4] [--budget 5] [--profile cpu] [--task DIR]

Runs the loop on a task whose baseline train.py compiles (`COMPILE = True` for the chosen profile, committed as
the task's code: on a CPU the cpu profile, which does not compile by default), with proposals that leave
the compiled graphs as they are (an unused constant each), and prints:
- each run's start-up by the harness's clock: the baseline's first run compiles cold, the later ones start
  from the copy of the frozen cache, warm;
- the frozen cache's size, and the time to make a run's copy of it (`folders.reset_compile_cache`), which is
  all the design adds to a warm start.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import default_task, run_replay

from autoresearch.run.folders import compile_cache, frozen_cache, reset_compile_cache


def compiling(train: str, profile: str) -> str:
    """train.py with `COMPILE = True` for `profile`: in the profile's `if PROFILE == ...:` block if that sets
    COMPILE, else in the flat constants at the top (those of the cpu profile, and of any profile without its
    own value)."""
    block = re.search(rf'^if PROFILE == "{re.escape(profile)}":.*\n(?:(?:    .*)?\n)*', train, flags=re.M)
    if block is not None and re.search(r"^    COMPILE = ", block.group(0), flags=re.M):
        inside = re.sub(r"^    COMPILE = False\b", "    COMPILE = True", block.group(0), count=1, flags=re.M)
        return train[:block.start()] + inside + train[block.end():]
    return re.sub(r"^COMPILE = False\b", "COMPILE = True", train, count=1, flags=re.M)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--task", type=Path, default=None)
    args = parser.parse_args()
    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    train = (task / "train.py").read_text()
    compiled = compiling(train, args.profile)
    if compiled != train:  # the task's own train.py compiles: the baseline is what the frozen cache is made of
        (task / "train.py").write_text(compiled)
        subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-qam",
                        "compile"], cwd=task, check=True)
    proposals = [{"description": f"same graphs {k}", "files": {"train.py": compiled + f"UNUSED_{k} = {k}\n"}}
                 for k in range(1, args.runs)]
    history = run_replay(task, proposals, "cache", args.budget)
    tag = history[0].tag
    for e in history:
        print(f"#{e.seq} {e.description:16} {e.status.value:9} start-up {e.metrics.get('startup_seconds', 0):6.2f} s")
    worktree = task / ".autoresearch" / "worktrees" / tag
    frozen = frozen_cache(worktree)
    size = sum(f.stat().st_size for f in frozen.rglob("*") if f.is_file()) if frozen.is_dir() else 0
    copies = []
    for _ in range(5):
        started = time.perf_counter()
        reset_compile_cache(worktree)
        copies.append(time.perf_counter() - started)
    files = sum(1 for f in compile_cache(worktree).rglob("*") if f.is_file())
    print(f"frozen cache: {size / 2**20:.1f} MB in {files} files; a run's copy takes "
          f"{statistics.median(copies) * 1000:.0f} ms (median of 5)")
    warm = [e.metrics["startup_seconds"] for e in history[1:] if e.metrics.get("startup_seconds") is not None]
    if history and history[0].metrics.get("startup_seconds") is not None and warm:
        print(f"start-up: the baseline's first run (cold) {history[0].metrics['startup_seconds']:.2f} s; runs of the "
              f"same graphs from the copy (warm) {statistics.median(warm):.2f} s (median of {len(warm)})")


if __name__ == "__main__":
    main()
