"""prepare(): build, cache, verify, and the errors a user can hit."""

import io
import json
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoresearch.config import ConfigError, DataConfig, config_from_dict
from autoresearch.data.prepare import open_dataset, prepare, sha256_file
from autoresearch.data.sources import DataError

TINY = DataConfig(vocab_size=512, train_mb=0.6, val_mb=0.1, test_mb=0.1, tokenizer_sample_mb=0.6)


def test_builtin_dataset_has_floors_tokens_and_a_manifest():
    result = prepare(TINY)
    ds = result.dataset
    assert not result.cached
    m = ds.manifest
    assert (m["n_vocab"], m["bos_id"], m["token_dtype"]) == (513, 512, "uint16")
    for split in ("train", "val", "test"):
        stats = ds.split_stats(split)
        assert 0.05 < stats.floor_bpb < 1.0 < stats.unigram_bpb
        tokens = ds.tokens(split)
        assert tokens[0] == ds.bos_id and (tokens == ds.bos_id).sum() == stats.docs
        assert stats.tokens == len(tokens)
    for name, entry in m["files"].items():
        assert sha256_file(ds.root / name) == entry["sha256"]
    # decoding the tokens gives back the documents
    tok = ds.tokenizer()
    val = ds.tokens("val")
    starts = np.flatnonzero(val == ds.bos_id)
    first_doc = tok.decode(val[starts[0] + 1:starts[1]].tolist())
    assert first_doc.startswith("The ") and len(first_doc.encode()) == ds.token_bytes()[val[1:starts[1]]].sum()


def test_second_prepare_reuses_the_verified_cache():
    first = prepare(TINY)
    second = prepare(TINY)
    assert second.cached and second.dataset.root == first.dataset.root
    assert second.seconds < first.seconds / 5


def test_the_whole_pipeline_is_deterministic(tmp_path, monkeypatch):
    a = prepare(TINY).dataset
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "other"))
    b = prepare(TINY).dataset
    assert a.root != b.root
    for name in ("train.npy", "val.npy", "test.npy", "token_bytes.npy"):
        assert a.manifest["files"][name]["sha256"] == b.manifest["files"][name]["sha256"]


def test_different_settings_get_different_folders():
    assert prepare(TINY).dataset.root != prepare(replace(TINY, seed=1)).dataset.root


def test_missing_data_says_to_run_prepare():
    with pytest.raises(DataError, match="run `autoresearch prepare`"):
        open_dataset(TINY)


def test_corrupt_cache_file_is_detected_and_force_rebuilds():
    ds = prepare(TINY).dataset
    path = ds.tokens_path("val")
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"corrupt.*prepare --force"):
        prepare(TINY)
    path.write_bytes(bytes(raw[:-10]))
    with pytest.raises(DataError, match="wrong size"):
        open_dataset(TINY)
    rebuilt = prepare(TINY, force=True)
    assert not rebuilt.cached
    rebuilt.dataset.verify(full=True)


def test_wrong_vocabulary_sizes_name_the_setting():
    with pytest.raises(ConfigError, match=r"vocab_size = 100.*256"):
        config_from_dict({"data": {"vocab_size": 100}})
    with pytest.raises(DataError, match="data.vocab_size"):
        prepare(replace(TINY, vocab_size=60_000))


def test_local_jsonl_and_parquet_sources(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    lines = [json.dumps({"text": f"Story number {i}: the cat sat on mat {i % 7}."}) for i in range(600)]
    (folder / "a.jsonl").write_text("\n".join(lines))
    buf = io.BytesIO()
    pq.write_table(pa.table({"text": [f"Another tale {i}, with a dog." for i in range(400)]}), buf)
    (folder / "b.parquet").write_bytes(buf.getvalue())
    ds = prepare(DataConfig(source=str(folder), vocab_size=300)).dataset
    docs = {s: ds.split_stats(s).docs for s in ("train", "val", "test")}
    assert sum(docs.values()) == 1000 and min(docs.values()) >= 1
    assert ds.split_stats("val").floor_bpb is None


def test_unknown_data_form_is_refused():
    with pytest.raises(DataError, match="builtin"):
        prepare(replace(TINY, source="s3://bucket/data"))


def test_a_changed_generator_gets_a_new_dataset(monkeypatch):
    from autoresearch.data import builtin
    from autoresearch.data import prepare as prep
    from autoresearch.data.sources import parse_data_spec

    spec = parse_data_spec("builtin")
    before = prep.dataset_key(spec, TINY)
    monkeypatch.setattr(builtin, "generator_fingerprint", lambda: "something-else")
    assert prep.dataset_key(spec, TINY) != before
