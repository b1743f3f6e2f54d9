"""Agents taking turns in one run (`--agent A --agent B`): whose turn it is, fixes by the proposer, members
that run out, drafts written ahead, and the run credited to all of them in `compare`."""

import json
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pytest
from conftest import cli, edit_solve, generic_task_folder, sleepy_solve_py

from autoresearch.agents import (
    Agent,
    AgentConfigError,
    AgentExhausted,
    Proposal,
    ProposalContext,
    make_agents,
)
from autoresearch.agents.rotation import Rotation, adaptive_turn, next_turn
from autoresearch.agents.tune import TuneAgent
from autoresearch.config import ConfigError, load_config
from autoresearch.loop import Limits, Loop
from autoresearch.store import Status, Store


def make_task(tmp_path: Path, sleep: float = 0.0) -> Path:
    return generic_task_folder(tmp_path, sleepy_solve_py(sleep))


@dataclass
class Editor(Agent):
    """Replaces text in solve.py, one (description, old, new) step per proposal; fixes from `fixes`."""

    name: str
    steps: list[tuple[str, ...]]  # (description, old, new, old, new, ...)
    fixes: list[tuple[str, ...]] = field(default_factory=list)

    def propose(self, workdir: Path, context: ProposalContext) -> Proposal:
        if not self.steps:
            raise AgentExhausted(f"{self.name} has no more ideas")
        return Proposal(edit_solve(workdir, self.steps.pop(0)), usage={"tokens_in": 100.0})

    def fix(self, workdir: Path, context: ProposalContext) -> str | None:
        return edit_solve(workdir, self.fixes.pop(0)) if self.fixes else None



# ---------------------------------------------------------------------------------------------- pure parts


def test_each_turn_goes_to_the_member_furthest_behind_its_share():
    shares = {"claude": 1, "tune": 2}
    made: dict[str, int] = {}
    order = []
    for _ in range(9):
        turn = next_turn(shares, made)
        order.append(turn)
        made[turn] = made.get(turn, 0) + 1
    assert order == ["claude", "tune", "tune"] * 3
    # counted from a run's history: a resumed run carries on; other proposers (adoptions) do not count
    assert next_turn(shares, {"claude": 1, "tune": 1, "adopt:gpu1": 5}) == "tune"
    assert next_turn(shares, {"claude": 1, "tune": 2}) == "claude"
    assert next_turn({"a": 1, "b": 1, "c": 1}, {"a": 1}) == "b"
    assert next_turn(shares, {"claude": 0, "tune": 7}, frozenset({"tune"})) == "claude"
    with pytest.raises(ValueError, match="no member"):
        next_turn(shares, {}, frozenset(shares))


def test_a_rotation_is_of_distinct_agents_and_an_agent_listed_twice_gets_two_shares(tmp_path):
    with pytest.raises(AgentConfigError, match="two agents or more"):
        Rotation([Editor("a", [])])
    with pytest.raises(AgentConfigError, match="both named cmd"):
        Rotation([Editor("cmd", []), Editor("cmd", [])])
    task = make_task(tmp_path)
    made = make_agents(["tune", "tune:random", "tune"], task, "cpu")
    assert isinstance(made, Rotation) and made.lineup == "tune*2+tune:random"
    assert made.shares == {"tune": 2, "tune:random": 1} and made.members["tune"].sampler == "tpe"
    assert isinstance(make_agents(["tune", "tune"], task, "cpu"), TuneAgent)  # one agent: no rotation
    with pytest.raises(AgentConfigError, match="no agent given"):
        make_agents([], task, "cpu")


def play(shares: dict[str, int], kept_when, turns: int) -> list[tuple[str, bool]]:
    """`turns` adaptive turns, each proposal kept as `kept_when(member, its own count so far)` says."""
    record: list[tuple[str, bool]] = []
    for _ in range(turns):
        name = adaptive_turn(shares, record)
        record.append((name, kept_when(name, sum(1 for n, _ in record if n == name))))
    return record


