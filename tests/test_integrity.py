"""Tamper detection: a run that changes what the harness owns, or its own committed files, is void."""

import json
import os
import time
from pathlib import Path

import pytest
from conftest import cli, git

from autoresearch.run.integrity import Snapshot, _stat_print
from autoresearch.store import Status, Store

SOLVE_PY = """\
RATE = 0.1
score = 1.0 - (RATE - 0.3) ** 2
print(f"score: {score:.6f}")
"""



@pytest.fixture
def task(tmp_path: Path) -> Path:
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "solve.py").write_text(SOLVE_PY)
    (folder / "notes.md").write_text("committed, not editable\n")
    cli("init", str(folder), "--command", "python solve.py", "--metric-regex", r"^score:\s*(\S+)",
        "--metric-name", "score", "--maximize", "--editable", "solve.py", cwd=tmp_path)
    return folder


def proposal(description: str, code: str) -> dict:
    return {"description": description, "files": {"solve.py": SOLVE_PY.replace("RATE = 0.1", "RATE = 0.3") + code}}


def test_fingerprints_notice_a_rewrite_even_with_the_same_bytes(tmp_path):
    path = tmp_path / "val.npy"
    path.write_bytes(b"data")
    original = path.stat()
    before = Snapshot({str(path): _stat_print(path), "gone": "x"})
    time.sleep(0.01)
    path.write_bytes(b"data")  # the same bytes, and the modification time set back: the change time moved
    os.utime(path, ns=(original.st_atime_ns, original.st_mtime_ns))
    after = Snapshot({str(path): _stat_print(path), "new": "y"})
    assert sorted(after.changed_since(before)) == sorted(["gone", "new", str(path)])
    assert Snapshot(dict(before.fingerprints)).changed_since(before) == []


