"""Code size and complexity as a tracked quantity, and its price (`[keep] complexity_cost`): the pure measure
(decide/complexity.py), the diff's code lines, the keep rule with a price, and the figures where they are
shown (status --json, report.md, the agent's prompt). The loop runs in-process (loopkit, FakeRunner)."""

from __future__ import annotations

import difflib

import pytest
from loopkit import code_text, fake_loop, loss_of, make_task, proposals, settings

from autoresearch.agents.prompt import build_prompt
from autoresearch.agents.replay import ReplayAgent
from autoresearch.decide.complexity import (
    Complexity,
    changed_code_lines,
    code_lines,
    measure_code,
    net_added_lines,
    python_figures,
    recorded,
)
from autoresearch.decide.rule import Case, Confirm, Strict
from autoresearch.decide.stats import CONFIRM, DISCARD, KEEP, Noise, judge
from autoresearch.report import status_data
from autoresearch.report.markdown import report_markdown
from autoresearch.store import Run, Status

SOURCE = '''"""A module."""
import os

# a comment, and a blank line after it

def f(x):
    # inside
    if x and os.sep or not x:  # 1 (if) + 2 (extra operands of and/or)
        return [y for y in range(x) if y]  # 1 (for) + 1 (its if)
    elif x > 3:  # 1
        return 1 if x else 2  # 1 (ternary)
    for i in range(3):  # 1, and 1 for its else
        pass
    else:
        pass
    while False:  # 1
        break
    try:
        pass
    except ValueError:  # 1
        pass
    except OSError:  # 1
        pass
    assert x  # 1
    with open(x):  # nothing
        pass
    return lambda z: z or x  # the lambda is no function; its `or` is 1


async def g():
    async for _ in h():  # 1
        pass


class C:
    def method(self, v):
        match v:
            case 1:  # 1
                pass
            case [a] if a:  # 1, and 1 for the guard
                pass
            case _:  # the catch-all: nothing
                pass
'''


def test_functions_and_branches_are_counted_the_mccabe_way():
    functions, total = python_figures(SOURCE)
    assert functions == 3  # f, g, C.method: def and async def, not the lambda
    # module 1 + each function 1 + f's 14 decisions + g's 1 + method's 3
    assert total == 1 + 3 + 14 + 1 + 3
    assert python_figures("x = 1\n") == (0, 1)  # the module level alone
    assert python_figures("def f():\n    return 1\n") == (1, 2)


def test_blank_and_comment_lines_are_not_code():
    assert code_lines("# only a comment\n\n   \n    # indented comment\nx = 1  # trailing\n") == 1
    assert code_lines('s = """\n\ntext\n"""\n') == 3  # a string is code to read; its blank line is not
    assert code_lines("# a heading\n\nlr: 0.1\n", python=False) == 2  # not Python: every non-blank line


def test_measure_code_sums_files_and_says_when_complexity_is_unknown():
    files = {"train.py": SOURCE.encode(), "model.py": "def m():\n    return 1\n", "notes.md": "# Notes\n\ntext\n",
             "weights.bin": b"\0\1\2"}
    code = measure_code(files)
    assert code.lines == code_lines(SOURCE) + 2 + 2 and code.functions == 4
    assert code.complexity == python_figures(SOURCE)[1] + 2 and code.unparsed == ()
    broken = measure_code({"train.py": "def f(:\n    pass\n", "ok.py": "x = 1\n"})
    assert broken == Complexity(lines=3, functions=None, complexity=None, unparsed=("train.py",))
    assert broken.metrics() == {"code_lines": 3, "code_unparsed": ["train.py"]}  # unknown figures left out
    assert recorded(code.metrics()) == code and recorded({}) is None


def _diff(before: str, after: str, path: str = "train.py") -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{path}", f"b/{path}"))