def test_adaptive_turns_go_to_the_member_whose_proposals_get_kept_and_every_member_keeps_some():
    shares = {"good": 1, "poor": 1}
    record = play(shares, lambda name, own: name == "good", 100)
    made = {name: sum(1 for n, _ in record if n == name) for name in shares}
    assert [n for n, _ in record[:2]] == ["good", "poor"]  # each member proposes once before any adapting
    assert made["good"] >= 80
    assert made["poor"] >= 12  # the floor: a quarter of its listed half of the turns
    # listed twice, the poor member's floor doubles
    twice = play({"good": 1, "poor": 2}, lambda name, own: name == "good", 100)
    assert sum(1 for n, _ in twice if n == "poor") >= 16


def test_adaptive_turns_leave_a_member_whose_ideas_ran_out():
    # "early" has its first 20 proposals kept and none after; "steady" gets every fifth kept
    record = play({"early": 1, "steady": 1}, lambda name, own: own < 20 if name == "early" else own % 5 == 4, 150)
    first, last = record[:40], record[-50:]
    assert sum(n == "early" for n, _ in first) > 25  # it led while its proposals were kept
    # its old keeps faded as it went on proposing without one (counted at full weight, it would still get half)
    assert sum(n == "steady" for n, _ in last) > 40


def test_adaptive_turns_are_a_function_of_the_record():
    shares = {"a": 1, "b": 1, "c": 1}
    record = [("a", True), ("b", False), ("c", False), ("a", True), ("adopt:gpu1", True), ("b", None)]
    assert len({adaptive_turn(shares, record) for _ in range(5)}) == 1  # a resumed run chooses alike
    assert adaptive_turn(shares, record[:1]) == "b"  # members yet to propose go first, in listing order
    assert adaptive_turn(shares, record, frozenset({"a", "b"})) == "c"
    # proposals still running count as turns (for the floor), not as results; other proposers do not count
    # (a has 1 of 12: under its floor of 1.5; 20 adoptions more would not lift the floor)
    assert adaptive_turn({"a": 1, "b": 1}, [("a", None)] + [("b", None)] * 11 + [("adopt:gpu1", True)] * 20) == "a"
    with pytest.raises(ValueError, match="no member"):
        adaptive_turn(shares, record, frozenset(shares))


def test_turns_must_be_fixed_or_adaptive(tmp_path):
    with pytest.raises(AgentConfigError, match="use fixed .* or adaptive"):
        Rotation([Editor("a", []), Editor("b", [])], turns="often")
    assert Rotation([Editor("a", []), Editor("b", [])], [1, 2], turns="adaptive").lineup == "a+b*2, adaptive"
    task = make_task(tmp_path)
    toml = task / "autoresearch.toml"
    toml.write_text(toml.read_text().replace('turns = "fixed"', 'turns = "often"'))
    with pytest.raises(ConfigError, match="loop.turns = 'often'"):
        load_config(task)


# ---------------------------------------------------------------------------------------------- in the loop


def test_agents_take_turns_build_on_each_others_keeps_and_fix_their_own_crashes(tmp_path):
    task = make_task(tmp_path)
    editor = Editor("editor", [("WIDTH 4 -> 6", "WIDTH = 4", "WIDTH = 6"),
                               ("forget to print", 'print(f"score', 'pass  # (f"score')],
                    fixes=[("print again", 'pass  # (f"score', 'print(f"score', "RATE = ", "RATE = 0.01 + ")])
    tune = TuneAgent(task, "cpu", tag="r", seed=3)
    rotation = Rotation([editor, tune], [1, 2])
    loop = Loop(task, load_config(task), None, rotation, tag="r", limits=Limits(max_experiments=8))
    try:
        assert loop.run() == "reached 8 experiments"
        history = loop.store.experiments("r")
        assert (loop.store.line("r").lineup, loop.store.line("r").lineup_since) == ("editor+tune*2", 0)
    finally:
        loop.close()
    assert [e.agent for e in history] == ["-", "editor", "tune", "tune", "editor", "editor", "tune", "tune"]
    assert history[1].status is Status.KEEP and history[1].metrics.get("agent_tokens_in") == 100.0
    # tune moves from the editor's keep: its first trial's parent is that commit, with WIDTH = 6 in it
    assert history[2].parent_commit == history[1].commit
    assert "WIDTH" not in history[2].description or "WIDTH 6 ->" in history[2].description
    assert "agent_tokens_in" not in history[2].metrics  # what a proposal cost is its own member's
    # the editor's crash was fixed by the editor, as one change on the best
    assert history[4].status is Status.CRASH
    assert history[5].description == "forget to print; fix: print again" and history[5].agent == "editor"
    assert history[5].status in (Status.KEEP, Status.DISCARD)
    # tune's trials were told their results though other agents' experiments came between them
    study = optuna.load_study(study_name="autoresearch-r", storage=tune.storage_url)
    told = {t.user_attrs["experiment_seq"]: t for t in study.trials if "experiment_seq" in t.user_attrs}
    assert told[2].value == pytest.approx(history[2].metric) and told[3].value == pytest.approx(history[3].metric)
    tune.close()


