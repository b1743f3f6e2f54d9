"""The compile cache: each run starts from a fresh copy of the frozen cache, and what a run writes there never
reaches the next run or the frozen cache."""

from autoresearch.run.folders import compile_cache, freeze_compile_cache, frozen_cache, reset_compile_cache


def test_what_a_run_writes_is_gone_at_the_next_run(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    reset_compile_cache(tmp_path)
    run = compile_cache(tmp_path)
    (run / "fxgraph").mkdir()
    (run / "fxgraph" / "graph.py").write_text("compiled by the baseline")
    assert freeze_compile_cache(tmp_path, 1.0) == len("compiled by the baseline")
    (run / "fxgraph" / "graph.py").write_text("planted by a candidate")
    (run / "implant.py").write_text("planted")
    folder_inode = run.stat().st_ino
    reset_compile_cache(tmp_path)
    assert (run / "fxgraph" / "graph.py").read_text() == "compiled by the baseline"
    assert not (run / "implant.py").exists()
    assert run.stat().st_ino == folder_inode  # emptied in place: a prestarted box has this very folder mounted
    assert (frozen_cache(tmp_path) / "fxgraph" / "graph.py").read_text() == "compiled by the baseline"


def test_the_frozen_cache_is_made_once(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    reset_compile_cache(tmp_path)
    (compile_cache(tmp_path) / "a").write_text("first")
    freeze_compile_cache(tmp_path, 0)
    (compile_cache(tmp_path) / "a").write_text("second")
    assert freeze_compile_cache(tmp_path, 0) == 0
    assert (frozen_cache(tmp_path) / "a").read_text() == "first"


def test_a_cache_over_its_cap_is_not_frozen(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    reset_compile_cache(tmp_path)
    (compile_cache(tmp_path) / "big").write_bytes(b"x" * 4096)
    assert freeze_compile_cache(tmp_path, 1e-9) is None
    assert not frozen_cache(tmp_path).exists()


def test_a_cache_a_person_placed_is_only_read(tmp_path, monkeypatch):
    placed = tmp_path / "mine"
    (placed / "triton").mkdir(parents=True)
    (placed / "triton" / "kernel.so").write_text("theirs")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(placed))
    task = tmp_path / "task"
    reset_compile_cache(task)
    assert (compile_cache(task) / "triton" / "kernel.so").read_text() == "theirs"
    (compile_cache(task) / "new").write_text("x")
    assert freeze_compile_cache(task, 0) == 0
    assert sorted(p.name for p in placed.iterdir()) == ["triton"]
