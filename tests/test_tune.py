"""The `tune` agent: constants of the real baseline, ranges, edits, and its Optuna study in the real store file."""

from __future__ import annotations

import ast
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from autoresearch.agents import AgentConfigError, AgentError, ProposalContext, make_agent
from autoresearch.agents.base import NOTES
from autoresearch.agents.tune import (
    Constant,
    Range,
    TuneAgent,
    apply_values,
    describe,
    find_constants,
    format_value,
    infer_range,
    param_value,
    profiles_of,
    read_overrides,
    search_space,
)
from autoresearch.store import Experiment, Status, Store

TEMPLATE = Path(__file__).resolve().parents[1] / "src" / "autoresearch" / "template" / "train.py"
TAG = "t1"


@pytest.fixture
def task(tmp_path: Path) -> Path:
    """A task folder with the baseline train.py and a worktree holding a copy of it."""
    (tmp_path / "train.py").write_text(TEMPLATE.read_text())
    worktree = tmp_path / ".autoresearch" / "worktrees" / TAG
    worktree.mkdir(parents=True)
    (worktree / "train.py").write_text(TEMPLATE.read_text())
    return tmp_path


def worktree(task: Path) -> Path:
    return task / ".autoresearch" / "worktrees" / TAG


def context(history: list[Experiment]) -> ProposalContext:
    kept = [e for e in history if e.status == Status.KEEP]
    return ProposalContext(program="", editable=["train.py"], history=history, best=kept[-1] if kept else None)


def run(store: Store, description: str, agent: str, status: Status, val_bpb: float | None = None) -> Experiment:
    experiment = store.begin(tag=TAG, parent_commit="0" * 40, commit="1" * 40, diff="", description=description,
                             agent=agent, seed=0)
    return store.finish(experiment.id, status=status, metric=val_bpb)


def values_of(source: str) -> dict[str, int | float]:
    return {c.name: c.value for c in find_constants(source, "cpu")}


# ------------------------------------------------------------------------------------------ constants


def test_constants_of_the_baseline_are_module_level_and_active_profile_only() -> None:
    source = TEMPLATE.read_text()
    found = {c.name: c for c in find_constants(source, "cpu")}
    assert found["DEPTH"].value == 1 and found["DEPTH"].profile is None  # the cpu profile's are the flat ones
    assert found["TOKENS_PER_STEP"].value == 8 * 256  # a constant expression counts
    assert found["MATRIX_LR"].value == 0.02 and found["WARMDOWN_FRAC"].value == 0.4
    assert found["LOGIT_SOFTCAP"].value == 0.0
    assert "COMPILE" not in found and "ADAM_BETAS" not in found and "T_PROCESS_START" not in found
    assert "PROFILE" not in found and "DEVICE" not in found
    h100 = {c.name: c for c in find_constants(source, "h100")}
    assert h100["DEPTH"].value == 8 and h100["DEPTH"].profile == "h100"
    assert h100["TOKENS_PER_STEP"].value == 2**19 and h100["LOGIT_SOFTCAP"].value == 15.0
    assert h100["WARMDOWN_FRAC"] == found["WARMDOWN_FRAC"] and h100["WARMDOWN_FRAC"].profile is None  # shared
    assert set(h100) == set(found)  # one constant per name: the h100 block's replaces the cpu line above it
    # the span is exactly the value's source text
    data = source.encode()
    assert data[found["TOKENS_PER_STEP"].start:found["TOKENS_PER_STEP"].end] == b"8 * 256"
    assert data[h100["TOKENS_PER_STEP"].start:h100["TOKENS_PER_STEP"].end] == b"2**19"
    assert profiles_of(source) == ["cpu", "h100"]


