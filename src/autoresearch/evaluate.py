"""Trusted evaluation: the harness, not train.py, computes bits per byte.

The parent owns the validation tokens and the token byte lengths. It starts a fresh worker
process (`eval_worker.py`) that runs the candidate's model, sends it input and target ids, and
gets back per-position log-sum-exp and target logit. The loss is computed here:

    bpb = sum over scored targets of (logsumexp - target_logit) / (ln 2 * sum of their UTF-8 bytes)

Targets whose byte length is 0 (BOS) are excluded from both sums. Sequences are consecutive
windows of the split, so each token is scored once with up to `seq_len - 1` tokens of context.
"""

from __future__ import annotations

import math
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoresearch import sandbox
from autoresearch.eval_worker import read_array, write_array


class EvaluationError(Exception):
    """The candidate's model could not be evaluated; the message carries the worker's last words."""


@dataclass(frozen=True)
class EvalResult:
    bpb: float
    nats: float  # summed over scored targets
    bytes: int
    targets: int  # scored target tokens
    seconds: float
    bpb_stderr: float  # sampling error of bpb, bootstrapped over sequences
    sequence_nats: np.ndarray = field(repr=False, compare=False)  # per evaluated sequence
    sequence_bytes: np.ndarray = field(repr=False, compare=False)


def eval_windows(tokens: np.ndarray, seq_len: int, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets, shape (n_seq, seq_len): consecutive windows from the start of the split."""
    n_seq = min(n_tokens, len(tokens) - 1) // seq_len
    if n_seq < 1:
        raise EvaluationError(f"the split has {len(tokens)} tokens, fewer than one eval sequence of {seq_len + 1}: "
                              "lower eval.seq_len or give the split more data")
    span = np.asarray(tokens[: n_seq * seq_len + 1], dtype=np.int64)
    inputs = span[:-1].reshape(n_seq, seq_len)
    targets = span[1:].reshape(n_seq, seq_len)
    return inputs, targets


def bpb_from_outputs(lse: np.ndarray, target_logit: np.ndarray, targets: np.ndarray,
                     token_bytes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sequence summed nats and bytes over the scored targets (pure: the metric's definition)."""
    nbytes = token_bytes[targets].astype(np.int64)
    nats = (lse.astype(np.float64) - target_logit.astype(np.float64)) * (nbytes > 0)
    if not np.all(np.isfinite(nats)):
        raise EvaluationError("the model produced non-finite logits (NaN or inf) on validation data")
    return nats.sum(axis=1), nbytes.sum(axis=1)


def bootstrap_stderr(nats: np.ndarray, nbytes: np.ndarray, rounds: int = 200, seed: int = 0) -> float:
    if len(nats) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(nats), size=(rounds, len(nats)))
    ratios = nats[picks].sum(axis=1) / (math.log(2) * nbytes[picks].sum(axis=1))
    return float(ratios.std(ddof=1))


def paired_stderr(a: EvalResult, b: EvalResult, rounds: int = 200, seed: int = 0) -> float:
    """Sampling error of bpb(a) - bpb(b) when both models were scored on the same sequences."""
    if a.sequence_nats.shape != b.sequence_nats.shape or not np.array_equal(a.sequence_bytes, b.sequence_bytes):
        raise ValueError("paired comparison needs both results on the same evaluation sequences")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(a.sequence_nats), size=(rounds, len(a.sequence_nats)))
    nbytes = math.log(2) * a.sequence_bytes[picks].sum(axis=1)
    diffs = (a.sequence_nats[picks].sum(axis=1) - b.sequence_nats[picks].sum(axis=1)) / nbytes
    return float(diffs.std(ddof=1))


class EvalWorker:
    """A started evaluation worker process. It imports torch first and reads nothing until `evaluate`
    sends work, so the runner starts it while train.py is still saving and exiting."""

    def __init__(self, script: Path, model_path: Path, vocab: int, *, device: str, cwd: Path,
                 env: dict[str, str] | None = None) -> None:
        self.vocab = vocab
        # It may read its folder and the model, and write nothing: it is candidate code too.
        box = sandbox.Box(workdir=cwd, writable=False, read=(model_path.parent,), gpu=device.startswith("cuda"))
        self.proc = sandbox.start_python(
            ["-m", "autoresearch.eval_worker", str(script), str(model_path), device, str(vocab)],
            box, env or {}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=_drain, args=(self.proc.popen.stderr, self.stderr_lines), daemon=True)
        self._reader.start()

    def close(self) -> None:
        self.proc.kill()
        self._reader.join(timeout=5)

    def __enter__(self) -> EvalWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate(script: Path, model_path: Path, tokens: np.ndarray, token_bytes: np.ndarray, *, seq_len: int,
             n_tokens: int, batch_size: int, device: str, cwd: Path, timeout: float = 600.0,
             env: dict[str, str] | None = None, worker: EvalWorker | None = None) -> EvalResult:
    """bpb of the model saved at `model_path` by `script`, on the first `n_tokens` of `tokens`.

    `worker`, if given, is an `EvalWorker` already started for the same script and model; it is
    used up either way."""
    start = time.perf_counter()
    inputs, targets = eval_windows(tokens, seq_len, n_tokens)
    if worker is None:
        worker = EvalWorker(script, model_path, len(token_bytes), device=device, cwd=cwd, env=env)
    if worker.vocab != len(token_bytes):
        worker.close()
        raise ValueError("the evaluation worker was started for another vocabulary")
    proc = worker.proc
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    seq_nats, seq_bytes = [], []
    try:
        for lo in range(0, len(inputs), batch_size):
            x, y = inputs[lo:lo + batch_size], targets[lo:lo + batch_size]
            write_array(proc.popen.stdin, x.astype(np.int32))
            write_array(proc.popen.stdin, y.astype(np.int32))
            lse, target_logit = read_array(proc.popen.stdout), read_array(proc.popen.stdout)
            if lse is None or target_logit is None or lse.shape != x.shape or target_logit.shape != x.shape:
                raise EvaluationError("the evaluation worker stopped answering")
            nats, nbytes = bpb_from_outputs(lse, target_logit, y, token_bytes)
            seq_nats.append(nats)
            seq_bytes.append(nbytes)
        # Every answer is in: the worker is ended (in `finally`) rather than awaited through its exit.
    except (BrokenPipeError, EOFError, EvaluationError, OSError) as err:
        worker.close()
        detail = "".join(worker.stderr_lines[-20:]).strip() or str(err) or type(err).__name__
        if expired.is_set():
            detail = f"evaluation took longer than {timeout:.0f} s and was stopped\n{detail}"
        raise EvaluationError(detail) from err
    finally:
        timer.cancel()
        worker.close()
    nats_all, bytes_all = np.concatenate(seq_nats), np.concatenate(seq_bytes)
    total_nats, total_bytes = float(nats_all.sum()), int(bytes_all.sum())
    return EvalResult(
        bpb=total_nats / (math.log(2) * total_bytes),
        nats=total_nats,
        bytes=total_bytes,
        targets=int((token_bytes[targets] > 0).sum()),
        seconds=time.perf_counter() - start,
        bpb_stderr=bootstrap_stderr(nats_all, bytes_all),
        sequence_nats=nats_all,
        sequence_bytes=bytes_all,
    )


def _drain(stream, sink: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        sink.append(raw.decode("utf-8", "replace"))
        del sink[:-200]
