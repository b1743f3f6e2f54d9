"""The research loop: agent -> workspace -> runner -> decision -> store, until a limit or a stop.

Orchestration only: git lives in `workspace.py`, records in `store.py`, runs in `runner.py`.

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

import dataclasses
import fnmatch
import functools
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autoresearch import clock, codehash, diskguard, exchange, integrity, protocol, prune, sandbox, speed
from autoresearch.agents import Agent, AgentError, AgentExhausted, ProposalContext, guard_git_config, priced
from autoresearch.agents.prompt import OTHERS
from autoresearch.config import MetricConfig, TaskConfig
from autoresearch.data.prepare import DataError, Dataset
from autoresearch.drafts import Draft, Drafter
from autoresearch.keeprule import (
    CONFIRM,
    KEEP,
    Noise,
    Verdict,
    clear_margin,
    is_simpler,
    judge,
    standard_error,
)
from autoresearch.report.summary import agent_usage, error_line, latest_speed, measured_noise
from autoresearch.runlock import RunLock, RunLockHeld, live_tags
from autoresearch.runner import (
    Outcome,
    can_prestart,
    candidate_box,
    freeze_compile_cache,
    logged_progress,
    remove_models,
    resolve_device,
    run_experiment,
    run_folder,
    spare_workers,
    static_env,
)
from autoresearch.store import Experiment, Status, Store
from autoresearch.workspace import Workspace, Worktree

BASELINE = "baseline"
KEPT_FOR_COMMANDS = (".venv/",)  # ignored files a task's own command may keep between runs (its environment)


def _named(name: str, patterns: list[str]) -> bool:
    """Whether a run's name matches one of `loop.adopt_from`'s entries (a tag, or a pattern such as `gpu*`)."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class LoopError(Exception):
    """The loop cannot start; the message names the fix."""


@dataclass(frozen=True)
class Limits:
    max_experiments: int | None = None  # experiments in the tag, baseline included
    max_hours: float | None = None  # wall-clock hours of this invocation
    max_cost: float | None = None  # dollars the agent may spend in this tag (as agents report it)


FAULT_POINTS = ("after-commit", "after-begin", "after-run", "after-finish", "after-reset", "after-reject")


