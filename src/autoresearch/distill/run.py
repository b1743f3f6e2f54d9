"""`autoresearch distill`: a night of kept changes distilled into the few that matter (docs/distill.md).

1. The run's kept changes are read from its store records (`plan.kept_changes`), and the order they are
   tried in is recorded once (`removal_order`), so a resumed distillation tries them in the same order.
2. A loop on the line `<tag>-distill`, started at the run's best, with `DistillAgent` proposing one removal
   at a time. The line's baseline is the original best, run with the noise seeds; each removal is judged by
   the keep rule (the confirm rule, whatever the run used: it needs the noise), with its confirmation runs
   and machine-speed comparison. A tie within the noise (`keep.tie_z` standard errors) goes to the removal,
   whatever its line count: a removal kept means the change was worth nothing beyond the noise, and the
   next removals are measured without it (greedy: drop, re-measure).
3. The branch `autoresearch/<tag>-distilled`: the run's baseline and, one commit each, the changes that
   stayed, in their original order, each message with what it is worth (where a line was set by a
   superseded change and then by this one, the commit sets it to this one's value). Its code is the distill
   line's final best, which was measured; where the changes no longer give that code one by one, it is one
   commit of that code, and distill.md says so.
4. The final check (`plan.final_check`): the distilled code against the original best, both measured in
   the distill line; and distill.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch.config import TaskConfig
from autoresearch.data.prepare import Dataset
from autoresearch.decide.measured import current_runs
from autoresearch.distill import plan
from autoresearch.distill.agent import DistillAgent
from autoresearch.loop import Limits, Loop, branch_name
from autoresearch.report.noise import measured_noise
from autoresearch.report.summary import experiment_deltas
from autoresearch.run.seam import Runner
from autoresearch.store import Status, Store
from autoresearch.workspace import Workspace
from autoresearch.workspace.git import NothingToCommit

PLAN_KEY = "distill:{tag}"  # the store's state key of a tag's removal order


class DistillError(Exception):
    """A distillation that cannot start: the message names the problem and the fix."""


@dataclass(frozen=True)
class Distilled:
    results: list[plan.ChangeOutcome]
    check: plan.FinalCheck | None
    branch: str
    squashed: bool
    runs: int
    stopped: str  # why the distill loop stopped
    report: Path

    @property
    def finished(self) -> bool:
        return not any(r.why.startswith(("not tried", "being measured")) for r in self.results)


def distill(task_dir: Path, config: TaskConfig, dataset: Dataset | None, tag: str, *, resume: bool = False,
            budget: float | None = None, limits: Limits = Limits(), runner: Runner | None = None,
            on_event: Callable[[dict], None] = lambda _: None, out_dir: Path | None = None) -> Distilled:
    """Distil the run `tag` of `task_dir` (see the module's docstring); distill.md goes to `out_dir` (default:
    the task folder). Raises `DistillError` when there is nothing to distil, or `resume` does not match."""
    task_dir = Path(task_dir).resolve()
    line = tag + plan.DISTILL_SUFFIX
    workspace = Workspace.ensure(task_dir)
    started = workspace.branch_exists(branch_name(line))
    if started and not resume:
        raise DistillError(f"{tag} is being distilled already (branch {branch_name(line)}): continue with --resume")
    if resume and not started:
        raise DistillError(f"nothing to resume: {tag} has no distillation yet; start it without --resume")
    with Store.open(task_dir) as store:
        order, base, best = _plan(store, tag, config)
    if order:
        loop = Loop(task_dir, _distill_config(config), dataset, DistillAgent(order), tag=line, resume=resume,
                    budget=budget, limits=limits, runner=runner, on_event=on_event, start=best,
                    ties_to_candidate=True)
        try:
            stopped = loop.run()
        finally:
            loop.close()
    else:
        stopped = "no kept change to distil"
    with Store.open(task_dir) as store:
        history = store.experiments(line)
        results = plan.outcomes(order, history)
        check, final = _final_check(store, line, config) if history else (None, best)
        runs = sum(len(store.runs(e)) for e in history)
    target = branch_name(tag + plan.RESULT_SUFFIX)
    squashed = _write_branch(workspace, task_dir, target, base, final,
                             [r for r in sorted(results, key=lambda r: r.change.seq) if not r.dropped],
                             tag, config)
    report = Path(out_dir or task_dir) / "distill.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(plan.report_markdown(tag, results, check, metric=config.metric, runs=runs, branch=target,
                                           squashed=squashed), encoding="utf-8")
    return Distilled(results, check, target, squashed, runs, stopped, report)


def _plan(store: Store, tag: str, config: TaskConfig) -> tuple[list[plan.KeptChange], str, str]:
    """The removal order (recorded on the first call), the run's baseline commit and its best commit."""
    history = store.experiments(tag)
    best = store.incumbent(tag)
    if not history or best is None:
        raise DistillError(f"no run {tag!r} with a kept baseline in this folder: see `autoresearch status --all`")
    base = history[0].commit or history[0].parent_commit
    recorded = store.get_state(PLAN_KEY.format(tag=tag))
    if recorded is not None:
        return [plan.KeptChange.from_dict(c) for c in recorded["order"]], recorded["base"], recorded["best"]
    sign = 1.0 if config.metric.maximize else -1.0
    deltas = experiment_deltas(history, metric=config.metric)
    gains = [e.metrics["improvement"] if isinstance(e.metrics.get("improvement"), (int, float))
             else None if d is None else sign * d for e, d in zip(history, deltas, strict=True)]
    order = plan.removal_order(plan.kept_changes(history, gains))
    store.set_state(PLAN_KEY.format(tag=tag), {"order": [c.as_dict() for c in order], "base": base,
                                               "best": best.commit})
    return order, base, best.commit


