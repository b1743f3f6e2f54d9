"""Seconds per experiment the loop spends outside training: start-up, evaluation, git, store, agent.

Usage: python bench/loop_overhead.py [--budget 60] [--experiments 4] [--task DIR]

Runs the real loop (`autoresearch run`) with the replay agent on small real edits of train.py,
then splits each experiment's wall time using the store's records and the run's own timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import autoresearch, default_task

from autoresearch.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--experiments", type=int, default=4)
    parser.add_argument("--task", type=Path, default=None)
    args = parser.parse_args()
    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    train_py = (task / "train.py").read_text()
    proposals = [{"description": f"warmdown {f}",
                  "files": {"train.py": train_py.replace("WARMDOWN_FRAC = 0.4", f"WARMDOWN_FRAC = {f}")}}
                 for f in ("0.3", "0.5", "0.6", "0.7", "0.2", "0.8")][: args.experiments - 1]
    patches = task / ".autoresearch-bench-patches.json"
    patches.write_text(json.dumps(proposals))
    tag = f"overhead-{int(time.time())}"
    start = time.perf_counter()
    autoresearch("run", "--agent", f"replay:{patches}", "--tag", tag, "--budget", str(args.budget),
                 "--max-experiments", str(args.experiments), cwd=task)
    wall = time.perf_counter() - start
    with Store.open(task) as store:
        history = store.experiments(tag)
        runs = sum(len(store.measured_runs(e)) or 1 for e in history)  # the baseline's seeds, confirmations
    training = sum((e.training_seconds or 0) * len(e.metrics.get("runs") or [0]) for e in history)
    runner = sum(e.total_seconds or 0 for e in history)
    startup = [e.metrics.get("startup_seconds", 0) for e in history]
    evals = [e.metrics.get("eval_seconds", 0) for e in history]
    probes = [e.metrics.get("probe_seconds", 0) for e in history]
    probed = [p for p in probes if p]
    n = len(history)
    per = (wall - training) / runs
    print(f"{n} experiments ({runs} runs) at a {args.budget:.0f} s budget, {wall:.1f} s wall in all")
    print(f"outside training, per run: {per:.1f} s ({100 * per / args.budget:.1f}% of the budget); start-up and "
          "evaluation from each experiment's first run")
    print(f"  train.py start-up      {statistics.mean(startup):5.1f} s")
    print(f"  evaluation             {statistics.mean(evals):5.1f} s")
    probe_per_run = sum(probes) / runs
    print(f"  causality probe + test {probe_per_run:5.1f} s  ({len(probed)} experiments probed, "
          f"{statistics.mean(probed) if probed else 0:.1f} s each)")
    print(f"  trusted metric in all  {statistics.mean(evals) + probe_per_run:5.1f} s  (evaluation, probe, test)")
    other = (runner - training) / runs - statistics.mean(startup) - statistics.mean(evals) - probe_per_run
    print(f"  other runner work      {other:5.1f} s  (process start, machine-speed probes, save, log)")
    print(f"  loop: agent, git, store, CLI start {(wall - runner) / n:5.1f} s")


if __name__ == "__main__":
    main()
