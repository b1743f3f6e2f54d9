import random

import numpy as np
import pytest

from autoresearch.data.builtin import generate_split
from autoresearch.data.tokenizer import BOS, BPETokenizer, TokenizerError


@pytest.fixture(scope="module")
def texts():
    return [d.text for d in generate_split("train", 0.3)]


def random_unicode(rng: random.Random, n: int) -> str:
    ranges = [(0x00, 0x7F), (0x80, 0x7FF), (0x800, 0xD7FF), (0xE000, 0xFFFF), (0x10000, 0x10FFFF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


@pytest.mark.parametrize("vocab_size", [256, 1024])
def test_round_trip_on_arbitrary_unicode(texts, vocab_size):
    tok = BPETokenizer.train(texts, vocab_size)
    lengths = tok.token_bytes()
    rng = random.Random(0)
    samples = [random_unicode(rng, rng.randint(0, 60)) for _ in range(300)]
    samples += ["", " ", "\n\n", BOS, f"a{BOS}b", "naïve café 漢字 🙂\u200d", texts[0]]
    for s in samples:
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert tok.bos_id not in ids
        assert int(lengths[ids].sum()) == len(s.encode("utf-8"))


def test_vocabulary_layout_and_save_load(texts, tmp_path):
    tok = BPETokenizer.train(texts, 512)
    assert (tok.vocab_size, tok.bos_id, tok.n_vocab) == (512, 512, 513)
    assert tok.token_bytes()[tok.bos_id] == 0
    assert (tok.token_bytes()[:512] > 0).all()
    tok.save(tmp_path / "t.json")
    again = BPETokenizer.load(tmp_path / "t.json")
    assert again.encode(texts[1]) == tok.encode(texts[1])
    docs = again.encode_documents(["ab", "c"])
    assert docs[0][0] == docs[1][0] == again.bos_id
    assert np.array_equal(again.token_bytes(), tok.token_bytes())


def test_too_small_and_too_large_vocabularies_are_refused(texts):
    with pytest.raises(TokenizerError, match="256"):
        BPETokenizer.train(texts, 100)
    with pytest.raises(TokenizerError, match="vocab_size"):
        BPETokenizer.train(["tiny text"], 5000)


def test_corrupt_tokenizer_file_names_the_fix(tmp_path):
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match="prepare --force"):
        BPETokenizer.load(bad)