def test_profile_blocks_follow_what_python_runs() -> None:
    source = ('PROFILES = ("a", "b", "c")\nPROFILE = "a"\nLR = 0.1  # shared\nDEPTH = 2\nWIDTH = 64\n'
              'if PROFILE == "b":\n    DEPTH = 4\n    WIDTH = "wide"\nelif PROFILE in ("c",):\n    DEPTH = 6\n'
              'else:\n    WIDTH = 32\nif DEBUG == "b":\n    LR = 9.0\nDEPTH = DEPTH + 0  # not a literal\n'
              'LR = 0.2\n')

    def values(profile: str | None) -> dict[str, tuple[int | float, str | None]]:
        return {c.name: (c.value, c.profile) for c in find_constants(source, profile)}
    assert values("a") == {"LR": (0.2, None), "WIDTH": (32, "a")}  # the else branch; DEPTH is reassigned
    assert values("b") == {"LR": (0.2, None)}  # a string value removes WIDTH
    assert values("c") == {"LR": (0.2, None), "WIDTH": (64, None)}
    assert values(None) == {"LR": (0.2, None), "WIDTH": (64, None)}


def test_an_older_train_py_with_a_profiles_dict_is_still_tuned() -> None:
    """train.py files made before the flat constants hold `PROFILES = {"cpu": dict(...), ...}`."""
    source = ('PROFILES = {\n    "h100": dict(DEPTH=8, MATRIX_LR=0.02),\n    "cpu": dict(\n        DEPTH=1,\n'
              '        TOKENS_PER_STEP=8 * 256,\n        COMPILE=False,\n    ),\n}\nWARMDOWN_FRAC = 0.4\n'
              'DEPTH = 3\n')
    found = {c.name: c for c in find_constants(source, "cpu")}
    assert set(found) == {"cpu.DEPTH", "TOKENS_PER_STEP", "WARMDOWN_FRAC", "DEPTH"}
    assert found["cpu.DEPTH"].value == 1 and found["cpu.DEPTH"].profile == "cpu"
    assert source.encode()[found["TOKENS_PER_STEP"].start:found["TOKENS_PER_STEP"].end] == b"8 * 256"
    edited = apply_values(source, [(found["TOKENS_PER_STEP"], 4096)])
    assert "TOKENS_PER_STEP=4096," in edited and {c.name: c.value for c in find_constants(edited, "h100")} == \
        {"h100.DEPTH": 8, "MATRIX_LR": 0.02, "WARMDOWN_FRAC": 0.4, "DEPTH": 3}
    assert profiles_of(source) == ["h100", "cpu"]


def test_edit_changes_exactly_the_suggested_values_and_keeps_the_rest() -> None:
    source = TEMPLATE.read_text()
    found = {c.name: c for c in find_constants(source, "cpu")}
    changes = [(found["MATRIX_LR"], 0.028), (found["DEPTH"], 2), (found["TOKENS_PER_STEP"], 4096)]
    edited = apply_values(source, changes)
    ast.parse(edited)
    after = values_of(edited)
    before = values_of(source)
    assert after == {**before, "MATRIX_LR": 0.028, "DEPTH": 2, "TOKENS_PER_STEP": 4096}
    assert {c.name: c.value for c in find_constants(edited, "h100")} == \
        {c.name: c.value for c in find_constants(source, "h100")}  # the other profile untouched
    assert "# fraction of the time budget at the end spent decaying the LR linearly" in edited
    assert len(edited.splitlines()) == len(source.splitlines())
    assert describe(changes) == "DEPTH 1 -> 2, TOKENS_PER_STEP 2048 -> 4096, MATRIX_LR 0.02 -> 0.028"


def test_float_description_has_four_significant_digits() -> None:
    c = Constant("EMBED_LR", 0.15, 0, 4)
    assert describe([(c, 0.123456)]) == "EMBED_LR 0.15 -> 0.1235"
    base = Constant("ROPE_BASE", 10000.0, 0, 7)
    assert describe([(base, 13702.5)]) == "ROPE_BASE 10000 -> 13700"
    assert describe([(Constant("WD", 0.0, 0, 1), 1e-07)]) == "WD 0 -> 1e-07"


