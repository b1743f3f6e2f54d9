"""Trusted evaluation: the harness, not train.py, computes bits per byte.

The parent owns the validation tokens and the token byte lengths. It starts a fresh worker
process (`eval_worker.py`) that runs the candidate's model, sends it input and target ids, and
gets back per-position log-sum-exp and target logit. The loss is computed here:

    bpb = sum over scored targets of (logsumexp - target_logit) / (ln 2 * sum of their UTF-8 bytes)

Targets whose byte length is 0 (BOS) are excluded from both sums. Sequences are consecutive
windows of the split, so each token is scored once with up to `seq_len - 1` tokens of context.

The worker is candidate code, so its answers are checked (docs/security.md):

- **Audit.** The parent picks `audits` batches at random (with a seed the worker cannot know). Once
  the answer for such a batch is in, it asks for the full logit row at a random sequence and position
  of it (from the logits the worker computed for that answer). Its log-sum-exp and target logit must
  match the answer.
- **Causality probe** (`probe_causality`). A fresh worker, which never saw the targets, gets the same
  batches with every token from the picked position + 1 on changed, and returns the row at the picked
  position. A causal model gives the same distribution there; one that looks ahead, or a worker that
  shaped its answers around the targets, does not.

A failed check raises `EvaluationVoid`: the experiment is void, not merely crashed.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from autoresearch.run import sandbox
from autoresearch.run.eval_worker import ROWS, SCORE, read_array, write_array

AUDITS = 8  # batches audited per evaluation, one sequence and position each
ROW_TOLERANCE = 0.01  # nats: how far a full row may be from the compact answers it backs
CAUSAL_TOLERANCE = 0.01  # total variation between a row and the same row with later tokens changed


DIAGNOSIS_CHARS = 4000  # of a diagnostic worker's output, at most, in an error message
DIAGNOSIS_TOKENS = 64  # sequence length of the diagnostic run's random inputs (at most the evaluation's)


class EvaluationError(Exception):
    """The candidate's model could not be evaluated. The message is the harness's own words, and at most the
    output of a diagnostic run on random tokens (`diagnose`): what the evaluation worker itself wrote may carry
    the validation or test windows it was sent, so it is kept in `worker_output`, for the person's log only,
    and never put in the message (which reaches the agent)."""

    def __init__(self, message: str, worker_output: str = "") -> None:
        super().__init__(message)
        self.worker_output = worker_output


class EvaluationVoid(EvaluationError):
    """The evaluation's answers failed a check (an audit, the causality probe): the result is void."""


@dataclass(frozen=True)
class Audit:
    """What the causality probe re-asks: per audited batch, the inputs, the sequence and position picked, and
    the row the evaluation worker gave there."""

    batches: list[np.ndarray]
    sequences: list[int]
    positions: list[int]
    rows: list[np.ndarray]


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
    audit: Audit | None = field(default=None, repr=False, compare=False)


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
    """An evaluation worker process for the model that `script` saves in `model_dir`. It imports torch first
    and runs no candidate code until it is assigned its script and model (`assign`), so it can be started
    ahead of time (`spare`, `SpareWorkers`) and still be fresh: it has seen nothing of any candidate."""

    def __init__(self, script: Path, model_path: Path, vocab: int, *, device: str, cwd: Path,
                 env: dict[str, str] | None = None) -> None:
        self._start(model_path.parent, device=device, cwd=cwd, env=env)
        self.assign(script, model_path, vocab)

    @classmethod
    def spare(cls, model_dir: Path, *, device: str, cwd: Path, env: dict[str, str] | None = None) -> EvalWorker:
        """A worker started now and assigned later."""
        worker = cls.__new__(cls)
        worker._start(model_dir, device=device, cwd=cwd, env=env)
        return worker

    def _start(self, model_dir: Path, *, device: str, cwd: Path, env: dict[str, str] | None) -> None:
        self.model_dir, self.device, self.cwd, self.vocab = model_dir, device, cwd, 0
        # It may read its folder and the model, and write nothing: it is candidate code too.
        box = sandbox.Box(workdir=cwd, writable=False, read=(model_dir,), gpu=device.startswith("cuda"))
        self.proc = sandbox.start([sys.executable, "-m", "autoresearch.run.eval_worker"], box, env or {},
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  prestarted=True)
        self.stderr_lines: list[str] = []
        self._reader = threading.Thread(target=_drain, args=(self.proc.popen.stderr, self.stderr_lines), daemon=True)
        self._reader.start()

    def assign(self, script: Path, model_path: Path, vocab: int) -> None:
        """Give the worker its candidate: it imports `script` and loads `model_path` (in its box's model folder)
        when the first request comes. OSError if it is gone."""
        if model_path.parent != self.model_dir:
            raise ValueError(f"this worker can read {self.model_dir}, not {model_path.parent}")
        self.vocab = vocab
        self.proc.tell({"script": str(script), "model": str(model_path), "device": self.device, "vocab": vocab})

    def alive(self) -> bool:
        return self.proc.alive()

    def close(self) -> None:
        self.proc.kill()
        self._reader.join(timeout=5)

    def __enter__(self) -> EvalWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpareWorkers:
    """Evaluation workers started ahead of time for one working folder, so that an evaluation, and the
    causality probe's fresh worker, do not wait for Python and torch to start. A spare runs no candidate code
    until it is taken, and each is used for one evaluation only."""

    def __init__(self, model_dir: Path, *, device: str, cwd: Path, env: dict[str, str] | None = None,
                 size: int = 2) -> None:
        self.model_dir, self.device, self.cwd, self.env, self.size = model_dir, device, cwd, env, size
        self._spares: list[EvalWorker] = []

    def fill(self) -> None:
        """Start workers until `size` are waiting."""
        waiting = []
        for worker in self._spares:
            if worker.alive():
                waiting.append(worker)
            else:
                worker.close()
        self._spares = waiting
        while len(self._spares) < self.size:
            self._spares.append(EvalWorker.spare(self.model_dir, device=self.device, cwd=self.cwd, env=self.env))

    def take(self, script: Path, model_path: Path, vocab: int) -> EvalWorker:
        """A waiting worker, assigned to `script`'s model (a new one if none is waiting)."""
        while self._spares:
            worker = self._spares.pop(0)
            if not worker.alive():
                worker.close()
                continue
            try:
                worker.assign(script, model_path, vocab)
                return worker
            except OSError:
                worker.close()
        return EvalWorker(script, model_path, vocab, device=self.device, cwd=self.cwd, env=self.env)

    def close(self) -> None:
        for worker in self._spares:
            worker.close()
        self._spares = []


