import math

import pytest

from autoresearch.data.builtin import document_seed, floor_bpb, generate_split, tell
from autoresearch.data.choice import Sampler, Writer, count_derivations, uniform
from autoresearch.data.stories import tell_story


def test_same_seed_same_corpus_whatever_the_worker_count():
    one = [d.text for d in generate_split("val", 2.1, corpus_seed=5, workers=1)]
    two = [d.text for d in generate_split("val", 2.1, corpus_seed=5, workers=2)]
    assert one == two
    assert sum(len(t.encode()) for t in one) >= 2_100_000


def test_other_seed_other_corpus():
    a = [d.text for d in generate_split("val", 0.05, corpus_seed=0)]
    b = [d.text for d in generate_split("val", 0.05, corpus_seed=1)]
    assert a[:20] != b[:20]


def test_splits_are_disjoint():
    splits = {s: {d.text for d in generate_split(s, 0.5)} for s in ("train", "val", "test")}
    assert not splits["train"] & splits["val"]
    assert not splits["train"] & splits["test"]
    assert not splits["val"] & splits["test"]


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_story_has_exactly_one_derivation_with_the_recorded_probability(split):
    """The floor claim: the recorded log-probability is the exact log-probability of the text."""
    for index in range(40):
        doc = tell(document_seed(0, split, index))
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
