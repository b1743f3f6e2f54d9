"""`LocalRunner`: runs on this machine, in the loop's worktree, in the sandbox (runner.run_experiment).

Around each run it owns what only this machine can do: the worktree holds exactly the requested commit's
files and none of what an earlier run left in ignored files; the next run's interpreter is started ahead of
time (prestart.py); evaluation workers wait; and afterwards it checks that the run changed nothing the
harness owns (integrity.py), voiding it if it did. The compile cache of the baseline's first sound run is
frozen for every later run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from autoresearch.config import TaskConfig
from autoresearch.data.prepare import Dataset
from autoresearch.run import integrity, sandbox
from autoresearch.run.environment import can_prestart, candidate_box, spare_workers, static_env
from autoresearch.run.evaluate import SpareWorkers
from autoresearch.run.folders import freeze_compile_cache, remove_models
from autoresearch.run.runner import run_experiment
from autoresearch.run.seam import Outcome, RunRequest
from autoresearch.workspace import Worktree

KEPT_FOR_COMMANDS = (".venv/",)  # ignored files a task's own command may keep between runs (its environment)


class LocalRunner:
    runs_at_once = 1  # one working copy, one device: runs go one after another

    def __init__(self, task_dir: Path, worktree: Worktree, config: TaskConfig, dataset: Dataset | None) -> None:
        self.task_dir, self.worktree, self.config, self.dataset = task_dir, worktree, config, dataset
        self._prestarted: sandbox.CandidateProcess | None = None  # the next run's interpreter
        self._spares: SpareWorkers | None = None  # evaluation workers started ahead of time

    def run(self, request: RunRequest, on_event: Callable[[dict], None]) -> Outcome:
        self._checkout(request.commit)
        self._prestart()  # every run gets a prestarted interpreter, and with it a speed probe
        prestarted, self._prestarted = self._prestarted, None

        def forward(event: dict) -> None:
            if event.get("event") == "machine_speed":
                # The interpreter for the next run (prestart.py) imports torch now, once the speed is measured
                # and while this one's train.py starts up, and then waits: nothing of it competes with the
                # training, the evaluation or the probe.
                self._prestart()
            on_event(event)

        before = integrity.snapshot(self.task_dir, self.dataset)
        if self._spares is None and self.config.evaluated:
            self._spares = spare_workers(self.worktree.path, self.config)
        bar, better = request.keep_bar, self.config.metric.better
        probe = None if self.config.eval.probe != "keeps" else (lambda m: bar is None or better(m, bar))
        try:
            outcome = run_experiment(self.worktree.path, self.config, self.dataset, budget=request.budget,
                                     seed=request.seed, run_dir=request.run_dir, on_event=forward,
                                     prestarted=prestarted, probe=probe, spares=self._spares,
                                     stop_when=request.pruner.observe if request.pruner is not None else None,
                                     startup_allowance=request.startup_allowance,
                                     finish_allowance=request.finish_allowance)
            self._prestart()  # when the one started above was used up (a crash before it began)
            tampering = self._tampering(before, request.commit, outcome.isolation, on_event)
            if tampering:
                outcome = replace(outcome, status="tampered", error=tampering)
            if request.trusted and outcome.status == "ok":
                frozen = freeze_compile_cache(self.worktree.path, self.config.sandbox.compile_cache_gb)
                if frozen:
                    on_event({"event": "cache_frozen", "bytes": frozen})
                elif frozen is None:
                    on_event({"event": "cache_not_frozen", "limit_gb": self.config.sandbox.compile_cache_gb})
        finally:
            self._clean()  # whatever the run wrote into the working copy
        return outcome

    def cancel(self, request: RunRequest) -> None:
        """Nothing runs here that the loop did not wait for."""

    def drop_models(self, experiment_dir: Path, *, keep_first: bool) -> None:
        remove_models(experiment_dir, keep_first=keep_first)

    def close(self) -> None:
        if self._prestarted is not None:
            self._prestarted.kill()
            self._prestarted = None
        if self._spares is not None:
            self._spares.close()
            self._spares = None

    def _checkout(self, commit: str) -> None:
        """The worktree holds `commit`'s files, committed ones only: a run of the best while a candidate is
        checked out (HEAD stays where it is; `_clean` puts HEAD's files back)."""
        self.worktree.discard_changes()
        if commit != self.worktree.head():
            self.worktree.restore_files(commit)
        self._remove_ignored()

    def _clean(self) -> None:
        self.worktree.discard_changes()
        self._remove_ignored()

    def _remove_ignored(self) -> None:
        # None of what an earlier run or the agent left in ignored files (a bytecode cache that would stand in
        # for the source, a stash of weights): only a task's own command keeps its environment (`uv run`'s).
        self.worktree.remove_ignored(keep=() if self.config.evaluated else KEPT_FOR_COMMANDS)

    def _prestart(self) -> None:
        if self._prestarted is None and can_prestart(self.config):
            self._prestarted = sandbox.prestart_python(candidate_box(self.worktree.path, self.config, self.dataset),
                                                       static_env(self.worktree.path, self.config))

    def _tampering(self, before: integrity.Snapshot, commit: str, isolation: str | None,
                   on_event: Callable[[dict], None]) -> str | None:
        """What the run changed of what the harness owns, or of the committed files of the commit it ran; None
        if nothing. The person's edits of the task's own files during the run are told apart where they can be
        (`_edited_by_person`), and reported rather than counted."""
        changed = integrity.snapshot(self.task_dir, self.dataset).changed_since(before)
        if any(p.endswith((".pth", *integrity.STARTUP_MODULES)) for p in changed):
            mended = integrity.restore_startup_code(before)
            on_event({"event": "startup_code_restored", "files": mended})
        edited = self._edited_by_person(changed, isolation)
        if edited:
            changed = [p for p in changed if p not in edited]
            on_event({"event": "task_edited", "files": sorted(Path(p).name for p in edited),
                      "boxed": isolation in sandbox.WRITE_CONFINED})
        committed = self.worktree.changed_tracked_files(commit)
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