# ------------------------------------------------------------------------------------------ ranges


def test_range_rules() -> None:
    assert infer_range("MATRIX_LR", 0.02) == Range(0.005, 0.08, "log")
    assert infer_range("DEVICE_BATCH", 8) == Range(2, 32, "pow2")
    assert infer_range("TOKENS_PER_STEP", 2048) == Range(512, 8192, "pow2")
    assert infer_range("DEPTH", 1) == Range(1, 3, "int")
    assert infer_range("N_LAYER", 6) == Range(4, 8, "int")
    assert infer_range("WARMDOWN_FRAC", 0.4) == Range(0.0, 0.8, "float")
    assert infer_range("WARMUP_FRAC", 0.0) == Range(0.0, 0.2, "float")
    assert infer_range("FINAL_LR_FRAC", 0.0) == Range(0.0, 0.2, "float")  # _FRAC before LR
    assert infer_range("WARMDOWN_FRAC", 0.7) == Range(0.0, 1.0, "float")
    assert infer_range("ASPECT_RATIO", 128) == Range(64, 256, "int")
    assert infer_range("LOGIT_SOFTCAP", 15.0) == Range(7.5, 30.0, "float")
    assert infer_range("WEIGHT_DECAY", 0.0) is None
    assert infer_range("MUON_MOMENTUM", 0.95) == Range(0.475, 0.999, "float")


def test_toml_overrides_and_unknown_constant(task: Path) -> None:
    (task / "autoresearch.toml").write_text('[loop]\nseed = 0\n\n[tune]\nMATRIX_LR = [0.005, 0.1, "log"]\n'
                                            'DEPTH = [1, 4, "int"]\nSEQ_LEN = [128, 512, "pow2"]\n'
                                            'LOGIT_SOFTCAP = false\n')
    overrides = read_overrides(task)
    assert overrides["SEQ_LEN"] == Range(128, 512, "pow2")
    space = dict((c.name, r) for c, r in search_space(find_constants(TEMPLATE.read_text(), "cpu"), overrides))
    assert space["MATRIX_LR"] == Range(0.005, 0.1, "log") and space["DEPTH"] == Range(1, 4, "int")
    assert "LOGIT_SOFTCAP" not in space and "LOG_EVERY_S" not in space and "WEIGHT_DECAY" not in space
    (task / "autoresearch.toml").write_text('[tune]\nNOT_A_KNOB = [1, 2]\n')
    with pytest.raises(AgentConfigError, match="NOT_A_KNOB"):
        TuneAgent(task, "cpu")
    (task / "autoresearch.toml").write_text('[tune]\nDEPTH = [1, 4, "cubic"]\n')
    with pytest.raises(AgentConfigError, match="kind"):
        read_overrides(task)


# ------------------------------------------------------------------------------------------ the agent


def test_propose_writes_a_trial_into_the_worktree_and_the_study_shares_the_store(task: Path) -> None:
    with Store.open(task) as store:
        baseline = run(store, "baseline", "-", Status.KEEP, 1.5)
    agent = make_agent("tune", task, "cpu")
    assert isinstance(agent, TuneAgent) and agent.name == "tune"
    before = (worktree(task) / "train.py").read_text()
    description = agent.propose(worktree(task), context([baseline])).description
    after = (worktree(task) / "train.py").read_text()
    ast.parse(after)
    old, new = values_of(before), values_of(after)
    changed = [name for name in old if old[name] != new[name]]
    assert changed and description == ", ".join(f"{n} {format_value(old[n])} -> {format_value(new[n])}"
                                                for n in changed)
    assert isinstance(agent.study(TAG).sampler, optuna.samplers.TPESampler)
    trial = agent.study(TAG).trials[0]
    assert trial.state == TrialState.RUNNING and trial.user_attrs["experiment_seq"] == 1
    agent.close()
    # the store still opens and works, its table intact, next to Optuna's tables
    with Store.open(task) as store:
        assert [e.description for e in store.experiments(TAG)] == ["baseline"]
        run(store, description, "tune", Status.DISCARD, 1.6)
        assert len(store.experiments(TAG)) == 2
    with sqlite3.connect(task / ".autoresearch" / "store.sqlite") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"experiments", "state", "studies", "trials"} <= tables
    assert optuna.load_study(study_name=f"autoresearch-{TAG}", storage=agent.storage_url).trials[0].number == 0


