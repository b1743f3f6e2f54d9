"""What the dashboard's pages show, read from a task folder: the store and the run logs, never written.

Each function returns JSON-ready dicts (`pages` turns them into HTML, the browser's script draws the charts
from them, `/api/...` serves them as they are). The figures are `autoresearch.report`'s, so the dashboard,
`status` and report.html agree: the same `measured` history, the same running best, the same noise.

- `runs_view`: every run (tag) of the folder side by side;
- `run_view`: one run: its summary, one point per experiment, the kept step line, the noise band, val
  against test for kept changes, the lineage of kept commits;
- `experiment_view`: one experiment in full: `report.experiment`'s figures, each run, the agent's prompt and
  answer, the log's tail;
- `live_view`: the running experiment's training curve against the best's, and a mark that changes whenever
  the run has something new (`version`), for the server-sent events.
"""

from __future__ import annotations

import time
from pathlib import Path

from autoresearch.config import MetricConfig
from autoresearch.decide.measured import measured
from autoresearch.report.experiment import experiments_data
from autoresearch.report.noise import noise_data, speed_data
from autoresearch.report.progress import parse_events, progress_text, read_progress
from autoresearch.report.runs import loop_state
from autoresearch.report.status import cluster_of
from autoresearch.report.summary import running_best, summarize, summary_data
from autoresearch.store import Experiment, Status, Store

LOG_TAIL_LINES = 80  # of an experiment's log, shown on its page
CURVE_POINTS = 400  # at most, of a training curve sent to the browser (evenly thinned)


def runs_view(store: Store, task_dir: Path, *, metric: MetricConfig, budget: float,
              now: float | None = None) -> list[dict]:
    """One dict per run of the folder: its summary figures, machine speed, whether its loop lives, and what
    it is doing now."""
    now = time.time() if now is None else now
    out = []
    for tag in store.tags():
        experiments = measured(store, tag)
        summary = summarize(tag, experiments, now, metric=metric)
        loop = loop_state(task_dir, tag)
        out.append({**summary_data(summary), "loop": loop, "speed": speed_data(store, tag).get("latest"),
                    "crashes": summary.counts["crash"] + summary.counts["timeout"],
                    "doing": _doing(store, tag, summary.running, loop, budget)})
    return out


def _doing(store: Store, tag: str, running: Experiment | None, loop: dict, budget: float) -> str:
    if loop["alive"] is False:
        return "stopped"
    if running is None:
        return "between experiments (the agent is proposing, or the best is measured again)"
    budget = store.line(tag).budget_seconds or budget
    return f"#{running.seq} {running.description[:60]}: {progress_text(read_progress(running.log_path), budget)}"


def run_view(store: Store, tag: str, *, metric: MetricConfig, now: float | None = None) -> dict:
    """The run `tag` for its page: summary, `points` (one per experiment, without diffs), `best_line` (the
    running best after each finished experiment), `noise`, `val_test` and `lineage`."""
    experiments = measured(store, tag)
    data = experiments_data(experiments, metric=metric)
    finished = [e for e in experiments if e.finished]
    bests = running_best([(e.status, e.metric) for e in finished], metric=metric)
    points = [_point(d) for d in data]
    return {"summary": summary_data(summarize(tag, experiments, now, metric=metric)),
            "metric": {"name": metric.name, "maximize": metric.maximize},
            "points": points,
            "best_line": [{"seq": e.seq, "best": b} for e, b in zip(finished, bests, strict=True) if b is not None],
            "noise": noise_data(store, tag), "speed": speed_data(store, tag),
            "cluster": cluster_of(store, experiments),
            "val_test": [{"seq": p["seq"], "val": p["metric"], "test": p["test"], "description": p["description"]}
                         for p in points if p["status"] == Status.KEEP.value and p["test"] is not None],
            "lineage": lineage(store, tag, experiments)}


def _point(d: dict) -> dict:
    """One experiment as the chart and the table take it."""
    return {"seq": d["seq"], "status": d["status"], "metric": d["metric"], "delta": d["delta"],
            "description": (d["description"] or "").splitlines()[0] if d["description"] else "",
            "agent": d["agent"], "cost": d["agent_spend"].get("cost_usd"),
            "tokens": (d["agent_spend"].get("tokens_in") or 0) + (d["agent_spend"].get("tokens_out") or 0) or None,
            "test": d["test_metric"], "seconds": d["total_seconds"], "started_at": d["started_at"],
            "runs": len(d["runs"] or ()) or (1 if d["metric"] is not None else 0), "error": d["error"]}


