"""The research loop: ask the agent -> run -> decide -> record, until a limit or a stop.

The parts: `Proposer` asks and commits (propose.py), `Measurer` runs through a `Runner` and records what the
keep rule decides (measure.py), `Adopter` shares bests between lines (adopt.py), health.py keeps an
unattended night going. Git lives in workspace/, records in store.py; this module opens a line, resumes
it, and turns the wheel.

Crash safety rests on an order of operations and a reconciliation on resume:

- a proposal is committed before its experiment is begun in the store, and the store is written
  before git is reset on a discard;
- the incumbent (the branch's best commit) is the latest KEEP experiment in the store;
- on resume, an experiment left RUNNING whose commit is the branch head is run again (nothing is
  lost); any other RUNNING one is finished as a crash; uncommitted edits are dropped; and a branch
  head that no RUNNING experiment owns is reset to the incumbent (a discard that was cut short, or a
  commit that never became an experiment).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch import protocol
from autoresearch.agents import Agent, AgentExhausted
from autoresearch.config import TaskConfig
from autoresearch.data.prepare import DataError, Dataset
from autoresearch.decide.rule import keep_rule
from autoresearch.decide.stats import Noise
from autoresearch.loop import health
from autoresearch.loop.adopt import Adopter
from autoresearch.loop.drafts import Drafter
from autoresearch.loop.line import BASELINE, Line, LoopError, branch_name
from autoresearch.loop.measure import Measurer
from autoresearch.loop.propose import Proposer
from autoresearch.report.summary import agent_usage
from autoresearch.run import diskguard
from autoresearch.run.executor import run_device
from autoresearch.run.seam import Runner
from autoresearch.runlock import RunLock, RunLockHeld, live_tags
from autoresearch.store import Experiment, Status, Store
from autoresearch.workspace import Workspace


@dataclass(frozen=True)
class Limits:
    max_experiments: int | None = None  # experiments in the tag, baseline included
    max_hours: float | None = None  # wall-clock hours of this invocation
    max_cost: float | None = None  # dollars the agent may spend in this tag (as agents report it)
    max_runs: int | None = None  # training runs in the tag: every run of every experiment, the best's re-runs too


def request_recalibration(store: Store, tag: str) -> int:
    """Ask the loop of `tag` to measure the best again (`keep.noise_seeds` more runs) before its next
    experiment, whether it runs now or is resumed later. Returns the number of requests so far."""
    return store.request_recalibration(tag)


def _unboxed_sessions(agent: Agent) -> list[str]:
    """The names of the coding agents in `agent` (itself, or the members of a rotation) that run outside the box."""
    from autoresearch.agents.command import SessionAgent
    from autoresearch.agents.rotation import Rotation

    members = list(agent.members.values()) if isinstance(agent, Rotation) else [agent]
    return [a.name for a in members if isinstance(a, SessionAgent) and a.unboxed]


class Loop:
    """One line of research, opened (or resumed) and run. `runner`: what trains (default: `LocalRunner`, this
    machine, in the sandbox); the loop closes it."""

    def __init__(self, task_dir: Path, config: TaskConfig, dataset: Dataset | None, agent: Agent, *, tag: str,
                 resume: bool = False, budget: float | None = None, limits: Limits = Limits(),
                 pipeline: bool = False, on_event: Callable[[dict], None] = lambda _: None,
                 runner: Runner | None = None, start: str | None = None, ties_to_candidate: bool = False) -> None:
        self.task_dir = task_dir.resolve()
        self.config, self.dataset, self.agent = config, dataset, agent
        self.tag, self.limits, self._on_event = tag, limits, on_event
        self.start = start  # the commit a new line starts from (None: the task's HEAD)
        self.ties_to_candidate = ties_to_candidate  # `Line.ties_to_candidate`
        self.workspace = Workspace.ensure(self.task_dir)
        self.store = Store.open(self.task_dir)
        branch = branch_name(tag)
        exists = self.workspace.branch_exists(branch)  # checks the tag, too
        try:
            self.lock = RunLock(self.task_dir, tag).acquire()  # held until close(): one loop per tag
        except RunLockHeld as err:
            self.store.close()
            raise LoopError(str(err)) from err
        try:
            self._open(branch, exists, resume, budget, pipeline, runner)
        except BaseException:
            if runner is not None:
                runner.close()
            self.lock.release()
            self.store.close()
            raise

    def _open(self, branch: str, exists: bool, resume: bool, budget: float | None, pipeline: bool,
              runner: Runner | None) -> None:
        tag, config, dataset, agent = self.tag, self.config, self.dataset, self.agent
        if exists and not resume:
            raise LoopError(f"tag {tag!r} already has a run (branch {branch}): continue it with --resume, "
                            "or start a new one with --tag NEW")
        if not exists:
            if resume:
                raise LoopError(f"nothing to resume: no branch {branch}; start it without --resume")
            self.workspace.create_branch(branch, self.start or self.workspace.head())
        self.worktree = self.workspace.open_worktree(self.task_dir / ".autoresearch" / "worktrees" / tag, branch)
        # A run started beside another live one (one per GPU, say) gets a table of its own, so they never mix.
        alongside = [t for t in live_tags(self.task_dir) if t != tag]
        self.results_path = self.task_dir / (f"results-{tag.replace('/', '-')}.tsv" if alongside else "results.tsv")
        if dataset is not None:  # every byte against the manifest once; each run then keeps it unchanged
            try:
                dataset.verify(full=True)
            except DataError as err:
                raise LoopError(str(err)) from err
        self.budget = self._run_budget(resume, budget)
        self.line = Line(tag=tag, task_dir=self.task_dir, config=config, store=self.store, worktree=self.worktree,
                         rule=keep_rule(config.keep, maximize=config.metric.maximize), budget=self.budget,
                         results_path=self.results_path, on_event=self._on_event,
                         ties_to_candidate=self.ties_to_candidate)
        self._reconcile()
        # what this line's metric is measured under (on a cluster: the nodes' device, not this machine's)
        self.protocol = protocol.of(config, self.budget, run_device(config))
        self._record_protocol(resume)
        # the budget for `status`'s progress bar, the tolerance for the figures wherever they are shown
        self.store.set_line(tag, budget_seconds=self.budget, speed_tolerance=config.keep.speed_tolerance)
        if hasattr(agent, "lineup"):
            self._record_lineup(agent)
        # pipelining: the next proposal is drafted in a second worktree while an experiment trains
        if pipeline and _unboxed_sessions(agent):
            raise LoopError(f"--pipeline with {', '.join(_unboxed_sessions(agent))} outside the agent's box: its "
                            "session would run while the harness runs git in the repository, whose configuration it "
                            "could change meanwhile (docs/security.md); run without --pipeline, or with the box "
                            "(bubblewrap, and [agent] box = true)")
        drafter = Drafter(self.workspace, self.task_dir, tag, agent, self.worktree.head()) if pipeline else None
        if runner is None:
            from autoresearch.run.executor import make_runner

            runner = make_runner(self.task_dir, self.worktree, config, dataset, tag)
        self.runner = runner
        self.measurer = Measurer(self.line, runner)
        self.proposer = Proposer(self.line, agent, self.workspace, self._execute, drafter)
        self.adopter = Adopter(self.line, self.proposer, protocol.ident(self.protocol))

    def _run_budget(self, resume: bool, budget: float | None) -> float:
        """The training budget of this line: a resumed line keeps the one it was started with, since results
        measured with another budget do not compare with its best. A different `--budget` is refused."""
        configured = self.config.train.budget_seconds
        recorded = self.store.line(self.tag).budget_seconds if resume else None
        if recorded is None:
            return configured if budget is None else budget
        recorded = float(recorded)
        if budget is not None and not math.isclose(budget, recorded, rel_tol=1e-9):
            raise LoopError(f"run {self.tag!r} trains for {recorded:g} s per experiment, and its best was measured "
                            f"so; --budget {budget:g} would compare runs of unequal training. Resume without "
                            "--budget, or start a new run with --tag NEW")
        if budget is None and not math.isclose(recorded, configured, rel_tol=1e-9):
            self.on_event({"event": "budget_kept", "budget": recorded, "configured": configured})
        return recorded

    def _record_protocol(self, resume: bool) -> None:
        """Record the settings this line measures under (`protocol.of`, for `compare`). A resumed line whose task
        settings now measure differently from those it began with is refused: its best would not compare
        with what it runs next."""
        recorded = self.store.line(self.tag).protocol if resume else None
        changed = protocol.changes(recorded, self.protocol, ignore=protocol.STEERING) if recorded else []
        if changed:
            raise LoopError(f"the task's settings changed since run {self.tag!r} began ({'; '.join(changed)}), and "
                            "its best was measured under the old ones, so it would not compare with what runs next. "
                            "Put the settings in autoresearch.toml back to resume, or start a new run with --tag NEW")
        self.store.set_line(self.tag, protocol=self.protocol)

    def _record_lineup(self, agent: Agent) -> None:
        """Agents taking turns (`Rotation`): record their lineup and the experiment at which it began, from
        which their turns count (a line another agent began does not hand the newcomer every turn); `compare`
        credits the line to all of them."""
        recorded = self.store.line(self.tag)
        if recorded.lineup != agent.lineup:
            recorded = self.store.set_line(self.tag, lineup=agent.lineup,
                                           lineup_since=len(self.store.experiments(self.tag)))
        agent.since = recorded.lineup_since

    def _reconcile(self) -> None:
        head, line = self.worktree.head(), self.line
        for experiment in self.store.running(self.tag):
            if experiment.commit != head:
                self.store.finish(experiment.id, status=Status.CRASH,
                                  error="interrupted: the loop stopped before this experiment finished")
        if self.worktree.changed_files():
            self.worktree.discard_changes()
        anchor = line.anchor()
        owned = any(e.commit == head for e in self.store.running(self.tag))
        if anchor is not None and head != anchor and not owned:
            self.worktree.reset_hard(anchor)
        line.export()

    # -- the loop -------------------------------------------------------------------------------

    @property
    def on_event(self) -> Callable[[dict], None]:
        """Told of everything the loop does (`{"event": ...}` dicts), as it happens; may be replaced at any time."""
        return self.line.on_event if hasattr(self, "line") else self._on_event

    @on_event.setter
    def on_event(self, handler: Callable[[dict], None]) -> None:
        self._on_event = handler
        if hasattr(self, "line"):
            self.line.on_event = handler

    @property
    def stop_requested(self) -> bool:
        return self.line.stop_requested

    @stop_requested.setter
    def stop_requested(self, value: bool) -> None:
        self.line.stop_requested = value

    def incumbent(self) -> Experiment | None:
        return self.line.incumbent()

    def noise(self) -> Noise:
        return self.line.noise()

    def run(self) -> str:
        """Run experiments until a limit, a stop request, or an exhausted agent. Returns why it stopped."""
        started = time.time()
        interrupted = self.store.running(self.tag)
        if interrupted:
            self._execute(interrupted[0])
        while (reason := self._limit_reached(started)) is None:
            if not self.line.experiments():
                self._baseline()
                continue
            self.measurer.recalibrate()
            self.adopter.publish()
            if self.adopter.adopt():
                continue
            try:
                self.proposer.propose_and_run(lambda: self._limit_reached(started))
            except AgentExhausted as err:
                reason = str(err)
                break
            if (reason := health.after_failures(self.line) or health.check_machine(self.line, self.measurer)):
                break
        self.proposer.end_drafting(reason)
        self.adopter.publish()
        return reason

    def _limit_reached(self, started: float) -> str | None:
        done = len(self.line.experiments())
        if self.limits.max_experiments is not None and done >= self.limits.max_experiments:
            return f"reached {self.limits.max_experiments} experiments"
        if self.limits.max_runs is not None:
            runs = sum(len(self.store.runs(e)) for e in self.line.experiments())
            if runs >= self.limits.max_runs:
                return f"reached {self.limits.max_runs} runs"
        if self.limits.max_hours is not None and time.time() - started >= self.limits.max_hours * 3600:
            return f"reached {self.limits.max_hours} hours"
        if self.limits.max_cost is not None:
            spent = agent_usage(self.line.experiments()).get("cost_usd", 0.0)
            if spent >= self.limits.max_cost:
                return f"reached the cost limit (${spent:.2f} of ${self.limits.max_cost:.2f})"
        if self.stop_requested:
            return "stopped on request"
        try:
            diskguard.check_free(self.task_dir, self.config.sandbox.min_free_gb)
        except diskguard.DiskSpaceError as err:
            return f"{err}; then continue with --resume"
        return None

    def _baseline(self) -> None:
        head = self.worktree.head()
        experiment = self.store.begin(tag=self.tag, parent_commit=head, commit=head, diff="",
                                      description=BASELINE, agent="-", seed=self.config.loop.seed,
                                      log_path=self.line.log_path(), code_hash=self.line.code_hash())
        self._execute(experiment)

    def _execute(self, experiment: Experiment, agent_usage: dict | None = None) -> Experiment:
        """Measure a begun experiment and record its decision; the next proposal is drafted meanwhile. An
        experiment that comes without the size and complexity of its code (the baseline, one resumed after a
        restart; a proposal has them from `Proposer.submit`) has them measured on its commit."""
        from autoresearch.decide.complexity import LINES, measure_code

        if LINES not in (agent_usage or {}):
            files = self.worktree.files_at(experiment.commit, self.config.loop.editable)
            agent_usage = {**measure_code(files).metrics(), **(agent_usage or {})}
        self.on_event({"event": "experiment", "seq": experiment.seq, "description": experiment.description})
        self.proposer.draft_ahead(experiment, self.limits.max_experiments)
        return self.measurer.execute(experiment, agent_usage)

    def close(self) -> None:
        self.proposer.close()
        self.measurer.flights.close()
        self.runner.close()
        self.store.close()
        self.lock.release()
