"""Model FLOPs utilisation, counted the usual way so figures compare across projects.

FLOPs per token = 6 x (parameters excluding embedding tables)
                + 12 x layers x heads x head_dim x attended length
MFU = tokens per second x FLOPs per token / the device's dense bf16 peak.

train.py reports its FLOPs per token (it knows its architecture); the harness supplies the peak.
"""

from __future__ import annotations

# Dense bf16 tensor-core peaks in FLOP/s, by a substring of the device name (first match wins).
PEAK_BF16 = (
    ("H200", 989.5e12),
    ("H100", 989.5e12),
    ("GH200", 989.5e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("L40S", 362e12),
    ("4090", 165.2e12),
    ("A10G", 125e12),
)


def peak_flops(device_name: str) -> float | None:
    """bf16 dense peak for a known accelerator, None otherwise (MFU is then not reported)."""
    for marker, peak in PEAK_BF16:
        if marker in device_name:
            return peak
    return None


def mfu(tokens_per_s: float, flops_per_tok: float, device_name: str) -> float | None:
    peak = peak_flops(device_name)
    return tokens_per_s * flops_per_tok / peak if peak else None