def lineage(store: Store, tag: str, experiments: list[Experiment]) -> list[dict]:
    """The kept commits of `tag` as a tree: each kept experiment with the kept experiment its commit was
    built on (`parent_seq`, or `parent` as `tag #seq` for a best taken up from another run), root first."""
    # this run's own commits win: runs of one folder start from the same commit, so baselines share theirs
    others = [e for t in store.tags() if t != tag for e in store.experiments(t)]
    by_commit = {e.commit: e for e in [*others, *experiments] if e.status is Status.KEEP and e.commit}
    out = []
    for e in experiments:
        if e.status is not Status.KEEP:
            continue
        parent = None if e.commit == e.parent_commit else by_commit.get(e.parent_commit)  # a baseline: a root
        out.append({"seq": e.seq, "commit": (e.commit or "")[:12], "metric": e.metric,
                    "description": (e.description or "").splitlines()[0] if e.description else "",
                    "parent_seq": parent.seq if parent is not None and parent.tag == tag else None,
                    "parent": None if parent is None or parent.tag == tag else f"{parent.tag} #{parent.seq}",
                    "adopted_from": _adopted(e.metrics)})
    return out


def _adopted(metrics: dict) -> str | None:
    """`gpu1 #7`: the run and experiment a best taken up came from (`loop/adopt.py`); None if it was not."""
    source = metrics.get("adopted_from")
    if not source:
        return None
    return f"{source} #{metrics['adopted_seq']}" if metrics.get("adopted_seq") is not None else str(source)


def experiment_view(store: Store, tag: str, seq: int, *, metric: MetricConfig) -> dict | None:
    """Experiment `seq` of `tag` in full, or None if there is none: `report.experiment`'s figures, each of
    its runs (seed, metric, machine speed, why it was made, node), the agent's prompt and answer, and the tail
    of its log."""
    experiments = measured(store, tag)
    index = next((i for i, e in enumerate(experiments) if e.seq == seq), None)
    if index is None:
        return None
    e = experiments[index]
    data = experiments_data(experiments[: index + 1], metric=metric)[index]
    runs = [{"seed": r.seed, "metric": r.metric, "speed": r.speed, "purpose": r.purpose, "of_best": r.of_best,
             "node": r.node} for r in store.runs(e)]
    return {**data, "run_list": runs, "transcript": store.transcript(e.id), "log_tail": log_tail(e.log_path),
            "metric_name": metric.name}


def log_tail(log_path: str | None, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last `lines` lines of a log (None: no log, or not readable), without its progress lines."""
    if not log_path:
        return None
    try:
        with open(log_path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 256 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    kept = [line for line in text.splitlines() if not line.startswith("@autoresearch ")]
    return "\n".join(kept[-lines:])


def curve(log_path: str | None) -> list[list[float]]:
    """A run's training curve from its log: `[seconds, train loss]` of each step event, at most
    `CURVE_POINTS` (evenly thinned, the last kept)."""
    if not log_path:
        return []
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return []
    points = [[float(e["elapsed"]), float(e["train_loss"])] for e in parse_events(text)
              if e["event"] == "step" and isinstance(e.get("elapsed"), (int, float))
              and isinstance(e.get("train_loss"), (int, float))]
    if len(points) > CURVE_POINTS:
        step = len(points) / CURVE_POINTS
        points = [points[int(i * step)] for i in range(CURVE_POINTS - 1)] + [points[-1]]
    return points


def live_view(store: Store, tag: str, *, budget: float) -> dict:
    """The running experiment of `tag` (None when none runs) with its training curve, and the curves of the
    best's runs to compare at the same second; `version` changes whenever something new happened in the run (an
    experiment began or ended, the running one logged a step)."""
    experiments = store.experiments(tag)
    running = next((e for e in reversed(experiments) if e.status is Status.RUNNING), None)
    best = store.incumbent(tag)
    live = None
    if running is not None:
        progress = read_progress(running.log_path)
        budget = store.line(tag).budget_seconds or budget
        live = {"seq": running.seq, "description": running.description, "started_at": running.started_at,
                "curve": curve(running.log_path), "progress": progress_text(progress, budget),
                "budget": budget}
    return {"tag": tag, "running": live, "version": live_version(store, tag),
            "best": None if best is None else {"seq": best.seq, "metric": best.metric,
                                               "curves": [c for c in map(curve, run_logs(best.log_path)) if c]}}


def run_logs(log_path: str | None, most: int = 8) -> list[str]:
    """The logs of an experiment's runs: its first run's (`log_path`), then those of its further runs
    (`run-N/train.log` beside it: confirmations, noise seeds, re-measurements), at most `most`."""
    if not log_path:
        return []
    first = Path(log_path)
    others = sorted(first.parent.glob("run-*/" + first.name), key=lambda p: int(p.parent.name[4:] or 0)
                    if p.parent.name[4:].isdigit() else 0)
    return [str(p) for p in [first, *others][:most]]


def live_version(store: Store, tag: str) -> str:
    """A mark that changes whenever the run `tag` has something new: an experiment began or ended, or the
    running one's log grew. Cheap (the store's cached rows and one stat), for the event streams' polls."""
    experiments = store.experiments(tag)
    running = next((e for e in reversed(experiments) if e.status is Status.RUNNING), None)
    size = _size(running.log_path) if running is not None else 0
    return f"{len(experiments)}.{sum(1 for e in experiments if e.finished)}.{size}"


def _size(path: str | None) -> int:
    try:
        return Path(path).stat().st_size if path else 0
    except OSError:
        return 0
