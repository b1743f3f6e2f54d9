"""False keeps and true keeps of the keep rules, with real training runs through the real loop.

Usage: python bench/aa_false_keep.py [--budget 10] [--aa 20] [--ab-trials 8] [--lr-div 1.85 | --ab OLD=>NEW]
                                    [--task DIR]

- A/A: one loop run per rule with `--aa` candidates that change nothing of substance (an unused
  constant, an unused function, the seed), proposed by the replay agent. Every keep is a false keep.
- A/B: `--ab-trials` loop runs per rule, each a baseline and one real improvement. Each trial uses its
  own seeds (`loop.seed`), so the trials are independent. Every keep is a true keep. By default the
  baseline's CPU-profile learning rates are divided by `--lr-div` (committed to the task before the
  runs) and the candidate restores the tuned rates: a known gain whose size the divisor sets. At a 5 s
  budget on 2 cores, 1.85 gives about 3 noise sigmas. `--ab OLD=>NEW` instead replaces text in the
  unchanged train.py.

Prints both rules side by side: keep rates, the runs spent on confirmation per candidate that looked
better, the measured noise, and the A/B change's measured gain in noise sigmas. On 2 CPU cores at a
10 s budget, a run takes about 17 s with its evaluation; the defaults take about an hour.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import autoresearch, default_task

from autoresearch.decide.stats import pooled_noise
from autoresearch.store import Status, Store

CPU_LRS = {"MATRIX_LR": 0.02, "EMBED_LR": 0.15, "HEAD_LR": 0.005}  # the CPU profile's tuned rates


def divide_lrs(train: str, divisor: float) -> str:
    """train.py with the CPU profile's learning rates divided by `divisor`."""
    for name, value in CPU_LRS.items():
        line = re.compile(rf"^{name} = {re.escape(str(value))}(?=\s|$)", flags=re.M)  # the flat constants at the top
        if line.search(train) is None:
            raise SystemExit(f"--lr-div: train.py has no line {name} = {value}; pass --ab OLD=>NEW instead")
        train = line.sub(f"{name} = {value / divisor:.6g}", train, count=1)
    return train


def set_keep(task: Path, rule: str, seed: int) -> None:
    toml = (task / "autoresearch.toml").read_text()
    toml = re.sub(r'(?m)^rule = ".*"$', f'rule = "{rule}"', toml)
    head, loop = toml.split("\n[loop]\n", 1)  # the loop's seed, not the data's
    loop = re.sub(r"(?m)^seed = \d+$", f"seed = {seed}", loop, count=1)
    (task / "autoresearch.toml").write_text(head + "\n[loop]\n" + loop)


def null_change(train: str, i: int, seed_line: str) -> str:
    """A change of nothing of substance, in turn: an unused constant, an unused function, another seed. (Not a
    comment: the loop does not run code it measured already, and comments do not count as code.)"""
    if i % 3 == 0:
        return train + f"\nUNUSED_{i} = {i}  # not read anywhere\n"
    if i % 3 == 1:
        return train.replace("\nimport ", f"\ndef _unused_{i}():\n    pass\n\n\nimport ", 1)
    return train.replace(seed_line, seed_line.rstrip("\n") + f" + {137 * i}  # another seed\n", 1)