def test_the_diff_counts_code_lines_as_the_files_do():
    before = "x = 1\n# note\ny = 2\n"
    after = "x = 1\n\n# a new comment\n-- y\nz = 3\nw = 4\n"  # `-- y`, added: no header
    added, removed = changed_code_lines(_diff(before, after))
    assert (added, removed) == (3, 1)  # `-- y`, z, w added; y removed; the comments and blank line not counted
    assert net_added_lines(_diff(before, after)) == code_lines(after) - code_lines(before)
    removed_header = _diff("a = 1\n--- b\n", "a = 1\n")  # a removed line that reads like a header
    assert changed_code_lines(removed_header) == (0, 1)
    assert changed_code_lines(_diff("", "# heading\n", "notes.md")) == (1, 0)  # not Python: `#` is a line
    assert changed_code_lines("") == (0, 0) and net_added_lines("Binary files a/x and b/x differ\n") == 0
    assert changed_code_lines("+x = 1/0\n+# why\n-y = 2\n") == (1, 1)  # no hunk headers: read line by line


NOISE = Noise(0.01, 10)  # standard error of a first run against 3 best runs: about 0.0122


def test_a_gain_that_clears_the_noise_but_not_the_price_is_discarded():
    best = [1.0, 1.0, 1.0]
    free = judge([0.95], best, NOISE)
    assert free.action == KEEP and free.price == 0 and "price" not in free.reason
    priced = judge([0.95], best, NOISE, price=0.045)  # 0.05 better, 0.005 after the price: within the noise
    assert priced.action == DISCARD and priced.improvement == pytest.approx(0.05)
    assert priced.z == pytest.approx((0.05 - 0.045) / priced.stderr) and "raised the bar" in priced.reason
    assert judge([0.95], best, NOISE, price=0.02).action == CONFIRM  # 0.03 after the price: run again
    assert judge([0.95], best, NOISE, price=0.1).reason.startswith("-")  # below the best, once priced
    maximized = judge([1.05], best, NOISE, maximize=True, price=0.045)
    assert maximized.action == DISCARD and maximized.improvement == pytest.approx(0.05)


def test_a_net_removal_earns_credit():
    best = [1.0, 1.0, 1.0]
    slightly_worse = [1.02]
    assert judge(slightly_worse, best, NOISE).action == DISCARD
    credited = judge(slightly_worse, best, NOISE, price=-0.06)  # 60 lines gone at 0.001 a line
    assert credited.action == KEEP and credited.z >= 3 and "lowered the bar" in credited.reason
    unknown = Noise(0.0, 0)
    assert judge([1.001], [1.0], unknown, price=-0.01).action == CONFIRM  # better once credited
    assert judge([0.999], [1.0], unknown, price=0.01).action == DISCARD


def test_the_rules_price_a_case_by_its_added_lines():
    best = tuple(Run(1.0, s) for s in range(3))
    history = ((Run(1.01, 0), Run(0.99, 1), Run(1.0, 2)),) * 5  # sigma 0.01 on 10 degrees of freedom
    clear, bloated = Case((Run(0.95),), best, history), Case((Run(0.95),), best, history, added_lines=60)
    assert Confirm().next(clear).keep and Confirm(complexity_cost=0.001).next(clear).keep  # no lines: no price
    assert not Confirm(complexity_cost=0.001).next(bloated).keep
    assert Strict().next(bloated).keep
    strict = Strict(complexity_cost=0.001)
    assert not strict.next(bloated).keep and "price of its code" in strict.next(bloated).reason
    assert strict.next(Case((Run(1.01),), best, added_lines=-20)).keep  # 0.01 worse, 0.02 of credit
    assert Confirm(complexity_cost=0.001).price(bloated) == pytest.approx(0.06)


# ---------------------------------------------------------------------- through the loop

BLOAT = "".join(f"helper_{i} = {i}\n" for i in range(40)) + "".join(f"# note {i}\n" for i in range(30))
BUMPS = {0: 0.0, 1: 0.002, 2: -0.002}  # each seed's deviation: the baseline's three runs give sigma 0.002


def _noisy(request) -> float:
    return loss_of(code_text(request)) + BUMPS.get(request.seed, 0.001)


def _run(task, config):
    """The baseline, then a change 0.03 better that adds 40 code lines and 30 comments."""
    loop, _ = fake_loop(task, _noisy, ReplayAgent(proposals(("bloated", "LOSS = 0.97\n" + BLOAT))), config=config)
    loop.run()
    return loop


