"""Host-side cost of one Muon step at the `h100` profile's matrix shapes: the template's stacked Muon against
torch.optim.Muon (one matrix at a time).

On a GPU, a step of many small kernels is bound by launching them, not by their arithmetic: the GPU waits
for the host. This counts the operators one optimizer step dispatches (each is at least one kernel launch on
CUDA) and times the step on CPU matrices of the same number but 8 wide, whose arithmetic is negligible,
so what is left is the Python and dispatcher time the host spends per step. Both figures carry over to
CUDA; the launch latency itself comes on top there.

    python bench/optimizer_overhead.py [--depth 8] [--dim 512] [--steps 20]
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

TRAIN_PY = Path(__file__).resolve().parents[1] / "src" / "autoresearch" / "template" / "train.py"


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def load_template():
    spec = importlib.util.spec_from_file_location("train_template", TRAIN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def block_matrices(depth: int, dim: int, device: str) -> list[torch.nn.Parameter]:
    """The 2-D weights of `depth` blocks of width `dim`: q, k, v, proj (dim x dim), fc (4dim x dim),
    mlp proj (dim x 4dim), as the template builds them."""
    shapes = [(dim, dim)] * 4 + [(4 * dim, dim), (dim, 4 * dim)]
    return [torch.nn.Parameter(torch.randn(*s, device=device) * 0.02) for _ in range(depth) for s in shapes]


def step_once(make_optimizer, params):
    optimizer = make_optimizer(params)
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()  # state is created on the first step
    return optimizer


def count_ops(make_optimizer, params) -> int:
    optimizer = step_once(make_optimizer, params)
    counter = CountOps()
    with counter:
        optimizer.step()
    return counter.count


def host_seconds(make_optimizer, params, steps: int) -> float:
    optimizer = step_once(make_optimizer, params)
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    template = load_template()
    candidates = {
        "torch.optim.Muon": lambda ps: torch.optim.Muon(ps, lr=0.02, momentum=0.95),
        "template Muon (stacked)": lambda ps: template.Muon(ps, lr=0.02, momentum=0.95),
    }
    torch.set_num_threads(1)
    n = len(block_matrices(args.depth, 8, "cpu"))
    print(f"{n} matrices: depth {args.depth}, width {args.dim}; torch {torch.__version__}")
    print(f"{'optimizer':<26} {'operators/step':>15} {'host ms/step':>13}")
    for name, make in candidates.items():
        ops = count_ops(make, block_matrices(args.depth, args.dim, "cpu"))
        seconds = host_seconds(make, block_matrices(args.depth, 8, "cpu"), args.steps)
        print(f"{name:<26} {ops:>15} {seconds * 1e3:>13.2f}")


if __name__ == "__main__":
    main()
