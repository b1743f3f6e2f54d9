"""The built-in corpus: seeded stories per split, each with the exact log-probability that made it.

Document `i` of split `s` is told from its own seed, derived from (corpus seed, split, i), so the
corpus is identical whatever the number of worker processes, and splits never share a seed.
"""

from __future__ import annotations

import hashlib
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
    for module in ("choice", "lexicon", "stories"):  # read, not imported (see `tell`)
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]


def document_seed(corpus_seed: int, split: str, index: int) -> int:
    # Hashed, not bit-packed: Mersenne Twister seeds that differ only in high words can start alike.
    digest = hashlib.sha256(f"{corpus_seed}/{split}/{index}".encode()).digest()
    return int.from_bytes(digest, "little")


def tell(seed: int) -> Document:
    # The grammar's tables take a noticeable part of a second to build: only processes that tell stories pay it.
    from autoresearch.data.choice import Sampler
    from autoresearch.data.stories import tell_story

    sampler = Sampler(seed)
    tell_story(sampler)
    return Document(sampler.text, sampler.logp)


def _block(args: tuple[int, str, int]) -> list[Document]:
    corpus_seed, split, start = args
    return [tell(document_seed(corpus_seed, split, i)) for i in range(start, start + BLOCK)]


def generate_split(split: str, megabytes: float, corpus_seed: int = 0, workers: int | None = None) -> Iterator[Document]:
    """Documents of `split` in order until their UTF-8 size reaches `megabytes` (1 MB = 10^6 bytes)."""
    target = int(megabytes * 1_000_000)
    workers = workers or min(os.cpu_count() or 1, 32)
    produced = 0

    def starts() -> Iterator[tuple[int, str, int]]:
        start = 0
        while True:
            yield corpus_seed, split, start
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


def _ordered_map(pool: ProcessPoolExecutor, args: Iterator[tuple[int, str, int]], window: int):
    """Like pool.map over an endless iterator, keeping at most `window` blocks in flight."""
    pending = [pool.submit(_block, next(args)) for _ in range(window)]
    while True:
        yield pending.pop(0).result()
        pending.append(pool.submit(_block, next(args)))


def floor_bpb(total_logp: float, total_bytes: int) -> float:
    """Entropy floor in bits per byte: the corpus's own code length over its size."""
    return -total_logp / (math.log(2) * total_bytes)
