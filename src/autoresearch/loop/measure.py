"""Measuring and deciding: runs an experiment for as long as the keep rule asks, records the decision, and
makes git follow it. Also runs the best again when the rule asks for it (`remeasure`, `recalibrate`).

Every finished run is recorded at once (`Store.add_run`), so a loop restarted mid-experiment goes on from the
runs already made. What training is and where it happens is the runner's (run/seam.py); what to
run next is the rule's (decide/rule.py): this module only executes their answers."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from autoresearch.decide import prune
from autoresearch.decide.rule import BestState, Case, Decision, Purpose, RemeasureBest, RunAgain, seed_for
from autoresearch.decide.stats import Verdict, is_simpler
from autoresearch.loop.flights import Flights
from autoresearch.loop.line import BASELINE, Line, fault_point
from autoresearch.run import clock
from autoresearch.run.seam import Outcome, Runner, RunRequest
from autoresearch.run.supervise import logged_progress, run_folder
from autoresearch.store import Experiment, Remeasure, Run, Status


def failure_status(outcome: Outcome) -> Status | None:
    """What went wrong in a run (it timed out, was pruned, tampered, crashed); None if it ran to a metric."""
    if outcome.status == "ok":
        return None if outcome.metric is not None else Status.CRASH
    status = Status(outcome.status)  # the run speaks the store's words for a failure (run/outcome.py)
    return status if status in (Status.TIMEOUT, Status.PRUNED, Status.TAMPERED) else Status.CRASH


class Measurer:
    def __init__(self, line: Line, runner: Runner) -> None:
        self.line, self.runner = line, runner
        self.flights = Flights(runner, lambda event: self.line.on_event(event))

    # -- an experiment ----------------------------------------------------------------------------

    def execute(self, experiment: Experiment, agent_usage: dict | None = None) -> Experiment:
        """Run `experiment` until the rule decides it (docs/keep.md), record the decision, and reset the
        branch to the best unless it was kept."""
        line = self.line
        incumbent = line.incumbent()
        runs = line.store.runs(experiment)  # those made before a restart
        outcomes: list[Outcome] = []
        shift, failed = None, None
        while True:
            checked = any(r.reason == "speed" and r.for_id == experiment.id for r in line.store.remeasures(line.tag))
            case = self._case(experiment, incumbent, runs, checked)
            answer = line.rule.next(case)
            if isinstance(answer, Decision):
                break
            bar = statistics.fmean(line.store.measured_runs(incumbent)) if incumbent is not None else None
            if isinstance(answer, RemeasureBest):
                shift = answer.shift
                line.on_event({"event": "speed", "seq": experiment.seq, "best_seq": incumbent.seq, "then": answer.then,
                               "now": answer.now, "shift": shift, "runs": answer.runs})
                # the candidate's confirmation, should the comparison ask for one, trains beside the best's re-runs
                # (with the probe for any metric: the bar it is judged by moves with these re-runs)
                alongside = self._ahead(experiment, len(runs), 1, Purpose.CONFIRM, None)
                self.remeasure(incumbent, answer.runs, answer.purpose, reason="speed", for_id=experiment.id,
                               alongside=alongside)
                incumbent = line.store.get(incumbent.id)
                continue
            assert isinstance(answer, RunAgain)
            if answer.purpose is Purpose.CONFIRM:
                line.on_event({"event": "confirm", "seq": experiment.seq, "run": len(runs) + 1,
                               "reason": answer.reason})
            request = self._request(experiment, answer.seed, len(runs), answer.purpose, keep_bar=bar,
                                    pruner=self._pruner(experiment, incumbent) if not runs else None)
            further = Purpose.NOISE if incumbent is None else Purpose.CONFIRM
            self.flights.launch([request, *self._ahead(experiment, len(runs) + 1, line.rule.ahead(case), further,
                                                       bar)])
            outcome, failure = self._run_once(request)
            outcomes.append(outcome)
            if failure is not None:
                error = outcome.error if not runs else f"run {len(runs) + 1} (seed {answer.seed}): {outcome.error}"
                failed = (failure, error)
                break
            runs.append(line.store.add_run(experiment, Run(outcome.metric, answer.seed, outcome.machine_speed,
                                                           str(answer.purpose), node=outcome.node,
                                                           gpu_seconds=_gpu_seconds(line.config, [outcome])),
                                           outcome.log_path))
            fault_point("after-run")
        decision = answer if isinstance(answer, Decision) else None
        status, error = failed if failed is not None else (Status.KEEP if decision.keep else Status.DISCARD, None)
        if status is Status.KEEP and (void := self._void_ahead(experiment)) is not None:
            outcomes.append(void)
            status, error = Status.TAMPERED, f"a further run of it made at the same time: {void.error}"
        if status is Status.KEEP and incumbent is not None and (vetoed := self._checks(experiment)) is not None:
            status, error = Status.REJECTED, vetoed
            agent_usage = {**(agent_usage or {}), "checks_failed": 1}
        self.flights.forget(keep=experiment.id if status is Status.KEEP else incumbent.id if incumbent else None)
        return self._decided(experiment, incumbent, status, runs, outcomes, decision, error, agent_usage, shift)

    def _checks(self, experiment: Experiment) -> str | None:
        """The user's checks (`[keep] checks`) on a candidate the rule would keep, in its box: why they veto
        it, or None when they pass (or there are none). run/checks.py."""
        keep = self.line.config.keep
        if not keep.checks:
            return None
        from autoresearch.run.checks import run_checks

        self.line.on_event({"event": "checks", "seq": experiment.seq, "commands": list(keep.checks)})
        failure = run_checks(keep.checks, lambda folder: self.line.worktree.export(experiment.commit, folder),
                             timeout=keep.checks_timeout_seconds,
                             scratch=self.line.task_dir / ".autoresearch" / "checks")
        return None if failure is None else failure.text()

    def _case(self, experiment: Experiment, incumbent: Experiment | None, runs: list[Run], checked: bool) -> Case:
        from autoresearch.decide.complexity import net_added_lines  # priced by [keep] complexity_cost

        line = self.line
        best = tuple(line.store.runs(incumbent)) if incumbent is not None else None
        simpler = line.ties_to_candidate or is_simpler(experiment.diff)
        return Case(tuple(runs), best, line.history(), first_seed=experiment.seed, simpler=simpler,
                    added_lines=net_added_lines(experiment.diff), speed_checked=checked, speed_now=line.speed_now())

    def _request(self, experiment: Experiment, seed: int, index: int, purpose: Purpose, *,
                 keep_bar: float | None = None, pruner: prune.Pruner | None = None) -> RunRequest:
        """Run `index` of `experiment`'s code, with `seed`, as the runner gets it."""
        line = self.line
        startup, finish = self._allowances()
        return RunRequest(experiment_id=experiment.id, seq=experiment.seq, index=index, commit=experiment.commit,
                          files=line.worktree.files_at(experiment.commit, line.config.loop.editable), seed=seed,
                          budget=line.budget, run_dir=run_folder(Path(experiment.log_path).parent, index),
                          purpose=purpose, keep_bar=keep_bar, pruner=pruner, startup_allowance=startup,
                          finish_allowance=finish,
                          trusted=experiment.description == BASELINE and experiment.agent == "-")

    def _ahead(self, experiment: Experiment, index: int, count: int, purpose: Purpose,
               bar: float | None) -> list[RunRequest]:
        """The `count` runs of `experiment` from `index` on that may be started before they are asked for
        (flights.py); none when runs go one after another."""
        if self.flights.width < 2:
            return []
        return [self._request(experiment, seed_for(experiment.seed, i), i, purpose, keep_bar=bar)
                for i in range(index, index + count)]

    def _run_once(self, request: RunRequest) -> tuple[Outcome, Status | None]:
        """One run: its outcome, and what went wrong in it (None: nothing)."""
        outcome = self.flights.run(request)
        failure = failure_status(outcome)
        if request.trusted and failure is None:
            self._measured_phases(outcome)
        return outcome, failure

    def _void_ahead(self, experiment: Experiment) -> Outcome | None:
        """A run of `experiment` started ahead and not taken that found the candidate at work on what it may
        not touch: a change is kept only when every run of it that was made came back clean."""
        return next((o for o in self.flights.outcomes_of(experiment.id) if o.status == Status.TAMPERED.value), None)

    def _decided(self, experiment: Experiment, incumbent: Experiment | None, status: Status, runs: list[Run],
                 outcomes: list[Outcome], decision: Decision | None, error: str | None, agent_usage: dict | None,
                 shift: float | None) -> Experiment:
        """Record the decision, then make git follow it."""
        line = self.line
        values, speeds = [r.metric for r in runs], [r.speed for r in runs]
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
                   "run_speeds": speeds if ok and any(p is not None for p in speeds) else None,
                   "speed_shift": shift, "node": first.node,
                   "run_nodes": [o.node for o in outcomes] if any(o.node for o in outcomes) else None,
                   "gpu_seconds": _gpu_seconds(line.config, outcomes),
                   **(agent_usage or {})}
        verdict: Verdict | None = decision.verdict if decision is not None else None
        if line.rule.weighs_noise and runs:
            noise = decision.noise if decision is not None else line.rule.noise(
                self._case(experiment, incumbent, runs, True))
            metrics.update({"runs": values, "run_seeds": [r.seed for r in runs],
                            "confirm_runs": len(values) - 1 if experiment.description != BASELINE else None,
                            "noise_sigma": noise.sigma if noise.known else None, "noise_dof": noise.dof or None})
            if verdict is not None:
                metrics.update({"improvement": verdict.improvement, "verdict": verdict.reason,
                                "improvement_stderr": verdict.stderr if math.isfinite(verdict.stderr) else None,
                                "z": verdict.z if math.isfinite(verdict.z) else None})
        finished = line.store.finish(experiment.id, status=status, metric=metric,
                                     metrics={k: v for k, v in metrics.items() if v is not None},
                                     training_seconds=first.training_seconds,
                                     total_seconds=sum(o.total_seconds for o in outcomes),
                                     peak_memory_bytes=max((o.peak_memory_bytes or 0 for o in outcomes), default=0) or None,
                                     tokens=first.tokens, steps=first.steps, error=error if not ok else None)
        fault_point("after-finish")
        self.drop_models(finished)
        anchor = line.anchor()
        if status != Status.KEEP and anchor is not None and line.worktree.head() != anchor:
            line.worktree.reset_hard(anchor)
            fault_point("after-reset")
        line.export()
        line.on_event({"event": "decided", "status": status.value, "metric": metric,
                       "metric_name": line.config.metric.name, "seq": experiment.seq, "runs": len(values),
                       "reason": error.splitlines()[0] if status is Status.REJECTED and error else
                       verdict.reason if verdict is not None else error if status is Status.PRUNED else None})
        return finished

    def drop_models(self, experiment: Experiment) -> None:
        """Delete the models of a decided experiment's runs that `loop.keep_models` does not keep: with "kept",
        all but the first run's of a kept or void experiment, and all of any other."""
        policy = self.line.config.loop.keep_models
        if policy == "all" or not experiment.log_path:
            return
        evidence = experiment.status in (Status.KEEP, Status.TAMPERED)
        self.runner.drop_models(Path(experiment.log_path).parent, keep_first=policy == "kept" and evidence)

    # -- the best, again ----------------------------------------------------------------------------

    def remeasure(self, best: Experiment, more: int, purpose: Purpose, *, reason: str, for_id: int | None = None,
                  requests_served: int = 0, alongside: list[RunRequest] = ()) -> int:
        """Run the best `more` times with its next seeds (at once, as far as the runner can, and with the runs
        `alongside` should there be room left), each run recorded in order as it ends (`Store.add_run`),
        whatever the worktree holds now (a candidate's code is put back afterwards). Stops at a run that
        fails: the best no longer runs as it did, and the noise is left as it was. Then records that it was
        measured again and why (`Store.add_remeasure`: `reason`, for the candidate or crash `for_id`, answering
        `requests_served` requests). Returns the runs made."""
        store = self.line.store
        first = len(store.runs(best))
        requests = [self._request(best, seed_for(best.seed, n), n, purpose) for n in range(first, first + more)]
        self.flights.launch([*requests, *alongside])
        made = 0
        for request in requests:
            seed = request.seed
            outcome, failure = self._run_once(request)
            if failure is not None:
                break
            store.add_run(best, Run(outcome.metric, seed, outcome.machine_speed, str(purpose), of_best=True,
                                    node=outcome.node, gpu_seconds=_gpu_seconds(self.line.config, [outcome])),
                          outcome.log_path)
            made += 1
        self.drop_models(best)
        store.add_remeasure(best, Remeasure(best.id, reason, more, made, for_id, requests_served))
        return made

    def recalibrate(self) -> None:
        """Run the best again before the next proposal when the rule asks (`KeepRule.before_proposal`): on a
        person's request (`autoresearch recalibrate`), every `keep.recalibrate_every` keeps, or to settle a
        best kept on fewer than `keep.best_runs` runs."""
        line, store, tag = self.line, self.line.store, self.line.tag
        incumbent = line.incumbent()
        if incumbent is None or line.worktree.head() != incumbent.commit:
            return
        requested = store.line(tag).recalibrations_requested
        done = store.remeasures(tag)
        calibrations = [r for r in done if r.reason in ("noise", "requested")]
        seq_of = {e.id: e.seq for e in line.experiments()}
        mark = max((seq_of.get(r.best_id, 0) for r in calibrations), default=0)
        state = BestState(runs=len(store.runs(incumbent)),
                          settled=any(r.reason == "settle" and r.best_id == incumbent.id for r in done),
                          keeps_since_noise=sum(1 for e in line.experiments() if e.status == Status.KEEP and e.seq > mark),
                          requested=requested > max((r.requests_served for r in calibrations), default=0))
        asked = line.rule.before_proposal(state)
        if asked is None:
            return
        line.on_event({"event": "recalibrate", "seq": incumbent.seq, "runs": asked.runs, "requested": state.requested,
                       "why": asked.reason})
        # recorded even if a run failed: a best that no longer runs is not settled or calibrated forever
        self.remeasure(incumbent, asked.runs, asked.purpose, reason=asked.reason, requests_served=requested)
        line.export()  # results.tsv shows the best as now measured

    # -- what a run may take ------------------------------------------------------------------------

    def _pruner(self, experiment: Experiment, incumbent: Experiment | None) -> prune.Pruner | None:
        """What stops a proposal's first run early if its training curve shows it cannot beat the best's runs
        (`[prune]`, prune.py); None for what is never stopped early: the baseline, a best taken up from
        another run, the best's own re-runs, tasks without train.py's progress lines."""
        config = self.line.config
        if not config.prune.enabled or not config.evaluated or incumbent is None or not incumbent.log_path \
                or experiment.agent == "-" or experiment.agent.startswith("adopt:"):
            return None
        folder, store = Path(incumbent.log_path).parent, self.line.store
        curves = [prune.curve_of(logged_progress(run_folder(folder, i) / "train.log"))
                  for i in range(len(store.measured_runs(incumbent)))]
        return prune.Pruner(curves, self.line.budget, config.prune, speeds=store.measured_speeds(incumbent),
                            tolerance=config.keep.speed_tolerance)

    def _allowances(self) -> tuple[float, float]:
        """How long a run's start-up and finish may take (clock.py): from the baseline's own, once it ran; the
        task's caps until then."""
        train, phases = self.line.config.train, self._phases()
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
        self.line.store.set_line(self.line.tag, phases=phases)

    def _phases(self) -> dict[str, list[float]]:
        """The baseline's start-up and finish seconds so far (its latest 20 runs), by the harness's clock."""
        return dict(self.line.store.line(self.line.tag).phases)


def _gpu_seconds(config, outcomes: list[Outcome]) -> float | None:
    """The GPU time the runs of a cluster took (their time on a node, times the GPUs each asked for)."""
    on_nodes = [o.total_seconds for o in outcomes if o.node]
    return sum(on_nodes) * config.executor.gpus if on_nodes and config.executor.gpus else None
