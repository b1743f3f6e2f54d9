"""One experiment in full, for `autoresearch show`: what changed and who proposed it, what it measured
against the best of its time, why it was kept or not, what it cost, and its diff and log.

Pure: `experiment_data` (`experiments_data`: all of them) takes the experiment and its run's history (as `Store.measured` gives it) and returns
JSON-ready figures; `experiment_lines` turns them into text. Reading the store and the log is the caller's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from autoresearch.config import MetricConfig
from autoresearch.report.summary import experiment_deltas, experiment_row, running_best
from autoresearch.report.text import format_duration
from autoresearch.store import Experiment, Status

_AGENT_PREFIX = "agent_"


def experiments_data(history: Sequence[Experiment], *, metric: MetricConfig = MetricConfig()) -> list[dict]:
    """`experiment_data` of every experiment of `history` (one run's, in seq order), in one pass."""
    deltas = experiment_deltas(history, metric=metric)
    bests = running_best([(h.status, h.metric) for h in history], metric=metric)
    out, best_seq = [], None
    for i, (e, delta) in enumerate(zip(history, deltas, strict=True)):
        best_value = bests[i - 1] if i > 0 else None
        out.append(_data(e, delta, best_value, best_seq if best_value is not None else None))
        if i == 0 or bests[i] != bests[i - 1]:
            best_seq = e.seq if bests[i] is not None else None
    return out


def experiment_data(e: Experiment, history: Sequence[Experiment], *,
                    metric: MetricConfig = MetricConfig()) -> dict:
    """The figures of `e`, one experiment of `history` (its run's, in seq order): those of the status table,
    plus the best before it, its runs and seeds, the keep rule's verdict, the agent's spend, the full error,
    the diff and where its log is."""
    index = next(i for i, h in enumerate(history) if h.id == e.id)
    return experiments_data(history[: index + 1], metric=metric)[index]


def _data(e: Experiment, delta: float | None, best_value: float | None, best_seq: int | None) -> dict:
    m = e.metrics
    return {**experiment_row(e, delta), "tag": e.tag, "agent": e.agent, "seed": e.seed,
            "parent_commit": e.parent_commit, "on_branch": e.status is Status.KEEP,
            "best_before": best_value, "best_before_seq": best_seq,
            "runs": m.get("runs"), "run_seeds": m.get("run_seeds"), "verdict": m.get("verdict"),
            "test_metric": m.get("test_bpb"), "tokens": e.tokens, "steps": e.steps, "mfu": m.get("mfu"),
            "adopted_from": m.get("adopted_from"), "same_code_as": m.get("same_code_as"),
            "agent_spend": {k[len(_AGENT_PREFIX):]: v for k, v in m.items()  # numbers; not the agent's notes
                            if k.startswith(_AGENT_PREFIX) and isinstance(v, (int, float))},
            "error": e.error, "diff": e.diff, "log_path": e.log_path, "metrics": dict(m)}


def experiment_lines(data: dict, *, metric: MetricConfig = MetricConfig()) -> list[str]:
    """`experiment_data` as lines of text, without the diff and the log."""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data["started_at"]))
    lines = [f"#{data['seq']} of {data['tag']}: {data['status']} · proposed by {data['agent']} · {when} · "
             f"{format_duration(data['total_seconds'])}", ""]
    lines += [f"    {line}" for line in (data["description"] or "(no description)").splitlines()] + [""]
    if data["metric"] is not None:
        value = f"{metric.name} {data['metric']:.6f}"
        runs = data["runs"] or []
        if len(runs) > 1:
            value += f" (mean of {len(runs)} runs: " + ", ".join(f"{r:.6f}" for r in runs) + ")"
        if data["best_before"] is not None and data["delta"] is not None:
            value += (f"; {data['delta']:+.6f} against the best before it, #{data['best_before_seq']} at "
                      f"{data['best_before']:.6f}")
        lines.append(value)
    if data["metrics"].get("rationale"):
        lines.append(f"the agent's rationale: {data['metrics']['rationale']}")
    if data["verdict"]:
        lines.append(f"verdict: {data['verdict']}")
    if data["test_metric"] is not None:
        lines.append(f"test split: {data['test_metric']:.6f} (never shown to the agent)")
    facts = []
    if data["training_seconds"] is not None:
        facts.append(f"trained {data['training_seconds']:.1f} s")
    if data["peak_memory_gb"]:
        facts.append(f"peak memory {data['peak_memory_gb']:.2f} GB")
    if data["steps"]:
        facts.append(f"{data['steps']:,} steps")
    if data["tokens"]:
        facts.append(f"{data['tokens']:,} tokens")
    if data["mfu"]:
        facts.append(f"MFU {100 * data['mfu']:.1f}%")
    if facts:
        lines.append(" · ".join(facts))
    nodes = list(dict.fromkeys(n for n in data["metrics"].get("run_nodes") or () if n))
    if nodes:
        lines.append("ran on " + ", ".join(nodes) + " (Ray cluster)")
    spend = data["agent_spend"]
    if spend:
        lines.append("agent: " + ", ".join(_spend(k, v) for k, v in sorted(spend.items())))
    if data["adopted_from"]:
        lines.append(f"taken up from run {data['adopted_from']}")
    if data["same_code_as"] is not None:
        lines.append(f"same code as #{data['same_code_as']}")
    commit = (data["commit"] or "")[:12]
    lines.append(f"parent {data['parent_commit'][:12]}" + (f" · commit {commit}" if commit else "")
                 + (" (on the branch)" if data["on_branch"] else " (not on the branch: the diff below is kept "
                                                               "in the store)" if commit else ""))
    if data["error"] and data["status"] != Status.KEEP.value:
        lines += ["", "why:"] + [f"    {line}" for line in data["error"].strip().splitlines()[-30:]]
    return lines


def _spend(key: str, value: float) -> str:
    if key == "cost_usd":
        return f"${value:.4f}"
    if key == "seconds":
        return f"{value:.1f} s"
    return f"{value:,.0f} {key.replace('_', ' ')}"
