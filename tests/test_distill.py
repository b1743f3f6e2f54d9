"""`autoresearch distill`: the decisions as pure functions, and end to end through the real CLI on a task of
its own command whose changes have known effects: one that helps, one worth nothing that the strict rule kept,
and one that helps only together with the first."""

from __future__ import annotations

import json
import math

from conftest import cli, generic_task_folder, git

from autoresearch.config import MetricConfig
from autoresearch.decide.stats import Noise
from autoresearch.distill import plan
from autoresearch.store import Status, Store

# score: RATE near 0.3 is best; BONUS adds 0.05, but only at RATE 0.3; SPARE adds 0.0001 (nothing, against a
# run-to-run noise of about 0.004 from the seed).
SOLVE_PY = """\
import os
SEED = int(os.environ["AUTORESEARCH_SEED"])
RATE = 0.1
# bonus
# spare
BONUS = globals().get("BONUS", 0)
SPARE = globals().get("SPARE", 0.0)
score = 1.0 - (RATE - 0.3) ** 2 + (0.05 if BONUS and RATE == 0.3 else 0.0) + SPARE + 0.002 * ((SEED * 7919) % 5 - 2)
print(f"score: {score:.6f}")
"""
CHANGES = [
    {"description": "RATE 0.1 -> 0.3", "edits": [{"file": "solve.py", "search": "RATE = 0.1", "replace": "RATE = 0.3"}]},
    {"description": "a spare constant", "edits": [{"file": "solve.py", "search": "# spare\n",
                                                   "replace": "# spare\nSPARE = 0.0001\n"}]},
    {"description": "BONUS on", "edits": [{"file": "solve.py", "search": "# bonus\n", "replace": "# bonus\nBONUS = 1\n"}]},
]


def _task(tmp_path):
    folder = generic_task_folder(tmp_path, SOLVE_PY)
    toml = (folder / "autoresearch.toml").read_text().replace('rule = "confirm"', 'rule = "strict"')
    (folder / "autoresearch.toml").write_text(toml)  # every gain kept at once: the spare constant too
    patches = tmp_path / "changes.json"
    patches.write_text(json.dumps(CHANGES))
    cli("run", "--agent", f"replay:{patches}", "--tag", "night", cwd=folder)
    return folder


def test_distill_keeps_the_changes_that_matter_and_drops_the_one_worth_nothing(tmp_path):
    task = _task(tmp_path)
    with Store.open(task) as store:
        night = store.experiments("night")
    assert [e.status for e in night] == [Status.KEEP] * 4  # the strict rule kept all three

    first = cli("distill", "--tag", "night", "--max-runs", "4", cwd=task)  # the baseline's seeds, one removal
    assert "continue with `autoresearch distill --tag night --resume`" in first.stdout
    done = cli("distill", "--tag", "night", "--resume", cwd=task).stdout
    assert "#2 a spare constant:" in done and "worth nothing beyond the noise: dropped" in done
    assert "not worse beyond the noise" in done

    with Store.open(task) as store:
        removals = [e for e in store.experiments("night-distill") if e.seq > 0]
    tried = [(e.description, e.status) for e in removals]
    assert tried == [("without #2: a spare constant", Status.KEEP),  # the least gain at keep time first
                     ("without #1: RATE 0.1 -> 0.3", Status.DISCARD),
                     ("without #3: BONUS on", Status.DISCARD)]
    # removing #1 costs its own gain and the bonus that needs it; removing #3 costs the bonus
    worth = {e.description: -e.metrics["improvement"] for e in removals}
    assert worth["without #1: RATE 0.1 -> 0.3"] > worth["without #3: BONUS on"] > 0.03

    branch = "autoresearch/night-distilled"
    log = git(task, "log", "--format=%B%x00", f"{night[0].commit}..{branch}").split("\0")
    messages = [m.strip() for m in log if m.strip()]
    assert [m.splitlines()[0] for m in messages] == ["BONUS on", "RATE 0.1 -> 0.3"]  # newest first
    assert "From experiment #3 of night" in messages[0] and "Effect: score +0.05" in messages[0]
    code = git(task, "show", f"{branch}:solve.py")
    assert "RATE = 0.3" in code and "BONUS = 1" in code and "SPARE = 0.0001" not in code

    report = (task / "distill.md").read_text()
    assert "3 kept changes; 2 matter, 1 dropped as worth nothing, 0 superseded" in report
    assert "Dropped: #2 (a spare constant)." in report
    assert "| 1 | RATE 0.1 -&gt; 0.3 | +0.040000 | +0.09" in report  # with it: its own gain and the bonus

    # the result is what was measured: the distill line's final best, within the noise of the original best
    with Store.open(task) as store:
        final = store.incumbent("night-distill")
    assert git(task, "rev-parse", f"{branch}^{{tree}}") == git(task, "rev-parse", f"{final.commit}^{{tree}}")