def test_a_member_with_nothing_more_to_propose_leaves_and_the_run_ends_with_the_last(tmp_path):
    task = make_task(tmp_path)
    first = Editor("first", [("RATE 0.1 -> 0.2", "RATE = 0.1", "RATE = 0.2")])
    second = Editor("second", [("WIDTH 4 -> 5", "WIDTH = 4", "WIDTH = 5"), ("WIDTH 5 -> 6", "WIDTH = 5", "WIDTH = 6")])
    loop = Loop(task, load_config(task), None, Rotation([first, second]), tag="x")
    try:
        reason = loop.run()
        history = loop.store.experiments("x")
    finally:
        loop.close()
    assert [e.agent for e in history] == ["-", "first", "second", "second"]
    assert "every agent of the rotation is done" in reason and "second has no more ideas" in reason


def test_drafts_written_ahead_are_recorded_under_the_member_that_wrote_them(tmp_path):
    task = make_task(tmp_path, sleep=0.5)
    a = Editor("a", [("RATE 0.1 -> 0.2", "RATE = 0.1", "RATE = 0.2"), ("RATE 0.2 -> 0.3", "RATE = 0.2", "RATE = 0.3")])
    b = Editor("b", [("WIDTH 4 -> 5", "WIDTH = 4", "WIDTH = 5"), ("WIDTH 5 -> 6", "WIDTH = 5", "WIDTH = 6")])
    loop = Loop(task, load_config(task), None, Rotation([a, b]), tag="d", pipeline=True,
                limits=Limits(max_experiments=5))
    try:
        assert loop.run() == "reached 5 experiments"
        history = loop.store.experiments("d")
    finally:
        loop.close()
    assert [(e.agent, e.description) for e in history] == [
        ("-", "baseline"), ("a", "RATE 0.1 -> 0.2"), ("b", "WIDTH 4 -> 5"), ("a", "RATE 0.2 -> 0.3"),
        ("b", "WIDTH 5 -> 6")]
    assert all(e.metrics.get("drafted_ahead") == 1 for e in history[1:])
    assert all(e.status is Status.KEEP for e in history), [(e.status, e.error) for e in history]


def test_adaptive_turns_in_the_loop_follow_the_keeps(tmp_path):
    task = make_task(tmp_path)
    rates = [str(round(0.1 + 0.01 * i, 2)) for i in range(21)]
    good = Editor("good", [(f"RATE {a} -> {b}", f"RATE = {a}", f"RATE = {b}") for a, b in zip(rates[:-1], rates[1:],
                                                                                               strict=True)])
    poor = Editor("poor", [(f"WIDTH 4 -> {w}", "WIDTH = 4", f"WIDTH = {w}") for w in (2, 1, 0, 3, 9, 10, 11, 12, 13)])
    loop = Loop(task, load_config(task), None, Rotation([good, poor], turns="adaptive"), tag="a",
                limits=Limits(max_experiments=13))
    try:
        loop.run()
        history = loop.store.experiments("a")
        assert (loop.store.line("a").lineup, loop.store.line("a").lineup_since) == ("good+poor, adaptive", 0)
    finally:
        loop.close()
    agents = [e.agent for e in history[1:]]
    assert len(agents) == 12 and agents[:2] == ["good", "poor"]
    assert agents.count("good") >= 8 and agents.count("poor") >= 2, [(e.agent, e.status, e.seq) for e in history]
    assert all(e.status is Status.KEEP for e in history[1:] if e.agent == "good")
    assert all(e.status is not Status.KEEP for e in history[1:] if e.agent == "poor")