def test_an_h100_trial_edits_the_h100_block_and_leaves_the_cpu_profile_alone(task: Path) -> None:
    source = TEMPLATE.read_text()
    shared = [c.name for c in find_constants(source, "h100") if c.profile is None]
    (task / "autoresearch.toml").write_text("[tune]\n" + "".join(f"{name} = false\n" for name in shared))
    with Store.open(task) as store:
        history = [run(store, "baseline", "-", Status.KEEP, 1.5)]
    agent = TuneAgent(task, "h100", sampler="random")
    for _ in range(3):
        description = agent.propose(worktree(task), context(history)).description
        after = (worktree(task) / "train.py").read_text()
        assert values_of(after) == values_of(source)  # the cpu profile's values, as they were
        h100 = {c.name: c.value for c in find_constants(after, "h100")}
        assert h100 != {c.name: c.value for c in find_constants(source, "h100")}
        assert description.split(" ", 1)[0] in h100
        with Store.open(task) as store:
            history.append(run(store, description, "tune:random", Status.DISCARD, 1.6))
        (worktree(task) / "train.py").write_text(source)
    agent.close()
    with pytest.raises(AgentConfigError, match="not in PROFILES"):
        TuneAgent(task, "a100")


def test_resume_continues_numbering_and_tells_results(task: Path) -> None:
    with Store.open(task) as store:
        history = [run(store, "baseline", "-", Status.KEEP, 1.5)]
    outcomes = [(Status.DISCARD, 1.6), (Status.CRASH, None), (Status.KEEP, 1.4)]
    for status, bpb in outcomes:
        agent = TuneAgent(task, "cpu")  # a new agent (a resumed loop) each time
        description = agent.propose(worktree(task), context(history)).description
        agent.close()
        with Store.open(task) as store:
            history.append(run(store, description, "tune", status, bpb))
        if status != Status.KEEP:
            (worktree(task) / "train.py").write_text(TEMPLATE.read_text())  # the loop resets a discard
    # a proposal that never became an experiment (loop killed between propose and begin)
    agent = TuneAgent(task, "cpu")
    agent.propose(worktree(task), context(history))
    agent.close()
    agent = TuneAgent(task, "cpu")
    agent.propose(worktree(task), context(history))
    trials = agent.study(TAG).trials
    assert [t.number for t in trials] == list(range(len(trials)))  # one study, numbering continued
    linked = [t for t in trials if "experiment_seq" in t.user_attrs]
    assert [t.user_attrs["experiment_seq"] for t in linked] == [1, 2, 3, 4, 4]
    assert [t.state for t in linked] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.FAIL, TrialState.RUNNING]
    assert [t.value for t in linked[:3]] == [1.6, None, 1.4]
    # a move that landed on the incumbent's own values was told the incumbent's result and asked again
    assert all(t.state == TrialState.COMPLETE and t.value in (1.5, 1.4) for t in trials if t not in linked)
    agent.close()


