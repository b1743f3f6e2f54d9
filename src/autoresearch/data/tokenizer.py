"""Byte-level BPE (Hugging Face `tokenizers`), plus the token-to-byte-length table that bpb needs.

Ids 0..vocab_size-1 are BPE tokens (the 256 bytes first, then merges); id vocab_size is BOS, which
starts every document and never appears inside text: text that spells `<|bos|>` is encoded as
ordinary bytes. Every string round-trips exactly, whatever its Unicode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

BOS = "<|bos|>"


class TokenizerError(Exception):
    pass


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[str, int]:
    """The printable stand-in character of each byte in byte-level BPE vocabularies -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class BPETokenizer:
    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._tok.encode_special_tokens = True  # text never turns into BOS
        bos = tokenizer.token_to_id(BOS)
        if bos is None:
            raise TokenizerError("tokenizer file has no BOS token: rerun `autoresearch prepare --force`")
        self.bos_id = bos
        self.vocab_size = bos  # BPE tokens; BOS comes right after them
        self.n_vocab = bos + 1

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int) -> BPETokenizer:
        if vocab_size < 256:
            raise TokenizerError(f"vocab_size {vocab_size} < 256: byte-level BPE needs the 256 byte tokens")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tok.decoder = decoders.ByteLevel()
        alphabet = sorted(byte_alphabet(), key=lambda c: byte_alphabet()[c])
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, show_progress=False,
                                      special_tokens=[])
        tok.train_from_iterator(texts, trainer)
        got = tok.get_vocab_size()
        if got != vocab_size:
            raise TokenizerError(f"the training text supports only {got} BPE tokens, not vocab_size {vocab_size}: "
                                 f"set data.vocab_size to at most {got} in autoresearch.toml, or use more text")
        tok.add_special_tokens([BOS])
        return cls(tok)

    @classmethod
    def load(cls, path: Path) -> BPETokenizer:
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as err:  # the library raises plain Exceptions for unreadable files
            raise TokenizerError(f"cannot read tokenizer {path} ({err}): rerun `autoresearch prepare --force`") from err

    def save(self, path: Path) -> None:
        self._tok.save(str(path))

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_documents(self, texts: list[str]) -> list[list[int]]:
        """Each document as [BOS, tokens...]."""
        return [[self.bos_id, *e.ids] for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=True)

    def token_bytes(self) -> np.ndarray:
        """UTF-8 length in bytes of every id; 0 for BOS, so it drops out of bpb sums."""
        chars = byte_alphabet()
        lengths = np.zeros(self.n_vocab, dtype=np.int32)
        for piece, i in self._tok.get_vocab(with_added_tokens=False).items():
            lengths[i] = sum(1 for c in piece if c in chars)
        lengths[self.bos_id] = 0
        return lengths


def token_dtype(n_vocab: int) -> np.dtype:
    return np.dtype(np.uint16) if n_vocab <= 65536 else np.dtype(np.uint32)


def batched(items: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
