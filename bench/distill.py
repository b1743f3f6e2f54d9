"""Distillation of a real run: how many kept changes survive, what it cost, and where the result lands.

Usage: python bench/distill.py [--experiments 30] [--budget 20] [--task DIR] [--rule strict|confirm]

Runs `autoresearch run --agent tune` for `--experiments` experiments on the built-in task (CPU defaults),
then `autoresearch distill`, and prints the kept changes with their effects when kept and at the end,
which were dropped, the runs and wall time the distillation cost against the run's own, and the distilled
code's val_bpb against the original best. `--rule strict` runs the search with the original's keep-any-gain
rule, which keeps more changes that do nothing, for the distillation to find.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import autoresearch, default_task

from autoresearch.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, default=30)
    parser.add_argument("--budget", type=float, default=20.0)
    parser.add_argument("--task", type=Path, default=None)
    parser.add_argument("--rule", choices=("strict", "confirm"), default="confirm")
    args = parser.parse_args()
    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    toml = task / "autoresearch.toml"
    toml.write_text(toml.read_text().replace('rule = "confirm"', f'rule = "{args.rule}"'))
    tag = f"distill-{int(time.time())}"
    started = time.time()
    autoresearch("run", "--agent", "tune", "--tag", tag, "--budget", str(args.budget),
                 "--max-experiments", str(args.experiments), cwd=task)
    searched = time.time() - started
    started = time.time()
    done = autoresearch("distill", "--tag", tag, "--budget", str(args.budget), cwd=task)
    distilled = time.time() - started
    print(done.stdout)
    with Store.open(task) as store:
        run_runs = sum(len(store.runs(e)) for e in store.experiments(tag))
        removal_runs = sum(len(store.runs(e)) for e in store.experiments(tag + "-distill"))
        kept = [e for e in store.experiments(tag) if e.status.value == "keep" and e.seq > 0]
        line = store.experiments(tag + "-distill")
        dropped = [e for e in line if e.seq > 0 and e.status.value == "keep"]
        final = store.incumbent(tag + "-distill")
    print(f"rule {args.rule}, {args.experiments} experiments of {args.budget:g} s: {len(kept)} kept changes, "
          f"{len(kept) - len(dropped)} survive distillation, {len(dropped)} dropped")
    print(f"the search: {run_runs} runs in {searched / 60:.1f} min; the distillation: {removal_runs} runs in "
          f"{distilled / 60:.1f} min ({removal_runs / max(run_runs, 1):.0%} of the search's runs)")
    print(f"val_bpb: original best {line[0].metric:.4f} (its runs in the distillation), distilled "
          f"{final.metric:.4f} (#{final.seq} of the distill line)")
    print((task / "distill.md").read_text())


if __name__ == "__main__":
    main()