def test_the_cli_takes_several_agents_and_compare_credits_the_run_to_all_of_them(tmp_path):
    task = make_task(tmp_path)
    patches = task / "patches.json"
    patches.write_text(json.dumps([
        {"description": "WIDTH 4 -> 6", "edits": [{"file": "solve.py", "search": "WIDTH = 4", "replace": "WIDTH = 6"}]},
    ]))
    cli("run", "--agent", "tune", "--agent", f"replay:{patches}", "--tag", "m", "--max-experiments", "5", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("m")
    # replay's first proposal is its own first, though tune's came before it; then replay has run out
    assert [e.agent for e in history] == ["-", "tune", "replay", "tune", "tune"]
    assert history[2].description == "WIDTH 4 -> 6"
    compared = json.loads(cli("compare", "--json", cwd=task).stdout)
    assert compared["runs"][0]["agent"] == "tune+replay" and set(compared["runs"][0]["agents"]) == {"replay", "tune"}


def test_the_cli_gives_adaptive_turns_and_refuses_unknown_ones(tmp_path):
    task = make_task(tmp_path)
    refused = cli("run", "--agent", "tune", "--agent", "tune:random", "--turns", "often", cwd=task, check=False)
    assert refused.returncode != 0 and "loop.turns = 'often'" in refused.stderr + refused.stdout
    patches = task / "patches.json"
    patches.write_text(json.dumps([{"description": f"RATE {old} -> {new}", "edits": [
        {"file": "solve.py", "search": f"RATE = {old}", "replace": f"RATE = {new}"}]} for old, new in ((0.1, 0.2),
                                                                                                      (0.2, 0.3))]))
    cli("run", "--agent", f"replay:{patches}", "--agent", "tune", "--turns", "adaptive", "--tag", "d",
        "--max-experiments", "4", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("d")
        assert store.line("d").lineup == "replay+tune, adaptive"
    assert [e.agent for e in history[:3]] == ["-", "replay", "tune"]  # each proposes once before any adapting
    assert history[1].status is Status.KEEP
    compared = json.loads(cli("compare", "--json", cwd=task).stdout)
    assert compared["runs"][0]["agent"] == "replay+tune, adaptive"


def test_a_lineup_that_joins_a_run_counts_its_turns_from_when_it_joined(tmp_path):
    task = make_task(tmp_path)
    alone = Editor("first", [("RATE 0.1 -> 0.2", "RATE = 0.1", "RATE = 0.2"), ("RATE 0.2 -> 0.25", "RATE = 0.2",
                                                                             "RATE = 0.25")])
    loop = Loop(task, load_config(task), None, alone, tag="j", limits=Limits(max_experiments=3))
    try:
        loop.run()
    finally:
        loop.close()
    first = Editor("first", [("RATE 0.25 -> 0.3", "RATE = 0.25", "RATE = 0.3")])
    second = Editor("second", [("WIDTH 4 -> 5", "WIDTH = 4", "WIDTH = 5"), ("WIDTH 5 -> 6", "WIDTH = 5", "WIDTH = 6")])
    loop = Loop(task, load_config(task), None, Rotation([first, second]), tag="j", resume=True,
                limits=Limits(max_experiments=6))
    try:
        loop.run()
        history = loop.store.experiments("j")
        assert (loop.store.line("j").lineup, loop.store.line("j").lineup_since) == ("first+second", 3)
    finally:
        loop.close()
    # first's two proposals before the lineup joined do not count: the turns alternate from #3
    assert [e.agent for e in history] == ["-", "first", "first", "first", "second", "second"]
