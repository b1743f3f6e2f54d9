"""Memory traffic per token of train.py's compiled training step, from the compiler's own byte counts.

A narrow model's step is bound by memory as much as by arithmetic: the matrix products keep the tensor
cores busy, but every norm, rotary embedding, activation and residual add reads and writes whole
activations. This tool compiles the task's train.py the way train.py itself does (its
`compile_and_warm_up`, on a model with one block, since identical blocks share one compiled graph), and
asks Inductor how many bytes each kernel of each compiled graph reads and writes. It prints, per graph
(block forward and backward, head forward and backward) and per token: the bytes of the matrix products'
and attention's inputs and outputs, and the bytes of Inductor's own fused kernels (the elementwise and
reduction work); then the totals of a whole step and the kernels that move the most. (Under a
max-autotune compile, matrix products Inductor writes itself count as its own kernels, not as matmul.)

On a GPU the figures are those of the CUDA kernels. On a CPU, Inductor compiles for the CPU under bf16
autocast. Its rules for which intermediate values to keep in memory differ there: a value made with exp,
log or tanh that two kernels read is stored on a CPU and recomputed on a GPU, and the size limits that
make it store a value differ. So on a CPU this tool applies the GPU's rules (`--cpu-rules` keeps the CPU's).
The kernels themselves still differ (the C++ backend fuses differently from Triton, and CPU autocast keeps
rms_norm in bf16 where CUDA's runs it in fp32): compare variants with each other rather than read the
figures as a GPU's. A CPU run takes about six minutes on 2 cores (a C++ compiler builds the kernels, and
the step runs in bf16, which CPUs without bf16 matrix instructions do slowly).

    python bench/traffic.py [--train-py PATH] [--profile h100] [--batch 4] [--set NAME=VALUE ...]
                             [--bandwidth 3] [--top 8] [--cpu-rules]
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from common import load_train_py

TEMPLATE = Path(__file__).resolve().parents[1] / "src" / "autoresearch" / "template" / "train.py"
VOCAB = 8192
EXTERN = "ExternKernelSchedulerNode"


def parse_value(text: str, current):
    if isinstance(current, bool):
        return text.lower() in ("1", "true", "yes")
    return type(current)(float(text)) if isinstance(current, (int, float)) else text


def kernel_kind(node) -> str:
    if type(node).__name__ != EXTERN:
        return "fused"
    name = str(getattr(node.node, "python_kernel_name", "") or "")
    if "attention" in name or "sdpa" in name or "flash" in name:
        return "attention"
    return "matmul" if name else "other"


def describe(node) -> str:
    """The aten operators a kernel was made from, most frequent first."""
    ops = Counter()
    for part in node.get_nodes():
        for origin in part.node.get_origins() if part.node is not None else ():
            ops[getattr(origin.target, "__name__", str(origin.target)).split(".")[0]] += 1
    return ", ".join(op for op, _ in ops.most_common(6))


class ByteCounter:
    """Records, for every graph Inductor compiles, each kernel's kind, bytes read and written, and origin."""

    def __init__(self):
        import torch._inductor.graph as inductor_graph

        self.graphs: list[dict] = []
        self._lowering = inductor_graph.GraphLowering
        self._original = self._lowering.compile_to_module
        counter = self

        def compile_to_module(graph):
            module = counter._original(graph)
            kernels = [(kernel_kind(node), node.get_read_write_buffers_sizes(), node)
                       for node in graph.scheduler.nodes]
            counter.graphs.append({"backward": graph.is_backward, "kernels": kernels})
            return module

        self._lowering.compile_to_module = compile_to_module

    def close(self):
        self._lowering.compile_to_module = self._original


@contextmanager
def gpu_realization_rules():
    """Inductor's GPU rules for storing an intermediate value rather than recomputing it where it is read,
    applied while compiling for a CPU: the GPU's size limits, and no storing of every reused exp or tanh."""
    import torch._inductor.config as inductor_config
    import torch._inductor.ir as ir

    limits = {name: getattr(inductor_config, f"_{name}_default")
              for name in ("realize_opcount_threshold", "realize_acc_reads_threshold")
              if getattr(inductor_config, f"_{name}_default", None) is not None}
    saved = {name: getattr(inductor_config, name) for name in limits}
    original = getattr(ir.StorageBox, "should_realize_on_reuse", None)

    def should_realize_on_reuse(self, *args, **kwargs):
        on_cpu = ir.is_cpu
        ir.is_cpu = lambda _: False  # the rule's CPU branch is what differs
        try:
            return original(self, *args, **kwargs)
        finally:
            ir.is_cpu = on_cpu

    for name, value in limits.items():
        setattr(inductor_config, name, value)
    if original is not None:
        ir.StorageBox.should_realize_on_reuse = should_realize_on_reuse
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(inductor_config, name, value)
        if original is not None:
            ir.StorageBox.should_realize_on_reuse = original


