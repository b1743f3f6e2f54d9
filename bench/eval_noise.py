"""Is the evaluation cheap enough and precise enough? Seed spread vs evaluation cost and sampling error.

Usage: python bench/eval_noise.py [--seeds 3] [--budget SECONDS] [--task DIR]

Trains the baseline once per seed through `autoresearch train`, then prints:
- the seed-to-seed spread of val_bpb (standard deviation over seeds),
- the evaluation's own sampling error (bootstrap over sequences) and its time as a share of the budget,
- for the first seed's model, evaluation time and sampling error at several eval sizes.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import autoresearch, default_task, last_json

from autoresearch.config import load_config
from autoresearch.data.prepare import open_dataset
from autoresearch.run.environment import resolve_device
from autoresearch.run.evaluate import evaluate, paired_stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument("--task", type=Path, default=None)
    args = parser.parse_args()
    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    config = load_config(task)
    budget = args.budget or config.train.budget_seconds
    dataset = open_dataset(config.data)
    stats = dataset.split_stats("val")

    runs = []
    for seed in range(args.seeds):
        out = last_json(autoresearch("train", "--budget", str(budget), "--seed", str(seed), "--json", cwd=task))
        runs.append(out)
        print(f"seed {seed}: val_bpb {out['val_bpb']:.4f} ± {out['val_bpb_stderr']:.4f} (sampling), "
              f"eval {out['eval_seconds']:.1f} s, {out['steps']} steps, {out['tokens_per_s']:,.0f} tok/s")
    bpbs = [r["val_bpb"] for r in runs]
    spread = statistics.stdev(bpbs) if len(bpbs) > 1 else float("nan")
    eval_share = statistics.mean(r["eval_seconds"] for r in runs) / budget
    print(f"\nval split: unigram {stats.unigram_bpb:.4f} bpb, floor "
          f"{stats.floor_bpb if stats.floor_bpb is not None else float('nan'):.4f} bpb")
    print(f"val_bpb mean {statistics.mean(bpbs):.4f}, seed-to-seed std {spread:.4f} over {len(bpbs)} seeds")
    print(f"eval: {config.eval.tokens:,} tokens at seq {config.eval.seq_len}, "
          f"{100 * eval_share:.1f}% of the {budget:.0f} s budget, "
          f"sampling error {statistics.mean(r['val_bpb_stderr'] for r in runs):.4f}")

    def model(run: dict) -> Path:
        return Path(run["log_path"]).parent / "model" / "model.pt"

    def score(run: dict, n_tokens: int):
        return evaluate((task / config.train.script).resolve(), model(run), dataset.tokens("val"),
                        dataset.token_bytes(), seq_len=config.eval.seq_len, n_tokens=n_tokens,
                        batch_size=config.eval.batch_size, device=resolve_device(config.train.device), cwd=task)

    print("\neval size vs time and sampling error (first two seeds' models):")
    print("  sampling error of one bpb, and of the difference between two models on the same sequences")
    for factor in (0.25, 0.5, 1, 2):
        n = int(config.eval.tokens * factor)
        a, b = score(runs[0], n), score(runs[1], n) if len(runs) > 1 else None
        paired = f", paired difference ± {paired_stderr(a, b):.4f}" if b is not None else ""
        print(f"  {n:>10,} tokens: {a.seconds:6.1f} s ({100 * a.seconds / budget:4.1f}% of budget), "
              f"bpb {a.bpb:.4f} ± {a.bpb_stderr:.4f}{paired}")


if __name__ == "__main__":
    main()