def test_rejected_and_foreign_experiments_fail_their_trials(task: Path) -> None:
    with Store.open(task) as store:
        history = [run(store, "baseline", "-", Status.KEEP, 1.5)]
        agent = TuneAgent(task, "cpu", sampler="random")
        description = agent.propose(worktree(task), context(history)).description
        history.append(run(store, description, "tune:random", Status.REJECTED))
        agent.propose(worktree(task), context(history))
        history.append(run(store, "someone else's change", "replay", Status.DISCARD, 1.7))
        agent.propose(worktree(task), context(history))
        states = [t.state for t in agent.study(TAG).trials]
        agent.close()
    assert states == [TrialState.FAIL, TrialState.FAIL, TrialState.RUNNING]


def test_tune_random_uses_random_sampler_and_tag_from_path(task: Path) -> None:
    agent = make_agent("tune:random", task, "cpu")
    assert isinstance(agent, TuneAgent) and agent.name == "tune:random"
    agent.propose(worktree(task), context([]))  # no history: the tag comes from the worktree path
    assert isinstance(agent.study(TAG).sampler, optuna.samplers.RandomSampler)
    assert agent.study(TAG).study_name == "autoresearch-t1"
    agent.close()
    with pytest.raises(AgentConfigError):
        make_agent("tune:grid", task, "cpu")
    with pytest.raises(AgentConfigError):
        make_agent("tune")


def test_a_trial_that_changes_nothing_is_told_the_incumbent_and_reasked(task: Path) -> None:
    (task / "autoresearch.toml").write_text('[tune]\n' + "".join(
        f"{c.name} = false\n" for c in find_constants(TEMPLATE.read_text(), "cpu") if c.name != "DEPTH")
        + 'DEPTH = [1, 2, "int"]\n')
    with Store.open(task) as store:
        history = [run(store, "baseline", "-", Status.KEEP, 1.5)]
    agent = TuneAgent(task, "cpu", sampler="random", max_reasks=50)
    assert agent.propose(worktree(task), context(history)).description == "DEPTH 1 -> 2"
    trials = agent.study(TAG).trials
    assert all(t.state == TrialState.COMPLETE and t.value == 1.5 for t in trials[:-1])
    agent.close()
    (task / "autoresearch.toml").write_text('[tune]\n' + "".join(
        f"{c.name} = false\n" for c in find_constants(TEMPLATE.read_text(), "cpu") if c.name != "DEPTH")
        + 'DEPTH = [1, 1.5, "float"]\n')
    (worktree(task) / "train.py").write_text(TEMPLATE.read_text().replace("\nDEPTH = 1  #", "\nDEPTH = 1.0  #"))
    agent = TuneAgent(task, "cpu", max_reasks=3)
    agent.propose(worktree(task), context(history))  # floats almost never repeat: a change is made
    agent.close()
    with pytest.raises(AgentError):
        TuneAgent(task, "cpu", max_reasks=0).propose(worktree(task), context(history))


def test_every_trial_is_a_local_move_of_one_to_three_constants(task: Path) -> None:
    with Store.open(task) as store:
        history = [run(store, "baseline", "-", Status.KEEP, 1.5)]
    agent = TuneAgent(task, "cpu", sampler="random")
    moved = []
    for i in range(12):
        description = agent.propose(worktree(task), context(history)).description
        moved.append(description.count("->"))
        with Store.open(task) as store:
            history.append(run(store, description, "tune:random", Status.DISCARD, 1.6 + i / 100))
        (worktree(task) / "train.py").write_text(TEMPLATE.read_text())
    agent.close()
    assert all(1 <= n <= 3 for n in moved) and 1 in moved and max(moved) > 1, moved
    trial = agent.study(TAG).trials[-1]
    space = dict(param_value(c, r) for c, r in agent._space(TEMPLATE.read_text()))
    differing = [name for name, value in trial.params.items() if space.get(name) != value]
    assert 1 <= len(differing) <= 3  # the study records the whole point: the rest at the incumbent's values