class RandomBatches:
    def __init__(self, batch, seq_len, device):
        self.batch, self.seq_len, self.device = batch, seq_len, device

    def next(self):
        window = torch.randint(0, VOCAB, (self.batch, self.seq_len + 1), device=self.device)
        return window[:, :-1], window[:, 1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-py", type=Path, default=TEMPLATE, help="the train.py to measure")
    parser.add_argument("--profile", default="h100", help="the profile of train.py to compile (default h100)")
    parser.add_argument("--batch", type=int, default=4, help="sequences per micro-batch (default 4)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="override a profile constant, e.g. LOGIT_SOFTCAP=0")
    parser.add_argument("--bandwidth", type=float, default=3.0,
                        help="TB/s the fused kernels reach, to turn bytes into time (default 3: an H100; an H200 ~4)")
    parser.add_argument("--top", type=int, default=8, help="how many of the heaviest fused kernels to list")
    parser.add_argument("--cpu-rules", action="store_true",
                        help="on a CPU, keep Inductor's CPU rules for storing intermediate values")
    args = parser.parse_args()

    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = False  # a cached graph is not lowered again, so it would not be counted
    functorch_config.enable_autograd_cache = False
    os.environ["AUTORESEARCH_PROFILE"] = args.profile  # the top of train.py picks the profile's constants
    train = load_train_py(args.train_py)
    for item in args.set:
        name, _, value = item.partition("=")
        if not name.isupper() or not isinstance(getattr(train, name, None), (bool, int, float)):
            parser.error(f"--set {item}: {name} is not a constant of train.py")
        setattr(train, name, parse_value(value, getattr(train, name)))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = train.make_config(VOCAB, train.SEQ_LEN)
    n_layer = config["n_layer"]
    model = train.build_model({**config, "n_layer": 1}).to(device)
    optimizers = train.make_optimizers(model, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16)
    tokens = args.batch * train.SEQ_LEN
    counter = ByteCounter()
    started = time.time()
    gpu_rules = device.type == "cpu" and not args.cpu_rules
    try:
        with train.attention_backends() if device.type == "cuda" else nullcontext():  # as train.py's main()
            with gpu_realization_rules() if gpu_rules else nullcontext():
                train.compile_and_warm_up(model, optimizers, RandomBatches(args.batch, train.SEQ_LEN, device),
                                          autocast)
    finally:
        counter.close()
    rules = " (Inductor's GPU rules for stored values)" if gpu_rules else ""
    print(f"{args.train_py} ({args.profile}{', ' + ', '.join(args.set) if args.set else ''}) on {device.type}{rules}: "
          f"width {config['model_dim']}, {n_layer} blocks, {args.batch} x {train.SEQ_LEN} tokens per micro-batch; "
          f"compiled in {time.time() - started:.0f} s")
    print(f"{'graph':<16} {'kernels':>7} {'matmul':>8} {'attention':>9} {'fused':>8} {'total':>8}   KB per token")
    per_step = Counter()
    heaviest = []
    for graph in counter.graphs:
        kinds = Counter()
        for kind, size, _ in graph["kernels"]:
            kinds[kind] += size / tokens / 1e3
        part = "block" if kinds["attention"] else "head"
        name = f"{part} {'backward' if graph['backward'] else 'forward'}"
        print(f"{name:<16} {len(graph['kernels']):>7} {kinds['matmul']:>8.1f} {kinds['attention']:>9.1f} "
              f"{kinds['fused']:>8.1f} {sum(kinds.values()):>8.1f}")
        times = n_layer if part == "block" else 1
        for kind, kb in kinds.items():
            per_step[kind] += kb * times
        heaviest += [(size / tokens / 1e3 * times, name, describe(node))
                     for kind, size, node in graph["kernels"] if kind == "fused"]
    total = sum(per_step.values())
    print(f"{'whole step':<16} {'':>7} {per_step['matmul']:>8.1f} {per_step['attention']:>9.1f} "
          f"{per_step['fused']:>8.1f} {total:>8.1f}   (blocks counted {n_layer} times)")
    print(f"fused kernels move {per_step['fused']:.0f} KB per token: {per_step['fused'] / args.bandwidth:.0f} ms "
          f"per million tokens at {args.bandwidth:g} TB/s")
    print("heaviest fused kernels (KB per token in a whole step, the operators they were made from):")
    for kb, name, ops in sorted(heaviest, reverse=True)[: args.top]:
        print(f"  {kb:7.1f}  {name:<16} {ops}")


if __name__ == "__main__":
    main()