def test_a_run_that_changes_committed_files_is_void_and_never_kept(task):
    patches = task / "patches.json"
    patches.write_text(json.dumps([
        proposal("the best score, and a note rewritten", "open('notes.md', 'w').write('rewritten\\n')\n"),
        proposal("the best score, and solve.py rewrites itself", "open('solve.py', 'a').write('# later\\n')\n"),
        proposal("the best score, and a new file of its own", "open('scratch.txt', 'w').write('ok\\n')\n"),
    ]))
    cli("run", "--agent", f"replay:{patches}", "--tag", "t", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("t")
    assert [e.status for e in history] == [Status.KEEP, Status.TAMPERED, Status.TAMPERED, Status.KEEP]
    assert "committed files of its own folder: notes.md" in history[1].error
    assert "solve.py" in history[2].error and history[1].metric == pytest.approx(1.0)  # measured, and void
    assert git(task, "log", "-1", "--format=%s", "autoresearch/t").strip() == "the best score, and a new file of its own"
    cli("report", "--tag", "t", cwd=task)
    assert "**TAMPERED: 2 experiments void, never kept** (#1 changed committed files; #2 changed committed files)" \
        in (task / "report.md").read_text()


def test_progress_lines_from_the_candidate_are_cleaned():
    from autoresearch.run.supervise import parse_progress

    assert parse_progress('@autoresearch {"event": "eval", "val_bpb": 0.0001, "seconds": 1}') is None
    assert parse_progress('@autoresearch {"event": "decided", "status": "keep"}') is None
    step = parse_progress('@autoresearch {"event": "step", "step": 12.0, "elapsed": "soon", "train_loss": NaN, '
                          '"tokens_per_s": 5e3, "device": "cpu", "tokens": true, "note": {"nested": 1}}')
    assert step == {"event": "step", "step": 12, "tokens_per_s": 5000.0, "device": "cpu"}
    assert parse_progress('@autoresearch ' + "[" * 100_000) is None
    assert parse_progress("plain output") is None


STEP_THEN_SCORE = """\
import time
print('@autoresearch {"event": "step", "step": 1}', flush=True)
time.sleep(1.0)
"""


@pytest.mark.parametrize("layer", ["box", "off"])
def test_your_edits_during_a_run_are_told_apart_from_the_run(task, monkeypatch, layer):
    """The person steers through program.md while the loop runs: an edit during a run is theirs, never
    tampering. autoresearch.toml is theirs where the box keeps the run away from it; without a box an edit
    cannot be told from the run's, and voids the run."""
    from autoresearch.agents.replay import ReplayAgent
    from autoresearch.config import load_config
    from autoresearch.loop import Loop
    from autoresearch.run import sandbox

    if layer == "off":
        monkeypatch.setenv("AUTORESEARCH_SANDBOX", "off")
    sandbox.isolation.cache_clear()
    boxed = sandbox.isolation() in sandbox.WRITE_CONFINED
    if layer == "box" and not boxed:
        pytest.skip("no box on this machine (bubblewrap or Landlock)")
    edits = {1: "program.md", 2: "autoresearch.toml"}
    events: list[dict] = []
    seq = [0]

    def on_event(event: dict) -> None:
        events.append(event)
        if event.get("event") == "experiment":
            seq[0] = event["seq"]
        if event.get("event") == "step" and seq[0] in edits:  # the run has started and is sleeping
            with open(task / edits.pop(seq[0]), "a") as f:  # once: a result may be confirmed by more runs
                f.write("\n# an edit while the run trains\n")

    proposals = [proposal(f"RATE 0.3, take {k}", STEP_THEN_SCORE + f"TAKE = {k}\n") for k in (1, 2)]
    config = load_config(task)
    loop = Loop(task, config, None, ReplayAgent(proposals), tag="e", on_event=on_event)
    try:
        loop.run()
    finally:
        loop.close()
        sandbox.isolation.cache_clear()
    with Store.open(task) as store:
        base, steered, configured = store.experiments("e")
    told = [e for e in events if e.get("event") == "task_edited"]
    assert steered.status is Status.KEEP and steered.metric == pytest.approx(1.0)  # program.md: never tampering
    assert told[0] == {"event": "task_edited", "files": ["program.md"], "boxed": boxed}
    if boxed:
        assert configured.status is Status.DISCARD and told[1]["files"] == ["autoresearch.toml"]
    else:
        assert configured.status is Status.TAMPERED and len(told) == 1
        assert "autoresearch.toml" in configured.error and "edit it while the loop is stopped" in configured.error


def test_the_report_shows_when_you_steered(task):
    """Each proposal records the program.md it was made under; the report says when it changed."""
    from autoresearch.agents.replay import ReplayAgent
    from autoresearch.config import load_config
    from autoresearch.loop import Loop
    from autoresearch.report import write_report

    def on_event(event: dict) -> None:
        if event.get("event") == "decided" and event.get("seq") == 1:
            with open(task / "program.md", "a") as f:
                f.write("\nTry larger rates first.\n")

    proposals = [proposal(f"take {k}", f"TAKE = {k}\n") for k in (1, 2, 3)]
    config = load_config(task)
    loop = Loop(task, config, None, ReplayAgent(proposals), tag="s", on_event=on_event)
    try:
        loop.run()
        history = loop.store.experiments("s")
        texts = loop.store.programs(e.metrics["program"] for e in history[1:])
        write_report(loop.store, "s", task, metric=config.metric)
    finally:
        loop.close()
    marks = [e.metrics.get("program") for e in history]
    assert marks[0] is None and marks[1] != marks[2] == marks[3]  # the baseline is not a proposal
    assert texts[marks[2]].endswith("Try larger rates first.\n") and not texts[marks[1]].endswith("first.\n")
    assert "- **Steering:** program.md changed 1 time: before #2 (+2/-0 lines)" in (task / "report.md").read_text()


def test_start_up_code_planted_in_python_folders_is_seen_and_put_back(tmp_path, monkeypatch):
    import site
    import sys as _sys

    from autoresearch.run import integrity

    site_dir, path_dir = tmp_path / "site-packages", tmp_path / "on-path"
    site_dir.mkdir()
    path_dir.mkdir()
    (site_dir / "editable.pth").write_text("/some/where\n")
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(site_dir)])
    monkeypatch.setattr(site, "getusersitepackages", lambda: str(tmp_path / "no-user-site"))
    monkeypatch.setattr(_sys, "path", [str(path_dir), str(site_dir)])
    before = integrity.snapshot(tmp_path, None)
    (site_dir / "zz_planted.pth").write_text("import os\n")
    (site_dir / "editable.pth").write_text("import evil\n")
    (path_dir / "sitecustomize.py").write_text("print('planted')\n")
    changed = integrity.snapshot(tmp_path, None).changed_since(before)
    assert {str(site_dir / "zz_planted.pth"), str(site_dir / "editable.pth"), str(path_dir / "sitecustomize.py")} \
        <= set(changed)
    mended = integrity.restore_startup_code(before)
    assert len(mended) == 3
    assert not (site_dir / "zz_planted.pth").exists() and not (path_dir / "sitecustomize.py").exists()
    assert (site_dir / "editable.pth").read_text() == "/some/where\n"
    assert integrity.snapshot(tmp_path, None).changed_since(before) == []
