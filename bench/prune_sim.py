"""Which runs of a finished search would `[prune]` have stopped early, when, and would it have cost a keep?

Usage: python bench/prune_sim.py --dir TASK --tag TAG [--catch-up 2] [--after 0.25] [--until 0.75]
                                 [--window 0.1] [--margin 0.02] [--hold 0.1]

It replays the logged training curve of the first run of each experiment that ran to a result (keep or
discard) through `prune.Pruner`, against the runs of the best of that moment (the latest keep before it),
as the loop would have. Run the search with `[prune] enabled = false`, so that every run went to its end
and its result is known. It prints each experiment the rule would have stopped, with its real result, then
how many it stopped, how many of those were kept (a keep lost: the rule must never do that), and the
share of the training time it would have saved.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from autoresearch.config import load_config
from autoresearch.decide.prune import Pruner, Settings, curve_of
from autoresearch.run.supervise import logged_progress, run_folder
from autoresearch.store import Status, Store


def run_logs(experiment, runs: int) -> list[Path]:
    return [run_folder(Path(experiment.log_path).parent, i) / "train.log" for i in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--tag", required=True)
    defaults = Settings()
    for name in ("after", "until", "window", "catch_up", "margin", "hold"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args = parser.parse_args()
    settings = Settings(**{name: getattr(args, name) for name in ("after", "until", "window", "catch_up", "margin",
                                                                  "hold")})
    config = load_config(args.dir)
    with Store.open(args.dir) as store:
        budget = float(store.line(args.tag).budget_seconds or config.train.budget_seconds)
        history = store.experiments(args.tag)
        best, judged, stopped, lost, spent, saved = None, 0, 0, 0, 0.0, 0.0
        print(f"{'#':>4} {'status':<8} {'metric':>9} {'vs best':>9} {'stopped at':>10}  description")
        for e in history:
            if e.status in (Status.KEEP, Status.DISCARD) and best is not None and e.log_path:
                curve = curve_of(logged_progress(Path(e.log_path)))
                references = [curve_of(logged_progress(p)) for p in run_logs(best, len(store.measured_runs(best)))]
                pruner = Pruner(references, budget, settings)
                at = next((point[0] for point in curve if pruner.observe(
                    {"event": "step", "elapsed": point[0], "train_loss": point[1]}) is not None), None)
                judged += 1
                spent += budget
                if at is not None:
                    stopped += 1
                    saved += budget - at
                    lost += e.status is Status.KEEP
                    delta = e.metric - best.metric if e.metric is not None and best.metric is not None else None
                    print(f"{e.seq:>4} {e.status.value:<8} {e.metric:>9.4f} "
                          f"{'-' if delta is None else f'{delta:+.4f}':>9} {at:>9.0f}s  {e.description[:60]}")
            if e.status is Status.KEEP:
                best = e
    print(f"\n{judged} runs judged, {stopped} stopped early, {lost} of them kept (keeps lost); "
          f"{saved:.0f} s of {spent:.0f} s of training saved ({100 * saved / spent if spent else 0:.1f}%)")


if __name__ == "__main__":
    main()