def evaluate(script: Path, model_path: Path, tokens: np.ndarray, token_bytes: np.ndarray, *, seq_len: int,
             n_tokens: int, batch_size: int, device: str, cwd: Path, timeout: float = 600.0,
             env: dict[str, str] | None = None, worker: EvalWorker | None = None,
             audits: int = AUDITS) -> EvalResult:
    """bpb of the model saved at `model_path` by `script`, on the first `n_tokens` of `tokens`.

    `worker`, if given, is an `EvalWorker` already started for the same script and model; it is
    used up either way. `audits` batches are audited (see the module docstring)."""
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
    rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))  # unknown to the worker
    n_batches = -(-len(inputs) // batch_size)
    audited = set(rng.choice(n_batches, size=min(audits, n_batches), replace=False).tolist()) if audits else set()
    audit = Audit([], [], [], [])
    try:
        answers = _score(proc, inputs, targets, token_bytes, batch_size,
                         after=lambda b, answer: _audit(proc, b, answer, inputs, targets, batch_size, rng, audit,
                                                        len(token_bytes)) if b in audited else None)
        # Every answer is in: the worker is ended (in `finally`) rather than awaited through its exit.
    except EvaluationVoid:
        raise
    except (BrokenPipeError, EOFError, EvaluationError, OSError) as err:
        worker.close()
        output = "".join(worker.stderr_lines)
        if expired.is_set():
            raise EvaluationError(f"evaluation took longer than {timeout:.0f} s and was stopped",
                                  worker_output=output) from err
        why = str(err) if isinstance(err, EvaluationError) else "the evaluation worker stopped without answering"
        raise EvaluationError(_with_diagnosis(why, script, model_path, len(token_bytes), seq_len, device, cwd,
                                              env, timeout), worker_output=output) from err
    finally:
        timer.cancel()
        worker.close()
    return _result(answers, targets, token_bytes, batch_size, time.perf_counter() - start,
                   audit if audited else None)


def diagnose(script: Path, model_path: Path, vocab: int, *, seq_len: int, device: str, cwd: Path,
             env: dict[str, str] | None = None, timeout: float = 60.0) -> str | None:
    """Run the model once on random tokens in a fresh worker, which never sees any evaluation data, and return
    what it wrote if that failed too (its last lines, at most DIAGNOSIS_CHARS characters); None if it ran fine.
    This is the only output of candidate code at evaluation time that may reach the agent: it cannot hold the
    validation or test windows, because the process that wrote it never had them."""
    rng = np.random.default_rng()
    length = max(1, min(seq_len, DIAGNOSIS_TOKENS))
    inputs = rng.integers(0, vocab, size=(2, length))
    worker = EvalWorker(script, model_path, vocab, device=device, cwd=cwd, env=env)
    timer = threading.Timer(timeout, worker.proc.kill)
    timer.start()
    try:
        _score(worker.proc, inputs, rng.integers(0, vocab, size=inputs.shape), np.ones(vocab, dtype=np.int64), 2)
        return None
    except (BrokenPipeError, EOFError, EvaluationError, OSError):
        worker.close()
        text = "".join(worker.stderr_lines).strip()
        return text[-DIAGNOSIS_CHARS:] if text else "(it wrote nothing)"
    finally:
        timer.cancel()
        worker.close()


def _with_diagnosis(why: str, script: Path, model_path: Path, vocab: int, seq_len: int, device: str, cwd: Path,
                    env: dict[str, str] | None, timeout: float) -> str:
    try:
        found = diagnose(script, model_path, vocab, seq_len=seq_len, device=device, cwd=cwd, env=env,
                         timeout=min(timeout, 60.0))
    except OSError as err:
        found = f"(the diagnostic run could not start: {err})"
    if found is None:
        return (f"{why}. Run on random tokens instead, the model answered: it fails only on the evaluation data, "
                "and what it wrote then is kept out of this message, because it could hold that data")
    return f"{why}. The same model run on random tokens (no evaluation data) wrote:\n{found}"


def _score(proc: sandbox.CandidateProcess, inputs: np.ndarray, targets: np.ndarray, token_bytes: np.ndarray,
           batch_size: int, after=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The worker's compact answers (log-sum-exp, target logit) for every batch; `after(b, answer)` is
    called once batch b's answer is in (the audit)."""
    answers = []
    for lo in range(0, len(inputs), batch_size):
        x, y = inputs[lo:lo + batch_size], targets[lo:lo + batch_size]
        _send(proc, SCORE, x, y)
        lse, target_logit = read_array(proc.popen.stdout), read_array(proc.popen.stdout)
        if lse is None or target_logit is None or lse.shape != x.shape or target_logit.shape != x.shape:
            raise EvaluationError("the evaluation worker stopped answering")
        answers.append((lse, target_logit))
        if after is not None:
            after(len(answers) - 1, answers[-1])
    return answers


def _result(answers: list, targets: np.ndarray, token_bytes: np.ndarray, batch_size: int, seconds: float,
            audit: Audit | None = None) -> EvalResult:
    seq_nats, seq_bytes = [], []
    for b, (lse, target_logit) in enumerate(answers):
        nats, nbytes = bpb_from_outputs(lse, target_logit, targets[b * batch_size:(b + 1) * batch_size], token_bytes)
        seq_nats.append(nats)
        seq_bytes.append(nbytes)
    nats_all, bytes_all = np.concatenate(seq_nats), np.concatenate(seq_bytes)
    total_nats, total_bytes = float(nats_all.sum()), int(bytes_all.sum())
    return EvalResult(
        bpb=total_nats / (math.log(2) * total_bytes),
        nats=total_nats,
        bytes=total_bytes,
        targets=int((token_bytes[targets] > 0).sum()),
        seconds=seconds,
        bpb_stderr=bootstrap_stderr(nats_all, bytes_all),
        sequence_nats=nats_all,
        sequence_bytes=bytes_all,
        audit=audit,
    )


def _send(proc: sandbox.CandidateProcess, op: int, first: np.ndarray, second: np.ndarray) -> None:
    write_array(proc.popen.stdin, np.array([op], dtype=np.int32))
    write_array(proc.popen.stdin, first.astype(np.int32))
    write_array(proc.popen.stdin, second.astype(np.int32))


def _rows(proc: sandbox.CandidateProcess, batch: np.ndarray, position: int, vocab: int) -> np.ndarray:
    _send(proc, ROWS, batch, np.full(len(batch), position, dtype=np.int32))
    rows = read_array(proc.popen.stdout)
    if rows is None or rows.shape != (len(batch), vocab):
        raise EvaluationError("the evaluation worker stopped answering (full rows)")
    return rows


def _audit(proc: sandbox.CandidateProcess, b: int, answer: tuple[np.ndarray, np.ndarray], inputs: np.ndarray,
           targets: np.ndarray, batch_size: int, rng: np.random.Generator, audit: Audit, vocab: int) -> None:
    """Batch b's answer is in: ask for the full row at a random place of it (from the worker's logits of that
    batch, no new forward) and check it against the answer (EvaluationVoid); note it for the probe."""
    batch = inputs[b * batch_size:(b + 1) * batch_size]
    seq, pos = int(rng.integers(len(batch))), int(rng.integers(batch.shape[1]))
    _send(proc, ROWS, np.zeros((0, 0), dtype=np.int32), np.full(len(batch), pos, dtype=np.int32))
    rows = read_array(proc.popen.stdout)
    if rows is None or rows.shape != (len(batch), vocab):
        raise EvaluationError("the evaluation worker stopped answering (full rows)")
    row = rows[seq].astype(np.float64)
    lse, target_logit = answer[0][seq, pos], answer[1][seq, pos]
    target = int(targets[b * batch_size + seq, pos])
    if abs(_logsumexp(row) - lse) > ROW_TOLERANCE or abs(row[target] - target_logit) > ROW_TOLERANCE:
        raise EvaluationVoid(f"audit failed: at an evaluation position the worker answered log-sum-exp "
                             f"{lse:.4f} and target logit {target_logit:.4f}, but its own full logit row there "
                             f"gives {_logsumexp(row):.4f} and {row[target]:.4f}")
    audit.batches.append(batch)
    audit.sequences.append(seq)
    audit.positions.append(pos)
    audit.rows.append(row)


@dataclass(frozen=True)
class Verification:
    causal_tv: float  # the probe's largest total variation
    test: EvalResult | None  # the hidden test split's score, when asked for
    seconds: float


def verify(script: Path, model_path: Path, audit: Audit, token_bytes: np.ndarray, *, device: str, cwd: Path,
           env: dict[str, str] | None = None, timeout: float = 600.0, test_tokens: np.ndarray | None = None,
           seq_len: int = 0, n_tokens: int = 0, batch_size: int = 1, worker: EvalWorker | None = None) -> Verification:
    """One fresh worker (`worker`, if given: assigned to this model, and used up): first the causality probe
    (EvaluationVoid if it fails), then, given `test_tokens`, the score on the hidden test split (its first
    `n_tokens`, like the validation's)."""
    start = time.perf_counter()
    vocab = len(token_bytes)
    rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
    worker = worker or EvalWorker(script, model_path, vocab, device=device, cwd=cwd, env=env)
    timer = threading.Timer(timeout, worker.proc.kill)
    timer.start()
    worst, test = 0.0, None
    try:
        for batch, seq, pos, row in zip(audit.batches, audit.sequences, audit.positions, audit.rows, strict=True):
            changed = batch.copy()
            later = changed[seq, pos + 1:]
            changed[seq, pos + 1:] = (later + rng.integers(1, vocab, size=later.shape)) % vocab  # every one differs
            again = _rows(worker.proc, changed, pos, vocab)[seq].astype(np.float64)
            worst = max(worst, _total_variation(row, again))
            if worst > CAUSAL_TOLERANCE:
                raise EvaluationVoid(
                    f"non-causal: the model's prediction at position {pos} of an evaluation sequence changed (total "
                    f"variation {worst:.3f}) when only the tokens after it changed. It looks ahead at the tokens it "
                    "is scored on, so its val_bpb is void")
        if test_tokens is not None:
            scored = time.perf_counter()
            inputs, targets = eval_windows(test_tokens, seq_len, n_tokens)
            test = _result(_score(worker.proc, inputs, targets, token_bytes, batch_size), targets, token_bytes,
                           batch_size, time.perf_counter() - scored)
    except EvaluationVoid:
        raise
    except (BrokenPipeError, EOFError, EvaluationError, OSError) as err:
        worker.close()
        why = "the causality probe or the test evaluation failed: the evaluation worker stopped without answering"
        raise EvaluationError(_with_diagnosis(why, script, model_path, vocab, seq_len or DIAGNOSIS_TOKENS, device,
                                              cwd, env, timeout), worker_output="".join(worker.stderr_lines)) from err
    finally:
        timer.cancel()
        worker.close()
    return Verification(causal_tv=worst, test=test, seconds=time.perf_counter() - start)


def probe_causality(script: Path, model_path: Path, audit: Audit, vocab: int, *, device: str, cwd: Path,
                    env: dict[str, str] | None = None, timeout: float = 600.0) -> float:
    """The causality probe alone (see `verify`): the largest total variation found."""
    return verify(script, model_path, audit, np.ones(vocab, dtype=np.int64), device=device, cwd=cwd, env=env,
                  timeout=timeout).causal_tv


def _logsumexp(row: np.ndarray) -> float:
    top = float(row.max())
    return top + math.log(float(np.exp(row - top).sum()))


def _total_variation(a: np.ndarray, b: np.ndarray) -> float:
    pa, pb = np.exp(a - _logsumexp(a)), np.exp(b - _logsumexp(b))
    return 0.5 * float(np.abs(pa - pb).sum())


def _drain(stream, sink: list[str]) -> None:
    for raw in iter(stream.readline, b""):
        sink.append(raw.decode("utf-8", "replace"))
        del sink[:-200]
