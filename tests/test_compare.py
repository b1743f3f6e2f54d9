"""Comparing runs: the figures and sentences on made-up runs, then `autoresearch compare` on real runs of a
fast noisy task."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from conftest import cli, git
from test_keep_loop import make_task

from autoresearch.config import MetricConfig
from autoresearch.report.compare import Contender, best_at, by_agent, findings, ranked, run_gap, searches
from autoresearch.report.summary import summarize

LOSS = MetricConfig(name="loss")


def contender(tag: str, agent: str, best_runs: tuple[float, ...], *, sigma: float | None = 0.01,
              curve: tuple = ((1, 0.1, 1.0), (5, 0.5, 0.95), (10, 1.0, 0.9)), budget: float | None = 300.0,
              machine: float | None = 100.0) -> Contender:
    return Contender(tag=tag, agents=(agent,), summary=summarize(tag, []), curve=curve, best_runs=best_runs,
                     sigma=sigma, budget=budget, speed=machine)


def test_the_best_so_far_for_equal_effort():
    curve = ((1, 0.1, 1.0), (5, 0.5, 0.95), (10, 1.0, 0.9))
    assert best_at(curve, experiments=4) == 1.0 and best_at(curve, experiments=5) == 0.95
    assert best_at(curve, hours=0.99) == 0.95 and best_at(curve, experiments=100) == 0.9
    assert best_at(curve, experiments=0) is None  # nothing kept yet


def test_two_runs_are_compared_against_the_noise_each_measured():
    a, b = contender("a", "claude", (0.90, 0.92)), contender("b", "tune", (0.95,))
    gap = run_gap(a, b, LOSS)
    assert gap.value == pytest.approx(0.04) and gap.stderr == pytest.approx(math.sqrt(0.01**2 / 2 + 0.01**2))
    assert "a is better than b by 0.040000 loss ± 0.012247 (3.3 standard errors): more than the noise" \
        in gap.sentence(LOSS)
    close = run_gap(a, contender("c", "tune", (0.915,)), LOSS)
    assert "within the noise" in close.sentence(LOSS)
    unknown = run_gap(a, contender("d", "tune", (0.95,), sigma=None), LOSS)
    assert unknown.stderr is None and "cannot be told from luck" in unknown.sentence(LOSS)
    exact = run_gap(contender("e", "tune", (0.90,), sigma=0.0), contender("f", "tune", (0.95,), sigma=0.0), LOSS)
    assert exact.sentence(LOSS).endswith("by 0.050000 loss: the runs show no noise at all, so it is not luck")
    # the direction of the metric decides what is better
    accuracy = MetricConfig(name="acc", direction="maximize")
    assert [c.tag for c in ranked([a, b], accuracy)] == ["b", "a"] and run_gap(b, a, accuracy).value > 0


def test_findings_rank_compare_for_equal_effort_and_say_what_is_unlike():
    short = ((1, 0.1, 1.0), (4, 0.4, 0.97))
    runs = [contender("claude-1", "claude", (0.90,), budget=300.0, machine=100.0),
            contender("tune-1", "tune", (0.94,), curve=short, budget=60.0, machine=200.0),
            contender("empty", "tune", (), curve=())]
    lines = findings(runs, LOSS)
    assert lines[0].startswith("Ranking by the best as measured: claude-1 (claude) 0.900000; tune-1 (tune)")
    assert "claude-1 is better than tune-1 by 0.040000" in lines[1]
    assert "after 4 experiments each (the fewest any run made): claude-1 1.000000, tune-1 0.970000" in lines[2]
    assert "After 24m 00s each: claude-1 1.000000, tune-1 0.970000" in lines[3]
    assert any("one run here" in line and "--tag tune-2" in line for line in lines)
    assert any("different budgets (claude-1 300 s, tune-1 60 s" in line for line in lines)
    assert any("different speeds" in line for line in lines)
    assert not any("program.md" in line for line in lines)  # no run recorded its program.md
    steered = [Contender(tag=t, agents=("tune",), summary=summarize(t, []), curve=((1, 0.1, 1.0),), best_runs=(1.0,),
                         programs=p) for t, p in (("a", ("p1",)), ("b", ("p1", "p2")))]
    assert "steered by different program.md texts (a p1; b p1, p2)" in "\n".join(findings(steered, LOSS))
    assert findings([contender("x", "tune", (), curve=())], LOSS) == ["No run has a best yet."]


def test_agents_with_several_runs_are_compared_over_their_runs():
    runs = [contender("c1", "claude", (0.90,)), contender("c2", "claude", (0.92,)),
            contender("t1", "tune", (0.95,)), contender("t2", "tune", (0.97,)),
            Contender(tag="new", agents=(), summary=summarize("new", []), curve=((1, 0.1, 1.0),), best_runs=(1.0,))]
    claude, tune = by_agent(runs, LOSS)  # a run with only its baseline credits no agent
    assert (claude.agent, claude.tags, claude.mean) == ("claude", ("c1", "c2"), pytest.approx(0.91))
    assert claude.sd == pytest.approx(math.sqrt(2) * 0.01)
    text = "\n".join(findings(runs, LOSS))
    assert "Agent claude over 2 runs (c1, c2): mean best 0.910000 ± 0.014142" in text
    # Welch: the spread over each agent's runs, not the noise of single runs
    assert "claude is better than tune (mean best over its runs) by 0.050000 loss ± 0.014142 (3.5 standard " \
           "errors): more than the noise" in text


def test_runs_that_share_their_bests_count_as_one_search_of_their_agent():
    def shared(tag, agent, best, adopted=()):
        return dataclasses.replace(contender(tag, agent, (best,)), adopted=adopted)

    # two fleets of claude (run --parallel: each loop takes up the others' bests) and one of tune, beside a
    # tune run of its own; a run taken up from outside the runs compared joins nothing
    runs = [shared("p-0", "claude", 0.90, ("p-1",)), shared("p-1", "claude", 0.905, ("p-0",)),
            shared("q-0", "claude", 0.93), shared("q-1", "claude", 0.92, ("q-0",)), shared("q-2", "claude", 0.94, ("q-1",)),
            shared("t-0", "tune", 0.95, ("elsewhere",)), shared("t-1", "tune", 0.97)]
    assert [[c.tag for c in s] for s in searches(runs)] == [["p-0", "p-1"], ["q-0", "q-1", "q-2"], ["t-0"], ["t-1"]]
    claude, tune = by_agent(runs, LOSS)
    # each search gives the best any of its loops reached, once: not 5 draws of claude, but 2
    assert claude.tags == ("p-0+p-1", "q-0+q-1+q-2") and claude.bests == (0.90, 0.92) and claude.unit == "searches"
    assert tune.tags == ("t-0", "t-1") and tune.unit == "runs"
    text = "\n".join(findings(runs, LOSS))
    assert "Agent claude over 2 searches (p-0+p-1, q-0+q-1+q-2): mean best 0.910000 ± 0.014142" in text
    assert "p-0+p-1, q-0+q-1+q-2 count as one search each among the agents" in text
    # a search of runs of different agents counts for both together
    mixed = by_agent([shared("a", "claude", 0.9), shared("b", "tune", 0.95, ("a",))], LOSS)
    assert [(r.agent, r.tags, r.bests) for r in mixed] == [("claude & tune", ("a+b",), (0.9,))]


TUNABLE_PY = """import os, random
RATE = 0.5
noise = random.Random(int(os.environ["AUTORESEARCH_SEED"]) * 7919 + 11).gauss(0.0, 0.01)
print(f"loss: {1.0 + (RATE - 0.3) ** 2 + noise:.6f}")
"""


def test_compare_command_on_real_runs(tmp_path):
    task = make_task(tmp_path)
    (task / "loss.py").write_text(TUNABLE_PY)  # a constant for tune to move
    git(task, "commit", "-qam", "a tunable loss")
    for tag, agent in (("tpe", "tune"), ("rnd", "tune:random")):
        cli("run", "--agent", agent, "--tag", tag, "--max-experiments", "4", cwd=task)
    shown = cli("compare", cwd=task).stdout
    assert "Ranking by the best as measured" in shown and "after 4 experiments each" in shown
    assert (task / "compare.png").stat().st_size > 10_000
    md = (task / "compare.md").read_text()
    assert "![best so far](compare.png)" in md and "| tpe | tune | 4 |" in md and "| rnd | tune:random | 4 |" in md
    data = json.loads(cli("compare", "tpe", "rnd", "--json", cwd=task).stdout)
    assert {r["tag"] for r in data["runs"]} == {"tpe", "rnd"} and data["metric_name"] == "loss"
    assert all(r["experiments"] == 4 and r["best"] is not None and r["noise_sigma"] > 0 for r in data["runs"])
    assert data["findings"][0].startswith("Ranking")
    wrong = cli("compare", "tpe", "nope", cwd=task, check=False)
    assert wrong.returncode == 2 and "no run with tag 'nope'" in wrong.stderr and "tpe, rnd" in wrong.stderr