def test_a_change_whose_lines_a_later_one_rewrote_is_superseded_and_folded_into_it(tmp_path):
    folder = generic_task_folder(tmp_path, SOLVE_PY)
    steps = [{"description": "RATE 0.2", "edits": [{"file": "solve.py", "search": "RATE = 0.1", "replace": "RATE = 0.2"}]},
             {"description": "RATE 0.3", "edits": [{"file": "solve.py", "search": "RATE = 0.2", "replace": "RATE = 0.3"}]}]
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    toml = (folder / "autoresearch.toml").read_text().replace('rule = "confirm"', 'rule = "strict"')
    (folder / "autoresearch.toml").write_text(toml)
    cli("run", "--agent", f"replay:{tmp_path / 'steps.json'}", "--tag", "n", cwd=folder)
    done = " ".join(cli("distill", "--tag", "n", cwd=folder).stdout.split())
    assert "#1 RATE 0.2: superseded: every line it changed was changed again later" in done  # by #2
    assert "#2 RATE 0.3:" in done and "worse without it: kept" in done
    assert "(one commit" not in done  # the survivor applies on its own: RATE 0.1 -> 0.3 in one commit
    log = git(folder, "log", "--format=%s", "autoresearch/n-distilled").splitlines()
    assert log[0] == "RATE 0.3" and "RATE 0.2" not in log
    assert "RATE = 0.3" in git(folder, "show", "autoresearch/n-distilled:solve.py")
    assert "1 superseded by later ones" in (folder / "distill.md").read_text()
    again = cli("distill", "--tag", "n", cwd=folder, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr


def test_a_tie_goes_to_the_removal_even_when_it_only_changes_a_value_back(tmp_path):
    folder = generic_task_folder(tmp_path, SOLVE_PY.replace('SPARE = globals().get("SPARE", 0.0)', "SPARE = 0.0"))
    toml = (folder / "autoresearch.toml").read_text().replace('rule = "confirm"', 'rule = "strict"')
    (folder / "autoresearch.toml").write_text(toml)
    steps = [{"description": "RATE 0.3", "edits": [{"file": "solve.py", "search": "RATE = 0.1", "replace": "RATE = 0.3"}]},
             {"description": "SPARE 0.0001", "edits": [{"file": "solve.py", "search": "SPARE = 0.0",
                                                       "replace": "SPARE = 0.0001"}]}]  # a value: one line for one
    (tmp_path / "steps.json").write_text(json.dumps(steps))
    cli("run", "--agent", f"replay:{tmp_path / 'steps.json'}", "--tag", "v", cwd=folder)
    done = " ".join(cli("distill", "--tag", "v", cwd=folder).stdout.split())
    assert "#2 SPARE 0.0001:" in done and "worth nothing beyond the noise: dropped" in done
    assert "SPARE = 0.0\n" in git(folder, "show", "autoresearch/v-distilled:solve.py")


# ------------------------------------------------------------------------------------------- pure


def _change(seq: int, gain: float | None) -> plan.KeptChange:
    return plan.KeptChange(seq=seq, commit=f"{seq:040d}", description=f"change {seq}", gain_at_keep=gain)


def test_removals_are_tried_least_valuable_first():
    order = plan.removal_order([_change(1, 0.05), _change(2, 0.001), _change(3, None), _change(4, 0.001)])
    assert [c.seq for c in order] == [2, 4, 1, 3]


def test_the_final_check_allows_the_noise_and_no_more():
    noise = Noise(0.01, 30)
    assert plan.final_check([1.0, 1.0], [1.005, 1.0], noise, maximize=False).passed
    worse = plan.final_check([1.0, 1.0], [1.05, 1.05], noise, maximize=False)
    assert not worse.passed and worse.z < -2 and "WORSE" in worse.text(MetricConfig())
    assert plan.final_check([0.5], [0.55], noise, maximize=True).passed  # better is fine, whichever direction
    unknown = plan.final_check([1.0], [1.0], Noise(0.0, 0), maximize=False)
    assert unknown.passed and math.isnan(unknown.stderr)


def test_a_commit_message_says_what_the_change_is_worth_and_where_it_came_from():
    outcome = plan.ChangeOutcome(_change(7, 0.02), False, "worse without it: kept", worth=0.015, stderr=0.004)
    message = plan.commit_message(outcome, "night", MetricConfig())
    assert message.splitlines()[0] == "change 7"
    assert "Effect: val_bpb -0.015000 ± 0.004000 with it" in message and "When kept: -0.020000" in message
    assert "From experiment #7 of night (commit 000000000000)." in message


def test_a_change_next_to_lines_tuned_later_is_still_removed_and_measured(tmp_path):
    folder = generic_task_folder(tmp_path, "A = 1\nB = 2\nprint(f'score: {A + B:.6f}')\n")
    toml = (folder / "autoresearch.toml").read_text().replace('rule = "confirm"', 'rule = "strict"')
    (folder / "autoresearch.toml").write_text(toml)
    steps = [{"description": "A 2", "edits": [{"file": "solve.py", "search": "A = 1", "replace": "A = 2"}]},
             {"description": "B 3", "edits": [{"file": "solve.py", "search": "B = 2", "replace": "B = 3"}]}]
    (tmp_path / "steps.json").write_text(json.dumps(steps))  # B's line is next to A's: a 3-way revert conflicts
    cli("run", "--agent", f"replay:{tmp_path / 'steps.json'}", "--tag", "ab", cwd=folder)
    done = " ".join(cli("distill", "--tag", "ab", cwd=folder).stdout.split())
    assert "#1 A 2: worth +1.000000" in done and "#2 B 3: worth +1.000000" in done and "superseded" not in done
    assert "(one commit" not in done
    assert git(folder, "log", "--format=%s", "autoresearch/ab-distilled").splitlines()[:2] == ["B 3", "A 2"]
