"""prepare(): build, cache, verify, and the errors a user can hit."""

import io
import json
import logging
import os
import stat
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from autoresearch.config import ConfigError, DataConfig, config_from_dict
from autoresearch.data import splitkey
from autoresearch.data.prepare import open_dataset, prepare, sha256_file
from autoresearch.data.spec import DataError

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


def test_the_whole_pipeline_is_deterministic_given_the_split_key(tmp_path, monkeypatch):
    a = prepare(TINY).dataset
    key_a = splitkey.key_path().read_bytes()
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "other"))  # another cache makes its own key
    b = prepare(TINY).dataset
    assert a.root != b.root and a.manifest["split_key"] != b.manifest["split_key"]
    files = {name: (a.manifest["files"][name]["sha256"], b.manifest["files"][name]["sha256"])
             for name in a.manifest["files"] if name != "manifest.json"}
    for name in ("train.npy", "docs-train.parquet", "tokenizer.json", "token_bytes.npy"):  # the seed alone
        assert files[name][0] == files[name][1], name
    for name in ("val.npy", "test.npy", "docs-val.parquet", "docs-test.parquet"):  # the key as well
        assert files[name][0] != files[name][1], name
    # the same key gives the same dataset, to the byte: a key copied to another cache gives its splits
    monkeypatch.setenv("AUTORESEARCH_CACHE", str(tmp_path / "copy"))
    splitkey.key_path().parent.mkdir(parents=True)
    splitkey.key_path().write_bytes(key_a)
    c = prepare(TINY, workers=2).dataset
    assert c.root.name == a.root.name and c.manifest["split_key"] == a.manifest["split_key"]
    assert c.manifest["files"] == a.manifest["files"]


def test_the_split_key_is_private_and_named_only_by_its_id():
    ds = prepare(TINY).dataset
    path = splitkey.key_path()
    assert path.parent == ds.root.parent.parent  # in the cache, beside `datasets/`, not in a dataset
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = splitkey.read()
    assert len(key) == 32 and path.read_text() == key.hex() + "\n"
    assert ds.manifest["split_key"] == splitkey.key_id(key) and len(ds.manifest["split_key"]) == 16
    assert ds.root.name.endswith("-k" + splitkey.key_id(key)[:8])
    assert splitkey.key_id(key) in ds.manifest["description"]
    for leak in (key.hex(), key.hex().upper()):
        for name in os.listdir(ds.root):  # not in the manifest, nor in any file of the dataset
            assert leak.encode() not in (ds.root / name).read_bytes(), name
    assert key not in (ds.root / "manifest.json").read_bytes()
    assert key.hex() not in ds.root.name


def test_a_lost_key_means_a_new_dataset(caplog):
    first = prepare(TINY).dataset
    splitkey.key_path().unlink()
    with pytest.raises(DataError, match=r"no split key.*run `autoresearch prepare`.*new val and test splits"):
        open_dataset(TINY)
    with caplog.at_level(logging.WARNING, logger="autoresearch.data.splitkey"):
        second = prepare(TINY)
    assert not second.cached and second.dataset.root != first.root
    assert "was missing" in caplog.text and first.root.name in caplog.text
    assert second.dataset.manifest["files"]["train.npy"] == first.manifest["files"]["train.npy"]
    assert second.dataset.manifest["files"]["val.npy"] != first.manifest["files"]["val.npy"]
    assert open_dataset(TINY).root == second.dataset.root  # the dataset of the key present


def test_a_key_written_by_hand_is_used_and_made_private(tmp_path):
    path = splitkey.key_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ab" * 32 + "\n")
    path.chmod(0o644)
    ds = prepare(TINY).dataset
    assert ds.manifest["split_key"] == splitkey.key_id(bytes.fromhex("ab" * 32))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("not a key\n")
    with pytest.raises(DataError, match=r"not 64 hexadecimal digits.*openssl rand -hex 32"):
        prepare(TINY)


def test_processes_making_the_key_at_once_agree_on_one():
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(4) as pool:
        keys = list(pool.map(_make_key, range(8)))
    assert len(set(keys)) == 1 and keys[0] == splitkey.read()
    assert [p.name for p in splitkey.key_path().parent.iterdir()] == ["split-key"]  # no scratch file left


def _make_key(_: int) -> bytes:
    return splitkey.ensure()


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
    assert ds.manifest["split_key"] is None and not splitkey.key_path().exists()  # real data needs no key


def test_unknown_data_form_is_refused():
    with pytest.raises(DataError, match="builtin"):
        prepare(replace(TINY, source="s3://bucket/data"))


def test_a_changed_generator_gets_a_new_dataset(monkeypatch):
    from autoresearch.data import builtin
    from autoresearch.data import prepare as prep
    from autoresearch.data.spec import parse_data_spec

    spec = parse_data_spec("builtin")
    key = bytes(32)
    before = prep.dataset_key(spec, TINY, key)
    monkeypatch.setattr(builtin, "generator_fingerprint", lambda: "something-else")
    assert prep.dataset_key(spec, TINY, key) != before
    assert prep.dataset_key(spec, TINY, key) != prep.dataset_key(spec, TINY, bytes(31) + b"\1")
