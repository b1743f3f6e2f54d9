"""Where a training step's time goes: the task's train.py under torch.profiler, its kernels grouped by kind.

Runs train.py's own `main()` in a child process with the environment an experiment gets (outside the box:
this measures the code, it is not an experiment), and records a window of optimizer steps after the
compilation and warm-up. Prints, per step: the wall time, the time in each kind of kernel (matrix products,
attention, compiled Triton kernels, the optimizer's foreach kernels, copies, other), how much of the wall
time the device was busy, and the costliest kernels. On a CPU the same table counts operators' own CPU time.

    python bench/step_profile.py [--task DIR] [--skip 4] [--steps 5] [--budget 300] [--trace trace.json]

`--skip` counts calls of train.py's `train_step`, the two warm-up steps of a compiled profile included.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

KINDS = [  # the first pattern that matches a kernel's (or operator's) name gives its kind
    ("attention", r"sdpa|attention|flash|fmha|cudnn"),
    ("matrix products", r"gemm|nvjet|cutlass|xmma|wgmma|aten::(mm|bmm|addmm|baddbmm|matmul)$"),
    ("optimizer (foreach)", r"foreach|multi_tensor|adam"),
    ("compiled (Triton)", r"^triton_"),
    ("copies", r"memcpy|memset|copy|aten::(cat|clone|contiguous|to)$"),
]


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return "other"


def summarise(timings: list[tuple[str, float, int]], steps: int, wall_s: float, top: int) -> dict:
    """`timings`: (name, microseconds, calls) of the kernels (or operators) in a window of `steps` steps."""
    by_kind: dict[str, float] = defaultdict(float)
    by_name: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for name, us, calls in timings:
        by_kind[kind_of(name)] += us
        by_name[name][0] += us
        by_name[name][1] += calls
    busy_ms = sum(by_kind.values()) / 1e3 / steps
    costliest = sorted(by_name.items(), key=lambda item: -item[1][0])[:top]
    return {
        "steps": steps,
        "wall_ms": 1e3 * wall_s / steps,
        "busy_ms": busy_ms,
        "kinds": {kind: us / 1e3 / steps for kind, us in sorted(by_kind.items(), key=lambda item: -item[1])},
        "top": [(name, us / 1e3 / steps, calls / steps) for name, (us, calls) in costliest],
    }


def device_timings(trace_path: Path) -> list[tuple[str, float, int]]:
    """The GPU's kernels, copies and fills from a Chrome trace the profiler wrote."""
    events = json.loads(trace_path.read_text())["traceEvents"]
    return [(e["name"], float(e["dur"]), 1) for e in events
            if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]


def child(train_py: Path, skip: int, steps: int, result: Path, trace: Path | None) -> None:
    """Runs in the child: train.py's main(), with its train_step wrapped to profile steps skip..skip+steps-1."""
    import torch
    from common import load_train_py
    from torch.profiler import ProfilerActivity, profile

    train = load_train_py(train_py)
    device = os.environ.get("AUTORESEARCH_DEVICE", "auto")
    on_gpu = torch.cuda.is_available() and (device == "auto" or device.startswith("cuda"))
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    profiler = profile(activities=activities)
    original, calls, started = train.train_step, [0], [0.0]

    def profiled_step(*args, **kwargs):
        index = calls[0]
        calls[0] += 1
        if index == skip:
            sync()
            profiler.start()
            started[0] = time.perf_counter()
        out = original(*args, **kwargs)
        if index == skip + steps - 1:
            sync()
            wall = time.perf_counter() - started[0]
            profiler.stop()
            if on_gpu:
                path = trace or Path(tempfile.mkdtemp()) / "trace.json"
                profiler.export_chrome_trace(str(path))
                timings = device_timings(path)
            else:
                timings = [(e.key, e.self_cpu_time_total, e.count) for e in profiler.key_averages()
                           if e.self_cpu_time_total > 0]
                if trace:
                    profiler.export_chrome_trace(str(trace))
            figures = summarise(timings, steps, wall, top=12)
            figures["device"] = "cuda" if on_gpu else "cpu"
            result.write_text(json.dumps(figures))
            raise SystemExit(0)  # the rest of the budget would measure nothing more
        return out

    train.train_step = profiled_step
    train.main()
    if not result.exists():
        sys.exit(f"step_profile: train.py made {calls[0]} steps, fewer than --skip + --steps = {skip + steps}; "
                 "give it a longer --budget")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=Path, default=None, help="prepared task folder (default: a new one)")
    parser.add_argument("--skip", type=int, default=4, help="train_step calls before the window")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps in the window")
    parser.add_argument("--budget", type=float, default=300.0,
                        help="train.py's time budget, seconds (its schedule; the run stops after the window)")
    parser.add_argument("--trace", type=Path, default=None, help="also write the Chrome trace here")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(os.environ["STEP_PROFILE_TRAIN_PY"]), args.skip, args.steps, args.child, args.trace)
        return

    from common import default_task

    from autoresearch.config import load_config
    from autoresearch.data.prepare import open_dataset
    from autoresearch.run.environment import experiment_env

    task = (args.task or default_task(Path(tempfile.mkdtemp()) / "task")).resolve()
    config = load_config(task)
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, **experiment_env(task, config, open_dataset(config.data), args.budget, seed=0),
               "AUTORESEARCH_OUTPUT_DIR": scratch, "STEP_PROFILE_TRAIN_PY": str(task / config.train.script),
               "PYTHONUNBUFFERED": "1"}
        result = Path(scratch) / "profile.json"
        argv = [sys.executable, __file__, "--child", str(result), "--skip", str(args.skip), "--steps", str(args.steps)]
        if args.trace:
            argv += ["--trace", str(args.trace.resolve())]
        done = subprocess.run(argv, cwd=task, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not result.exists():
            sys.exit(f"step_profile: the profiled run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        figures = json.loads(result.read_text())
    busy = "all kernels" if figures["device"] == "cuda" else "all operators"
    print(f"{figures['device']}: {figures['steps']} optimizer steps after {args.skip} train_step calls; "
          f"{figures['wall_ms']:.1f} ms per step")
    print(f"{'kind':<22} {'ms/step':>9} {'of wall':>8}")
    for kind, ms in figures["kinds"].items():
        print(f"{kind:<22} {ms:>9.2f} {100 * ms / figures['wall_ms']:>7.1f}%")
    print(f"{busy:<22} {figures['busy_ms']:>9.2f} {100 * figures['busy_ms'] / figures['wall_ms']:>7.1f}%")
    print(f"\n{'ms/step':>10} {'calls':>6}  costliest {'kernels' if figures['device'] == 'cuda' else 'operators (own CPU time)'}")
    for name, ms, calls in figures["top"]:
        print(f"  {ms:>8.2f} {calls:>6.1f}  [{kind_of(name)}] {name[:100]}")


if __name__ == "__main__":
    main()