@pytest.mark.parametrize("rule", ["confirm", "strict"])
def test_a_bloated_change_with_a_small_gain_is_discarded_with_the_price_and_kept_without(tmp_path, rule):
    free = _run(make_task(tmp_path, "free"), settings(keep={"rule": rule}))
    priced = _run(make_task(tmp_path, "priced"), settings(keep={"rule": rule, "complexity_cost": 0.001}))
    try:
        base, kept = free.store.experiments(free.tag)
        assert kept.status is Status.KEEP
        base, dropped = priced.store.experiments(priced.tag)
        assert dropped.status is Status.DISCARD  # 0.03 better, but 40 lines at 0.001 ask for 0.04 more
        assert base.metrics["code_lines"] == 1 and base.metrics["code_functions"] == 0
        assert base.metrics["code_complexity"] == 1
        assert dropped.metrics["code_lines"] == 41 and dropped.metrics["code_complexity"] == 1
        if rule == "confirm":
            assert "raised the bar" in dropped.metrics["verdict"] and "price" not in kept.metrics["verdict"]
    finally:
        free.close()
        priced.close()


def test_the_figures_are_shown_in_status_the_report_and_the_prompt(tmp_path):
    task = make_task(tmp_path, train_py="LOSS = 1.0\n\ndef unused(x):\n    return x\n")
    changes = proposals(("grow", "LOSS = 0.9\n\ndef unused(x):\n    if x:\n        return x\n    return 0\n"),
                        ("back", "LOSS = 1.0\n\ndef unused(x):\n    return x\n"))
    loop, _ = fake_loop(task, agent=ReplayAgent(changes))
    try:
        loop.run()
        base, grown, repeat = loop.store.experiments(loop.tag)
        assert grown.status is Status.KEEP and repeat.status is Status.REJECTED  # the baseline's code again
        assert repeat.metrics["same_code_as"] == 0 and repeat.metrics["code_lines"] == 3  # measured, not run
        rows = status_data(loop.store, loop.tag)["experiments"]
        assert (rows[0]["code_lines"], rows[0]["code_functions"], rows[0]["code_complexity"]) == (3, 1, 2)
        assert (rows[1]["code_lines"], rows[1]["code_complexity"]) == (5, 3)
        assert (rows[1]["code_lines_added"], rows[1]["code_lines_removed"]) == (4, 2)
        assert rows[0]["code_lines_added"] is None  # the baseline has no change
        report = report_markdown(loop.tag, loop.store.experiments(loop.tag))
        assert ("- **Code:** baseline 3 lines, 1 function, complexity 2 -> best 5 lines, 1 function, complexity 3 "
                "(+2 lines, +0 functions, complexity +1)") in report
        assert "| lines | description |" in report and "| +4/-2, complexity +1 | grow |" in report
        prompt = build_prompt(loop.proposer.context())
        assert ("Code of the best: 5 lines, 1 function, complexity 3 (+2 lines, +0 functions, complexity +1 "
                "since the baseline).") in prompt
        assert "code lines +/- (complexity vs best then)" in prompt
        assert "| 1 | keep | 0.900000 | -0.100000 | +4/-2, complexity +1 | grow |" in prompt
        assert "| 0 | keep | 1.000000 | - | - | baseline |" in prompt
    finally:
        loop.close()


def test_status_shows_the_code_of_the_best_under_its_table(tmp_path):
    from rich.console import Console

    from autoresearch.report import status_table

    task = make_task(tmp_path)
    loop, _ = fake_loop(task, agent=ReplayAgent(proposals("LOSS = 0.5\nA = 1\n")))
    try:
        loop.run()
        console = Console(record=True, width=100, color_system=None)
        console.print(status_table(loop.store, loop.tag))
        text = console.export_text()
        assert "code: 2 lines, 0 functions, complexity 1 (+1 line, +0 functions, complexity +0 since the " \
               "baseline)" in " ".join(text.split())
    finally:
        loop.close()
