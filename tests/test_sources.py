"""Tests for the real-data sources: --data parsing (spec), local splits (local, readers), and Hugging
Face downloads (hub, hub_retry, hub_cache).

The Hugging Face tests run the real huggingface_hub client against tests/fakehub.py, a Hub-compatible
HTTP server on 127.0.0.1; nothing leaves the machine and every cache lives under tmp_path.
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

sys.path.insert(0, str(Path(__file__).parent))

from fakehub import FakeHub, closed_port_endpoint  # noqa: E402

from autoresearch.data.hub import hf_splits  # noqa: E402
from autoresearch.data.local import local_splits  # noqa: E402
from autoresearch.data.readers import DOC_SEPARATOR  # noqa: E402
from autoresearch.data.spec import DataError, DataSpec, SourceSplits, parse_data_spec  # noqa: E402

# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def parquet_bytes(
    texts: list[str | None],
    *,
    extra: dict[str, list] | None = None,
    row_group_size: int = 4,
    compression: str = "snappy",
) -> bytes:
    columns: dict[str, list] = {"text": texts, **(extra or {})}
    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf, row_group_size=row_group_size, compression=compression)
    return buf.getvalue()


def write_parquet(path: Path, texts: list[str | None], **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(parquet_bytes(texts, **kw))
    return path


def write_jsonl(path: Path, texts: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


def docs(n: int, tag: str = "doc") -> list[str]:
    return [f"{tag} number {i}: " + "lorem ipsum " * (i % 5 + 1) for i in range(n)]


def split_lists(s: SourceSplits) -> tuple[list[str], list[str], list[str]]:
    return list(s.train()), list(s.val()), list(s.test())


def assert_partition(s: SourceSplits, expected: list[str]) -> tuple[list[str], list[str], list[str]]:
    train, val, test = split_lists(s)
    assert train and val and test
    assert not (set(train) & set(val)) and not (set(train) & set(test)) and not (set(val) & set(test))
    assert Counter(train + val + test) == Counter(expected)
    return train, val, test


def accepted_forms_named(message: str) -> bool:
    return all(part in message for part in ("builtin", "hf:owner/name", ".txt", ".jsonl", ".parquet"))


# --------------------------------------------------------------------------------------------------
# parse_data_spec
# --------------------------------------------------------------------------------------------------


def test_parse_builtin_and_hf_forms() -> None:
    assert parse_data_spec("builtin") == DataSpec(kind="builtin")
    assert parse_data_spec("  builtin ") == DataSpec(kind="builtin")
    assert parse_data_spec("hf:roneneldan/TinyStories") == DataSpec(kind="hf", repo="roneneldan/TinyStories")
    spec = parse_data_spec("hf:karpathy/fineweb-edu-100b-shuffle@v1.2")
    assert spec == DataSpec(kind="hf", repo="karpathy/fineweb-edu-100b-shuffle", revision="v1.2")
    assert parse_data_spec("hf:o/n@refs/convert/parquet").revision == "refs/convert/parquet"
    assert parse_data_spec("HF:o/n").repo == "o/n"


def test_parse_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = write_jsonl(tmp_path / "a.jsonl", ["x"])
    assert parse_data_spec(str(f)) == DataSpec(kind="local", path=f.resolve())
    monkeypatch.chdir(tmp_path)
    assert parse_data_spec("a.jsonl").path == f.resolve()
    assert parse_data_spec(".").path == tmp_path.resolve()
    (tmp_path / "builtin").mkdir()
    assert parse_data_spec("./builtin") == DataSpec(kind="local", path=(tmp_path / "builtin").resolve())
    (tmp_path / "UPPER.TXT").write_text("hello")
    assert parse_data_spec("UPPER.TXT").kind == "local"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "s3://bucket/data",
        "https://example.com/x.parquet",
        "hf:",
        "hf:noslash",
        "hf:a/b/c",
        "hf:a/b@",
        "hf:/name",
        "hf:owner/",
        "hf:a--b/c",
        "hf:a/b c",
        "hf:a/b@x y",
    ],
)
def test_parse_bad_forms(text: str) -> None:
    with pytest.raises(DataError) as info:
        parse_data_spec(text)
    assert accepted_forms_named(str(info.value)), str(info.value)


def test_parse_missing_path_and_bad_extension(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder") as info:
        parse_data_spec(str(tmp_path / "nope.jsonl"))
    assert accepted_forms_named(str(info.value))
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(DataError, match="unsupported file type '.csv'") as info:
        parse_data_spec(str(tmp_path / "data.csv"))
    assert accepted_forms_named(str(info.value))


def test_spec_keys_are_short_stable_and_safe(tmp_path: Path) -> None:
    keys = [
        DataSpec("builtin").key(),
        parse_data_spec("hf:o/n").key(),
        parse_data_spec("hf:o/n@main").key(),
        parse_data_spec("hf:o/n@refs/convert/parquet").key(),
        parse_data_spec(str(tmp_path)).key(),
        DataSpec("local", path=tmp_path / "other").key(),
    ]
    assert keys[0] == "builtin" and keys[1] == "hf-o--n" and keys[2] == "hf-o--n@main"
    assert len(set(keys)) == len(keys)
    for key in keys:
        assert "/" not in key and "\\" not in key and len(key) < 80
    assert parse_data_spec(str(tmp_path)).key() == keys[4]  # stable


# --------------------------------------------------------------------------------------------------
# local data
# --------------------------------------------------------------------------------------------------


def test_txt_documents_split_on_separator_lines(tmp_path: Path) -> None:
    texts = docs(60)
    body = f"\n{DOC_SEPARATOR}\n".join(texts) + f"\n{DOC_SEPARATOR}\n\n  \n{DOC_SEPARATOR}\n"
    # a separator must be the whole line: this one stays inside a document
    body += f"inline {DOC_SEPARATOR} stays\nsecond line\n"
    f = tmp_path / "corpus.txt"
    f.write_text(body)
    s = local_splits(f, val_fraction=0.1, test_fraction=0.1)
    assert_partition(s, [*texts, f"inline {DOC_SEPARATOR} stays\nsecond line"])
    assert s.files == [f.resolve()]
    assert "train" in s.description and str(f.resolve()) in s.description


def test_txt_crlf_separators(tmp_path: Path) -> None:
    f = tmp_path / "crlf.txt"
    f.write_bytes(f"\r\n{DOC_SEPARATOR}\r\n".join(["a\r\nb", "c", "d", "e"]).encode())
    assert_partition(local_splits(f), ["a\nb", "c", "d", "e"])


def test_txt_without_separator_is_one_document(tmp_path: Path) -> None:
    folder = tmp_path / "books"
    for i in range(5):
        (folder / f"book{i}.txt").parent.mkdir(exist_ok=True)
        (folder / f"book{i}.txt").write_text(f"\nchapter one of book {i}\n\nchapter two\n")
    train, val, test = assert_partition(
        local_splits(folder), [f"chapter one of book {i}\n\nchapter two" for i in range(5)]
    )
    assert len(val) == 1 and len(test) == 1 and len(train) == 3


def test_jsonl_documents(tmp_path: Path) -> None:
    texts = docs(40)
    f = write_jsonl(tmp_path / "d.jsonl", texts)
    with f.open("a") as fh:
        fh.write("\n   \n")  # blank lines are skipped
        fh.write(json.dumps({"text": "   "}) + "\n")  # empty documents are skipped
    assert_partition(local_splits(f), texts)


def test_parquet_documents_streamed_across_row_groups(tmp_path: Path) -> None:
    texts = docs(50)
    f = write_parquet(
        tmp_path / "d.parquet",
        [*texts[:25], None, "", *texts[25:]],
        row_group_size=7,
        extra={"n": list(range(52))},
    )
    assert pq.ParquetFile(f).num_row_groups > 1
    assert_partition(local_splits(f, val_fraction=0.05, test_fraction=0.05), texts)


def test_folder_recursive_sorted_mixed_types(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write_jsonl(root / "b" / "two.jsonl", ["jsonl one", "jsonl two"])
    write_parquet(root / "a" / "one.parquet", ["parquet one", "parquet two"])
    (root / "c.txt").write_text(f"txt one\n{DOC_SEPARATOR}\ntxt two\n")
    (root / "README.md").write_text("ignored")
    write_jsonl(root / ".hidden" / "x.jsonl", ["hidden"])
    write_jsonl(root / ".skip.jsonl", ["hidden too"])
    s = local_splits(root)
    assert s.files == [root / "a" / "one.parquet", root / "b" / "two.jsonl", root / "c.txt"]
    train, val, test = assert_partition(
        s, ["jsonl one", "jsonl two", "parquet one", "parquet two", "txt one", "txt two"]
    )
    order = ["parquet one", "parquet two", "jsonl one", "jsonl two", "txt one", "txt two"]
    for part in (train, val, test):  # each split keeps file order
        assert part == [d for d in order if d in part]


def test_splits_are_disjoint_fractional_and_deterministic(tmp_path: Path) -> None:
    texts = docs(2000)
    f = write_jsonl(tmp_path / "d.jsonl", texts)
    s1 = local_splits(f, val_fraction=0.1, test_fraction=0.05)
    train, val, test = assert_partition(s1, texts)
    assert 130 < len(val) < 270 and 50 < len(test) < 150
    assert split_lists(local_splits(f, val_fraction=0.1, test_fraction=0.05)) == (train, val, test)
    # every call returns a fresh iterator
    assert list(s1.val()) == list(s1.val()) == val


def test_reordering_files_does_not_move_documents(tmp_path: Path) -> None:
    texts = docs(600)
    a = tmp_path / "a"
    write_jsonl(a / "1.jsonl", texts[:300])
    write_jsonl(a / "2.jsonl", texts[300:])
    b = tmp_path / "b"  # same documents, shuffled, spread over other files and types
    shuffled = texts[:]
    random.Random(0).shuffle(shuffled)
    write_parquet(b / "x.parquet", shuffled[:100])
    write_jsonl(b / "sub" / "y.jsonl", shuffled[100:450])
    (b / "z.txt").write_text(f"\n{DOC_SEPARATOR}\n".join(shuffled[450:]))
    sa = split_lists(local_splits(a, val_fraction=0.05, test_fraction=0.05))
    sb = split_lists(local_splits(b, val_fraction=0.05, test_fraction=0.05))
    for part_a, part_b in zip(sa, sb, strict=True):
        assert set(part_a) == set(part_b)


def test_duplicates_land_in_the_same_split(tmp_path: Path) -> None:
    texts = docs(300)
    f = write_jsonl(tmp_path / "d.jsonl", texts + texts[:100])
    train, val, test = assert_partition(
        local_splits(f, val_fraction=0.1, test_fraction=0.1), texts + texts[:100]
    )
    assert len(set(train) | set(val) | set(test)) == 300


def test_min_eval_docs_guarantee(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", docs(20))
    train, val, test = split_lists(local_splits(f, val_fraction=0.0, test_fraction=0.0, min_eval_docs=3))
    assert len(val) == 3 and len(test) == 3 and len(train) == 14
    train2, val2, test2 = split_lists(local_splits(f, val_fraction=0.0, test_fraction=0.0, min_eval_docs=3))
    assert (val, test) == (val2, test2)


def test_too_little_data(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", ["one", "two"])
    with pytest.raises(DataError, match="too little data"):
        local_splits(f)
    f = write_jsonl(tmp_path / "dup.jsonl", ["same"] * 10)
    with pytest.raises(DataError, match=r"10 non-empty documents \(1 distinct\)"):
        local_splits(f)
    t = tmp_path / "one.txt"
    t.write_text("a single long document\n" * 100)
    with pytest.raises(DataError, match="exactly <\\|endoftext\\|>"):
        local_splits(t)
    with pytest.raises(DataError, match="val and test need 5"):
        local_splits(write_jsonl(tmp_path / "few.jsonl", docs(10)), min_eval_docs=5)


def test_bad_jsonl_lines_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "ok"}\n\n{"text": "also ok"\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: not valid JSON") as info:
        local_splits(f)
    assert '"text"' in str(info.value)
    f.write_text('{"text": "ok"}\n{"body": "x", "id": 1}\n')
    with pytest.raises(DataError, match=r'bad\.jsonl:2: no "text" field \(fields: body, id\)'):
        local_splits(f)
    f.write_text('{"text": 5}\n')
    with pytest.raises(DataError, match=r'bad\.jsonl:1: "text" is a int, not a string'):
        local_splits(f)
    f.write_text('["text"]\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:1: a JSON list, not an object"):
        local_splits(f)


def test_bad_parquet_inputs(tmp_path: Path) -> None:
    f = tmp_path / "cols.parquet"
    pq.write_table(pa.table({"content": ["a"], "id": [1]}), f)
    with pytest.raises(DataError, match=r"no 'text' column \(columns: content, id\)"):
        local_splits(f)
    pq.write_table(pa.table({"text": [1, 2, 3]}), f)
    with pytest.raises(DataError, match="column 'text' has type int64, not string"):
        local_splits(f)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(DataError, match="not a readable parquet file"):
        local_splits(junk)


def test_unreadable_and_undecodable_files(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    write_jsonl(folder / "good.jsonl", docs(10))
    (folder / "gone.txt").symlink_to(tmp_path / "missing.txt")
    with pytest.raises(DataError, match=r"cannot read .*gone\.txt"):
        local_splits(folder)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8.*convert it to UTF-8"):
        local_splits(bad)


def test_folder_without_supported_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .txt, .jsonl or .parquet files"):
        local_splits(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.csv").write_text("x")
    (tmp_path / "other" / "b.json").write_text("{}")
    with pytest.raises(DataError, match=r"found only: a\.csv, b\.json"):
        local_splits(tmp_path / "other")


def test_invalid_fractions(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "d.jsonl", docs(10))
    with pytest.raises(DataError, match="fractions"):
        local_splits(f, val_fraction=0.6, test_fraction=0.5)


# --------------------------------------------------------------------------------------------------
# Hugging Face datasets through the fake Hub
# --------------------------------------------------------------------------------------------------

TRAIN0 = [f"train zero {i}" for i in range(9)]
TRAIN1 = [f"train one {i}" for i in range(7)]
VALID = [f"held out {i}" for i in range(10)]
FILES = {
    "data/train-00000-of-00002.parquet": parquet_bytes(TRAIN0),
    "data/train-00001-of-00002.parquet": parquet_bytes(TRAIN1),
    "data/validation-00000-of-00001.parquet": parquet_bytes([*VALID[:3], None, *VALID[3:]]),
    "README.md": b"# a dataset\n",
    ".gitattributes": b"*.parquet filter=lfs diff=lfs merge=lfs -text\n",
}
VAL_FILE = "data/validation-00000-of-00001.parquet"
TRAIN_FILES = ["data/train-00000-of-00002.parquet", "data/train-00001-of-00002.parquet"]
VALID_ROWS = [*VALID[:3], None, *VALID[3:]]  # row 3 is null
EXPECTED_VAL = [t for i, t in enumerate(VALID_ROWS) if i % 2 == 0 and t]
EXPECTED_TEST = [t for i, t in enumerate(VALID_ROWS) if i % 2 == 1 and t]


@pytest.fixture(autouse=True)
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    with FakeHub(page_size=2) as server:  # small pages exercise the Link-header pagination
        yield server


def fetch(hub: FakeHub, cache: Path, repo: str = "owner/data", **kw) -> SourceSplits:
    kw.setdefault("endpoint", hub.endpoint)
    kw.setdefault("backoff_s", 0.01)
    return hf_splits(repo, revision=kw.pop("revision", None), cache_dir=cache, **kw)


def test_hf_listing_download_and_splits(hub: FakeHub, tmp_path: Path) -> None:
    commit = hub.add_dataset("owner/data", FILES)
    s = fetch(hub, tmp_path / "cache")
    assert list(s.train()) == TRAIN0 + TRAIN1
    assert list(s.val()) == EXPECTED_VAL and list(s.test()) == EXPECTED_TEST
    assert [p.name for p in s.files] == [Path(f).name for f in [*TRAIN_FILES, VAL_FILE]]
    assert all(p.is_file() and (tmp_path / "cache") in p.parents for p in s.files)
    assert commit[:12] in s.description and VAL_FILE in s.description
    assert len(hub.requests(kind="tree")) > 1  # paginated listing, followed to the end
    # the listing and the downloads are pinned to the commit the revision resolved to
    assert all(commit in r.path for r in hub.requests(kind="tree") + hub.requests(kind="resolve"))
    assert len(hub.file_gets()) == 3  # exactly the three parquet shards, each once
    assert not hub.requests(filename="README.md")


def test_hf_endpoint_from_environment(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.add_dataset("owner/data", FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint + "/")
    s = hf_splits("owner/data", revision="main", cache_dir=tmp_path / "cache", backoff_s=0.01)
    assert list(s.val()) == EXPECTED_VAL
    assert hub.endpoint in s.description and len(hub.file_gets()) == 3


def test_hf_second_call_downloads_nothing(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES)
    first = fetch(hub, tmp_path / "cache")
    hub.clear_log()
    second = fetch(hub, tmp_path / "cache")
    assert hub.file_gets() == []
    assert hub.requests(kind="resolve") == []  # pinned commit + cached files: not even a HEAD
    assert second.files == first.files and list(second.test()) == EXPECTED_TEST


def test_hf_train_shards_and_fewer_than_requested(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES)
    one = fetch(hub, tmp_path / "c1", train_shards=1)
    assert list(one.train()) == TRAIN0 and len(one.files) == 2
    assert not hub.file_gets(TRAIN_FILES[1])
    many = fetch(hub, tmp_path / "c2", train_shards=10)
    assert list(many.train()) == TRAIN0 + TRAIN1 and len(many.files) == 3


def test_hf_retries_503_on_metadata_requests(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES)
    hub.fail_requests[VAL_FILE] = 2
    s = fetch(hub, tmp_path / "cache")
    assert list(s.val()) == EXPECTED_VAL
    assert [r.status for r in hub.requests(filename=VAL_FILE)][:2] == [503, 503]


def test_hf_retries_503_on_downloads(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES)
    hub.fail_downloads[TRAIN_FILES[0]] = 2
    s = fetch(hub, tmp_path / "cache")
    assert list(s.train()) == TRAIN0 + TRAIN1
    assert [r.status for r in hub.file_gets(TRAIN_FILES[0])] == [503, 503, 200]


def test_hf_gives_up_after_max_retries(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES)
    hub.fail_downloads[TRAIN_FILES[0]] = 100
    with pytest.raises(
        DataError, match=r"could not reach .*HTTP 503 \(3 attempts\).*HF_ENDPOINT.*--data <path>"
    ):
        fetch(hub, tmp_path / "cache", max_retries=2)
    assert len(hub.file_gets(TRAIN_FILES[0])) == 3


def test_hf_interrupted_download_resumes(hub: FakeHub, tmp_path: Path) -> None:
    # Bigger than huggingface_hub's 10 MiB download chunk, so the part received before the cut is kept
    # and the retry asks for the rest with a Range request.
    rng = random.Random(1)
    big = [rng.randbytes(500).hex() for _ in range(13_000)]  # incompressible: ~13 MB uncompressed
    files = {**FILES, VAL_FILE: parquet_bytes(big, row_group_size=1000, compression="none")}
    assert len(files[VAL_FILE]) > 12 * 2**20
    hub.add_dataset("owner/data", files)
    hub.cut_downloads[VAL_FILE] = 1
    hub.cut_fraction = 0.9
    s = fetch(hub, tmp_path / "cache")
    gets = hub.file_gets(VAL_FILE)
    assert len(gets) == 2 and gets[1].status == 206 and gets[1].range.startswith("bytes=")
    assert list(s.val()) == big[0::2] and list(s.test()) == big[1::2]


def test_hf_interrupted_small_download_restarts(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES)
    hub.cut_downloads[TRAIN_FILES[1]] = 1
    s = fetch(hub, tmp_path / "cache")
    assert len(hub.file_gets(TRAIN_FILES[1])) == 2
    assert list(s.train()) == TRAIN0 + TRAIN1


def test_hf_sha256_mismatch(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES)
    hub.corrupt.add(VAL_FILE)
    with pytest.raises(DataError, match=r"corrupt \(sha256 [0-9a-f]+, expected [0-9a-f]+\).*rerun"):
        fetch(hub, tmp_path / "cache")
    sha = hub.repos["owner/data"].files[VAL_FILE].sha256
    assert not list((tmp_path / "cache").rglob(sha))  # the bad blob was deleted
    assert not [p for p in (tmp_path / "cache").rglob("validation-*") if p.exists() or p.is_symlink()]
    hub.corrupt.clear()
    hub.clear_log()
    s = fetch(hub, tmp_path / "cache")  # a rerun downloads it again and succeeds
    assert list(s.val()) == EXPECTED_VAL and len(hub.file_gets(VAL_FILE)) == 1


def test_hf_plain_git_files_verified_by_git_oid(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES, lfs=False)
    s = fetch(hub, tmp_path / "cache")
    assert list(s.train()) == TRAIN0 + TRAIN1
    assert not hub.requests(kind="cdn")
    hub.corrupt.add(TRAIN_FILES[1])
    with pytest.raises(DataError, match="git object id"):
        fetch(hub, tmp_path / "other")


def test_hf_repo_not_found(hub: FakeHub, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="dataset not found: hf:owner/typo.*check the repo name"):
        fetch(hub, tmp_path / "cache", repo="owner/typo")


def test_hf_revision_not_found(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES)
    with pytest.raises(DataError, match="revision 'nope' not found.*after '@'"):
        fetch(hub, tmp_path / "cache", revision="nope")


def test_hf_gated_dataset_needs_token(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/data", FILES, gated=True)
    with pytest.raises(DataError, match="gated.*HF_TOKEN"):
        fetch(hub, tmp_path / "cache")


def test_hf_unreachable_endpoint_fails_fast(tmp_path: Path) -> None:
    endpoint = closed_port_endpoint()
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        hf_splits(
            "owner/data",
            revision=None,
            cache_dir=tmp_path / "c",
            endpoint=endpoint,
            max_retries=2,
            backoff_s=0.01,
        )
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert (
        message.startswith(f"could not reach {endpoint}") and "HF_ENDPOINT" in message and "--data" in message
    )


def test_hf_cached_copy_used_when_offline(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.add_dataset("owner/data", FILES)
    first = fetch(hub, tmp_path / "cache")
    hub.clear_log()
    unreachable = hf_splits(
        "owner/data",
        revision=None,
        cache_dir=tmp_path / "cache",
        endpoint=closed_port_endpoint(),
        max_retries=0,
    )
    assert unreachable.files == first.files and "offline" in unreachable.description
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = fetch(hub, tmp_path / "cache")
    assert list(offline.val()) == EXPECTED_VAL and hub.log == []
    with pytest.raises(DataError, match="HF_HUB_OFFLINE is set.*unset HF_HUB_OFFLINE"):
        fetch(hub, tmp_path / "empty-cache")


def test_hf_no_parquet_or_single_shard(hub: FakeHub, tmp_path: Path) -> None:
    hub.add_dataset("owner/csv", {"data.csv": b"a,b\n", "README.md": b"x"})
    with pytest.raises(DataError, match="has no .parquet files"):
        fetch(hub, tmp_path / "c", repo="owner/csv")
    hub.add_dataset("owner/one", {"data/all.parquet": parquet_bytes(TRAIN0)})
    with pytest.raises(DataError, match=r"single parquet file \(data/all\.parquet\).*at least two"):
        fetch(hub, tmp_path / "c", repo="owner/one")


def test_hf_shard_without_text_column(hub: FakeHub, tmp_path: Path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"story": ["a", "b"], "label": [0, 1]}), buf)
    hub.add_dataset("owner/stories", {"a.parquet": buf.getvalue(), "b.parquet": buf.getvalue()})
    with pytest.raises(DataError, match=r"no 'text' column \(columns: story, label\)"):
        fetch(hub, tmp_path / "c", repo="owner/stories")


def test_hf_invalid_train_shards(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="train_shards"):
        hf_splits("o/n", revision=None, cache_dir=tmp_path, train_shards=0)
