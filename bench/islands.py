"""Do runs that share their best (`--adopt-from`) get further than runs that search alone?

Usage: python bench/islands.py [--runs 2] [--experiments 40] [--repeats 3] [--adopt-after 0] [--modes alone,sharing]

Each repeat starts `--runs` loops at once in one task folder (the fast task of `bench/night.py`: a loss that
is a smooth function of four constants plus seeded noise), each with the `tune` agent and its own tag, for
`--experiments` experiments each: once alone, once with `--adopt-from '*'` (and `--adopt-after`), or only the
`--modes` named. Runs that share take up each other's bests, and `tune` takes in each other's trials. Repeats
differ in `loop.seed`.
It prints, for each repeat and mode, the true (noise-free) loss of the best code the runs ended with, the
best over the runs and their mean, and how many bests were taken up. The true loss is computed from the
constants in each run's kept code, so the comparison is free of the measurement noise.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from night import git, make_task

from autoresearch.store import Status, Store


def true_loss(source: str) -> float:
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Constant):
            values[node.targets[0].id] = node.value.value
    lr, wd, warmup, depth = values["LR"], values["WD"], values["WARMUP_FRAC"], values["DEPTH"]
    return 1.0 + (lr - 0.03) ** 2 * 100 + (wd - 0.2) ** 2 + (warmup - 0.1) ** 2 + 0.01 * (depth - 6) ** 2


def one(root: Path, runs: int, experiments: int, seed: int, adopt: int | None) -> tuple[list[float], int]:
    """`adopt`: None, alone; else sharing, with this `--adopt-after`."""
    task = make_task(root)
    toml = (task / "autoresearch.toml").read_text().replace("seed = 0", f"seed = {seed}", 1)
    (task / "autoresearch.toml").write_text(toml)
    git(task, "-c", "user.name=b", "-c", "user.email=b@localhost", "commit", "-q", "--allow-empty", "-am", "seed")
    tags = [f"island{i}" for i in range(runs)]
    procs = [subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--agent", "tune", "--tag", tag,
                               "--max-experiments", str(experiments), *(["--adopt-from", "*", "--adopt-after", str(adopt)] if adopt is not None else [])],
                              cwd=task, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for tag in tags]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"a loop failed:\n{err}")
    losses, taken = [], 0
    with Store.open(task) as store:
        for tag in tags:
            history = store.experiments(tag)
            kept = [e for e in history if e.status is Status.KEEP]
            taken += sum(1 for e in history if "adopted_from" in e.metrics)
            losses.append(true_loss(git(task, "show", f"{kept[-1].commit}:loss.py")))
    return losses, taken


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--experiments", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--adopt-after", type=int, default=0, help="experiments without a keep before taking up")
    parser.add_argument("--modes", default="alone,sharing", help="which of alone and sharing to run")
    args = parser.parse_args()
    modes = [mode for mode in ("alone", "sharing") if mode in args.modes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="autoresearch-islands-"))
    summary: dict[str, list[float]] = {mode: [] for mode in modes}
    for seed in range(args.repeats):
        for mode in modes:
            losses, taken = one(root / f"{mode}-{seed}", args.runs, args.experiments, seed,
                                args.adopt_after if mode == "sharing" else None)
            summary[mode].append(min(losses))
            print(f"seed {seed} {mode:8s} true loss of each run's best: {', '.join(f'{v:.5f}' for v in losses)}; "
                  f"best {min(losses):.5f}, mean {statistics.mean(losses):.5f}; {taken} bests taken up")
    for mode, bests in summary.items():
        print(f"{mode:8s} best of the {args.runs} runs, over {args.repeats} repeats: mean {statistics.mean(bests):.5f}"
              f" (each: {', '.join(f'{v:.5f}' for v in bests)})")


if __name__ == "__main__":
    main()
