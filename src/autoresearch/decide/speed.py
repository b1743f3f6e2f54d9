"""The machine's speed, measured the same way before every run, so that runs made at different speeds are
not compared as if they were alike.

The training budget is wall-clock time: a machine slowed by other work (a shared CPU, another job on the
GPU, thermal limits) trains fewer steps in it, and its runs score worse for reasons that have nothing to do
with the code. A baseline measured while the machine was busy makes every later change look better.

`probe` times a fixed piece of work on the run's device (matrix products, the bulk of a transformer's work)
and returns its rate in GFLOP/s. The prestarted interpreter (prestart.py) runs it just before it runs
train.py: in the same process, box and device, before any candidate code is loaded, so the figure is the
harness's own. On a CPU the harness probes again once the run's processes are gone (runner.py), and the run's
figure is the better of the two: a shared CPU has dips of a second or more, and one probe that falls in one
would take it for a slower machine.

The decision side is pure: `shift` says how much faster or slower the machine is than it was, `comparable`
picks the runs of the best made at about the speed of the run being judged, and `groups` splits the runs of
one code by speed for the noise (docs/keep.md, "Machine speed").
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence

# Runs whose speeds differ by more than this fraction are not compared (keep.speed_tolerance's default).
DEFAULT_TOLERANCE = 0.25

# The line a prestarted interpreter writes before train.py's output starts (prestart.py); only the first
# line of a run's output can be it, since candidate code is loaded after it.
SPEED_PREFIX = "autoresearch-machine-speed: "

# The work timed, by device kind: (matrix side, dtype name, products per timed chunk, chunks).
_WORK = {
    "cpu": (256, "float32", 32, 25),
    "mps": (1024, "float16", 8, 25),
    "cuda": (4096, "bfloat16", 8, 25),
}


def probe(device: str) -> float:
    """GFLOP/s of square matrix products on `device` ("cpu", "cuda", "cuda:1", "mps"): the median of
    several short timed chunks, after one warm-up chunk. About 0.1 to 0.3 s."""
    import torch

    side, dtype_name, per_chunk, chunks = _WORK[device.split(":")[0]]
    dtype = getattr(torch, dtype_name)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(side, side, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(side, side, generator=generator).to(device=device, dtype=dtype)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        elif device == "mps":
            torch.mps.synchronize()

    rates = []
    with torch.no_grad():
        for chunk in range(chunks + 1):
            sync()
            t0 = time.perf_counter()
            for _ in range(per_chunk):
                c = a @ b
            sync()
            seconds = time.perf_counter() - t0
            if chunk:  # the first one warms up (kernel selection, caches)
                rates.append(2 * side**3 * per_chunk / seconds / 1e9)
    del a, b, c
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # what train.py then allocates starts from nothing
    return statistics.median(rates)


def probe_before_script(device: str) -> float:
    """`probe` as the prestarted interpreter runs it before train.py. On a GPU it runs in a forked child, so that
    this process has not touched the GPU when train.py starts: settings train.py makes before its first CUDA
    call (PYTORCH_CUDA_ALLOC_CONF, say) then still take effect. Elsewhere, in this process. Raises on failure."""
    if not device.startswith("cuda") or not hasattr(os, "fork"):
        return probe(device)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: probe, report, and leave without running anything of the parent's
        try:
            os.close(read)
            os.write(write, repr(probe(device)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    if not answer:
        raise RuntimeError(f"the speed probe on {device} ended without a figure")
    return float(answer)


def parse_line(line: str) -> float | None:
    """The figure of a `SPEED_PREFIX` line; None for any other line, `none`, or a figure that is no speed."""
    if not line.startswith(SPEED_PREFIX):
        return None
    try:
        value = float(line[len(SPEED_PREFIX):])
    except ValueError:
        return None
    return value if value > 0 and value != float("inf") else None


def shift(reference: float, now: float) -> float:
    """How much faster (> 0) or slower (< 0) the machine is now than at `reference`, as a fraction."""
    return now / reference - 1.0


def alike(a: float, b: float, tolerance: float) -> bool:
    """Are two speeds about the same: the faster at most 1 + `tolerance` times the slower?"""
    return max(a, b) <= (1 + tolerance) * min(a, b)


def typical(speeds: Sequence[float | None]) -> float | None:
    """The median of the known `speeds`; None if none is known."""
    known = [s for s in speeds if s is not None]
    return statistics.median(known) if known else None


def comparable(speeds: Sequence[float | None], now: float | None, tolerance: float) -> list[int]:
    """Indices of `speeds` about as fast as `now`: the faster of the two at most 1 + `tolerance` times the
    slower. Runs of unknown speed (None) count as comparable, as does everything when `now` is unknown or the
    tolerance is 0 (the check is off)."""
    if now is None or not tolerance:
        return list(range(len(speeds)))
    return [i for i, s in enumerate(speeds) if s is None or alike(s, now, tolerance)]


def groups(speeds: Sequence[float | None], tolerance: float) -> list[list[int]]:
    """Indices of `speeds` (the runs of one piece of code) in groups of runs made at about one speed: each
    group's fastest at most 1 + `tolerance` times its slowest. Runs of unknown speed join the first group;
    with the check off (tolerance 0), all are one group. Runs of the same code at different speeds differ
    by more than the noise, so the noise is measured within these groups."""
    if not speeds:
        return []
    if not tolerance:
        return [list(range(len(speeds)))]
    out: list[list[int]] = []
    for i in sorted((i for i, s in enumerate(speeds) if s is not None), key=lambda i: speeds[i]):
        if out and alike(speeds[i], speeds[out[-1][0]], tolerance):
            out[-1].append(i)
        else:
            out.append([i])
    unknown = [i for i, s in enumerate(speeds) if s is None]
    if unknown:
        out = [unknown + out[0], *out[1:]] if out else [unknown]
    return [sorted(group) for group in out]
