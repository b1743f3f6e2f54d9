"""Training throughput of the baseline train.py on this machine, through `autoresearch bench`.

Usage: python bench/throughput.py [--budget SECONDS] [--task DIR]
Prints tokens/s, MFU (on known GPUs), peak memory and start-up seconds.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import autoresearch, default_task, last_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", type=float, default=20.0)
    parser.add_argument("--task", type=Path, default=None)
    args = parser.parse_args()
    task = default_task(args.task or Path(tempfile.mkdtemp()) / "task")
    figures = last_json(autoresearch("bench", "--budget", str(args.budget), "--json", cwd=task))
    mfu = f"{100 * figures['mfu']:.1f}%" if figures.get("mfu") else "n/a"
    print(f"device           {figures['device']}")
    print(f"params           {figures['params']:,}")
    print(f"tokens/s         {figures['tokens_per_s']:,.0f}")
    print(f"MFU              {mfu}")
    print(f"peak memory      {figures['peak_memory_bytes'] / 2**20:,.0f} MiB")
    print(f"start-up         {figures['startup_seconds']:.1f} s")


if __name__ == "__main__":
    main()
