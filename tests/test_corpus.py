import hashlib
import math

import pytest

from autoresearch.data.builtin import document_seed, floor_bpb, generate_split, tell
from autoresearch.data.choice import Sampler, Writer, count_derivations, uniform
from autoresearch.data.stories import tell_story

KEY = bytes(range(32))  # a split key (the held-out splits are told from it)
OTHER_KEY = bytes(range(1, 33))


def test_same_seed_and_key_same_corpus_whatever_the_worker_count():
    one = [d.text for d in generate_split("val", 2.1, corpus_seed=5, workers=1, key=KEY)]
    two = [d.text for d in generate_split("val", 2.1, corpus_seed=5, workers=2, key=KEY)]
    assert one == two
    assert sum(len(t.encode()) for t in one) >= 2_100_000


def test_other_seed_other_corpus():
    a = [d.text for d in generate_split("val", 0.05, corpus_seed=0, key=KEY)]
    b = [d.text for d in generate_split("val", 0.05, corpus_seed=1, key=KEY)]
    assert a[:20] != b[:20]
    assert [d.text for d in generate_split("train", 0.05, corpus_seed=1)][:20] != \
        [d.text for d in generate_split("train", 0.05, corpus_seed=0)][:20]


def test_the_held_out_splits_come_from_the_key_and_train_from_the_seed_alone():
    def texts(split: str, key: bytes | None) -> list[str]:
        return [d.text for d in generate_split(split, 0.05, corpus_seed=3, key=key)]

    for split in ("val", "test"):
        assert texts(split, KEY) == texts(split, KEY)
        assert not set(texts(split, KEY)) & set(texts(split, OTHER_KEY))  # not one story in common
    assert texts("train", KEY) == texts("train", OTHER_KEY) == texts("train", None)


def test_the_held_out_splits_cannot_be_told_without_the_key():
    for split in ("val", "test"):
        with pytest.raises(ValueError, match="split key"):
            next(generate_split(split, 0.01, corpus_seed=0))
        with pytest.raises(ValueError, match="split key"):
            document_seed(0, split, 0)
        with pytest.raises(ValueError, match="split key"):
            document_seed(0, split, 0, b"")


def test_train_seeds_are_the_seed_alone_and_held_out_seeds_an_hmac_under_the_key():
    import hmac

    for index in (0, 1, 499, 500):
        message = f"7/train/{index}".encode()
        assert document_seed(7, "train", index) == document_seed(7, "train", index, KEY) == \
            int.from_bytes(hashlib.sha256(message).digest(), "little")
        message = f"7/val/{index}".encode()
        assert document_seed(7, "val", index, KEY) == \
            int.from_bytes(hmac.new(KEY, message, hashlib.sha256).digest(), "little")
        assert document_seed(7, "val", index, KEY) != document_seed(7, "test", index, KEY)


def test_splits_are_disjoint():
    splits = {s: {d.text for d in generate_split(s, 0.5, key=KEY)} for s in ("train", "val", "test")}
    assert not splits["train"] & splits["val"]
    assert not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_story_has_exactly_one_derivation_with_the_recorded_probability(split):
    """The floor claim: the recorded log-probability is the exact log-probability of the text."""
    for index in range(40):
        doc = tell(document_seed(0, split, index, KEY))
        found = count_derivations(tell_story, doc.text)
        assert found.count == 1, f"document {index} of {split} has {found.count} derivations"
        assert found.logps[0] == pytest.approx(doc.logp, abs=1e-9)


def test_derivation_counter_detects_an_ambiguous_grammar():
    """A grammar in which 'ab' can be said two ways: the counter must see both."""

    def ambiguous(w: Writer) -> None:
        first = w.say(uniform(["a", "ab"]))
        if first == "a":
            w.say(uniform(["b", "c"]))

    found = count_derivations(ambiguous, "ab")
    assert found.count == 2
    assert found.total_logp == pytest.approx(math.log(0.5 * 0.5 + 0.5))


def test_derivation_counter_rejects_text_the_grammar_cannot_make():
    assert count_derivations(tell_story, "Not a story at all.").count == 0


def test_excluded_options_are_renormalised_exactly():
    table = uniform(["x", "y", "z", "w"])
    sampler = Sampler(1)
    sampler.say(table, exclude=frozenset({0}))
    assert sampler.logp == pytest.approx(math.log(1 / 3))


def test_stories_are_rich():
    docs = [d.text for d in generate_split("train", 0.3)]
    words = {w for t in docs for w in t.split()}
    assert len(words) > 1500  # names, numbers and a varied vocabulary
    assert sum('"' in t for t in docs) > len(docs) / 3  # dialogue
    assert sum(any(c.isdigit() for c in t) for t in docs) > len(docs) / 3  # numbers
    titles = {t.split("\n", 1)[0].split(" and ")[-1] for t in docs}
    assert len(titles) > 20


def test_floor_is_bits_per_byte():
    assert floor_bpb(-math.log(2) * 80, 10) == pytest.approx(8.0)
