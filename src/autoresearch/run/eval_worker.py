"""The untrusted half of evaluation: runs candidate code, returns compact outputs, never the loss.

Started by `evaluate.py` as `python -m autoresearch.run.eval_worker`, often ahead of time: it imports torch,
then waits for its assignment, one JSON line on stdin: `{"script", "model", "device", "vocab"}` (and in
the Landlock layer, `"landlock"`: the rules it restricts itself to first, made when it is assigned). Only
then does it import the candidate's train.py, rebuild the model with `build_model(config)`, load the saved
weights, and serve requests on stdin. Each request is an operation code, then its arrays:

- SCORE, input ids (B, T), target ids (B, T): for each position two float32 numbers, the log-sum-exp
  of the logits and the logit of the target token. The trusted parent turns them into the loss.
- ROWS, input ids (B, T), positions (B,): the full logit row (B, V) at one position of each sequence.
  With empty input ids, the rows come from the batch scored last (no new forward). The parent uses
  them to audit the compact answers, and (from a fresh worker, with the sequences' later tokens
  changed) to check that the model does not look ahead.

Frames on both pipes: a little-endian int64 header (ndim, dtype code, *shape) then the raw array.
"""

from __future__ import annotations

import os
import struct
import sys
import types
from pathlib import Path
from typing import BinaryIO

import numpy as np

_DTYPES = {0: np.dtype("<i4"), 1: np.dtype("<f4")}
SCORE, ROWS = 0, 1  # operation codes
_CODES = {v: k for k, v in _DTYPES.items()}


def write_array(stream: BinaryIO, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=_DTYPES[_CODES[np.dtype(array.dtype).newbyteorder("<")]])
    stream.write(struct.pack(f"<{2 + array.ndim}q", array.ndim, _CODES[array.dtype], *array.shape))
    stream.write(array.tobytes())
    stream.flush()


def read_array(stream: BinaryIO) -> np.ndarray | None:
    """The next array, or None at end of stream."""
    head = stream.read(16)
    if len(head) < 16:
        return None
    ndim, code = struct.unpack("<2q", head)
    shape = struct.unpack(f"<{ndim}q", _read_exact(stream, 8 * ndim))
    dtype = _DTYPES[code]
    count = int(np.prod(shape)) if shape else 1
    return np.frombuffer(_read_exact(stream, count * dtype.itemsize), dtype=dtype).reshape(shape)


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n)
    if len(data) != n:
        raise EOFError("evaluation stream ended mid-frame")
    return data


def load_candidate(script: Path, model_path: Path):
    import torch

    # From the source itself, never from a bytecode cache: a `__pycache__` file left by an earlier run (or planted
    # next to the script) must not stand in for the code that was committed.
    sys.dont_write_bytecode = True
    module = types.ModuleType("candidate_train")
    module.__file__ = str(script)
    sys.modules["candidate_train"] = module
    exec(compile(script.read_bytes(), str(script), "exec", dont_inherit=True), module.__dict__)  # noqa: S102
    if not hasattr(module, "build_model"):
        raise SystemExit(f"{script.name} defines no build_model(config): the harness rebuilds the model with it")
    if not model_path.exists():
        raise SystemExit(f"{model_path} does not exist: train.py must save its model there (see docs/contract.md)")
    saved = torch.load(model_path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or "config" not in saved or "state_dict" not in saved:
        raise SystemExit(f"{model_path} must hold {{'config': ..., 'state_dict': ...}} (see docs/contract.md)")
    model = module.build_model(saved["config"])
    model.load_state_dict(saved["state_dict"], strict=True)
    return model


def serve(script: Path, model_path: Path, device: str, vocab: int, requests: BinaryIO, replies: BinaryIO) -> None:
    import torch
    import torch.nn.functional as F

    # Torch is imported before the first request, so the harness can start this worker while
    # train.py is still finishing; the candidate and its weights are loaded once work arrives.
    op = read_array(requests)
    if op is None:
        return
    model = load_candidate(script, model_path).to(device).eval()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else _null()

    def logits_of(inputs: np.ndarray):
        x = torch.from_numpy(inputs.astype(np.int64)).to(device)
        with autocast:
            logits = model(x)
        if not isinstance(logits, torch.Tensor) or logits.shape[:2] != x.shape or logits.shape[-1] < vocab:
            got = getattr(logits, "shape", type(logits).__name__)
            raise SystemExit(f"model(idx) must return logits of shape (B, T, V) with V >= {vocab}; got {got}")
        return logits[..., :vocab].float()  # padded columns are ignored

    last = None  # the logits of the last scored batch: rows of it are asked for without a new forward
    with torch.inference_mode():
        while op is not None:
            inputs, second = read_array(requests), read_array(requests)
            if int(op[0]) == ROWS:
                logits = last if inputs.size == 0 and last is not None else logits_of(inputs)
                picked = torch.from_numpy(second.astype(np.int64)).to(device)
                rows = logits[torch.arange(len(picked), device=device), picked]
                write_array(replies, rows.cpu().numpy())
            else:
                logits = last = logits_of(inputs)
                y = torch.from_numpy(second.astype(np.int64)).to(device)
                target_logit = logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
                # log-sum-exp as cross-entropy + target logit: one fused kernel instead of five passes
                nll = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view_as(target_logit)
                write_array(replies, (nll + target_logit).cpu().numpy())
                write_array(replies, target_logit.cpu().numpy())
            op = read_array(requests)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    import json

    import torch  # noqa: F401  (before the assignment: a spare worker waits with torch imported)

    line = sys.stdin.buffer.readline()
    if not line.strip():
        return  # closed unassigned: a spare that was not needed
    order = json.loads(line)
    if "landlock" in order:
        from autoresearch.run import landlock

        landlock.restrict_self(landlock.Ruleset.from_json(order["landlock"]))
    # Candidate code may print: keep the protocol on a private copy of stdout, send prints to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(Path(order["script"]), Path(order["model"]), order["device"], int(order["vocab"]), sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
