"""The built-in `tune` agent (Optuna TPE) against Optuna's random sampler on the same task.

Usage: python bench/tune_vs_random.py [--experiments 12] [--budget 30] [--task DIR]

Runs `autoresearch run` twice (tags tpe-* and random-*), each with the baseline as experiment 0,
and prints every experiment, then for each agent: the baseline, the best val_bpb found, and how many
changes were kept.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import autoresearch, default_task

from autoresearch.store import Status, Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, default=12)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--task", type=Path, default=None)
    args = parser.parse_args()
    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    stamp = int(time.time())
    for agent, tag in (("tune", f"tpe-{stamp}"), ("tune:random", f"random-{stamp}")):
        autoresearch("run", "--agent", agent, "--tag", tag, "--budget", str(args.budget),
                     "--max-experiments", str(args.experiments), cwd=task)
        with Store.open(task) as store:
            history = store.experiments(tag)
        for e in history:
            metric = "-" if e.metric is None else f"{e.metric:.4f}"
            rate = f"{e.tokens / e.training_seconds:,.0f}" if e.tokens and e.training_seconds else "-"
            print(f"  {agent:<12} #{e.seq:<3} {e.status.value:<8} {metric:>7} {rate:>7} tok/s  {e.description}")
        kept = [e for e in history if e.status == Status.KEEP]
        crashed = sum(e.status in (Status.CRASH, Status.TIMEOUT) for e in history)
        print(f"{agent:<12} baseline {history[0].metric:.4f}  best {min(e.metric for e in kept):.4f}  "
              f"kept {len(kept) - 1} of {len(history) - 1} changes, {crashed} crashed or timed out")


if __name__ == "__main__":
    main()
