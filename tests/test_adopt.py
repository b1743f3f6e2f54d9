"""Runs that share their best (`loop.adopt_from`): a run takes up another run's best when it beats its own by
more than the noise, runs it and judges it like any change; it never takes up code it has measured, nor a
best measured under another budget or within the noise; and the worktree takes only the editable files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import cli, git
from test_keep_loop import make_task, patches

from autoresearch.agents.prompt import build_prompt
from autoresearch.agents.replay import ReplayAgent
from autoresearch.config import ConfigError, config_from_dict, load_config
from autoresearch.loop import Loop
from autoresearch.store import Status, Store
from autoresearch.workspace import Workspace


def history(task: Path, tag: str):
    with Store.open(task) as store:
        return store.experiments(tag)


def test_two_runs_share_their_best_both_ways_and_never_go_back(tmp_path):
    task = make_task(tmp_path)
    first = patches(tmp_path, [("a clear gain", "GAIN = 0.08")])
    cli("run", "--agent", f"replay:{first}", "--tag", "a", cwd=task)
    a_base, a_gain = history(task, "a")
    assert a_gain.status is Status.KEEP

    # b starts later and takes up a's best before its agent's first proposal. The replay agent picks its
    # proposal by the number it made so far in the run, so its first entry is its first.
    (tmp_path / "b").mkdir()
    second = patches(tmp_path / "b", [("a further gain", "GAIN = 0.16")])
    out = cli("run", "--agent", f"replay:{second}", "--tag", "b", "--adopt-from", "a", cwd=task).stdout
    b_base, adopted, further = history(task, "b")
    assert "a's best (#1, loss" in out and "beats this run's by more than the noise" in out
    assert adopted.status is Status.KEEP and adopted.agent == "adopt:a"
    assert adopted.description == "adopt the best of a (#1: a clear gain)"
    assert adopted.metrics["adopted_from"] == "a" and adopted.metrics["adopted_seq"] == 1
    assert "+GAIN = 0.08" in adopted.diff and adopted.code_hash == a_gain.code_hash
    assert b_base.metrics["runs"] and len(adopted.metrics["runs"]) >= 1  # run here, not copied from a
    assert further.agent == "replay" and further.status is Status.KEEP
    # b's branch holds a's change as a commit of its own, then b's
    log = git(task, "log", "--format=%s", "autoresearch/b").splitlines()
    assert log[:2] == ["a further gain", "adopt the best of a (#1: a clear gain)"]

    # a, resumed, takes up b's better best; b's adoption of a's own code is nothing new to a
    (tmp_path / "a2").mkdir()
    third = patches(tmp_path / "a2", [("(made before the resume)", "GAIN = 0.0"),
                                      ("nothing of substance", "GAIN = 0.16\nUNUSED = 1")])
    cli("run", "--agent", f"replay:{third}", "--tag", "a", "--resume", "--adopt-from", "*", cwd=task)
    *_, back, own = history(task, "a")
    assert back.agent == "adopt:b" and back.metrics["adopted_seq"] == 2 and back.status is Status.KEEP
    assert own.agent == "replay"

    # b, resumed: a's best is b's own code now, so b goes on with its agent
    (tmp_path / "b2").mkdir()
    fourth = patches(tmp_path / "b2", [("(made before the resume)", "GAIN = 0.0"), ("b again", "GAIN = 0.16\nUNUSED = 2")])
    out = cli("run", "--agent", f"replay:{fourth}", "--tag", "b", "--resume", "--adopt-from", "a", cwd=task).stdout
    *_, last = history(task, "b")
    assert last.agent == "replay" and last.description == "b again" and "beats this run's" not in out
    # the table and status count the adopted change like any other
    rows = (task / "results.tsv").read_text().splitlines()
    assert any("adopt the best of a" in row for row in rows)
    shown = json.loads(cli("status", "--json", "--tag", "b", cwd=task).stdout)["experiments"]
    assert [e["status"] for e in shown][:3] == ["keep"] * 3 and len(shown) == 4
    # the report says what was taken from where; compare says the two runs are not independent
    cli("report", "--tag", "b", cwd=task)
    assert "**Taken from other runs:** 1 best of other runs tried here, 1 kept: #1 (a #1, keep)" in \
        (task / "report.md").read_text()
    compared = json.loads(cli("compare", "a", "b", "--json", cwd=task).stdout)
    assert [r["agents"] for r in compared["runs"]] == [["replay"], ["replay"]]  # taking up is not proposing
    assert sorted(r["adopted_from"] for r in compared["runs"]) == [["a"], ["b"]]
    assert any(f.startswith("Not independent: a kept the best of b; b kept the best of a") for f in
               compared["findings"]), compared["findings"]


def with_adopt_from(config, tags: list[str]):
    return dataclasses.replace(config, loop=dataclasses.replace(config.loop, adopt_from=tags))


def make_loop(task: Path, tag: str, adopt_from: list[str]) -> Loop:
    return Loop(task, with_adopt_from(load_config(task), adopt_from), None, ReplayAgent([]), tag=tag, budget=60.0)


def record(store: Store, loop: Loop, tag: str, runs: list[float], code: str) -> None:
    """A finished kept experiment of `tag` with these runs and this loss.py, committed on a branch of its own."""
    head = loop.workspace.head()
    store.set_line(tag, budget_seconds=60.0)
    experiment = store.begin(tag=tag, parent_commit=head, commit=head, diff="", description=f"{tag} best",
                             agent="replay", seed=0, log_path=None, code_hash=code)
    store.finish(experiment.id, status=Status.KEEP, metric=sum(runs) / len(runs), metrics={"runs": runs})


def test_only_a_best_that_beats_this_one_by_more_than_the_noise_is_offered(tmp_path):
    task = make_task(tmp_path)
    loop = make_loop(task, "me", ["*"])
    try:
        store = loop.store
        record(store, loop, "me", [1.000, 1.010, 0.990], "mine")  # noise sigma 0.01 from these runs
        assert loop.noise().known
        assert loop.adopter.offer() is None  # no other run yet
        record(store, loop, "close", [0.996, 0.994], "close")  # better, but within the gate
        assert loop.adopter.offer() is None
        record(store, loop, "far", [0.95, 0.95], "far")
        offer = loop.adopter.offer()
        assert (offer.source, offer.description, offer.value) == ("far", "far best", pytest.approx(0.95))
        record(store, loop, "other-budget", [0.80, 0.80], "fast")
        store.set_line("other-budget", budget_seconds=30.0)  # trained for 30 s: its loss does not compare
        assert loop.adopter.offer().source == "far"
        record(store, loop, "same-as-mine", [0.70, 0.70], "mine")  # measured here already
        assert loop.adopter.offer().source == "far"
        record(store, loop, "farther", [0.90, 0.90], "farther")  # the best of the offers wins
        assert loop.adopter.offer().source == "farther"
        loop.line.config = with_adopt_from(loop.line.config, ["far"])
        assert loop.adopter.offer().source == "far"  # only the runs named
        loop.line.config = with_adopt_from(loop.line.config, ["fa*"])
        assert loop.adopter.offer().source == "farther"  # or matched
        # with adopt_after, only once this run has gone that many experiments without a keep
        loop.line.config = dataclasses.replace(loop.line.config, loop=dataclasses.replace(loop.line.config.loop, adopt_after=2))
        assert loop.adopter.offer() is None
        for n in range(2):
            e = store.begin(tag="me", parent_commit="x", commit=None, diff="", description=f"try {n}", agent="r", seed=0)
            store.finish(e.id, status=Status.DISCARD, metric=1.2)
        assert loop.adopter.offer().source == "farther"
    finally:
        loop.close()


def test_the_offer_taken_beats_this_best_by_the_most_and_by_more_than_the_margin():
    from autoresearch.loop.exchange import Offer, best_offer

    def offer(name: str, *runs: float) -> Offer:
        return Offer(source=name, seq=1, description=name, runs=runs, code_hash=name)

    offers = [offer("a", 0.95, 0.97), offer("b", 0.93), offer("c", 0.93), offer("d", 1.2)]
    assert best_offer(offers, 1.0, 0.0).source == "b"  # the first of equals
    assert best_offer(offers, 1.0, 0.065).source == "b"  # 0.07 better: more than 0.065...
    assert best_offer(offers, 1.0, 0.075) is None  # ...not more than 0.075
    assert best_offer(offers, 0.9, 0.0) is None
    assert best_offer(offers, 1.0, 0.0, maximize=True).source == "d"
    assert best_offer([], 1.0, 0.0) is None


def test_the_worktree_takes_only_the_editable_files_of_the_other_commit(tmp_path):
    folder = tmp_path / "task"
    (folder / "models").mkdir(parents=True)
    (folder / "train.py").write_text("a = 1\n")
    (folder / "models" / "old.py").write_text("old\n")
    (folder / "notes.txt").write_text("ours\n")
    workspace = Workspace.ensure(folder)
    workspace.create_branch("autoresearch/x", workspace.head())
    workspace.create_branch("autoresearch/y", workspace.head())
    other = workspace.open_worktree(folder / ".autoresearch" / "worktrees" / "y", "autoresearch/y")
    (other.path / "train.py").write_text("a = 2\n")
    (other.path / "models" / "old.py").unlink()
    (other.path / "models" / "new.py").write_text("new\n")
    (other.path / "notes.txt").write_text("theirs\n")
    theirs = other.commit("their change")
    mine = workspace.open_worktree(folder / ".autoresearch" / "worktrees" / "x", "autoresearch/x")
    head = mine.head()
    mine.put_files(mine.files_at(theirs, ["train.py", "models/"]), ["train.py", "models/"])
    assert mine.head() == head
    assert (mine.path / "train.py").read_text() == "a = 2\n"
    assert (mine.path / "models" / "new.py").read_text() == "new\n" and not (mine.path / "models" / "old.py").exists()
    assert (mine.path / "notes.txt").read_text() == "ours\n"  # not editable: left as it is
    assert mine.changed_files() == ["models/new.py", "models/old.py", "train.py"]


def test_adopt_from_must_list_tags():
    with pytest.raises(ConfigError, match=r"loop.adopt_from.*\[\"\*\"\]"):
        config_from_dict({"loop": {"adopt_from": ["gpu0", " "]}})
    with pytest.raises(ConfigError, match="should be a list"):
        config_from_dict({"loop": {"adopt_from": "gpu0"}})


def test_runs_in_two_folders_share_their_best_through_an_exchange_folder(tmp_path):
    here = make_task(tmp_path)  # two machines: two clones of one task, and a folder both reach
    there = tmp_path / "there"
    git(tmp_path, "clone", "-q", str(here), str(there))
    shared = tmp_path / "exchange"
    gain = patches(tmp_path, [("a clear gain", "GAIN = 0.08")])
    cli("run", "--agent", f"replay:{gain}", "--tag", "a", "--exchange", str(shared), cwd=here)
    (entry,) = shared.glob("*.json")
    assert entry.name.startswith("a@") and json.loads(entry.read_text())["seq"] == 1

    (tmp_path / "b").mkdir()
    later = patches(tmp_path / "b", [("nothing of substance", "GAIN = 0.08\nX = 1")])
    out = cli("run", "--agent", f"replay:{later}", "--tag", "b", "--exchange", str(shared), "--adopt-from", "a@*",
              cwd=there).stdout
    _, adopted, _ = history(there, "b")
    assert adopted.agent == f"adopt:{entry.stem}" and adopted.status is Status.KEEP, out
    assert "+GAIN = 0.08" in adopted.diff and adopted.description.endswith("(#1: a clear gain)")
    assert sorted(p.name.split("@")[0] for p in shared.glob("*.json")) == ["a", "b"]  # b publishes too

    # a run of the same task under another budget does not compare: it is neither offered nor taken
    (tmp_path / "c").mkdir()
    other = patches(tmp_path / "c", [("nothing", "GAIN = 0.0\nY = 1")])
    cli("run", "--agent", f"replay:{other}", "--tag", "c", "--exchange", str(shared), "--adopt-from", "*",
        "--budget", "30", cwd=there)
    assert all(e.agent == "replay" or e.seq == 0 for e in history(there, "c"))


def test_an_exchange_entry_is_read_whole_or_not_at_all(tmp_path):
    from autoresearch.loop import exchange

    files = {"train.py": b"LR = 0.1\r\n", "data.bin": bytes(range(256))}
    content = exchange.entry("a@h", "p1", 3, "lower lr", [0.9, 0.92], "hash", files)
    exchange.publish(tmp_path, content)
    (offer,) = exchange.read_offers(tmp_path, "p1", exclude="b@h")
    assert offer.files == files and offer.runs == (0.9, 0.92) and offer.value == pytest.approx(0.91)
    assert exchange.read_offers(tmp_path, "p2", exclude="b@h") == []  # another task's or settings'
    assert exchange.read_offers(tmp_path, "p1", exclude="a@h") == []  # this run's own
    (tmp_path / "half.json").write_text('{"format": 1, "protocol": "p1", "runs": [0.5')  # a partial copy
    (tmp_path / "odd.json").write_text(json.dumps({**content, "name": "odd", "files": {"x": "not base64!"}}))
    assert [o.source for o in exchange.read_offers(tmp_path, "p1", exclude="b@h")] == ["a@h"]
    assert exchange.entry_name("gpu/0", "node 7") == "gpu-0@node-7"
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary file left behind


def test_files_from_an_exchange_entry_stay_within_the_editable_files(tmp_path):
    folder = tmp_path / "task"
    folder.mkdir()
    (folder / "train.py").write_text("a = 1\n")
    (folder / "extra.py").write_text("b = 1\n")
    workspace = Workspace.ensure(folder)
    workspace.create_branch("autoresearch/x", workspace.head())
    tree = workspace.open_worktree(folder / ".autoresearch" / "worktrees" / "x", "autoresearch/x")
    for bad in ("../outside.py", "/etc/passwd", "prepare.py", ".autoresearch/store.sqlite"):
        with pytest.raises(ValueError, match="not a file the agent may edit"):
            tree.put_files({"train.py": b"a = 2\n", bad: b"x"}, ["train.py"])
        assert not tree.changed_files()  # nothing written
    tree.put_files({"train.py": b"a = 2\r\n"}, ["*.py"])  # extra.py is covered and not in the entry: removed
    assert (tree.path / "train.py").read_bytes() == b"a = 2\r\n" and not (tree.path / "extra.py").exists()
    assert tree.files_at("HEAD", ["*.py"]) == {"extra.py": b"b = 1\n", "train.py": b"a = 1\n"}


def test_the_agent_is_told_what_the_runs_it_shares_with_tried_lately(tmp_path):
    task = make_task(tmp_path)
    loop = make_loop(task, "me", ["gpu*"])
    try:
        store = loop.store

        def add(tag, description, status, agent="replay", metric=1.0):
            e = store.begin(tag=tag, parent_commit="x", commit=None, diff="", description=description, agent=agent,
                            seed=0)
            store.finish(e.id, status=status, metric=None if status is Status.CRASH else metric)

        add("gpu1", "baseline", Status.KEEP)
        add("other", "not shared with", Status.DISCARD)
        add("gpu1", "wider MLP", Status.DISCARD, metric=1.2)
        add("me", "my own idea", Status.DISCARD)
        add("gpu2", "adopt the best of gpu1 (#0: baseline)", Status.KEEP, agent="adopt:gpu1")
        add("gpu2", "deeper", Status.CRASH)
        others = loop.proposer.context().others
        assert [(e.tag, e.description) for e in others] == [  # this run's and unnamed runs' left out, in order
            ("gpu1", "baseline"), ("gpu1", "wider MLP"), ("gpu2", "adopt the best of gpu1 (#0: baseline)"),
            ("gpu2", "deeper")]
        # of those, the runs whose metrics compare with this run's: trained for its budget (tune learns their trials)
        store.set_line("gpu1", budget_seconds=60.0)
        store.set_line("gpu2", budget_seconds=300.0)
        store.set_line("other", budget_seconds=60.0)
        assert loop.proposer.context().shared_runs == ("gpu1",)
        prompt = build_prompt(loop.proposer.context())
        assert "# Tried lately in the runs that share their bests with this one" in prompt
        assert "| gpu1 | 1 | discard | 1.200000 | wider MLP |" in prompt and "| gpu2 | 1 | crash | - | deeper |" in prompt
        assert "baseline |" not in prompt.split("# Tried lately")[1] and "adopt the best" not in prompt  # not proposals
        assert "not shared with" not in prompt
        alone = make_loop(task, "solo", [])
        try:
            assert alone.proposer.context().others == () and "# Tried lately" not in build_prompt(alone.proposer.context())
        finally:
            alone.close()
    finally:
        loop.close()
