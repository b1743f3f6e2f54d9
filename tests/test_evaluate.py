"""The trusted evaluator against a hand computation, and its refusals."""

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from autoresearch.run.evaluate import (
    EvaluationError,
    EvaluationVoid,
    bpb_from_outputs,
    eval_windows,
    evaluate,
    probe_causality,
)

# A bigram "model": logits at position t are row idx[t] of a fixed table. Small enough to do by hand.
BIGRAM_SCRIPT = textwrap.dedent('''
    import torch

    print("importing the candidate prints to stdout; the protocol must survive it")

    class Bigram(torch.nn.Module):
        def __init__(self, vocab, pad):
            super().__init__()
            self.table = torch.nn.Parameter(torch.zeros(vocab, vocab + pad))

        def forward(self, idx):
            print("forward prints too")
            return self.table[idx]

    def build_model(config):
        return Bigram(config["vocab"], config.get("pad", 0))
''')


def save_bigram(tmp_path: Path, table: np.ndarray, pad: int = 0, script: str = BIGRAM_SCRIPT) -> tuple[Path, Path]:
    (tmp_path / "train.py").write_text(script)
    vocab = table.shape[0]
    full = np.concatenate([table, np.full((vocab, pad), 50.0)], axis=1) if pad else table
    state = {"table": torch.tensor(full, dtype=torch.float32)}
    torch.save({"config": {"vocab": vocab, "pad": pad}, "state_dict": state}, tmp_path / "model.pt")
    return tmp_path / "train.py", tmp_path / "model.pt"


def hand_bpb(table: np.ndarray, inputs: np.ndarray, targets: np.ndarray, token_bytes: np.ndarray) -> float:
    nats = nbytes = 0.0
    for x, y in zip(inputs.ravel(), targets.ravel(), strict=True):
        if token_bytes[y] == 0:
            continue
        row = table[x]
        nats += math.log(sum(math.exp(v) for v in row)) - row[y]
        nbytes += token_bytes[y]
    return nats / (math.log(2) * nbytes)


@pytest.mark.parametrize("pad", [0, 3])
def test_bpb_matches_a_hand_computation(tmp_path, pad):
    rng = np.random.default_rng(0)
    vocab = 5  # id 4 is BOS: zero bytes, never scored
    table = rng.normal(size=(vocab, vocab))
    token_bytes = np.array([1, 2, 3, 1, 0])
    tokens = np.array([4, 0, 1, 2, 3, 4, 2, 2, 1, 0, 4, 3, 3, 1, 2, 0, 1], dtype=np.uint16)
    script, model = save_bigram(tmp_path, table, pad=pad)
    result = evaluate(script, model, tokens, token_bytes, seq_len=4, n_tokens=16, batch_size=3, device="cpu",
                      cwd=tmp_path, timeout=120)
    inputs, targets = eval_windows(tokens, 4, 16)
    assert result.bpb == pytest.approx(hand_bpb(table, inputs, targets, token_bytes), rel=1e-6)
    assert result.targets == int((token_bytes[targets] > 0).sum()) == 14
    assert result.bytes == int(token_bytes[targets].sum())


def test_windows_are_consecutive_and_score_each_token_once():
    tokens = np.arange(23)
    inputs, targets = eval_windows(tokens, seq_len=5, n_tokens=20)
    assert inputs.shape == targets.shape == (4, 5)
    assert targets.ravel().tolist() == list(range(1, 21))
    assert (inputs[:, 1:] == targets[:, :-1]).all()


def test_too_little_data_is_a_clear_error():
    with pytest.raises(EvaluationError, match="fewer than one eval sequence"):
        eval_windows(np.arange(5), seq_len=8, n_tokens=100)


def test_non_finite_outputs_are_refused():
    lse = np.array([[1.0, np.nan]], dtype=np.float32)
    with pytest.raises(EvaluationError, match="non-finite"):
        bpb_from_outputs(lse, np.zeros_like(lse), np.array([[0, 1]]), np.array([1, 1]))


def test_a_script_without_build_model_fails_with_the_reason(tmp_path):
    script, model = save_bigram(tmp_path, np.zeros((3, 3)), script="x = 1\n")
    with pytest.raises(EvaluationError, match="build_model"):
        evaluate(script, model, np.arange(9) % 3, np.ones(3, dtype=int), seq_len=4, n_tokens=8, batch_size=2,
                 device="cpu", cwd=tmp_path, timeout=120)


