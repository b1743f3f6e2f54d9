"""Accelerator idle time between experiments, with and without pipelining, for a slow agent.

Usage: python bench/pipeline_idle.py [--budget 30] [--experiments 5] [--think 20] [--task DIR]

Runs the real loop (`autoresearch run`) twice on the built-in task, with a `cmd:` agent that thinks for
`--think` seconds (it sleeps, as a remote LLM would keep this machine idle) and then changes one
constant of train.py, a different one each time: once with `--no-pipeline`, once with `--pipeline`. From the store it reports the
gaps between one experiment's end and the next one's start (the time the accelerator waits for the
agent, git and the store), and the share of the wall-clock time spent training.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from common import autoresearch, default_task

from autoresearch.store import Store

SLOW_AGENT = textwrap.dedent("""\
    import pathlib, re, sys, time
    time.sleep(float(sys.argv[1]))
    counter = pathlib.Path(sys.argv[2])
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    # one constant per proposal, in turn; they sit on every other line of train.py, so that a draft
    # rebases cleanly onto a kept change of the constant before it
    name, factor = (("SCALAR_LR", 1.5), ("MUON_MOMENTUM", 0.98), ("WARMUP_FRAC", None), ("FINAL_LR_FRAC", None),
                    ("ROPE_BASE", 2.0))[n % 5]
    train = pathlib.Path("train.py")
    text = train.read_text()
    old = float(re.search(rf"^{name} = ([0-9.]+)", text, flags=re.M).group(1))
    new = round(old * factor, 6) if factor else round(old + 0.05, 6)
    train.write_text(re.sub(rf"^{name} = [0-9.]+", f"{name} = {new}", text, count=1, flags=re.M))
    print(f"Description: {name} {old} -> {new}")
""")


def run_once(task: Path, agent: Path, pipeline: bool, args: argparse.Namespace) -> dict:
    tag = f"{'pipe' if pipeline else 'serial'}-{int(time.time())}"
    counter = agent.parent / f"{tag}.count"
    command = f"cmd:{sys.executable} {agent} {args.think} {counter}"
    start = time.perf_counter()
    autoresearch("run", "--agent", command, "--tag", tag, "--budget", str(args.budget), "--max-experiments",
                 str(args.experiments), "--pipeline" if pipeline else "--no-pipeline", cwd=task)
    wall = time.perf_counter() - start
    with Store.open(task) as store:
        history = store.experiments(tag)
    ran = [e for e in history if e.total_seconds is not None]
    gaps = [b.started_at - a.ended_at for a, b in itertools.pairwise(ran)]
    return {"wall": wall, "ran": len(ran), "gaps": gaps, "training": sum(e.training_seconds or 0 for e in ran),
            "span": ran[-1].ended_at - ran[0].started_at, "rebased": sum(e.metrics.get("rebased", 0) for e in ran),
            "rejected": [e.error for e in history if e.status.value == "rejected"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--experiments", type=int, default=5)
    parser.add_argument("--think", type=float, default=20.0, help="seconds the fake agent takes per proposal")
    parser.add_argument("--task", type=Path, default=None)
    args = parser.parse_args()
    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    agent = Path(tempfile.mkdtemp()) / "slow_agent.py"
    agent.write_text(SLOW_AGENT)
    print(f"{args.experiments} experiments of {args.budget:.0f} s each; the agent thinks {args.think:.0f} s "
          "per proposal")
    print(f"{'':<10} {'ran':>4} {'wall s':>7} {'idle between, mean s':>21} {'idle in all s':>14} "
          f"{'training share':>15} {'rebased':>8}")
    for pipeline in (False, True):
        r = run_once(task, agent, pipeline, args)
        idle = statistics.mean(r["gaps"]) if r["gaps"] else float("nan")
        print(f"{'pipelined' if pipeline else 'serial':<10} {r['ran']:4d} {r['wall']:7.1f} {idle:21.2f} "
              f"{sum(r['gaps']):14.1f} {100 * r['training'] / r['span']:14.1f}% {r['rebased']:8d}")
        for error in r["rejected"]:
            print(f"{'':<10} rejected: {error}")


if __name__ == "__main__":
    main()