def test_a_move_already_run_from_the_same_incumbent_is_not_run_again(task: Path) -> None:
    names = [c.name for c in find_constants(TEMPLATE.read_text(), "cpu")]
    fixed = "\n".join(f"{n} = false" for n in names if n != "DEPTH")
    (task / "autoresearch.toml").write_text(f"[tune]\n{fixed}\nDEPTH = [1, 2, \"int\"]\n")
    with Store.open(task) as store:
        baseline = run(store, "baseline", "-", Status.KEEP, 1.5)
    agent = TuneAgent(task, "cpu", sampler="random")
    history = [baseline]
    assert agent.propose(worktree(task), context(history)).description == "DEPTH 1 -> 2"
    with Store.open(task) as store:
        exp = store.begin(tag=TAG, parent_commit=baseline.commit, commit="b" * 40, diff="", description="DEPTH 1 -> 2",
                          agent="tune:random", seed=0)
        history.append(store.finish(exp.id, status=Status.DISCARD, metric=1.7))
    (worktree(task) / "train.py").write_text(TEMPLATE.read_text())
    with pytest.raises(AgentError, match="already tried"):  # the only move left was run from this incumbent
        agent.propose(worktree(task), context(history))
    told = [t.value for t in agent.study(TAG).trials if t.state == TrialState.COMPLETE]
    assert 1.7 in told  # the repeated move was told the earlier run's result instead of being run
    agent.close()


def test_each_run_searches_its_own_path_and_repeats_it(tmp_path: Path) -> None:
    def first_move(folder: Path, tag: str) -> str:
        folder.mkdir(exist_ok=True)
        (folder / "train.py").write_text(TEMPLATE.read_text())
        tree = folder / ".autoresearch" / "worktrees" / tag
        tree.mkdir(parents=True, exist_ok=True)
        (tree / "train.py").write_text(TEMPLATE.read_text())
        with Store.open(folder) as store:
            base = store.finish(store.begin(tag=tag, parent_commit="0" * 40, commit="1" * 40, diff="",
                                            description="baseline", agent="-", seed=0).id, status=Status.KEEP,
                                metric=1.5)
        agent = TuneAgent(folder, "cpu", tag=tag)
        moves = [agent.propose(tree, context([base])).description for _ in range(3)]
        agent.close()
        return " | ".join(moves)

    one, two = first_move(tmp_path / "a", "tune-1"), first_move(tmp_path / "a", "tune-2")
    assert one != two  # two runs on one task: two samples of the search, not one path twice
    assert first_move(tmp_path / "b", "tune-1") == one  # the same run again: the same path


