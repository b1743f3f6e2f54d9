"""Agents taking turns: how many keeps do fixed turns and adaptive turns get from the same agents?

Usage: python bench/turns_sim.py [--proposals 100] [--repeats 2000] [--floor 0.25] [--half-life 20]
                                 [--prior 2]

Each scenario gives every agent a chance that a proposal of its is kept, which may change with how many it
has made (an agent whose ideas run out) or with how far the run has got (one whose kind of change pays only
later). A run of `--proposals` proposals picks whose turn it is with `rotation.next_turn` (fixed turns, each
agent listed once) or `rotation.adaptive_turn` (adaptive turns), draws each proposal's outcome, and counts
the keeps. It prints, per scenario, the mean keeps of each way over `--repeats` runs (with its standard
error), the keeps of the best single agent had it made every proposal, and each agent's mean share of the
turns under adaptive turns.

A model, not a search: a keep here does not change what the agents find next, as it does in a real run.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections import Counter
from collections.abc import Callable

from autoresearch.agents.rotation import FLOOR, HALF_LIFE, PRIOR, adaptive_turn, next_turn

# chance of a keep, given (proposals the agent made before this one, proposals the run made before this one)
Chance = Callable[[int, int], float]


def steady(p: float) -> Chance:
    return lambda own, run: p


def running_dry(start: float, end: float, over: int) -> Chance:
    return lambda own, run: start + (end - start) * min(own, over) / over


def late(before: float, after: float, at: int) -> Chance:
    return lambda own, run: before if run < at else after


SCENARIOS: dict[str, dict[str, Chance]] = {
    "one is better (15% vs 5%)": {"a": steady(0.15), "b": steady(0.05)},
    "alike (10% each)": {"a": steady(0.10), "b": steady(0.10)},
    "a runs dry (30% -> 2% over 40 of its own)": {"a": running_dry(0.30, 0.02, 40), "b": steady(0.08)},
    "b pays only from the 50th proposal (2% -> 20%)": {"a": steady(0.08), "b": late(0.02, 0.20, 50)},
    "three agents (12%, 8%, 4%)": {"claude": steady(0.12), "codex": steady(0.08), "tune": steady(0.04)},
}


def simulate(chances: dict[str, Chance], proposals: int, seed: int, adaptive: bool, **knobs) -> tuple[int, Counter]:
    outcomes = random.Random(seed)
    shares = {name: 1 for name in chances}
    record: list[tuple[str, bool]] = []
    made: Counter = Counter()
    for run in range(proposals):
        name = adaptive_turn(shares, record, **knobs) if adaptive else next_turn(shares, made)
        kept = outcomes.random() < chances[name](made[name], run)
        record.append((name, kept))
        made[name] += 1
    return sum(kept for _, kept in record), made


def alone(chance: Chance, proposals: int, seed: int) -> int:
    outcomes = random.Random(seed)
    return sum(outcomes.random() < chance(run, run) for run in range(proposals))


def mean(values: list[int]) -> str:
    """The mean with its standard error."""
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) / len(values) ** 0.5:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proposals", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--floor", type=float, default=FLOOR)
    parser.add_argument("--half-life", type=float, default=HALF_LIFE)
    parser.add_argument("--prior", type=float, default=PRIOR)
    args = parser.parse_args()
    knobs = {"floor": args.floor, "half_life": args.half_life, "prior": args.prior}
    print(f"{args.proposals} proposals a run, {args.repeats} runs each; floor {args.floor}, half-life "
          f"{args.half_life}, prior {args.prior}")
    print(f"{'scenario':<48} {'fixed':>12} {'adaptive':>12} {'best alone':>10}  adaptive turns")
    for title, chances in SCENARIOS.items():
        fixed = [simulate(chances, args.proposals, seed, False)[0] for seed in range(args.repeats)]
        adaptive, turns = [], Counter()
        for seed in range(args.repeats):
            keeps, made = simulate(chances, args.proposals, seed, True, **knobs)
            adaptive.append(keeps)
            turns.update(made)
        best = max(statistics.mean(alone(chance, args.proposals, seed) for seed in range(args.repeats))
                   for chance in chances.values())
        split = ", ".join(f"{name} {turns[name] / (args.repeats * args.proposals):.0%}" for name in chances)
        print(f"{title:<48} {mean(fixed):>12} {mean(adaptive):>12} {best:>10.2f}  {split}")


if __name__ == "__main__":
    main()
