"""The built-in corpus: seeded stories per split, each with the exact log-probability that made it.

Document `i` of split `s` is told from its own seed, derived from (corpus seed, split, i), so the
corpus is identical whatever the number of worker processes, and splits never share a seed. The seeds
of val and test also depend on a secret key (`splitkey`): the settings alone, which candidate code can
read, give the train split but not the held-out ones.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

BLOCK = 500  # documents per unit of parallel work


@dataclass(frozen=True)
class Document:
    text: str
    logp: float  # natural log of the probability of the text (exact: one derivation per text)


def generator_fingerprint() -> str:
    """A digest of the grammar's source: any change to the generator makes a new dataset, not a stale cache."""
    digest = hashlib.sha256()
    for module in ("choice", "lexicon", "phrases", "arcs", "stories"):  # read, not imported (see `tell`)
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


PUBLIC_SPLITS = ("train",)  # told from the corpus seed alone; every other split also needs the split key


def document_seed(corpus_seed: int, split: str, index: int, key: bytes | None = None) -> int:
    """The seed of document `index` of `split`: a SHA-256 of (corpus seed, split, index) for train, an
    HMAC-SHA256 of it under `key` for the other splits (which need the key; train ignores it)."""
    # Hashed, not bit-packed: Mersenne Twister seeds that differ only in high words can start alike.
    message = f"{corpus_seed}/{split}/{index}".encode()
    if split in PUBLIC_SPLITS:
        digest = hashlib.sha256(message).digest()
    elif key:
        digest = hmac.new(key, message, hashlib.sha256).digest()
    else:
        raise ValueError(f"the {split} split of the built-in corpus is told from the split key: pass it")
    return int.from_bytes(digest, "little")


def tell(seed: int) -> Document:
    # The grammar's tables take a noticeable part of a second to build: only processes that tell stories pay it.
    from autoresearch.data.choice import Sampler
    from autoresearch.data.stories import tell_story

    sampler = Sampler(seed)
    tell_story(sampler)
    return Document(sampler.text, sampler.logp)


_Work = tuple[int, str, int, bytes | None]  # corpus seed, split, first document, key


def _block(args: _Work) -> list[Document]:
    corpus_seed, split, start, key = args
    return [tell(document_seed(corpus_seed, split, i, key)) for i in range(start, start + BLOCK)]


def generate_split(split: str, megabytes: float, corpus_seed: int = 0, workers: int | None = None,
                   key: bytes | None = None) -> Iterator[Document]:
    """Documents of `split` in order until their UTF-8 size reaches `megabytes` (1 MB = 10^6 bytes). Splits
    other than train need the split `key`; the same seed and key give the same documents."""
    if split not in PUBLIC_SPLITS and not key:
        raise ValueError(f"the {split} split of the built-in corpus is told from the split key: pass it")
    target = int(megabytes * 1_000_000)
    workers = workers or min(os.cpu_count() or 1, 32)
    produced = 0

    def starts() -> Iterator[_Work]:
        start = 0
        while True:
            yield corpus_seed, split, start, key
            start += BLOCK

    if workers == 1 or target < 2_000_000:
        blocks: Iterator[list[Document]] = map(_block, starts())
        pool = None
    else:
        pool = ProcessPoolExecutor(workers)
        blocks = _ordered_map(pool, starts(), window=4 * workers)
    try:
        for block in blocks:
            for doc in block:
                yield doc
                produced += len(doc.text.encode("utf-8"))
                if produced >= target:
                    return
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _ordered_map(pool: ProcessPoolExecutor, args: Iterator[_Work], window: int):
    """Like pool.map over an endless iterator, keeping at most `window` blocks in flight."""
    pending = [pool.submit(_block, next(args)) for _ in range(window)]
    while True:
        yield pending.pop(0).result()
        pending.append(pool.submit(_block, next(args)))


def floor_bpb(total_logp: float, total_bytes: int) -> float:
    """Entropy floor in bits per byte: the corpus's own code length over its size."""
    return -total_logp / (math.log(2) * total_bytes)