def test_a_run_learns_the_trials_of_the_runs_it_shares_with_once_and_passes_none_on(tmp_path: Path) -> None:
    """Runs that share (`adopt_from`, same budget) form one search: each study takes in the others' completed
    trials, with their values, so TPE models the whole fleet's points."""
    (tmp_path / "train.py").write_text(TEMPLATE.read_text())
    trees = {}
    for tag in ("p-0", "p-1"):
        trees[tag] = tmp_path / ".autoresearch" / "worktrees" / tag
        trees[tag].mkdir(parents=True)
        (trees[tag] / "train.py").write_text(TEMPLATE.read_text())

    def ran(store: Store, tag: str, description: str, agent: str, status: Status, metric: float | None) -> Experiment:
        e = store.begin(tag=tag, parent_commit="0" * 40, commit="1" * 40, diff="", description=description,
                        agent=agent, seed=0)
        return store.finish(e.id, status=status, metric=metric)

    def in_context(history: list[Experiment], shared: tuple[str, ...]) -> ProposalContext:
        return ProposalContext(program="", editable=["train.py"], history=history, best=history[0],
                               shared_runs=shared)

    with Store.open(tmp_path) as store:
        first = {tag: [ran(store, tag, "baseline", "-", Status.KEEP, 1.5)] for tag in ("p-0", "p-1")}
    p0 = TuneAgent(tmp_path, "cpu", tag="p-0")
    for status, metric in ((Status.DISCARD, 1.61), (Status.CRASH, None), (Status.DISCARD, 1.52)):
        description = p0.propose(trees["p-0"], in_context(first["p-0"], ())).description
        with Store.open(tmp_path) as store:
            first["p-0"].append(ran(store, "p-0", description, "tune", status, metric))
        (trees["p-0"] / "train.py").write_text(TEMPLATE.read_text())
    p0.propose(trees["p-0"], in_context(first["p-0"], ()))  # tells the last result; one trial left running
    theirs = [t for t in p0.study("p-0").trials if t.state == TrialState.COMPLETE]
    assert {t.value for t in theirs} >= {1.61, 1.52}

    p1 = TuneAgent(tmp_path, "cpu", tag="p-1")
    moved = p1.propose(trees["p-1"], in_context(first["p-1"], ("p-0", "absent"))).description
    copies = [t for t in p1.study("p-1").trials if "from_run" in t.user_attrs]
    assert [(t.user_attrs["from_trial"], t.params, t.value) for t in copies] == \
        [(t.number, t.params, t.value) for t in theirs]  # every completed trial, no failed or running one
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["from_run"] == "p-0" for t in copies)
    assert p1.learn_from(p1.study("p-1"), ("p-0",)) == 0  # taken in once
    with Store.open(tmp_path) as store:
        first["p-1"].append(ran(store, "p-1", moved, "tune", Status.DISCARD, 1.7))
    (trees["p-1"] / "train.py").write_text(TEMPLATE.read_text())
    p1.propose(trees["p-1"], in_context(first["p-1"], ("p-0",)))  # tells its own trial 1.7
    # p-0 learns p-1's own trials but not the copies of its own
    (trees["p-0"] / "train.py").write_text(TEMPLATE.read_text())
    p0.propose(trees["p-0"], in_context(first["p-0"], ("p-1",)))
    own_of_p1 = [t for t in p1.study("p-1").trials if t.state == TrialState.COMPLETE and "from_run" not in t.user_attrs]
    back = [t for t in p0.study("p-0").trials if t.user_attrs.get("from_run") == "p-1"]
    assert [t.user_attrs["from_trial"] for t in back] == [t.number for t in own_of_p1]
    assert 1.7 in [t.value for t in back] and len(back) < len(p1.study("p-1").trials)
    # without shared runs nothing is taken in
    alone = TuneAgent(tmp_path, "cpu", tag="solo")
    (tmp_path / ".autoresearch" / "worktrees" / "solo").mkdir()
    (tmp_path / ".autoresearch" / "worktrees" / "solo" / "train.py").write_text(TEMPLATE.read_text())
    alone.propose(tmp_path / ".autoresearch" / "worktrees" / "solo", in_context(first["p-1"][:1], ()))
    assert not [t for t in alone.study("solo").trials if "from_run" in t.user_attrs]
    for agent in (p0, p1, alone):
        agent.close()


def test_a_trial_is_told_its_result_as_soon_as_the_loop_decides_and_by_its_number(task):
    with Store.open(task):
        pass
    agent = TuneAgent(task, "cpu")
    baseline = run(Store.open(task), "baseline", "-", Status.KEEP, 1.8)
    proposal = agent.propose(worktree(task), context([baseline]))
    trial = proposal.notes["tune_trial"]
    with Store.open(task) as store:
        begun = store.begin(tag=TAG, parent_commit="0" * 40, commit="2" * 40, diff="", agent="tune", seed=0,
                            description="renamed by the loop: a fix's words, say")  # not what the trial holds
        decided = store.finish(begun.id, status=Status.DISCARD, metric=1.75, metrics={NOTES: dict(proposal.notes)})
    agent.observe(decided)  # told now, not at the next proposal
    (told,) = [t for t in agent.study(TAG).trials if t.number == trial]
    assert told.state == TrialState.COMPLETE and told.value == 1.75
    agent.observe(decided)  # told once: a second word changes nothing
    agent.close()
