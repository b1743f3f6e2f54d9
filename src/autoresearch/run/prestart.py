"""A Python interpreter started ahead of time, with torch already imported, that then runs train.py.

Started by `sandbox.prestart_python` as `python -m autoresearch.run.prestart`, while the previous experiment
starts up (the loop keeps one waiting). It imports torch (about 1 s on a 2-core CPU), then waits for one
JSON line on stdin, `{"script": PATH, "env": {...}}`, sets the environment, and runs the script as
`python PATH` would: as `__main__`, with `sys.argv = [PATH]` and its folder first on `sys.path`. Exit
codes and tracebacks are those of the script. The import thus leaves the critical path of the loop. In
the Landlock layer, it first restricts itself to the order's `"landlock"` rules, made when the order is
given, so that they name the files the script will find.

Nothing of the candidate is loaded before the go line, and each interpreter runs one script once. An order
with `"speed_probe": DEVICE` first measures the machine's speed on that device (speed.py) and writes it as
the first line the script's output follows: `SPEED_PREFIX` and the figure, or `none` if it failed.
"""

from __future__ import annotations

import json
import os
import runpy
import sys


def main() -> None:
    import torch  # noqa: F401  (the point of this process)

    line = sys.stdin.readline()
    if not line.strip():
        return  # the harness closed the pipe: nothing to run
    order = json.loads(line)
    if "landlock" in order:
        from autoresearch.run import landlock

        landlock.restrict_self(landlock.Ruleset.from_json(order["landlock"]))
    if "speed_probe" in order:
        from autoresearch.decide import speed

        try:
            figure = f"{speed.probe_before_script(order['speed_probe']):.6g}"
        except Exception:  # noqa: BLE001 (no figure is a known outcome; the run goes on)
            figure = "none"
        print(f"{speed.SPEED_PREFIX}{figure}", flush=True)
    script = os.path.abspath(order["script"])
    os.environ.update(order["env"])
    sys.argv = [script]
    sys.path[0] = os.path.dirname(script)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