def run_tag(task: Path, tag: str, proposals: list[dict], budget: float) -> list:
    patches = task.parent / f"{tag}.json"
    patches.write_text(json.dumps(proposals))
    autoresearch("run", "--agent", f"replay:{patches}", "--tag", tag, "--budget", str(budget), cwd=task)
    with Store.open(task) as store:
        return store.experiments(tag)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--aa", type=int, default=20, help="A/A candidates per rule")
    parser.add_argument("--ab-trials", type=int, default=8, help="A/B loop runs per rule")
    parser.add_argument("--lr-div", type=float, default=1.85, help="the baseline's learning rates divided by this")
    parser.add_argument("--ab", default=None, help="OLD=>NEW: the real improvement, replaced in train.py")
    parser.add_argument("--rules", default="strict,confirm")
    parser.add_argument("--seed", type=int, default=0, help="the A/A loop's seed (A/B trials use 100, 200, ...)")
    parser.add_argument("--task", type=Path, default=None)
    args = parser.parse_args()
    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    train = (task / "train.py").read_text()
    if args.ab:
        old, new = args.ab.split("=>")
        if old not in train:
            raise SystemExit(f"--ab: {old!r} is not in train.py")
        better = train.replace(old, new, 1)
        description = f"real gain: {new.strip()}"
    elif args.ab_trials:
        better, train = train, divide_lrs(train, args.lr_div)
        description = f"real gain: learning rates x{args.lr_div:g}"
        (task / "train.py").write_text(train)
        git = ["git", "-C", str(task)]
        subprocess.run([*git, "commit", "-qam", f"baseline: learning rates / {args.lr_div:g}"], check=True)
    else:
        better, description = train, "no A/B trials"
    seed_line = '    seed = env("AUTORESEARCH_SEED", int)\n'
    if seed_line not in train:
        raise SystemExit(f"train.py has no line {seed_line.strip()!r}: the seed-only A/A candidates need it")
    nulls = [{"description": f"nothing of substance {i}", "files": {"train.py": null_change(train, i, seed_line)}}
             for i in range(args.aa)]
    better = [{"description": description, "files": {"train.py": better}}]
    stamp = int(time.time())
    table = {}
    for rule in args.rules.split(","):
        set_keep(task, rule, seed=args.seed)
        aa = run_tag(task, f"aa-{rule}-{stamp}", nulls, args.budget)
        ab_trials = []
        for t in range(args.ab_trials):
            set_keep(task, rule, seed=100 * (t + 1))
            ab_trials.append(run_tag(task, f"ab-{rule}-{stamp}-{t}", better, args.budget))
        table[rule] = (aa, ab_trials)
    set_keep(task, "confirm", seed=0)

    print(f"{args.aa} A/A candidates and {args.ab_trials} A/B trials per rule, {args.budget:.0f} s budget\n")
    print("| rule | A/A false keeps | A/B true keeps | confirmation runs per candidate that looked better | runs |")
    print("| --- | ---: | ---: | ---: | ---: |")
    groups = []
    for rule, (aa, trials) in table.items():
        candidates = [e for e in aa[1:] if e.status in (Status.KEEP, Status.DISCARD)]
        gains = [trial[1] for trial in trials if len(trial) > 1 and trial[1].status in (Status.KEEP, Status.DISCARD)]
        everything = [*candidates, *gains]
        looked = [e for e in everything if (e.metrics.get("runs") or [e.metric])[0] < _best_before(e, aa, trials)]
        confirmations = sum(e.metrics.get("confirm_runs", 0) for e in everything)
        runs = sum(len(e.metrics.get("runs") or [1]) for trial in [aa, *trials] for e in trial)
        print(f"| {rule} | {sum(e.status is Status.KEEP for e in candidates)}/{len(candidates)} | "
              f"{sum(e.status is Status.KEEP for e in gains)}/{len(gains)} | "
              f"{confirmations / max(len(looked), 1):.2f} | {runs} |")
        groups += [e.metrics["runs"] for trial in [aa, *trials] for e in trial if len(e.metrics.get("runs") or []) > 1]
    noise = pooled_noise(groups)
    if noise.known and args.ab_trials:
        base = [trial[0].metric for _, trials in table.values() for trial in trials]
        gain = [trial[0].metric - (trial[1].metrics.get("runs") or [trial[1].metric])[0]
                for _, trials in table.values() for trial in trials if len(trial) > 1 and trial[1].metric is not None]
        print(f"\nnoise sigma {noise.sigma:.5f} val_bpb ({noise.dof} degrees of freedom); baseline mean "
              f"{statistics.mean(base):.5f}; the A/B change's first-run gain {statistics.mean(gain):+.5f} "
              f"= {statistics.mean(gain) / noise.sigma:.1f} sigma")


def _best_before(experiment, aa, trials) -> float:
    """The best's mean when `experiment` was judged: the latest keep before it in its tag."""
    history = next(h for h in [aa, *trials] if any(e.id == experiment.id for e in h))
    kept = [e for e in history if e.seq < experiment.seq and e.status is Status.KEEP]
    return kept[-1].metric if kept else float("inf")


if __name__ == "__main__":
    main()
