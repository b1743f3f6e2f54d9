"""False-keep and true-keep rates of the keep rules on synthetic metric streams (no training).

Usage: python bench/keep_rule_sim.py [--streams 400] [--seeds 3] [--best-runs 2]

Metric values are drawn from a normal distribution with the run-to-run sigma as unit. A/A candidates change
nothing (true gain 0); A/B candidates are truly better by 2 or 3 sigma. "first" is the first candidate after
the baseline (the noise then rests on the baseline's seeds alone); "stream" averages 20 candidates per
loop run, where confirmations add to the noise estimate and a kept candidate becomes the best.

The second table spends a fixed number of runs (100, the baseline's included) on candidates drawn from a
mixture of gains, and compares running a new best again until it has `best_runs` runs (the loop's
`keep.best_runs`) with not doing so: how far the best truly moved, and how many keeps were of changes that
are no better. The real A/A benchmark with training runs is bench/aa_false_keep.py.
"""

from __future__ import annotations

import argparse
import random

from autoresearch.decide.rule import Confirm
from autoresearch.decide.simulate import settle, simulate, simulated_candidate
from autoresearch.decide.stats import KEEP

MIXTURES = {
    "80% no better, 20% 2-4 sigma better": lambda r: r.uniform(2, 4) if r.random() < 0.2 else min(0.0, r.gauss(-0.5, 0.5)),
    "90% no change, 10% 1-3 sigma better": lambda r: r.uniform(1, 3) if r.random() < 0.1 else 0.0,
    "every change 0.5 sigma better": lambda r: 0.5,
    "gains ~ normal(-1, 1) sigma": lambda r: r.gauss(-1.0, 1.0),
}


def fixed_budget(gain_of, best_runs: int, *, streams: int, runs: int = 100, noise_seeds: int = 3,
                 seed: int = 0) -> tuple[float, float]:
    """Mean true progress of the best (in sigmas) and mean number of false keeps, per loop run of `runs` runs."""
    rng = random.Random(seed)
    rule = Confirm(noise_seeds=noise_seeds, best_runs=best_runs, recalibrate_every=0)
    progress = false_keeps = 0.0
    for _ in range(streams):
        best_true, used = 0.0, noise_seeds
        best = [rng.gauss(0.0, 1.0) for _ in range(noise_seeds)]
        groups = [best]
        while used < runs:
            gain = gain_of(rng)
            true = best_true - gain
            action, trial = simulated_candidate(rng, true, best, groups, rule=rule)
            used += len(trial)
            groups.append(trial)
            if action == KEEP:
                false_keeps += gain <= 0
                best, best_true = trial, true
                used += settle(rng, rule, best, true)
        progress -= best_true
    return progress / streams, false_keeps / streams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3, help="baseline runs that first measure the noise")
    parser.add_argument("--best-runs", type=int, default=2, help="runs a new best is brought up to (keep.best_runs)")
    args = parser.parse_args()
    print("| candidates | true gain | strict keeps | confirm keeps | extra runs per candidate that looked better |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, candidates, streams in (("first", 1, args.streams * 10), ("stream of 20", 20, args.streams)):
        for gain in (0.0, 2.0, 3.0):
            r = simulate(gain, streams=streams, candidates=candidates, noise_seeds=args.seeds, seed=7,
                         best_runs=args.best_runs)
            s = simulate(gain, streams=streams, candidates=candidates, noise_seeds=args.seeds, seed=7, rule="strict")
            print(f"| {label} | {gain:.0f} sigma | {s.keep_rate:.1%} | {r.keep_rate:.1%} | "
                  f"{r.extra_runs_per_looked_better:.2f} |")
    print()
    print("| candidates' true gains (100 runs per loop run) | best_runs | best moved by | false keeps |")
    print("| --- | ---: | ---: | ---: |")
    for name, gain_of in MIXTURES.items():
        for best_runs in (1, args.best_runs):
            moved, false = fixed_budget(gain_of, best_runs, streams=args.streams * 3, noise_seeds=args.seeds, seed=11)
            print(f"| {name} | {best_runs} | {moved:.2f} sigma | {false:.2f} |")


if __name__ == "__main__":
    main()
