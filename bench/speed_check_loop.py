"""The speed check in the real loop: a baseline measured while another process keeps a core busy, a load that
ends when the first candidate starts, with the check on (keep.speed_tolerance = 0.25) and off (0).

Usage: python bench/speed_check_loop.py [--budget SECONDS] [--experiments N] [--tolerances 0.25 0]

Prints the loop's lines (without the per-run start and evaluation lines) and then, per setting, what
`status --json` says: each experiment's status and val_bpb as shown, the noise and the machine speed.
Without the check, the loaded baseline makes the first candidate look far better than it is.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import autoresearch, default_task


def one_setting(tolerance: str, budget: float, experiments: int) -> dict:
    task = Path(tempfile.mkdtemp()) / "task"
    autoresearch("init", str(task), cwd=task.parent)
    toml = task / "autoresearch.toml"
    toml.write_text(re.sub(r"(?m)^speed_tolerance = .*$", f"speed_tolerance = {tolerance}", toml.read_text()))
    subprocess.run(["git", "commit", "-qam", f"speed_tolerance = {tolerance}", "--allow-empty"], cwd=task, check=True)
    default_task(task)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core busy
    loop = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--tag", "x", "--budget", str(budget),
                             "--max-experiments", str(experiments)], cwd=task, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for line in loop.stdout:
            if line.startswith("experiment 1") and hog.poll() is None:
                hog.kill()
                print("   [the load ends]")
            if not line.startswith(("started", "evaluated")):
                print("  ", line.rstrip())
        loop.wait()
    finally:
        hog.kill()
        loop.kill()
    return json.loads(autoresearch("status", "--json", "--tag", "x", cwd=task).stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--experiments", type=int, default=5)
    parser.add_argument("--tolerances", nargs="+", default=["0.25", "0"])
    args = parser.parse_args()
    results = {}
    for tolerance in args.tolerances:
        print(f"speed_tolerance = {tolerance}")
        results[tolerance] = one_setting(tolerance, args.budget, args.experiments)
    for tolerance, data in results.items():
        shown = ", ".join(f"#{e['seq']} {e['status']} {e['metric']:.3f}" for e in data["experiments"])
        noise = data["noise"]
        print(f"\nspeed_tolerance = {tolerance}: {shown}")
        print(f"  noise sigma {noise['sigma']:.4f} ({noise['dof']} dof); machine speed {data['machine_speed']}")


if __name__ == "__main__":
    main()