def test_wrong_output_shape_fails_with_the_reason(tmp_path):
    script = BIGRAM_SCRIPT.replace("return self.table[idx]", "return self.table[idx][:, :-1]")
    script_path, model = save_bigram(tmp_path, np.zeros((3, 3)), script=script)
    with pytest.raises(EvaluationError, match=r"shape \(B, T, V\)"):
        evaluate(script_path, model, np.arange(9) % 3, np.ones(3, dtype=int), seq_len=4, n_tokens=8,
                 batch_size=2, device="cpu", cwd=tmp_path, timeout=120)


def test_a_hanging_model_is_stopped_at_the_timeout(tmp_path):
    script = BIGRAM_SCRIPT.replace('print("forward prints too")', "import time; time.sleep(60)")
    script_path, model = save_bigram(tmp_path, np.zeros((3, 3)), script=script)
    with pytest.raises(EvaluationError, match="longer than"):
        evaluate(script_path, model, np.arange(9) % 3, np.ones(3, dtype=int), seq_len=4, n_tokens=8,
                 batch_size=2, device="cpu", cwd=tmp_path, timeout=5)


def _result(nats, nbytes):
    from autoresearch.run.evaluate import EvalResult

    nats, nbytes = np.asarray(nats, dtype=float), np.asarray(nbytes)
    return EvalResult(bpb=nats.sum() / (math.log(2) * nbytes.sum()), nats=nats.sum(), bytes=int(nbytes.sum()),
                      targets=0, seconds=0.0, bpb_stderr=0.0, sequence_nats=nats, sequence_bytes=nbytes)


def test_paired_error_is_zero_for_a_constant_shift_and_grows_with_disagreement():
    from autoresearch.run.evaluate import paired_stderr

    rng = np.random.default_rng(1)
    nbytes = np.full(400, 100)
    base = rng.normal(50, 10, size=400)
    assert paired_stderr(_result(base, nbytes), _result(base + 1.0, nbytes)) < 1e-3
    noisy = paired_stderr(_result(base, nbytes), _result(base + rng.normal(0, 5, size=400), nbytes))
    assert noisy > 1e-3
    with pytest.raises(ValueError, match="same evaluation sequences"):
        paired_stderr(_result(base, nbytes), _result(base[:10], nbytes[:10]))


# ---------------------------------------------------------------------------------------------- checks

# Looks one token ahead: a large bonus on the logit of the token that comes next (what it is scored on).
PEEKING_SCRIPT = BIGRAM_SCRIPT.replace("        return self.table[idx]\n", """\
        logits = self.table[idx].clone()
        ahead = idx[:, 1:, None]  # the next input token is this position's target
        logits[:, :-1].scatter_add_(-1, ahead, torch.full(ahead.shape, 8.0))
        return logits
""")
assert PEEKING_SCRIPT != BIGRAM_SCRIPT

# A worker that lies: the candidate patches cross-entropy, so the compact answers claim half the loss.
LYING_SCRIPT = BIGRAM_SCRIPT + textwrap.dedent('''
    import torch.nn.functional as F
    _honest = F.cross_entropy
    F.cross_entropy = lambda *args, **kwargs: _honest(*args, **kwargs) * 0.5
''')


def _eval_case(tmp_path: Path, script: str, **kw):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    vocab = 6
    table = rng.normal(size=(vocab, vocab))
    token_bytes = np.array([1, 2, 3, 1, 2, 0])
    tokens = rng.integers(0, vocab, size=400).astype(np.uint16)
    script_path, model = save_bigram(tmp_path, table, script=script)
    result = evaluate(script_path, model, tokens, token_bytes, seq_len=16, n_tokens=320, batch_size=4,
                      device="cpu", cwd=tmp_path, timeout=120, **kw)
    return result, script_path, model, vocab


def test_an_honest_model_passes_the_audit_and_the_causality_probe(tmp_path):
    result, script, model, vocab = _eval_case(tmp_path, BIGRAM_SCRIPT)
    assert len(result.audit.rows) == 5  # min(AUDITS, 5 batches)
    worst = probe_causality(script, model, result.audit, vocab, device="cpu", cwd=tmp_path)
    assert worst < 1e-6


def test_a_model_that_looks_ahead_is_void(tmp_path, monkeypatch):
    # The audit's places are drawn from a seed the worker cannot know (os.urandom); fixed here, so that not every
    # audited position is a sequence's last one (with nothing after it to change, the probe could not see it).
    monkeypatch.setattr("autoresearch.run.evaluate.os.urandom", lambda n: bytes(range(1, n + 1)))
    result, script, model, vocab = _eval_case(tmp_path / "peeking", PEEKING_SCRIPT)
    honest, *_ = _eval_case(tmp_path / "honest", BIGRAM_SCRIPT)
    assert result.bpb < honest.bpb - 0.5  # the peeking "improves" val_bpb by a lot
    assert not all(p == 15 for p in result.audit.positions)
    with pytest.raises(EvaluationVoid, match="non-causal"):
        probe_causality(script, model, result.audit, vocab, device="cpu", cwd=tmp_path / "peeking")