def _distill_config(config: TaskConfig) -> TaskConfig:
    """The settings of the distill line: the run's, with the confirm rule (removals are judged against the
    noise, and a tie goes to the simpler code) and without sharing with other runs."""
    keep = dataclasses.replace(config.keep, rule="confirm")
    loop = dataclasses.replace(config.loop, adopt_from=[], exchange="", pipeline="off")
    return dataclasses.replace(config, keep=keep, loop=loop).validate()


def _final_check(store: Store, line: str, config: TaskConfig) -> tuple[plan.FinalCheck | None, str]:
    """The distilled code (the distill line's best) against the original best (its baseline), and the
    distilled code's commit."""
    history = store.experiments(line)
    original, final = history[0], store.incumbent(line)
    if final is None or original.status is not Status.KEEP:
        return None, original.commit
    if final.id == original.id:
        runs = current_runs(store, original)
        mean = sum(runs) / len(runs)
        return plan.FinalCheck(mean, mean, 0.0, 0.0, 0.0, True, unchanged=True), final.commit
    keep = config.keep.thresholds()
    check = plan.final_check(current_runs(store, original), current_runs(store, final), measured_noise(store, line),
                             maximize=config.metric.maximize, thresholds=keep)
    return check, final.commit


def _write_branch(workspace: Workspace, task_dir: Path, branch: str, base: str, final: str,
                  kept: list[plan.ChangeOutcome], tag: str, config: TaskConfig) -> bool:
    """(Re)write `branch`: `base`, then each of `kept` as one commit, ending at the code of `final`. Returns
    True when the changes did not apply one by one and the branch is one commit of `final`'s code."""
    scratch = task_dir / ".autoresearch" / "worktrees" / (branch.replace("/", "-") + "-build")
    workspace.remove_worktree(scratch)
    workspace.reset_branch(branch, base)
    tree = workspace.open_worktree(scratch, branch)
    try:
        for outcome in kept:  # a line a superseded change set first takes the value its successor gives it
            if tree.apply_change(outcome.change.commit, prefer_change=True):
                break
            try:
                tree.commit(plan.commit_message(outcome, tag, config.metric))
            except NothingToCommit:
                continue
        else:
            if workspace.tree_of(tree.head()) == workspace.tree_of(final):
                return False
        tree.reset_hard(base)
        tree.restore_files(final)
        message = f"The changes of {tag} that matter, distilled\n\n" + "\n".join(
            plan.commit_message(o, tag, config.metric) for o in kept)
        try:
            tree.commit(message)
        except NothingToCommit:  # every change dropped: the baseline's code is the result
            return False
        return True
    finally:
        workspace.remove_worktree(scratch)