def fault_point(name: str) -> None:
    """Fault injection for the crash-safety tests: AUTORESEARCH_FAULT=<name> kills the loop right here."""
    if os.environ.get("AUTORESEARCH_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _unboxed_sessions(agent: Agent) -> list[str]:
    """The names of the coding agents in `agent` (itself, or the members of a rotation) that run outside the box."""
    from autoresearch.agents.command import SessionAgent
    from autoresearch.agents.rotation import Rotation

    members = list(agent.members.values()) if isinstance(agent, Rotation) else [agent]
    return [a.name for a in members if isinstance(a, SessionAgent) and a.unboxed]


def branch_name(tag: str) -> str:
    return f"autoresearch/{tag}"


def decide(outcome: Outcome, best: float | None, metric: MetricConfig = MetricConfig()) -> Status:
    """One run by itself: what went wrong (timeout, tampered, crash), or by the strict rule, KEEP if its metric
    is better than `best` (the best's measured value; None: there is none yet), else DISCARD."""
    if outcome.status == "timeout":
        return Status.TIMEOUT
    if outcome.status == "pruned":
        return Status.PRUNED
    if outcome.status == "void":
        return Status.TAMPERED
    if outcome.status != "ok" or outcome.metric is None:
        return Status.CRASH
    if best is None or metric.better(outcome.metric, best):
        return Status.KEEP
    return Status.DISCARD


RETRY_CAP_SECONDS = 600.0


def failures_in_a_row(history: list[Experiment]) -> int:
    """How many of a run's latest experiments are proposals that did not run (rejected: the agent failed or
    changed nothing, repeated code already measured, or edited files it may not), counted back from the
    latest to the first that ran."""
    count = 0
    for e in reversed(history):
        if e.status is not Status.REJECTED:
            break
        count += 1
    return count


def crashes_in_a_row(history: list[Experiment]) -> list[Experiment]:
    """A run's latest crashes and timeouts in a row, latest first, counted back to the first experiment that
    ran to a result (proposals that never ran, the rejected, are passed over)."""
    found = []
    for e in reversed(history):
        if e.status is Status.REJECTED:
            continue
        if e.status not in (Status.CRASH, Status.TIMEOUT):
            break
        found.append(e)
    return found


def retry_wait(failures: int, base: float, cap: float = RETRY_CAP_SECONDS) -> float:
    """Seconds to wait before asking the agent again after `failures` proposals in a row that did not run:
    none after one or two (bad luck), then `base`, 2 `base`, 4 `base`, ..., at most `cap`."""
    return 0.0 if failures < 3 else min(cap, base * 2.0 ** (failures - 3))


def request_recalibration(store: Store, tag: str) -> int:
    """Ask the loop of `tag` to measure the best again (`keep.noise_seeds` more runs) before its next
    experiment, whether it runs now or is resumed later. Returns the number of requests so far."""
    count = store.get_state(f"recalibrate-requested:{tag}", 0) + 1
    store.set_state(f"recalibrate-requested:{tag}", count)
    return count


class Loop:
    def __init__(self, task_dir: Path, config: TaskConfig, dataset: Dataset | None, agent: Agent, *, tag: str,
                 resume: bool = False, budget: float | None = None, limits: Limits = Limits(),
                 pipeline: bool = False, on_event: Callable[[dict], None] = lambda _: None) -> None:
        self.task_dir = task_dir.resolve()
        self.config, self.dataset, self.agent = config, dataset, agent
        self.tag, self.budget, self.limits, self.on_event = tag, budget, limits, on_event
        self.stop_requested = False
        self._prestarted: sandbox.CandidateProcess | None = None  # the next experiment's interpreter
        self._spares = None  # evaluation workers started ahead of time, from the first experiment on
        self._published: tuple | None = None  # the best (id, runs) this run last wrote to the exchange folder
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
            self._open(branch, exists, resume, budget, pipeline)
        except BaseException:
            self.lock.release()
            self.store.close()
            raise

    def _open(self, branch: str, exists: bool, resume: bool, budget: float | None, pipeline: bool) -> None:
        tag, config, dataset, agent = self.tag, self.config, self.dataset, self.agent
        if exists and not resume:
            raise LoopError(f"tag {tag!r} already has a run (branch {branch}): continue it with --resume, "
                            "or start a new one with --tag NEW")
        if not exists:
            if resume:
                raise LoopError(f"nothing to resume: no branch {branch}; start it without --resume")
            self.workspace.create_branch(branch, self.workspace.head())
        self.worktree: Worktree = self.workspace.open_worktree(
            self.task_dir / ".autoresearch" / "worktrees" / tag, branch)
        self.logs = self.task_dir / ".autoresearch" / "logs" / tag
        # A run started beside another live one (one per GPU, say) gets a table of its own, so they never mix.
        alongside = [t for t in live_tags(self.task_dir) if t != tag]
        self.results_path = self.task_dir / (f"results-{tag.replace('/', '-')}.tsv" if alongside else "results.tsv")
        if dataset is not None:  # every byte against the manifest once; each run then keeps it unchanged
            try:
                dataset.verify(full=True)
            except DataError as err:
                raise LoopError(str(err)) from err
        self._reconcile()
        self.budget = budget = self._run_budget(resume, budget)
        self._record_protocol(resume)
        self.store.set_state(f"budget:{tag}", budget or config.train.budget_seconds)  # for `status`'s progress bar
        self.store.set_speed_tolerance(tag, config.keep.speed_tolerance)  # for the figures, wherever they are shown
        if hasattr(agent, "lineup"):
            self._record_lineup(agent)
        # pipelining: the next proposal is drafted in a second worktree while an experiment trains
        if pipeline and _unboxed_sessions(agent):
            raise LoopError(f"--pipeline with {', '.join(_unboxed_sessions(agent))} outside the agent's box: its "
                            "session would run while the harness runs git in the repository, whose configuration it "
                            "could change meanwhile (docs/security.md); run without --pipeline, or with the box "
                            "(bubblewrap, and [agent] box = true)")
        self.drafter = Drafter(self.workspace, self.task_dir, tag, agent, self.worktree.head()) if pipeline else None

    def _run_budget(self, resume: bool, budget: float | None) -> float | None:
        """The training budget of this run: a resumed run keeps the one it was started with, since results
        measured with another budget do not compare with its best. A different `--budget` is refused."""
        recorded = self.store.get_state(f"budget:{self.tag}") if resume else None
        if recorded is None:
            return budget
        recorded = float(recorded)
        if budget is not None and not math.isclose(budget, recorded, rel_tol=1e-9):
            raise LoopError(f"run {self.tag!r} trains for {recorded:g} s per experiment, and its best was measured "
                            f"so; --budget {budget:g} would compare runs of unequal training. Resume without "
                            "--budget, or start a new run with --tag NEW")
        if budget is None and not math.isclose(recorded, self.config.train.budget_seconds, rel_tol=1e-9):
            self.on_event({"event": "budget_kept", "budget": recorded, "configured": self.config.train.budget_seconds})
        return recorded

    def _record_protocol(self, resume: bool) -> None:
        """Record the settings this run measures under (`protocol.of`, for `compare`). A resumed run whose task
        settings now measure differently from those it began with is refused: its best would not compare
        with what it runs next."""
        key = f"protocol:{self.tag}"
        recorded = self.store.get_state(key) if resume else None
        changed = protocol.changes(recorded, self._protocol, ignore=protocol.STEERING) if recorded else []
        if changed:
            raise LoopError(f"the task's settings changed since run {self.tag!r} began ({'; '.join(changed)}), and "
                            "its best was measured under the old ones, so it would not compare with what runs next. "
                            "Put the settings in autoresearch.toml back to resume, or start a new run with --tag NEW")
        self.store.set_state(key, self._protocol)

    def _record_lineup(self, agent: Agent) -> None:
        """Agents taking turns (`Rotation`): record their lineup and the experiment at which it began, from
        which their turns count (a run another agent began does not hand the newcomer every turn); `compare`
        credits the run to all of them."""
        key = f"lineup:{self.tag}"
        recorded = self.store.get_state(key)
        if not isinstance(recorded, dict) or recorded.get("lineup") != agent.lineup:
            recorded = {"lineup": agent.lineup, "since": len(self.store.experiments(self.tag))}
            self.store.set_state(key, recorded)
        agent.since = recorded["since"]

    # -- state ----------------------------------------------------------------------------------

    def incumbent(self) -> Experiment | None:
        return self.store.incumbent(self.tag)

    def anchor(self) -> str | None:
        """The commit proposals build on: the incumbent's, or before any keep, the baseline's."""
        incumbent = self.incumbent()
        if incumbent is not None:
            return incumbent.commit
        history = self.store.experiments(self.tag)
        return history[0].parent_commit if history else None

    def _reconcile(self) -> None:
        head = self.worktree.head()
        for experiment in self.store.running(self.tag):
            if experiment.commit != head:
                self.store.finish(experiment.id, status=Status.CRASH,
                                  error="interrupted: the loop stopped before this experiment finished")
        if self.worktree.changed_files():
            self.worktree.discard_changes()
        anchor = self.anchor()
        owned = any(e.commit == head for e in self.store.running(self.tag))
        if anchor is not None and head != anchor and not owned:
            self.worktree.reset_hard(anchor)
        self.export()

    def export(self) -> None:
        self.store.export_results_tsv(self.tag, self.results_path, self.config.metric.name)

    def _limit_reached(self, started: float) -> str | None:
        done = len(self.store.experiments(self.tag))
        if self.limits.max_experiments is not None and done >= self.limits.max_experiments:
            return f"reached {self.limits.max_experiments} experiments"
        if self.limits.max_hours is not None and time.time() - started >= self.limits.max_hours * 3600:
            return f"reached {self.limits.max_hours} hours"
        if self.limits.max_cost is not None:
            spent = agent_usage(self.store.experiments(self.tag)).get("cost_usd", 0.0)
            if spent >= self.limits.max_cost:
                return f"reached the cost limit (${spent:.2f} of ${self.limits.max_cost:.2f})"
        if self.stop_requested:
            return "stopped on request"
        try:
            diskguard.check_free(self.task_dir, self.config.sandbox.min_free_gb)
        except diskguard.DiskSpaceError as err:
            return f"{err}; then continue with --resume"
        return None

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> str:
        """Run experiments until a limit, a stop request, or an exhausted agent. Returns why it stopped."""
        started = time.time()
        interrupted = self.store.running(self.tag)
        if interrupted:
            self._execute(interrupted[0])
        while (reason := self._limit_reached(started)) is None:
            if not self.store.experiments(self.tag):
                self._baseline()
                continue
            self._recalibrate()
            self._publish()
            if self._adopt():
                continue
            try:
                self._propose_and_run(started)
            except AgentExhausted as err:
                reason = str(err)
                break
            if (reason := self._after_failures() or self._check_machine()) is not None:
                break
        self._end_drafting(reason)
        self._publish()
        return reason

    def _after_failures(self) -> str | None:
        """After proposals that did not run, in a row (`failures_in_a_row`): wait before the agent is asked
        again (`retry_wait`), or, at `loop.stop_after_agent_failures`, the reason to stop. None to go on."""
        history = self.store.experiments(self.tag)
        failures = failures_in_a_row(history)
        if not failures:
            return None
        last = error_line(history[-1].error)
        limit = self.config.loop.stop_after_agent_failures
        if limit and failures >= limit:
            return f"{failures} proposals in a row did not run (the last: {last}); mend the agent, then " \
                   "continue with --resume"
        wait = retry_wait(failures, self.config.loop.agent_retry_seconds)
        if wait > 0:
            self.on_event({"event": "agent_retry", "failures": failures, "seconds": wait, "error": last})
            until = time.monotonic() + wait
            while not self.stop_requested and time.monotonic() < until:  # Ctrl-C ends the wait
                time.sleep(min(0.5, max(0.0, until - time.monotonic())))
        return None

    def _check_machine(self) -> str | None:
        """After `loop.check_best_after_crashes` crashes or timeouts in a row (and after each as many more),
        the best runs once more, as a measurement of it like any other. If it fails too, the machine or its
        environment is broken (a GPU fallen off the bus, a full disk, a broken driver), not the proposals: the
        reason to stop, rather than spend the night, and the agent's fixes, on it. None to go on."""
        every = self.config.loop.check_best_after_crashes
        crashes = crashes_in_a_row(self.store.experiments(self.tag))
        best = self.incumbent()
        if (not every or not crashes or len(crashes) % every or best is None or self.worktree.head() != best.commit
                or self.store.get_state(f"checked-after:{self.tag}") == crashes[0].id):
            return None
        self.store.set_state(f"checked-after:{self.tag}", crashes[0].id)
        self.on_event({"event": "check_machine", "crashes": len(crashes), "seq": best.seq})
        before = len(self.store.remeasured_runs(best))
        self._remeasure(best, 1)
        self.export()
        if len(self.store.remeasured_runs(best)) > before:
            self.on_event({"event": "machine_ok", "seq": best.seq})
            return None
        return (f"{len(crashes)} experiments in a row failed, and the best (#{best.seq}) failed too when it ran "
                f"again: the machine or its environment is broken, not the proposals (the last error: "
                f"{error_line(crashes[0].error)}); mend it, then continue with --resume")

    def _baseline(self) -> None:
        head = self.worktree.head()
        experiment = self.store.begin(tag=self.tag, parent_commit=head, commit=head, diff="",
                                      description=BASELINE, agent="-", seed=self.config.loop.seed,
                                      log_path=self._log_path(), code_hash=self._code_hash())
        self._execute(experiment)

    def _log_path(self) -> str:
        seq = len(self.store.experiments(self.tag))  # the seq `begin` is about to assign
        return str(self.logs / f"{seq:04d}" / "train.log")

    def _propose_and_run(self, started: float) -> None:
        """One proposal and its experiment; after a crash, up to `loop.fix_attempts` fixes by an agent that
        can fix. A fix edits the crashed change and is committed with it as one change on the incumbent, so
        the branch only ever holds kept changes."""
        experiment = self._propose(self._context())
        fix = getattr(self.agent, "fix", None)
        for _ in range(self.config.loop.fix_attempts if fix is not None else 0):
            if experiment is None or experiment.status != Status.CRASH or self._limit_reached(started):
                return
            experiment = self._propose(self._context(failure=experiment), failure=experiment)

    def _context(self, failure: Experiment | None = None, pending: Experiment | None = None) -> ProposalContext:
        noise = self.noise() if self.config.keep.rule == "confirm" else None
        known = noise is not None and noise.known
        best = self.incumbent()
        measured = tuple(self.store.current_runs(best)) if best is not None else ()
        margin = clear_margin(noise, len(measured), self.config.keep.thresholds()) if known and measured else None
        return ProposalContext(program=self._program(), editable=list(self.config.loop.editable),
                               history=self.store.measured(self.tag), best=best, failure=failure,
                               budget_seconds=self.budget or self.config.train.budget_seconds, pending=pending,
                               noise=noise.sigma if known else None, keep_margin=margin, best_measured=measured,
                               others=self._others_tried(),
                               shared_runs=tuple(tag for tag in self._named_runs() if self._same_budget(tag)))

    def _named_runs(self) -> list[str]:
        """This folder's other runs that `loop.adopt_from` names (run tags or their patterns)."""
        wanted = self.config.loop.adopt_from
        return [tag for tag in self.store.tags() if tag != self.tag and _named(tag, wanted)] if wanted else []

    def _same_budget(self, tag: str) -> bool:
        """Whether run `tag` trains for this run's budget, so that its metrics compare with this run's."""
        theirs = self.store.get_state(f"budget:{tag}")
        return theirs is not None and math.isclose(float(theirs), self.budget or self.config.train.budget_seconds,
                                                   rel_tol=1e-9)

    def _others_tried(self, count: int = 2 * OTHERS) -> tuple[Experiment, ...]:
        """The latest `count` finished experiments of the runs that `loop.adopt_from` names, by when they ended:
        what the agents beside this one tried (`prompt._others` shows their proposals)."""
        tags = self._named_runs()
        return tuple(self.store.latest_finished(tags, count)) if tags else ()

    def _propose(self, context: ProposalContext, failure: Experiment | None = None) -> Experiment | None:
        """Ask the agent, check and commit the change, run it. The finished experiment, or None if the
        proposal was rejected (or, for a fix, declined)."""
        parent = self.worktree.head()
        if self.drafter is not None:
            if failure is not None:
                self.drafter.wait()  # the agent finishes the draft it is writing, then fixes
            elif self.drafter.pending:
                return self._propose_drafted(parent)
        choose = getattr(self.agent, "choose", None)  # agents taking turns (`Rotation`): whose turn it is
        if choose is not None:
            choose(context)
        self.on_event({"event": "propose", "agent": self.agent.name, "fix": failure is not None})
        try:
            if failure is None:
                description = guard_git_config(self.workspace, lambda: self.agent.propose(self.worktree.path, context))
            else:
                self.worktree.reset_hard(failure.commit)  # the agent sees the code that crashed
                description = guard_git_config(self.workspace, lambda: self.agent.fix(self.worktree.path, context))
                if description is None:
                    self.worktree.reset_hard(parent)
                    return None
                description = f"{failure.description.split('; fix: ')[0]}; fix: {description}"
        except AgentError as err:
            if self.worktree.head() != parent:
                self.worktree.reset_hard(parent)
            self._reject(parent, f"agent failed: {err}", "(no description)")
            return None
        if failure is not None:
            if not self.worktree.changed_files():
                self.worktree.reset_soft(parent)
                self._reject(parent, "empty fix: no file changed since the crash", description)
                return None
            self.worktree.reset_soft(parent)  # the crashed change and its fix, as one change on the incumbent
        return self._submit(parent, description, {**self._agent_usage(), **self._steered_by(context.program)})

    def _propose_drafted(self, parent: str) -> Experiment | None:
        """Use the draft written while the last experiment trained: applied to the best code as it is now
        (rebased, if that experiment was kept), checked, committed and run. A draft that no longer applies
        is recorded as rejected, and the loop asks the agent again."""
        assert self.drafter is not None
        draft = self.drafter.take()
        assert draft is not None
        self.on_event({"event": "propose", "agent": draft.agent, "fix": False, "drafted": True})
        usage = {**self._agent_usage(draft.usage), **self._steered_by(draft.program)}
        if draft.commit is None:
            self._reject(parent, draft.error or "the draft failed", draft.description, diff=draft.diff, usage=usage,
                         agent=draft.agent)
            return None
        conflicts = self.worktree.apply_change(draft.commit)
        if conflicts:
            kept = self.incumbent()
            self._reject(parent, f"stale draft: written while #{draft.pending_seq} trained, it no longer applies on "
                         f"top of the kept #{kept.seq if kept else '?'} (conflicts in {', '.join(conflicts)}); the "
                         "agent is asked again", draft.description, diff=draft.diff, usage=usage, agent=draft.agent)
            return None
        return self._submit(parent, draft.description,
                            {**usage, "drafted_ahead": 1, "rebased": int(draft.base != parent)}, agent=draft.agent)

    def _submit(self, parent: str, description: str, usage: dict, agent: str | None = None) -> Experiment | None:
        """Check the uncommitted change in the worktree, commit it and run it; or reject it. `agent`: who
        proposed it, if not the loop's agent."""
        changed = self.worktree.changed_files()
        if not changed:
            self._reject(parent, "empty proposal: no file changed", description, usage=usage, agent=agent)
            return None
        outside = self.worktree.out_of_scope(self.config.loop.editable)
        if outside:
            self._reject(parent, f"edits outside the editable files {self.config.loop.editable}: {', '.join(outside)}",
                         description, usage=usage, agent=agent)
            return None
        code = self._code_hash()
        measured = self.store.same_code(self.tag, code)
        if measured is not None:
            self._reject(parent, self._already_measured(measured), description,
                         usage={**usage, "same_code_as": measured.seq}, agent=agent)
            return None
        diff = self.worktree.diff()
        commit = self.worktree.commit(description)
        fault_point("after-commit")
        experiment = self.store.begin(tag=self.tag, parent_commit=parent, commit=commit, diff=diff,
                                      description=description, agent=agent or self.agent.name,
                                      seed=self.config.loop.seed, log_path=self._log_path(), code_hash=code)
        fault_point("after-begin")
        return self._execute(experiment, usage)

    def _code_hash(self) -> str:
        """What code the worktree holds now: its editable files, as `codehash` compares them."""
        return codehash.code_hash(self.worktree.editable_files(self.config.loop.editable))

    def _already_measured(self, earlier: Experiment) -> str:
        """Why a change whose code `earlier` measured is not run (docs/loop.md, "Changes already measured")."""
        runs = self.store.current_runs(earlier)  # a best measured again is shown at the mean of its runs
        value = f"{self.config.metric.name} {sum(runs) / len(runs):.6f}" if runs else "no result"
        best = self.incumbent()
        if best is not None and earlier.id == best.id:
            what = f"the best (#{earlier.seq}, {value})"
            hint = "the change only touches comments or layout, so running it would measure the best again"
        elif earlier.status is Status.KEEP:
            what = f"#{earlier.seq}, kept earlier with {value} and bettered since"
            hint = "it would go back to code already measured"
        elif earlier.status is Status.TAMPERED:
            what = f"#{earlier.seq}, which was voided for tampering"
            hint = "it would tamper again"
        else:
            what = f"#{earlier.seq}, discarded with {value}"
            hint = "running it again would only draw new noise"
        return (f"already measured: comments and layout aside, this is the same code as {what}; {hint}. "
                "Propose a change not tried yet")

    def _reject(self, parent: str, reason: str, description: str, *, diff: str | None = None,
                usage: dict | None = None, agent: str | None = None) -> None:
        """Record a proposal that is not run. `diff`: the change, when it is not in the worktree; `agent`: who
        proposed it, if not the loop's agent."""
        diff = self.worktree.diff() if diff is None else diff
        self.worktree.discard_changes()
        fault_point("after-reject")
        self.store.record(status=Status.REJECTED, tag=self.tag, parent_commit=parent, diff=diff,
                          description=description, agent=agent or self.agent.name, seed=self.config.loop.seed,
                          error=reason,
                          metrics=self._agent_usage() if usage is None else usage)
        self.export()
        self.on_event({"event": "decided", "status": "rejected", "reason": reason})

    def _steered_by(self, program: str) -> dict:
        """The mark of the program.md a proposal was made under, for its record, so the report can show when
        the person steered (the text is kept once in the store: `Store.keep_program`)."""
        return {"program": self.store.keep_program(program)}

    def _agent_usage(self, reported: dict | None = None) -> dict:
        """What a proposal cost, as the agent counts it (API agents: tokens, seconds): `reported`, or else what
        the agent says of its last proposal."""
        if reported is None:
            reported = getattr(self.agent, "usage", None) or {}
        usage = priced(reported, self.config.agent.price_in_per_mtok, self.config.agent.price_out_per_mtok)
        return {f"agent_{key}": value for key, value in usage.items()}

    # -- the best of other runs -------------------------------------------------------------------

    def _adopt(self) -> bool:
        """Take up the best of another run (`loop.adopt_from`) when it beats this run's best by more than the
        noise: its editable files, as one change on this run's best, run and judged here like any proposal.
        So runs on several GPUs, or machines, share what they find. True if an experiment ran (docs/loop.md,
        "Runs that share their best")."""
        offer = self._adoption_offer()
        if offer is None:
            return False
        parent = self.worktree.head()
        try:
            editable = self.config.loop.editable
            files = offer.files if offer.files is not None else self.worktree.files_at(offer.commit or "", editable)
            self.worktree.put_files(files, editable)
        except ValueError as err:  # an exchange entry with files this task does not let the agent edit
            self.worktree.discard_changes()
            self.store.set_state(self._adopt_seen_key(offer), True)
            self.on_event({"event": "adopt_refused", "source": offer.source, "error": str(err)})
            return False
        if not self.worktree.changed_files() or self.store.same_code(self.tag, self._code_hash()) is not None:
            self.worktree.discard_changes()  # code this run has measured: its own best, or one it dropped
            self.store.set_state(self._adopt_seen_key(offer), True)
            return False
        self.on_event({"event": "adopt", "source": offer.source, "seq": offer.seq, "metric": offer.value,
                       "metric_name": self.config.metric.name})
        description = f"adopt the best of {offer.source} (#{offer.seq}: {offer.description.splitlines()[0][:120]})"
        self._submit(parent, description, {"adopted_from": offer.source, "adopted_seq": offer.seq,
                                           **self._steered_by(self._program())}, agent=f"adopt:{offer.source}")
        return True

    def _adoption_offer(self) -> exchange.Offer | None:
        """The best among the other runs' (`_offers`) that beats this run's best by more than a first run must
        to be judged at all (the confirm rule's gate; the strict rule: by any amount); None if none does. A
        best whose code this run has measured already is passed over."""
        best = self.incumbent()
        if not self.config.loop.adopt_from or best is None or self.worktree.head() != best.commit:
            return None
        ours = self.store.current_runs(best)
        if not ours or self._since_keep(best) < self.config.loop.adopt_after:
            return None
        our_value = sum(ours) / len(ours)
        margin = 0.0
        noise = self.noise() if self.config.keep.rule == "confirm" else None
        if noise is not None and noise.known:
            thresholds = self.config.keep.thresholds()
            margin = thresholds.gate_z * standard_error(noise, 1, len(ours), thresholds)
        fresh = [o for o in self._offers() if not self.store.get_state(self._adopt_seen_key(o), False)
                 and not (o.code_hash and self.store.same_code(self.tag, o.code_hash) is not None)]
        return exchange.best_offer(fresh, our_value, margin, maximize=self.config.metric.maximize)

    def _since_keep(self, best: Experiment) -> int:
        """How many experiments this run has finished since its best was kept (rejected proposals count)."""
        return sum(1 for e in self.store.experiments(self.tag) if e.seq > best.seq and e.finished)

    def _offers(self) -> list[exchange.Offer]:
        """The bests of the other runs that `loop.adopt_from` names (run tags or their patterns): of this
        folder's runs trained for the same budget, and with `loop.exchange`, of the runs whose entries are in
        the exchange folder with this task's protocol."""
        wanted = self.config.loop.adopt_from
        offers = []
        for tag in self._named_runs():
            if not self._same_budget(tag):
                continue
            kept = [e for e in self.store.experiments(tag) if e.status == Status.KEEP and e.commit]
            runs = self.store.current_runs(kept[-1]) if kept else []
            if runs:
                offers.append(exchange.Offer(source=tag, seq=kept[-1].seq, description=kept[-1].description,
                                             runs=tuple(runs), code_hash=kept[-1].code_hash, commit=kept[-1].commit))
        if self.exchange_dir is not None:
            for offer in exchange.read_offers(self.exchange_dir, self._protocol_id, exclude=self._exchange_name()):
                if _named(offer.source, wanted) or _named(offer.source.split("@")[0], wanted):
                    # the hash is made here: another Python may parse the same code into another tree
                    offers.append(dataclasses.replace(offer, code_hash=codehash.code_hash(offer.files or {})))
        return offers

    def _adopt_seen_key(self, offer: exchange.Offer) -> str:
        return f"adopt-seen:{self.tag}:{offer.source}:{offer.code_hash or offer.commit}"

    # -- the exchange folder ----------------------------------------------------------------------

    @property
    def exchange_dir(self) -> Path | None:
        folder = self.config.loop.exchange
        return Path(os.path.expandvars(folder)).expanduser().resolve() if folder else None

    @functools.cached_property
    def _protocol(self) -> dict[str, object]:
        """`protocol.of` this run: the settings its metric was measured under (fixed for the run)."""
        device = resolve_device(self.config.train.device) if self.config.evaluated else "-"
        return protocol.of(self.config, self.budget or self.config.train.budget_seconds, device)

    @functools.cached_property
    def _protocol_id(self) -> str:
        return protocol.ident(self._protocol)

    def _exchange_name(self) -> str:
        return exchange.entry_name(self.tag)

    def _publish(self) -> None:
        """Write this run's best to the exchange folder (`loop.exchange`), for runs on other machines; a
        folder that cannot be written is reported, and the loop goes on."""
        best = self.incumbent()
        if self.exchange_dir is None or best is None or not best.commit:
            return
        runs = self.store.current_runs(best)
        if not runs or self._published == (best.id, runs):
            return  # written already, as it is now
        files = self.worktree.files_at(best.commit, self.config.loop.editable)
        if not files:
            return
        content = exchange.entry(self._exchange_name(), self._protocol_id, best.seq, best.description, runs,
                                 codehash.code_hash(files), files)
        try:
            exchange.publish(self.exchange_dir, content)
            self._published = (best.id, runs)
        except OSError as err:
            self.on_event({"event": "exchange_failed", "folder": str(self.exchange_dir), "error": str(err)})

    # -- drafting ahead -------------------------------------------------------------------------

    def _draft_ahead(self, experiment: Experiment) -> None:
        """While `experiment` trains, the agent drafts the next proposal on the best code so far; unless a
        draft is pending already, or `experiment` is the last one the limits allow."""
        if self.drafter is None or self.drafter.pending or self.stop_requested:
            return
        if self.limits.max_experiments is not None and \
                len(self.store.experiments(self.tag)) >= self.limits.max_experiments:
            return
        base = self.anchor() or self.worktree.head()
        self.drafter.start(base, self._context(pending=experiment))
        self.on_event({"event": "drafting", "seq": experiment.seq, "agent": self.agent.name})

    def _end_drafting(self, reason: str) -> None:
        """The loop stops: a draft being written is cancelled; one already written is recorded, not run."""
        if self.drafter is None:
            return
        draft = self.drafter.stop()
        if draft is not None:
            self._record_unrun(draft, reason)

    def _record_unrun(self, draft: Draft, reason: str) -> None:
        error = draft.error or f"not run: the loop stopped ({reason}) before its turn"
        self.store.record(status=Status.REJECTED, tag=self.tag, parent_commit=draft.base, diff=draft.diff,
                          description=draft.description or "(no description)", agent=draft.agent or self.agent.name,
                          seed=self.config.loop.seed, error=error, metrics=self._agent_usage(draft.usage))
        self.export()
        self.on_event({"event": "decided", "status": "rejected", "reason": error})

    def _execute(self, experiment: Experiment, agent_usage: dict | None = None) -> Experiment:
        """Run an experiment and decide it. Under the `confirm` rule (docs/keep.md) that may take several runs
        with fresh seeds: the baseline's first measure the noise; a candidate within the noise is run again.
        Each finished run is recorded in the store's state at once, so a restarted loop goes on from it."""
        self.on_event({"event": "experiment", "seq": experiment.seq, "description": experiment.description})
        self._draft_ahead(experiment)
        incumbent = self.incumbent()
        keep = self.config.keep
        best = self.store.measured_runs(incumbent) if incumbent is not None else []
        done = self.store.get_state(self._runs_key(experiment), [])  # runs finished before a restart
        values, seeds = [r["metric"] for r in done], [r["seed"] for r in done]
        speeds = [r.get("speed") for r in done]
        outcomes: list[Outcome] = []
        verdict: Verdict | None = None
        shifted: list[float] = []  # the machine-speed shift found against the best, if any

        def run_next() -> tuple[Status, str | None] | None:
            """One more run with the next seed; its failure (status and error), or None if it ran fine. The
            first run of a proposal may be stopped early as hopeless (`prune.py`)."""
            seed = experiment.seed + len(values)
            pruner = self._pruner(experiment, incumbent) if not values else None
            outcome, status = self._run_once(experiment, seed, len(values), best, pruner=pruner)
            outcomes.append(outcome)
            if status not in (Status.KEEP, Status.DISCARD):  # crashed, timed out, tampered, pruned: final
                return status, outcome.error if not values else f"run {len(values) + 1} (seed {seed}): {outcome.error}"
            values.append(outcome.metric)
            seeds.append(seed)
            speeds.append(outcome.machine_speed)
            self.store.set_state(self._runs_key(experiment), [{"metric": v, "seed": s, "speed": p} for v, s, p
                                                              in zip(values, seeds, speeds, strict=True)])
            fault_point("after-run")
            if incumbent is not None:
                best[:] = self._comparable_best(incumbent, experiment, speeds, shifted)
            return None

        if values and incumbent is not None:  # runs from before a restart
            best[:] = self._comparable_best(incumbent, experiment, speeds, shifted)
        failed = None
        if keep.rule == "strict" or incumbent is None:  # one run; the baseline's first measure the noise
            wanted = keep.noise_seeds if incumbent is None and keep.rule == "confirm" else 1
            while failed is None and len(values) < wanted:
                failed = run_next()
            better = not best or (values and self.config.metric.better(values[0], sum(best) / len(best)))
            status = Status.KEEP if better else Status.DISCARD
        else:  # the confirm rule: runs until the verdict
            failed = None if values else run_next()
            while failed is None:
                verdict = judge(values, best, self.noise(values, speeds), maximize=self.config.metric.maximize,
                                simpler=is_simpler(experiment.diff), thresholds=keep.thresholds())
                if verdict.action != CONFIRM:
                    break
                self.on_event({"event": "confirm", "seq": experiment.seq, "run": len(values) + 1,
                               "reason": verdict.reason})
                failed = run_next()
            status = Status.KEEP if verdict is not None and verdict.action == KEEP else Status.DISCARD
        status, error = failed if failed is not None else (status, None)
        return self._decided(experiment, status, values, seeds, outcomes, verdict, error, agent_usage,
                             speeds=speeds, shift=shifted[0] if shifted else None)

    def _comparable_best(self, incumbent: Experiment, experiment: Experiment, speeds: list[float | None],
                         shifted: list[float]) -> list[float]:
        """The best's runs made at about the machine speed of the candidate's runs (`speeds`), to compare the
        candidate with. When none was, the best runs again now (`keep.best_runs` times, once per candidate),
        so both are measured on the machine as it is; if the speed moved again, all of the best's runs count.
        A shift found is put in `shifted`. (docs/keep.md, "Machine speed".)"""
        tolerance = self.config.keep.speed_tolerance
        now = speed.typical(speeds)
        runs, run_speeds = self.store.measured_runs(incumbent), self.store.measured_speeds(incumbent)
        chosen = speed.comparable(run_speeds, now, tolerance)
        if chosen:
            return [runs[i] for i in chosen]
        then = speed.typical(run_speeds)
        shifted[:] = [speed.shift(then, now)]
        key = f"speed-checked:{experiment.id}"
        if not self.store.get_state(key, False):
            more = max(1, self.config.keep.best_runs)
            self.on_event({"event": "speed", "seq": experiment.seq, "best_seq": incumbent.seq, "then": then,
                           "now": now, "shift": shifted[0], "runs": more})
            self._remeasure(incumbent, more, restore=True)
            self.store.set_state(key, True)
            runs, run_speeds = self.store.measured_runs(incumbent), self.store.measured_speeds(incumbent)
            chosen = speed.comparable(run_speeds, now, tolerance)
        return [runs[i] for i in chosen] if chosen else runs

    def _remeasure(self, incumbent: Experiment, more: int, *, restore: bool = False) -> None:
        """Run the best `more` times with its next seeds, each run recorded as it ends (`remeasured_runs`).
        `restore`: the worktree holds another commit (a candidate's): the best's files are put in place for
        each run and the candidate's back afterwards. Stops at a run that fails: the best no longer runs as it
        did, and the noise is left as it was."""
        extra = self.store.remeasured_runs(incumbent)
        own = len(self.store.measured_runs(incumbent)) - len(extra)
        extra_speeds = self.store.measured_speeds(incumbent)[own:]
        target = len(extra) + more
        while len(extra) < target:
            n = own + len(extra)
            outcome, status = self._run_once(incumbent, incumbent.seed + n, n, [],
                                             code=incumbent.commit if restore else None)
            if status not in (Status.KEEP, Status.DISCARD):
                break
            extra.append(outcome.metric)
            extra_speeds.append(outcome.machine_speed)
            self.store.set_remeasured_runs(incumbent, extra, extra_speeds)
        self._drop_models(incumbent)
        self.worktree.discard_changes()

    def _pruner(self, experiment: Experiment, incumbent: Experiment | None) -> prune.Pruner | None:
        """What stops a proposal's first run early if its training curve shows it cannot beat the best's runs
        (`[prune]`, prune.py); None for what is never stopped early: the baseline, a best taken up from
        another run, the best's own re-runs, tasks without train.py's progress lines."""
        settings = self.config.prune
        if not settings.enabled or not self.config.evaluated or incumbent is None or not incumbent.log_path \
                or experiment.agent == "-" or experiment.agent.startswith("adopt:"):
            return None
        folder = Path(incumbent.log_path).parent
        runs = len(self.store.measured_runs(incumbent))
        curves = [prune.curve_of(logged_progress(run_folder(folder, i) / "train.log"))
                  for i in range(runs)]
        return prune.Pruner(curves, self.budget or self.config.train.budget_seconds, settings,
                            speeds=self.store.measured_speeds(incumbent), tolerance=self.config.keep.speed_tolerance)

    def _run_once(self, experiment: Experiment, seed: int, index: int, best: list[float], *,
                  code: str | None = None, pruner: prune.Pruner | None = None) -> tuple[Outcome, Status]:
        """One run of the worktree's code (or of the files of commit `code`) with `seed`; its outcome and its
        status by itself (KEEP or DISCARD for a run that finished fine, by the strict comparison; else what
        went wrong, or PRUNED if `pruner` stopped it)."""
        run_dir = run_folder(Path(experiment.log_path).parent, index)
        if index:
            self.worktree.discard_changes()  # each run starts from the committed files
        if code is not None:
            self.worktree.restore_files(code)
        # ...and none of what an earlier run or the agent left in ignored files (a bytecode cache that would stand
        # in for the source, a stash of weights): only a task's own command keeps its environment (`uv run`'s).
        self.worktree.remove_ignored(keep=() if self.config.evaluated else KEPT_FOR_COMMANDS)
        self._prestart()  # every run of the loop gets a prestarted interpreter, and with it a speed probe
        prestarted, self._prestarted = self._prestarted, None

        def on_event(event: dict) -> None:
            if event.get("event") == "machine_speed":
                # The interpreter for the next run (prestart.py) imports torch now, once the speed is measured
                # and while this one's train.py starts up, and then waits: nothing of it competes with the
                # training, the evaluation or the probe.
                self._prestart()
            self.on_event(event)

        before = integrity.snapshot(self.task_dir, self.dataset)
        best_mean = sum(best) / len(best) if best else None

        def would_keep(metric: float) -> bool:  # the causality probe runs for results that may be kept
            return best_mean is None or self.config.metric.better(metric, best_mean)

        if self._spares is None and self.config.evaluated:
            self._spares = spare_workers(self.worktree.path, self.config)
        startup, finish = self._allowances()
        outcome = run_experiment(self.worktree.path, self.config, self.dataset, budget=self.budget, seed=seed,
                                 run_dir=run_dir, on_event=on_event, prestarted=prestarted,
                                 probe=would_keep if self.config.eval.probe == "keeps" else None, spares=self._spares,
                                 stop_when=pruner.observe if pruner is not None else None,
                                 startup_allowance=startup, finish_allowance=finish)
        self._prestart()  # when the one started above was used up (a crash before it began)
        status = decide(outcome, best_mean, self.config.metric)
        tampering = self._tampering(before, code or "HEAD", outcome.isolation)
        if tampering:
            status, outcome.error = Status.TAMPERED, tampering
        if experiment.description == BASELINE and experiment.agent == "-" and status in (Status.KEEP, Status.DISCARD):
            self._measured_phases(outcome)
            frozen = freeze_compile_cache(self.worktree.path, self.config.sandbox.compile_cache_gb)
            if frozen:
                self.on_event({"event": "cache_frozen", "bytes": frozen})
            elif frozen is None:
                self.on_event({"event": "cache_not_frozen", "limit_gb": self.config.sandbox.compile_cache_gb})
        return outcome, status

    def _allowances(self) -> tuple[float, float]:
        """How long a run's start-up and finish may take (clock.py): from the baseline's own, once it ran; the
        task's caps until then."""
        train = self.config.train
        phases = self._phases()
        return (clock.allowance(phases["startup"], train.allowance_factor, train.allowance_margin_seconds,
                                train.startup_allowance_seconds),
                clock.allowance(phases["finish"], train.allowance_factor, train.allowance_margin_seconds,
                                train.finish_allowance_seconds))

    def _measured_phases(self, outcome: Outcome) -> None:
        """Record how long the baseline's run took to start and to finish, by the harness's clock."""
        if outcome.startup_seconds is None or outcome.finish_seconds is None:
            return
        phases = self._phases()
        phases["startup"] = [*phases["startup"], outcome.startup_seconds][-20:]
        phases["finish"] = [*phases["finish"], outcome.finish_seconds][-20:]
        self.store.set_state(f"phases:{self.tag}", phases)

    def _phases(self) -> dict[str, list[float]]:
        """The baseline's start-up and finish seconds so far (its latest 20 runs), by the harness's clock."""
        return self.store.get_state(f"phases:{self.tag}", {"startup": [], "finish": []})

    def _decided(self, experiment: Experiment, status: Status, values: list[float], seeds: list[int],
                 outcomes: list[Outcome], verdict: Verdict | None, error: str | None,
                 agent_usage: dict | None, *, speeds: list[float | None] = (),
                 shift: float | None = None) -> Experiment:
        """Record the decision, then make git follow it."""
        last = outcomes[-1] if outcomes else Outcome(status="ok")
        first = outcomes[0] if outcomes else last
        ok = status in (Status.KEEP, Status.DISCARD)
        metric = sum(values) / len(values) if ok and values else (last.metric if not values else None)
        tested = [o.test_bpb for o in outcomes if o.test_bpb is not None]
        metrics = {"val_bpb_stderr": first.val_bpb_stderr, "eval_seconds": first.eval_seconds,
                   "startup_seconds": first.startup_seconds, "finish_seconds": first.finish_seconds,
                   "reported_training_seconds": first.reported_training_seconds, "mfu": first.mfu, "params": first.params,
                   "prestarted": first.prestarted or None, "isolation": last.isolation,
                   "causal_tv": max((o.causal_tv for o in outcomes if o.causal_tv is not None), default=None),
                   "probe_seconds": sum(o.probe_seconds or 0 for o in outcomes) or None,
                   "test_bpb": sum(tested) / len(tested) if tested else None,
                   "run_speeds": list(speeds) if ok and any(p is not None for p in speeds) else None,
                   "speed_shift": shift, **(agent_usage or {})}
        if self.config.keep.rule == "confirm" and values:
            noise = self.noise(values, speeds)
            metrics.update({"runs": values, "run_seeds": seeds, "confirm_runs": len(values) - 1 if
                            experiment.description != BASELINE else None,
                            "noise_sigma": noise.sigma if noise.known else None, "noise_dof": noise.dof or None})
            if verdict is not None:
                metrics.update({"improvement": verdict.improvement, "verdict": verdict.reason,
                                "improvement_stderr": verdict.stderr if math.isfinite(verdict.stderr) else None,
                                "z": verdict.z if math.isfinite(verdict.z) else None})
        finished = self.store.finish(experiment.id, status=status, metric=metric,
                                     metrics={k: v for k, v in metrics.items() if v is not None},
                                     training_seconds=first.training_seconds,
                                     total_seconds=sum(o.total_seconds for o in outcomes),
                                     peak_memory_bytes=max((o.peak_memory_bytes or 0 for o in outcomes), default=0) or None,
                                     tokens=first.tokens, steps=first.steps, error=error if not ok else None)
        fault_point("after-finish")
        self._drop_models(finished)
        self.worktree.discard_changes()  # whatever the run wrote into the working copy
        self.worktree.remove_ignored(keep=() if self.config.evaluated else KEPT_FOR_COMMANDS)
        anchor = self.anchor()
        if status != Status.KEEP and anchor is not None and self.worktree.head() != anchor:
            self.worktree.reset_hard(anchor)
            fault_point("after-reset")
        self.export()
        self.on_event({"event": "decided", "status": status.value, "metric": metric,
                       "metric_name": self.config.metric.name, "seq": experiment.seq,
                       "runs": len(values), "reason": verdict.reason if verdict is not None else
                       error if status is Status.PRUNED else None})
        return finished

    def _drop_models(self, experiment: Experiment) -> None:
        """Delete the models of a decided experiment's runs that `loop.keep_models` does not keep: with "kept",
        all but the first run's of a kept or void experiment, and all of any other."""
        policy = self.config.loop.keep_models
        if policy == "all" or not experiment.log_path:
            return
        evidence = experiment.status in (Status.KEEP, Status.TAMPERED)
        remove_models(Path(experiment.log_path).parent, keep_first=policy == "kept" and evidence)

    # -- noise ------------------------------------------------------------------------------------

    def _runs_key(self, experiment: Experiment) -> str:
        return f"runs:{experiment.id}"

    def noise(self, extra: list[float] | None = None, speeds: list[float | None] | None = None) -> Noise:
        """The run-to-run noise measured so far in this tag, and in `extra` (the runs being decided), at the
        machine speed of those runs (`speeds`; without them, the latest run's)."""
        now = speed.typical(speeds or [])
        if now is None:
            now = latest_speed(self.store, self.tag)
        return measured_noise(self.store, self.tag, extra, speed_now=now)

    def _recalibrate(self) -> None:
        """The best runs again before the next proposal when:
        - it was asked (`autoresearch recalibrate`), or `keep.recalibrate_every` keeps have passed since the
          last time: `keep.noise_seeds` more runs, so the noise is measured on the code as it is now;
        - it was kept on fewer than `keep.best_runs` runs (a keep at once): until it has them. A best kept on
          one run is one lucky draw more often than not, and every later candidate would be judged against
          that luck (docs/keep.md, "A new best is run again")."""
        keep = self.config.keep
        incumbent = self.incumbent()
        requested = self.store.get_state(f"recalibrate-requested:{self.tag}", 0)
        on_request = requested > self.store.get_state(f"recalibrate-served:{self.tag}", 0)
        if incumbent is None or self.worktree.head() != incumbent.commit:
            return
        runs_so_far = len(self.store.measured_runs(incumbent))
        due = False
        if not on_request and keep.rule == "confirm" and keep.recalibrate_every:
            mark = self.store.get_state(f"calibrated:{self.tag}", 0)
            kept = [e for e in self.store.experiments(self.tag) if e.status == Status.KEEP and e.seq > mark]
            due = len(kept) >= keep.recalibrate_every
        if on_request or due:
            more, why = keep.noise_seeds, "requested" if on_request else "noise"
        elif (keep.rule == "confirm" and runs_so_far < keep.best_runs
              and not self.store.get_state(f"settled:{incumbent.id}", False)):
            more, why = keep.best_runs - runs_so_far, "settle"
        else:
            return
        self.on_event({"event": "recalibrate", "seq": incumbent.seq, "runs": more, "requested": on_request,
                       "why": why})
        self._remeasure(incumbent, more)
        if why == "settle":  # once, even if a run failed: a best that no longer runs is not retried forever
            self.store.set_state(f"settled:{incumbent.id}", True)
        else:
            self.store.set_state(f"calibrated:{self.tag}", incumbent.seq)
            self.store.set_state(f"recalibrate-served:{self.tag}", requested)
        self.export()  # results.tsv shows the best as now measured

    def _tampering(self, before: integrity.Snapshot, code: str = "HEAD", isolation: str | None = None) -> str | None:
        """What the run changed of what the harness owns, or of the committed files of the commit `code` it
        ran; None if nothing. The person's edits of the task's own files during the run are told apart where
        they can be (`_edited_by_person`), and reported rather than counted."""
        changed = integrity.snapshot(self.task_dir, self.dataset).changed_since(before)
        if any(p.endswith((".pth", *integrity.STARTUP_MODULES)) for p in changed):
            mended = integrity.restore_startup_code(before)
            self.on_event({"event": "startup_code_restored", "files": mended})
        edited = self._edited_by_person(changed, isolation)
        if edited:
            changed = [p for p in changed if p not in edited]
            self.on_event({"event": "task_edited", "files": sorted(Path(p).name for p in edited),
                           "boxed": isolation in sandbox.WRITE_CONFINED})
        committed = self.worktree.changed_tracked_files(code)
        if not changed and not committed:
            return None
        parts = []
        if changed:
            parts.append(f"it changed files the harness owns: {integrity.describe(changed, self.task_dir)}")
            if str(self.task_dir / "autoresearch.toml") in changed:
                parts.append("(if you edited autoresearch.toml yourself: without the box the harness cannot tell "
                             "your edit from the run's, so edit it while the loop is stopped)")
        if committed:
            parts.append(f"it changed committed files of its own folder: {', '.join(committed[:8])}")
        return "tampered: " + "; ".join(parts) + ". The experiment is void (docs/security.md)."

    def _edited_by_person(self, changed: list[str], isolation: str | None) -> list[str]:
        """The files among `changed` that are the task's own (`integrity.TASK_FILES`) and that the run cannot
        be blamed for: program.md always (it is the person's way to steer, read afresh for every proposal, and
        it cannot move a metric), autoresearch.toml when the run's box kept it out of reach (docs/security.md,
        "Your edits during a run")."""
        boxed = isolation in sandbox.WRITE_CONFINED
        mine = []
        for name in integrity.TASK_FILES:
            path = self.task_dir / name
            if str(path) not in changed:
                continue
            if name == "program.md" or (boxed and not any(
                    path.is_relative_to(folder)
                    for folder in candidate_box(self.worktree.path, self.config, self.dataset).write)):
                mine.append(str(path))
        return mine

    def _prestart(self) -> None:
        if self._prestarted is None and can_prestart(self.config):
            self._prestarted = sandbox.prestart_python(candidate_box(self.worktree.path, self.config, self.dataset),
                                                       static_env(self.worktree.path, self.config))

    def _program(self) -> str:
        path = self.task_dir / "program.md"
        return path.read_text() if path.exists() else ""

    def close(self) -> None:
        if self.drafter is not None:
            self.drafter.stop(grace=2.0)  # an abort: a draft in the making is dropped
        if self._prestarted is not None:
            self._prestarted.kill()
            self._prestarted = None
        if self._spares is not None:
            self._spares.close()
        self.store.close()
        self.lock.release()
