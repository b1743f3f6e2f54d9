"""Turn a data source into a cached, verified dataset: document splits, tokenizer, token arrays.

Layout of one dataset folder under the cache (`$AUTORESEARCH_CACHE/datasets/<key>/`):

    docs-{train,val,test}.parquet   the documents (column `text`; built-in corpus also `logp`, nats)
    tokenizer.json                  byte-level BPE + BOS
    token_bytes.npy                 UTF-8 length of every token id (0 for BOS)
    {train,val,test}.npy            flat token streams, each document as [BOS, tokens...]
    manifest.json                   settings, per-split figures, size and SHA-256 of every file

The built-in corpus's val and test splits are told from the cache's split key (`splitkey`), which the
folder's name and the manifest name by its id: a dataset made with another key is another dataset.
A dataset is built in a temporary folder and renamed into place, so a crash never leaves a
half-written dataset behind, and the manifest is what makes a folder count as prepared.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autoresearch.config import DataConfig, cache_root
from autoresearch.data import builtin, splitkey
from autoresearch.data.hub import hf_splits
from autoresearch.data.local import local_splits
from autoresearch.data.spec import DataError, DataSpec, parse_data_spec
from autoresearch.data.tokenizer import BPETokenizer, TokenizerError, batched, token_dtype

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class SplitStats:
    docs: int
    bytes: int
    tokens: int
    unigram_bpb: float  # entropy of the split's byte distribution: what a model without context scores
    floor_bpb: float | None  # built-in corpus only: the exact entropy floor


@dataclass(frozen=True)
class Dataset:
    """A prepared dataset, read from its manifest."""

    root: Path
    manifest: dict

    @property
    def vocab_size(self) -> int:
        return self.manifest["n_vocab"]

    @property
    def bos_id(self) -> int:
        return self.manifest["bos_id"]

    def tokens_path(self, split: str) -> Path:
        return self.root / f"{split}.npy"

    def tokens(self, split: str) -> np.ndarray:
        return np.load(self.tokens_path(split), mmap_mode="r")

    def token_bytes(self) -> np.ndarray:
        return np.load(self.root / "token_bytes.npy")

    def tokenizer(self) -> BPETokenizer:
        return BPETokenizer.load(self.root / "tokenizer.json")

    def split_stats(self, split: str) -> SplitStats:
        return SplitStats(**self.manifest["splits"][split])

    def verify(self, full: bool = True) -> None:
        """Check every file against the manifest: sizes always, SHA-256 when `full`."""
        for name, entry in self.manifest["files"].items():
            path = self.root / name
            fix = "run `autoresearch prepare --force` to rebuild it"
            if not path.exists():
                raise DataError(f"cache file {path} is missing: {fix}")
            if path.stat().st_size != entry["bytes"]:
                raise DataError(f"cache file {path} has the wrong size (corrupt or truncated): {fix}")
            if full and sha256_file(path) != entry["sha256"]:
                raise DataError(f"cache file {path} is corrupt (SHA-256 differs from the manifest): {fix}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_key(spec: DataSpec, cfg: DataConfig, key: bytes | None = None) -> str:
    """The dataset's folder name. The built-in corpus's also names the split key (default: the cache's) by
    its id, so that the folder `open_dataset` finds is the one made with the key present."""
    settings: dict = {"v": FORMAT_VERSION, "source": spec.key(), "vocab": cfg.vocab_size,
                      "tokenizer_sample_mb": cfg.tokenizer_sample_mb}
    suffix = ""
    if spec.kind == "builtin":
        key_id = splitkey.key_id(key or splitkey.load())
        settings |= {"seed": cfg.seed, "train_mb": cfg.train_mb, "val_mb": cfg.val_mb, "test_mb": cfg.test_mb,
                     "generator": builtin.generator_fingerprint(), "split_key": key_id}
        suffix = f"-k{key_id[:8]}"
    elif spec.kind == "hf":
        settings |= {"shards": cfg.hf_train_shards}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    label = "".join(c if c.isalnum() else "-" for c in spec.key())[:40].strip("-")
    return f"{label}-v{cfg.vocab_size}-{digest}{suffix}"


def dataset_dir(cfg: DataConfig) -> Path:
    return cache_root() / "datasets" / dataset_key(parse_data_spec(cfg.source), cfg)


def open_dataset(cfg: DataConfig, verify: bool = False) -> Dataset:
    """The prepared dataset for these settings; a clear error if `prepare` has not made it."""
    root = dataset_dir(cfg)
    manifest_path = root / MANIFEST
    if not manifest_path.exists():
        raise DataError(f"no prepared data for data.source = {cfg.source!r} (looked in {root}): "
                        "run `autoresearch prepare` in the task folder first")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{manifest_path} is corrupt ({err}): run `autoresearch prepare --force`") from err
    dataset = Dataset(root, manifest)
    dataset.verify(full=verify)
    return dataset


# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrepareResult:
    dataset: Dataset
    cached: bool
    seconds: float


Progress = Callable[[str], None]


def prepare(cfg: DataConfig, force: bool = False, progress: Progress = lambda _: None,
            workers: int | None = None) -> PrepareResult:
    """Build (or reuse and verify) the dataset for these settings."""
    start = time.perf_counter()
    spec = parse_data_spec(cfg.source)
    key = splitkey.ensure() if spec.kind == "builtin" else None
    root = cache_root() / "datasets" / dataset_key(spec, cfg, key)
    if (root / MANIFEST).exists() and not force:
        dataset = open_dataset(cfg, verify=True)
        return PrepareResult(dataset, True, time.perf_counter() - start)

    scratch = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        manifest = _build(spec, cfg, scratch, progress, workers, key)
        (scratch / MANIFEST).write_text(json.dumps(manifest, indent=2))
        if root.exists():
            shutil.rmtree(root)
        os.replace(scratch, root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return PrepareResult(Dataset(root, manifest), False, time.perf_counter() - start)


def _documents(spec: DataSpec, cfg: DataConfig, workers: int | None,
               key: bytes | None) -> tuple[dict[str, Callable[[], Iterator]], str]:
    """Per split, a function giving fresh (text, logp-or-None) iterators; and a description."""
    if spec.kind == "builtin":
        assert key is not None, "the built-in corpus's val and test splits need the split key"

        def split_docs(split: str, mb: float) -> Callable[[], Iterator]:
            return lambda: ((d.text, d.logp) for d in builtin.generate_split(split, mb, cfg.seed, workers, key))
        sizes = {"train": cfg.train_mb, "val": cfg.val_mb, "test": cfg.test_mb}
        return ({s: split_docs(s, mb) for s, mb in sizes.items()},
                f"built-in stories, seed {cfg.seed}, {cfg.train_mb}/{cfg.val_mb}/{cfg.test_mb} MB, "
                f"split key {splitkey.key_id(key)}")
    if spec.kind == "hf":
        source = hf_splits(spec.repo, revision=spec.revision, cache_dir=cache_root() / "hub",
                           train_shards=cfg.hf_train_shards)
    else:
        source = local_splits(spec.path)

    def plain(texts: Callable[[], Iterator[str]]) -> Callable[[], Iterator]:
        return lambda: ((t, None) for t in texts())
    return {"train": plain(source.train), "val": plain(source.val), "test": plain(source.test)}, source.description


def _write_docs(path: Path, docs: Iterable[tuple[str, float | None]]) -> None:
    import pyarrow as pa  # here, not at the top: only building a dataset needs it
    import pyarrow.parquet as pq

    writer = None
    try:
        for chunk in _chunks(docs, 4096):
            texts = [t for t, _ in chunk]
            columns = {"text": pa.array(texts, pa.large_string())}
            if chunk[0][1] is not None:
                columns["logp"] = pa.array([lp for _, lp in chunk], pa.float64())
            table = pa.table(columns)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _read_docs(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(columns=["text"], batch_size=4096):
        yield from batch.column(0).to_pylist()


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _build(spec: DataSpec, cfg: DataConfig, out: Path, progress: Progress, workers: int | None,
           key: bytes | None) -> dict:
    splits, description = _documents(spec, cfg, workers, key)
    figures: dict[str, dict] = {}
    for split in SPLITS:
        progress(f"writing {split} documents")
        tally = _Tally(count_bytes=split != "train")
        _write_docs(out / f"docs-{split}.parquet", tally.through(splits[split]()))
        if tally.docs == 0:
            raise DataError(f"the {split} split of {cfg.source!r} is empty: give the source more documents")
        if split == "train":  # byte statistics from a sample only: the unigram figure matters for val and test
            for text in _sample(_read_docs(out / "docs-train.parquet"), 8_000_000):
                tally.byte_counts.update(text.encode("utf-8"))
        figures[split] = tally.figures()

    progress(f"training a {cfg.vocab_size}-token BPE tokenizer")
    sample_bytes = int(cfg.tokenizer_sample_mb * 1_000_000)
    try:
        tokenizer = BPETokenizer.train(_sample(_read_docs(out / "docs-train.parquet"), sample_bytes), cfg.vocab_size)
    except TokenizerError as err:
        raise DataError(str(err)) from err
    tokenizer.save(out / "tokenizer.json")
    np.save(out / "token_bytes.npy", tokenizer.token_bytes())

    dtype = token_dtype(tokenizer.n_vocab)
    for split in SPLITS:
        progress(f"tokenizing {split}")
        parts = []
        for batch in batched(_read_docs(out / f"docs-{split}.parquet"), 8192):
            ids = tokenizer.encode_documents(batch)
            parts.extend(np.asarray(doc, dtype=dtype) for doc in ids)
        tokens = np.concatenate(parts)
        np.save(out / f"{split}.npy", tokens)
        figures[split]["tokens"] = int(tokens.size)

    files = {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in sorted(out.iterdir())}
    return {
        "format_version": FORMAT_VERSION,
        "source": cfg.source,
        "description": description,
        "settings": asdict(cfg),
        "split_key": None if key is None else splitkey.key_id(key),  # the key's id, never the key
        "vocab_size": tokenizer.vocab_size,
        "n_vocab": tokenizer.n_vocab,
        "bos_id": tokenizer.bos_id,
        "token_dtype": dtype.name,
        "splits": figures,
        "files": files,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class _Tally:
    """Counts documents, bytes, byte frequencies and summed log-probability of a stream of documents."""

    def __init__(self, count_bytes: bool) -> None:
        self.count_bytes = count_bytes
        self.docs = self.bytes = 0
        self.logp: float | None = 0.0
        self.byte_counts: Counter[int] = Counter()

    def through(self, docs: Iterable[tuple[str, float | None]]) -> Iterator[tuple[str, float | None]]:
        for text, logp in docs:
            raw = text.encode("utf-8")
            self.docs += 1
            self.bytes += len(raw)
            if self.count_bytes:
                self.byte_counts.update(raw)
            self.logp = None if logp is None or self.logp is None else self.logp + logp
            yield text, logp

    def figures(self) -> dict:
        return {"docs": self.docs, "bytes": self.bytes, "unigram_bpb": _entropy_bits(self.byte_counts),
                "floor_bpb": None if self.logp is None else builtin.floor_bpb(self.logp, self.bytes)}


def _sample(texts: Iterable[str], limit_bytes: int) -> Iterator[str]:
    seen = 0
    for text in texts:
        yield text
        seen += len(text)
        if seen >= limit_bytes:
            return


def _entropy_bits(counts: Counter[int]) -> float:
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values() if c)
