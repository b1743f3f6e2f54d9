"""Proposing: ask the agent for a change (or a fix of one that crashed, or take the draft it wrote while the
last experiment trained), check it, commit it, and hand it to be measured; or record why it is not run.

The order of operations is what makes a crash safe: a proposal is committed before its experiment is begun
in the store (loop/loop.py, `_reconcile`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from autoresearch.agents import (
    Agent,
    AgentError,
    Proposal,
    ProposalContext,
    as_proposal,
    guard_git_config,
    priced,
)
from autoresearch.agents.base import NOTES
from autoresearch.agents.prompt import OTHERS
from autoresearch.decide.measured import current_runs, measured
from autoresearch.decide.stats import clear_margin
from autoresearch.loop.drafts import Draft, Drafter
from autoresearch.loop.line import Line, fault_point
from autoresearch.store import Experiment, Status
from autoresearch.workspace import Workspace

Execute = Callable[[Experiment, dict], Experiment]  # measures a begun experiment, records its decision


class Proposer:
    def __init__(self, line: Line, agent: Agent, workspace: Workspace, execute: Execute,
                 drafter: Drafter | None = None) -> None:
        self.line, self.agent, self.workspace, self.execute, self.drafter = line, agent, workspace, execute, drafter
        self.transcript: dict[str, str] = {}  # the last proposal's prompt and answer, until its record is made

    def propose_and_run(self, limit_reached: Callable[[], str | None]) -> None:
        """One proposal and its experiment; after a crash, up to `loop.fix_attempts` fixes by an agent that
        can fix. A fix edits the crashed change and is committed with it as one change on the incumbent, so
        the branch only ever holds kept changes."""
        experiment = self.propose(self.context())
        for _ in range(self.line.config.loop.fix_attempts if self.agent.can_fix else 0):
            if experiment is None or experiment.status != Status.CRASH or limit_reached():
                return
            experiment = self.propose(self.context(failure=experiment), failure=experiment)

    def context(self, failure: Experiment | None = None, pending: Experiment | None = None) -> ProposalContext:
        """What the agent is told: the program, the history, the best as measured now, the noise."""
        line = self.line
        noise = line.noise() if line.rule.weighs_noise else None
        known = noise is not None and noise.known
        best = line.incumbent()
        best_runs = tuple(current_runs(line.store, best)) if best is not None else ()
        margin = clear_margin(noise, len(best_runs), line.rule.thresholds) if known and best_runs else None
        return ProposalContext(program=line.program(), editable=list(line.config.loop.editable),
                               history=measured(line.store, line.tag), best=best, failure=failure,
                               budget_seconds=line.budget, pending=pending,
                               noise=noise.sigma if known else None, keep_margin=margin, best_measured=best_runs,
                               others=self._others_tried(),
                               shared_runs=tuple(tag for tag in line.named_runs() if line.same_budget(tag)),
                               complexity_cost=line.config.keep.complexity_cost)

    def _others_tried(self, count: int = 2 * OTHERS) -> tuple[Experiment, ...]:
        """The latest `count` finished experiments of the runs that `loop.adopt_from` names, by when they ended:
        what the agents beside this one tried (`prompt._others` shows their proposals)."""
        tags = self.line.named_runs()
        return tuple(self.line.store.latest_finished(tags, count)) if tags else ()

    def propose(self, context: ProposalContext, failure: Experiment | None = None) -> Experiment | None:
        """Ask the agent, check and commit the change, run it. The finished experiment, or None if the
        proposal was rejected (or, for a fix, declined)."""
        worktree = self.line.worktree
        parent = worktree.head()
        if self.drafter is not None:
            if failure is not None:
                self.drafter.wait()  # the agent finishes the draft it is writing, then fixes
            elif self.drafter.pending:
                return self._propose_drafted(parent)
        self.agent.choose(context)  # agents taking turns (`Rotation`): whose turn it is
        self.line.on_event({"event": "propose", "agent": self.agent.name, "fix": failure is not None})
        try:
            if failure is None:
                answer = guard_git_config(self.workspace, lambda: self.agent.propose(worktree.path, context))
            else:
                worktree.reset_hard(failure.commit)  # the agent sees the code that crashed
                answer = guard_git_config(self.workspace, lambda: self.agent.fix(worktree.path, context))
                if answer is None:
                    worktree.reset_hard(parent)
                    return None
        except AgentError as err:
            if worktree.head() != parent:
                worktree.reset_hard(parent)
            self.reject(parent, f"agent failed: {err}", "(no description)", usage=self.agent_usage(err.usage))
            return None
        proposal = as_proposal(answer)
        self.transcript = dict(proposal.transcript)  # kept with the record made next (`_keep_transcript`)
        description = proposal.description
        if failure is not None:
            description = f"{failure.description.split('; fix: ')[0]}; fix: {description}"
            if not worktree.changed_files():
                worktree.reset_soft(parent)
                self.reject(parent, "empty fix: no file changed since the crash", description,
                            usage=self.recorded(proposal))
                return None
            worktree.reset_soft(parent)  # the crashed change and its fix, as one change on the incumbent
        return self.submit(parent, description, {**self.recorded(proposal), **self.steered_by(context.program)})

    def _propose_drafted(self, parent: str) -> Experiment | None:
        """Use the draft written while the last experiment trained: applied to the best code as it is now
        (rebased, if that experiment was kept), checked, committed and run. A draft that no longer applies
        is recorded as rejected, and the loop asks the agent again."""
        assert self.drafter is not None
        draft = self.drafter.take()
        assert draft is not None
        self.transcript = dict(draft.transcript)
        self.line.on_event({"event": "propose", "agent": draft.agent, "fix": False, "drafted": True})
        usage = {**self.recorded(Proposal(draft.description, draft.usage, draft.notes, rationale=draft.rationale)),
                 **self.steered_by(draft.program)}
        if draft.commit is None:
            self.reject(parent, draft.error or "the draft failed", draft.description, diff=draft.diff, usage=usage,
                        agent=draft.agent)
            return None
        conflicts = self.line.worktree.apply_change(draft.commit)
        if conflicts:
            kept = self.line.incumbent()
            self.reject(parent, f"stale draft: written while #{draft.pending_seq} trained, it no longer applies on "
                        f"top of the kept #{kept.seq if kept else '?'} (conflicts in {', '.join(conflicts)}); the "
                        "agent is asked again", draft.description, diff=draft.diff, usage=usage, agent=draft.agent)
            return None
        return self.submit(parent, draft.description,
                           {**usage, "drafted_ahead": 1, "rebased": int(draft.base != parent)}, agent=draft.agent)

    def submit(self, parent: str, description: str, usage: dict, agent: str | None = None) -> Experiment | None:
        """Check the uncommitted change in the worktree, commit it and run it; or reject it. `agent`: who
        proposed it, if not the loop's agent. The size and complexity of the editable files as they would
        run go with its record (decide/complexity.py), whether it runs or not."""
        from autoresearch.decide.complexity import measure_code

        line, worktree = self.line, self.line.worktree
        editable = line.config.loop.editable
        if not worktree.changed_files():
            self.reject(parent, "empty proposal: no file changed", description, usage=usage, agent=agent)
            return None
        usage = {**usage, **measure_code(worktree.editable_files(editable)).metrics()}
        outside = worktree.out_of_scope(editable)
        if outside:
            self.reject(parent, f"edits outside the editable files {editable}: {', '.join(outside)}",
                        description, usage=usage, agent=agent)
            return None
        code = line.code_hash()
        earlier = line.store.same_code(line.tag, code)
        if earlier is not None:
            self.reject(parent, self._already_measured(earlier), description,
                        usage={**usage, "same_code_as": earlier.seq}, agent=agent)
            return None
        diff = worktree.diff()
        commit = worktree.commit(description)
        fault_point("after-commit")
        experiment = line.store.begin(tag=line.tag, parent_commit=parent, commit=commit, diff=diff,
                                      description=description, agent=agent or self.agent.name,
                                      seed=line.config.loop.seed, log_path=line.log_path(), code_hash=code)
        fault_point("after-begin")
        self._keep_transcript(experiment)
        finished = self.execute(experiment, usage)
        self._observed(finished)
        return finished

    def _keep_transcript(self, experiment: Experiment) -> None:
        """Keep the last proposal's prompt and answer beside `experiment`'s record, once."""
        said, self.transcript = self.transcript, {}
        if said:
            self.line.store.keep_transcript(experiment.id, said.get("prompt", ""), said.get("answer", ""))

    def _observed(self, experiment: Experiment) -> None:
        """Tell the agent of its proposal's record (not of a best taken up from another line)."""
        if not experiment.agent.startswith("adopt:"):
            self.agent.observe(experiment)

    def _already_measured(self, earlier: Experiment) -> str:
        """Why a change whose code `earlier` measured is not run (docs/loop.md, "Changes already measured")."""
        runs = current_runs(self.line.store, earlier)  # a best measured again is shown at the mean of its runs
        value = f"{self.line.config.metric.name} {sum(runs) / len(runs):.6f}" if runs else "no result"
        best = self.line.incumbent()
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

    def reject(self, parent: str, reason: str, description: str, *, diff: str | None = None,
               usage: dict | None = None, agent: str | None = None) -> None:
        """Record a proposal that is not run. `diff`: the change, when it is not in the worktree; `agent`: who
        proposed it, if not the loop's agent. A change in the worktree is recorded with the size and
        complexity of its editable files (decide/complexity.py), unless `usage` has them already."""
        from autoresearch.decide.complexity import LINES, measure_code

        line = self.line
        in_worktree = diff is None
        diff = line.worktree.diff() if diff is None else diff
        if in_worktree and diff and LINES not in (usage or {}):
            usage = {**(usage or {}), **measure_code(line.worktree.editable_files(line.config.loop.editable)).metrics()}
        line.worktree.discard_changes()
        fault_point("after-reject")
        recorded = line.store.record(status=Status.REJECTED, tag=line.tag, parent_commit=parent, diff=diff,
                                     description=description, agent=agent or self.agent.name,
                                     seed=line.config.loop.seed, error=reason, metrics=usage or {})
        self._keep_transcript(recorded)
        self._observed(recorded)
        line.export()
        line.on_event({"event": "decided", "status": "rejected", "reason": reason})

    def steered_by(self, program: str) -> dict:
        """The mark of the program.md a proposal was made under, for its record, so the report can show when
        the person steered (the text is kept once in the store: `Store.keep_program`)."""
        return {"program": self.line.store.keep_program(program)}

    def agent_usage(self, reported: Mapping[str, float]) -> dict:
        """What a proposal cost, as the agent counts it (API agents: tokens, seconds), priced, for its record."""
        agent = self.line.config.agent
        usage = priced(dict(reported), agent.price_in_per_mtok, agent.price_out_per_mtok)
        return {f"agent_{key}": value for key, value in usage.items()}

    def recorded(self, proposal: Proposal) -> dict:
        """What a proposal's record holds of it beyond its change: its cost, and its notes for the agent."""
        return {**self.agent_usage(proposal.usage), **({NOTES: dict(proposal.notes)} if proposal.notes else {}),
                **({"rationale": proposal.rationale} if proposal.rationale else {})}

    # -- drafting ahead -------------------------------------------------------------------------

    def draft_ahead(self, experiment: Experiment, max_experiments: int | None) -> None:
        """While `experiment` trains, the agent drafts the next proposal on the best code so far; unless a
        draft is pending already, or `experiment` is the last one the limits allow."""
        line = self.line
        if self.drafter is None or self.drafter.pending or line.stop_requested:
            return
        if max_experiments is not None and len(line.experiments()) >= max_experiments:
            return
        base = line.anchor() or line.worktree.head()
        self.drafter.start(base, self.context(pending=experiment))
        line.on_event({"event": "drafting", "seq": experiment.seq, "agent": self.agent.name})

    def end_drafting(self, reason: str) -> None:
        """The loop stops: a draft being written is cancelled; one already written is recorded, not run."""
        if self.drafter is None:
            return
        draft = self.drafter.stop()
        if draft is not None:
            self._record_unrun(draft, reason)

    def _record_unrun(self, draft: Draft, reason: str) -> None:
        line = self.line
        error = draft.error or f"not run: the loop stopped ({reason}) before its turn"
        recorded = line.store.record(status=Status.REJECTED, tag=line.tag, parent_commit=draft.base, diff=draft.diff,
                                     description=draft.description or "(no description)",
                                     agent=draft.agent or self.agent.name, seed=line.config.loop.seed, error=error,
                                     metrics=self.recorded(Proposal(draft.description, draft.usage, draft.notes,
                                                                    rationale=draft.rationale)))
        self._keep_transcript(recorded)
        self._observed(recorded)
        line.export()
        line.on_event({"event": "decided", "status": "rejected", "reason": error})

    def close(self) -> None:
        if self.drafter is not None:
            self.drafter.stop(grace=2.0)  # an abort: a draft in the making is dropped
