"""The entropy floor as a tripwire: impossible scores are told from honest ones (pure), and the floor of the
evaluated documents matches the corpus's own record (a real prepared dataset)."""

import math

import pytest

from autoresearch.run.floor import Floor, below_floor, evaluated_floor, suspiciously_good_test

FLOOR = Floor(bpb=0.18, docs=100, bytes=80_000)


def test_a_score_below_the_floor_by_more_than_its_error_is_impossible():
    assert below_floor(0.0164, 0.002, FLOOR, "val") is not None
    assert "below the entropy floor" in below_floor(0.10, 0.005, FLOOR, "val")


def test_honest_scores_near_or_above_the_floor_pass():
    assert below_floor(0.40, 0.004, FLOOR, "val") is None
    assert below_floor(0.18, 0.004, FLOOR, "val") is None
    assert below_floor(0.165, 0.004, FLOOR, "val") is None  # within 4 standard errors and the margin
    assert below_floor(0.01, 0.004, None, "val") is None  # real data: no floor known


def test_a_test_figure_is_never_named_in_the_reason():
    why = below_floor(0.0123456, 0.001, FLOOR, "test")
    assert why is not None and "0.0123" not in why


def test_a_test_score_far_better_than_validation_is_void():
    test_floor = Floor(bpb=0.17, docs=100, bytes=80_000)
    assert suspiciously_good_test((0.40, 0.004), (0.18, 0.004), FLOOR, test_floor) is not None
    assert suspiciously_good_test((0.40, 0.004), (0.395, 0.004), FLOOR, test_floor) is None
    assert suspiciously_good_test((0.40, 0.004), (0.36, 0.004), FLOOR, test_floor) is None  # 0.01 lower gap: sampling
    assert suspiciously_good_test((0.40, 0.004), (0.18, 0.004), None, None) is None  # real data: not judged
    assert suspiciously_good_test((0.40, math.nan), (0.39, math.nan), FLOOR, test_floor) is None


@pytest.mark.parametrize("n_tokens", [2000, 8000])
def test_the_evaluated_floor_is_that_of_the_whole_documents_it_covers(tiny_prepared, n_tokens):
    dataset = tiny_prepared
    found = evaluated_floor(dataset, "val", 128, n_tokens)
    assert found is not None and found.docs >= 1
    stats = dataset.split_stats("val")
    assert found.bytes < stats.bytes
    # a sample of the split's documents: close to the split's floor, not far off
    assert abs(found.bpb - stats.floor_bpb) < 0.1
    everything = evaluated_floor(dataset, "val", 128, 10 ** 9)
    assert stats.docs - 2 <= everything.docs <= stats.docs - 1  # the last document is never whole
    assert everything.bpb == pytest.approx(stats.floor_bpb, abs=0.02)


@pytest.fixture
def tiny_prepared(tmp_path):
    from autoresearch.config import DataConfig
    from autoresearch.data.prepare import prepare

    cfg = DataConfig(source="builtin", vocab_size=300, train_mb=0.2, val_mb=0.05, test_mb=0.05,
                     tokenizer_sample_mb=0.2)
    return prepare(cfg).dataset
