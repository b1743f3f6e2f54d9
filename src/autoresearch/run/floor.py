"""The entropy floor as a tripwire: scores no honest model can reach.

The built-in corpus records the exact log-probability of every document it generates (docs/data.md), so
the harness knows the entropy of the very documents an evaluation scores. By Gibbs' inequality no model
beats it in expectation; a model that scores below it by more than its sampling error has seen the
answers (memorised the validation or test windows, or read them at evaluation time). Such a result is
void (`tampered`, "below the entropy floor") and never kept.

The same reasoning covers a model's two scores: the validation and test splits are drawn from the same
source, so one model's distance from the floor is about the same on both. A test score far closer to its
floor than the validation score is to its own means the model knew the test windows.

`evaluated_floor` reads the data (I/O); `below_floor` and `suspiciously_good_test` are pure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoresearch.data.prepare import Dataset

Z = 4.0  # standard errors of slack before a score counts as impossible
MARGIN_BPB = 0.01  # bits per byte of slack besides, for what the standard error does not capture


@dataclass(frozen=True)
class Floor:
    """The entropy of the documents that an evaluation scores in full, in bits per byte."""

    bpb: float
    docs: int
    bytes: int


_known: dict[tuple, Floor | None] = {}


def evaluated_floor(dataset: Dataset, split: str, seq_len: int, n_tokens: int) -> Floor | None:
    """The floor of the documents lying wholly inside the evaluation windows of `split` (the first
    `n_tokens`, as `evaluate.eval_windows` cuts them); None where the corpus records no log-probabilities
    (real data) or no document fits. Computed once per dataset and evaluation size."""
    key = (str(dataset.root), dataset.manifest.get("created"), split, seq_len, n_tokens)
    if key not in _known:
        _known[key] = _evaluated_floor(dataset, split, seq_len, n_tokens)
    return _known[key]


def _evaluated_floor(dataset: Dataset, split: str, seq_len: int, n_tokens: int) -> Floor | None:
    if dataset.split_stats(split).floor_bpb is None:
        return None
    tokens = dataset.tokens(split)
    n_seq = min(n_tokens, len(tokens) - 1) // seq_len
    span = np.asarray(tokens[: n_seq * seq_len + 1])
    starts = np.flatnonzero(span == dataset.bos_id)
    whole = len(starts) - 1  # a document is whole when the next one starts inside the span
    if whole < 1:
        return None
    logp = _document_logp(dataset, split, whole)
    token_bytes = dataset.token_bytes()
    nbytes = int(token_bytes[span[starts[0]:starts[whole]].astype(np.int64)].sum())
    if nbytes <= 0:
        return None
    return Floor(bpb=-float(logp.sum()) / (math.log(2) * nbytes), docs=whole, bytes=nbytes)


def _document_logp(dataset: Dataset, split: str, count: int) -> np.ndarray:
    import pyarrow.parquet as pq  # only the built-in corpus has the column

    values: list[float] = []
    for batch in pq.ParquetFile(dataset.root / f"docs-{split}.parquet").iter_batches(columns=["logp"],
                                                                                   batch_size=4096):
        values.extend(batch.column(0).to_pylist())
        if len(values) >= count:
            break
    return np.asarray(values[:count], dtype=np.float64)


def below_floor(bpb: float, stderr: float, floor: Floor | None, split: str) -> str | None:
    """Why a score of `bpb` (sampling error `stderr`) on `split` cannot be honest, or None."""
    if floor is None:
        return None
    slack = Z * (stderr if math.isfinite(stderr) else 0.0) + MARGIN_BPB
    if bpb >= floor.bpb - slack:
        return None
    figures = f" ({bpb:.4f} against {floor.bpb:.4f} bits per byte)" if split == "val" else ""  # test stays hidden
    return (f"below the entropy floor: the {split} score is under the exact entropy of the scored {split} "
            f"documents{figures} by more than its sampling error allows; no model can do that without having seen "
            "the answers, so the result is void")


def suspiciously_good_test(val: tuple[float, float], test: tuple[float, float], val_floor: Floor | None,
                    test_floor: Floor | None) -> str | None:
    """Why one model's test score (bpb, stderr) is implausibly better than its validation score, or None.
    Only where both floors are known: there the splits are independent draws of one source."""
    if val_floor is None or test_floor is None:
        return None
    (val_bpb, val_se), (test_bpb, test_se) = val, test
    spread = math.sqrt(sum(s * s for s in (val_se, test_se) if math.isfinite(s)))
    val_gap, test_gap = val_bpb - val_floor.bpb, test_bpb - test_floor.bpb
    if test_gap >= val_gap - Z * spread - MARGIN_BPB:
        return None
    return ("the hidden test score is far closer to its entropy floor than the validation score is to its own, "
            "more than sampling can explain; the model knew the test windows, so the result is void")
