"""False-keep and true-keep rates of the keep rules on synthetic metric streams (no training).

Usage: python bench/keep_rule_sim.py [--streams 400] [--seeds 3]

Metric values are drawn from a normal distribution with the run-to-run sigma as unit. A/A candidates change
nothing (true gain 0); A/B candidates are truly better by 2 or 3 sigma. "first" is the first candidate after
the baseline (the noise then rests on the baseline's seeds alone); "stream" averages 20 candidates per
loop run, where confirmations add to the noise estimate and a kept candidate becomes the best. The real
A/A benchmark with training runs is bench/aa_false_keep.py.
"""

from __future__ import annotations

import argparse

from autoresearch.keeprule import simulate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=3, help="baseline runs that first measure the noise")
    args = parser.parse_args()
    print("| candidates | true gain | strict keeps | confirm keeps | confirmation runs per candidate that looked better |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, candidates, streams in (("first", 1, args.streams * 10), ("stream of 20", 20, args.streams)):
        for gain in (0.0, 2.0, 3.0):
            r = simulate(gain, streams=streams, candidates=candidates, noise_seeds=args.seeds, seed=7)
            s = simulate(gain, streams=streams, candidates=candidates, noise_seeds=args.seeds, seed=7, rule="strict")
            print(f"| {label} | {gain:.0f} sigma | {s.keep_rate:.1%} | {r.keep_rate:.1%} | "
                  f"{r.extra_runs_per_looked_better:.2f} |")


if __name__ == "__main__":
    main()
