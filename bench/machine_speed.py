"""How well the harness's machine-speed probe (src/autoresearch/speed.py) tracks what a load does to training.

Usage: python bench/machine_speed.py [--probes N] [--gap SECONDS] [--budget SECONDS] [--task DIR] [--device cpu|cuda]

1. The probe's spread on a quiet machine, as runs see it: N times, a probe in a fresh interpreter (the one
   before a run), then on a CPU a second one `--gap` seconds later in this process (the one after it); the
   run's figure is the better of the two. Counted: how many land further from their median than the
   default tolerance (keep.speed_tolerance, 25%). On a quiet machine each is a best run again for nothing.
2. Under loads: the probe and the baseline train.py's tokens/s (`autoresearch train --json`), each as a
   fraction of the quiet machine's. A load the probe sees is one the speed check acts on.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import autoresearch, default_task, last_json

from autoresearch.config import KeepConfig
from autoresearch.decide.speed import alike, probe

PROBE = "from autoresearch.decide.speed import probe; import sys; print(probe(sys.argv[1]))"
LOADS = {
    "quiet": None,
    "1 busy Python process": "while True: pass",
    "1 torch matmul thread": "import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\nwhile True: a @ a",
    "2 busy Python processes": "while True: pass",
}


def probe_once(device: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, device], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=24)
    parser.add_argument("--budget", type=float, default=10.0)
    parser.add_argument("--task", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--gap", type=float, default=5.0, help="seconds between the probes before and after")
    args = parser.parse_args()
    tolerance = KeepConfig().speed_tolerance

    before, runs = [], []
    for _ in range(args.probes):
        before.append(probe_once(args.device))
        time.sleep(args.gap)
        runs.append(max(before[-1], probe(args.device)) if args.device == "cpu" else before[-1])

    def spread(rates: list[float]) -> tuple[str, int]:
        middle = statistics.median(rates)
        off = sum(1 for r in rates if not alike(r, middle, tolerance))
        return (f"median {middle:,.1f} GFLOP/s, {min(rates):,.1f} to {max(rates):,.1f}; {off} of {len(rates)} "
                f"more than {tolerance:.0%} from the median"), off

    print(f"quiet machine, {args.probes} probes before a run: {spread(before)[0]}")
    print(f"quiet machine, the run's figure (the better of before and {args.gap:g} s after): {spread(runs)[0]}")

    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    print(f"\n{'load':26} {'probe':>10} {'tokens/s':>10} {'probe ratio':>12} {'tokens/s ratio':>15}")
    quiet = None
    for name, code in LOADS.items():
        hogs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2 if name.startswith("2 ") else 1)
                if code is not None]
        try:
            time.sleep(1.0 if hogs else 0.0)
            rate = statistics.median(probe_once(args.device) for _ in range(3))
            figures = last_json(autoresearch("train", "--budget", str(args.budget), "--json", cwd=task))
            tokens = figures["tokens_per_s"]
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
        quiet = quiet or (rate, tokens)
        print(f"{name:26} {rate:10,.1f} {tokens:10,.0f} {rate / quiet[0]:12.2f} {tokens / quiet[1]:15.2f}")
    print("\n" + json.dumps({"probes": args.probes, "off_before": spread(before)[1], "off_run": spread(runs)[1]}))


if __name__ == "__main__":
    main()