def test_a_worker_that_lies_about_its_outputs_fails_the_audit(tmp_path):
    with pytest.raises(EvaluationVoid, match="audit failed"):
        _eval_case(tmp_path, LYING_SCRIPT)


def test_a_spare_worker_started_before_the_model_exists_evaluates_it_like_a_fresh_one(tmp_path):
    from autoresearch.run.evaluate import SpareWorkers

    rng = np.random.default_rng(2)
    table = rng.normal(size=(5, 5))
    token_bytes = np.array([1, 2, 3, 1, 0])
    tokens = rng.integers(0, 5, size=200).astype(np.uint16)
    spares = SpareWorkers(tmp_path, device="cpu", cwd=tmp_path, size=2)
    spares.fill()  # no train.py, no model yet: they only import torch
    first = spares._spares[0]
    script, model = save_bigram(tmp_path, table)
    kw = dict(seq_len=8, n_tokens=160, batch_size=4, device="cpu", cwd=tmp_path, timeout=120)
    spared = evaluate(script, model, tokens, token_bytes, **kw, worker=spares.take(script, model, 5))
    fresh = evaluate(script, model, tokens, token_bytes, **kw)
    assert spared.bpb == pytest.approx(fresh.bpb, rel=1e-9)
    assert not first.alive()  # used once, then ended
    assert len(spares._spares) == 1
    spares._spares[0].close()  # a dead spare is replaced, not handed out
    worker = spares.take(script, model, 5)
    assert worker.alive() and evaluate(script, model, tokens, token_bytes, **kw, worker=worker).bpb == \
        pytest.approx(fresh.bpb, rel=1e-9)
    spares.fill()
    waiting = list(spares._spares)
    spares.close()
    assert len(waiting) == 2 and not any(w.alive() for w in waiting)


def test_a_worker_reads_only_the_model_folder_it_was_started_for(tmp_path):
    from autoresearch.run.evaluate import EvalWorker

    worker = EvalWorker.spare(tmp_path / "models", device="cpu", cwd=tmp_path)
    try:
        with pytest.raises(ValueError, match="can read"):
            worker.assign(tmp_path / "train.py", tmp_path / "elsewhere" / "model.pt", 5)
    finally:
        worker.close()


# A model that prints the windows it is asked to score, then crashes: what it wrote must stay out of the error.
LEAKING_SCRIPT = BIGRAM_SCRIPT.replace('print("forward prints too")', '''import sys
        print("WINDOW", idx.tolist(), file=sys.stderr)
        if idx[0].tolist()[:6] == [7, 1, 2, 3, 4, 5]:  # the evaluation's first window, never random tokens
            raise RuntimeError("crashed on the evaluation data")''')


def test_what_the_worker_writes_never_reaches_the_error(tmp_path):
    tokens = np.array([7, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2], dtype=np.uint16)
    script, model = save_bigram(tmp_path, np.zeros((8, 8)), script=LEAKING_SCRIPT)
    with pytest.raises(EvaluationError) as caught:
        evaluate(script, model, tokens, np.ones(8, dtype=int), seq_len=8, n_tokens=16, batch_size=2, device="cpu",
                 cwd=tmp_path, timeout=120)
    message = str(caught.value)
    assert "[7, 1, 2, 3" in caught.value.worker_output  # the person's log has it
    assert "7, 1, 2, 3" not in message and "crashed on the evaluation data" not in message
    assert "fails only on the evaluation data" in message  # the diagnostic run on random tokens went through


def test_a_model_that_fails_anywhere_is_diagnosed_on_random_tokens(tmp_path):
    script = BIGRAM_SCRIPT.replace('print("forward prints too")', 'raise ValueError("broken forward")')
    script_path, model = save_bigram(tmp_path, np.zeros((3, 3)), script=script)
    with pytest.raises(EvaluationError) as caught:
        evaluate(script_path, model, np.arange(9) % 3, np.ones(3, dtype=int), seq_len=4, n_tokens=8,
                 batch_size=2, device="cpu", cwd=tmp_path, timeout=120)
    assert "on random tokens" in str(caught.value) and "broken forward" in str(caught.value)
    assert len(str(caught.value)) < 5000
