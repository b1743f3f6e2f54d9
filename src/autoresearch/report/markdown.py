"""report.md: a short markdown summary of one tag's run (pure: experiments in, text out), labelled with the
task's metric (`MetricConfig`: its name, and lower or higher is better)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from autoresearch.config import MetricConfig
from autoresearch.decide import complexity
from autoresearch.report.noise import confirmations_text, speed_text
from autoresearch.report.summary import (
    Summary,
    adoptions,
    adoptions_text,
    carryover_warning,
    experiment_deltas,
    proposers,
    steering_text,
    summarize,
)
from autoresearch.report.text import error_line, format_duration, noun, truncate
from autoresearch.safe_text import for_markdown, markdown_code
from autoresearch.store import Experiment, Status


def _date(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))


def _cell(text: str, width: int = 100) -> str:
    """Text (a description, an error, an agent's name) cut to `width` and shown literally, on one line, in a
    table cell or a list item (`safe_text.for_markdown`)."""
    return for_markdown(truncate(text, width))


def _agents(experiments: Sequence[Experiment], metric: MetricConfig) -> list[str]:
    """The agents side by side, where more than one proposed (agents taking turns, or a run resumed with
    another agent)."""
    rows = proposers(experiments, metric=metric)
    if len(rows) < 2:
        return []
    better = "higher" if metric.maximize else "lower"
    lines = ["## By agent", "", f"| agent | proposals | kept | crashed | moved the best ({better} is better) | spent |",
             "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        spent = row["spent"]
        cost = ", ".join(filter(None, [f"${spent['cost_usd']:.2f}" if "cost_usd" in spent else "",
                                       f"{format_duration(spent['seconds'])}" if "seconds" in spent else ""]))
        lines.append(f"| {_cell(row['agent'], 40)} | {row['proposals']} | {row['kept']} | {row['failed']} | "
                     f"{row['gain']:.6f} | {cost or '-'} |")
    return lines + [""]


def report_markdown(tag: str, experiments: Sequence[Experiment], *, now: float | None = None,
                    image: str | None = "progress.png", metric: MetricConfig = MetricConfig(),
                    noise: dict | None = None, speed: dict | None = None,
                    steered: Sequence[dict] = ()) -> str:
    """The report of `experiments` (one tag's, in seq order) as markdown.

    Sections: the headline (tag, dates, counts by status, baseline vs best `metric` with the absolute and
    relative improvement, total time), the kept changes in order with the metric and delta vs the best
    before them, the crashes and timeouts with their first error line (`error_line`), and `image` (if
    given). With no experiments it says so. Definitions as in `autoresearch.report.summary`. `noise`
    (`noise.noise_data`) adds the measured run-to-run noise and the runs spent on confirmations; `speed`
    (`noise.speed_data`) the machine's speed at the runs and when it moved; `steered` (`summary.steering`)
    when program.md changed.
    """
    s = summarize(tag, experiments, now, metric=metric)
    name = truncate(metric.name, 60).replace("|", "\\|")  # the task's own settings
    lines = [f"# autoresearch report: {markdown_code(tag)}", ""]
    if s.total == 0:
        lines += [f"No experiments yet for tag {markdown_code(tag)}: start a run with "
                  f"{markdown_code(f'autoresearch run --tag {tag}')}.", ""]
        return "\n".join(lines)
    lines += _headline(s, name, metric)
    lines += _containment(experiments)
    lines += _measurement(name, noise, speed)
    lines += _history(experiments, steered, s.agent)
    lines.append("")
    kept = [e for e in experiments if e.status is Status.KEEP]
    lines += _kept_changes(experiments, kept, name, metric)
    lines += _val_vs_test(kept)
    lines += _agents(experiments, metric)
    lines += _failures(experiments)
    lines += _pruned(experiments)
    if image:
        lines += ["## Progress", "", f"![{name} per experiment]({image})", ""]
    return "\n".join(lines)


def _headline(s: Summary, name: str, metric: MetricConfig) -> list[str]:
    """The first items of the headline: dates, counts, baseline and best (`name`: the metric's, for markdown),
    total time."""
    counts = ", ".join(f"{n} {status}" for status, n in s.counts.items() if n)
    lines = [
        f"- **Dates:** {_date(s.first_started)} to {_date(s.last_ended)}"
        + (" (an experiment is still running)" if s.running else ""),
        f"- **Experiments:** {s.total} ({counts})"
        + (f"; {s.repeats} of the rejected repeated code already measured, and did not run" if s.repeats else ""),
    ]
    if s.baseline is not None:
        lines.append(f"- **Baseline {name}:** {s.baseline.metric:.6f} (#{s.baseline.seq}, "
                     f"{_cell(s.baseline.description, 60)})")
    else:
        lines.append(f"- **Baseline {name}:** none (no experiment finished with a {name})")
    if s.best is not None and s.improvement is not None:
        pct = f"{s.improvement_pct:.2f}%" if s.improvement_pct is not None else "-"
        way = "higher" if metric.maximize else "lower"
        lines.append(f"- **Best {name}:** {s.best.metric:.6f} (#{s.best.seq}, {_cell(s.best.description, 60)}): "
                     f"{s.improvement:.6f} {way} than the baseline ({pct})")
    lines.append(f"- **Total time:** {format_duration(s.wall_seconds)} wall clock, "
                 f"{format_duration(s.experiment_seconds)} in experiments")
    return lines + _code(s)


def _code(s: Summary) -> list[str]:
    """The headline's item on the code's size and complexity, baseline -> best (decide/complexity.py), where
    they were measured: what the gains cost in code."""
    best = complexity.recorded(s.best.metrics) if s.best is not None else None
    if best is None:
        return []
    baseline = complexity.recorded(s.baseline.metrics) if s.baseline is not None else None
    if baseline is None or s.baseline is s.best:
        return [f"- **Code:** {complexity.describe(best)} (the best, #{s.best.seq})"]
    return [f"- **Code:** baseline {complexity.describe(baseline)} -> best {complexity.describe(best)} "
            f"({complexity.describe_change(best, baseline)})"]


def _measurement(name: str, noise: dict | None, speed: dict | None) -> list[str]:
    """The headline's items on the measured run-to-run noise and the machine's speed, where known."""
    lines = []
    if noise is not None and noise.get("sigma") is not None:
        lines.append(f"- **Noise:** runs of the same code differ by {noise['sigma']:.6f} {name} (one standard "
                     f"deviation, {noun(noise['dof'], 'degree')} of freedom); {confirmations_text(noise)}, "
                     f"{noun(noise['extra_runs'], 'run')} in all beyond one per experiment")
    if speed is not None and speed_text(speed) is not None:
        lines.append(f"- **Machine speed:** {speed_text(speed)}" + (
            " (runs are compared only with runs of the best made at about their speed; docs/keep.md)"
            if speed["shifts"] else ""))
    return lines


def _history(experiments: Sequence[Experiment], steered: Sequence[dict], agent: dict) -> list[str]:
    """The headline's items on how the run was led: steering, bests taken from other runs, the agent's
    spend (`agent`: `Summary.agent`)."""
    lines = []
    steering = steering_text(experiments, steered)
    if steering is not None:
        lines.append(f"- **Steering:** {steering}")
    taken = adoptions_text(adoptions(experiments))
    if taken is not None:
        lines.append(f"- **Taken from other runs:** {for_markdown(taken)} (docs/loop.md, \"Runs that share their best\")")
    if agent:
        spent = [f"${agent['cost_usd']:.2f}"] if "cost_usd" in agent else []
        if "tokens_in" in agent or "tokens_out" in agent:
            spent.append(f"{agent.get('tokens_in', 0):,.0f} tokens in, {agent.get('tokens_out', 0):,.0f} out")
        if "seconds" in agent:
            spent.append(f"{format_duration(agent['seconds'])} of agent time")
        lines.append(f"- **Agent spend:** {', '.join(spent)}")
    return lines


def _kept_changes(experiments: Sequence[Experiment], kept: list[Experiment], name: str,
                  metric: MetricConfig) -> list[str]:
    """The "Kept changes" section: each keep's metric, runs, delta vs the best before it, measured gain, and
    what it cost in code: the code lines it added and removed, and how much the complexity grew since the
    keep before it (where both were measured)."""
    deltas = dict(zip((e.seq for e in experiments), experiment_deltas(experiments, metric=metric), strict=True))
    lines = ["## Kept changes", ""]
    if kept:
        lines += [f"| # | {name} | runs | delta | gain ± standard error | lines | description |",
                  "|---:|---:|---:|---:|---:|---:|---|"]
        before = None
        for e in kept:
            d = deltas[e.seq]
            gain, err = e.metrics.get("improvement"), e.metrics.get("improvement_stderr")
            gained = "-" if gain is None else f"{gain:+.6f}" + ("" if err is None else f" ± {err:.6f}")
            code = complexity.recorded(e.metrics)
            cost = complexity.change_cell(e.diff, complexity.complexity_delta(code, before))
            before = code
            lines.append(f"| {e.seq} | {e.metric:.6f} | {len(e.metrics.get('runs') or [e.metric])} | "
                         f"{'-' if d is None else f'{d:+.6f}'} | {gained} | {cost} | {_cell(e.description)} |")
    else:
        lines.append("None.")
    return lines + [""]


def _failures(experiments: Sequence[Experiment]) -> list[str]:
    """The "Crashes and timeouts" section, with each one's first error line."""
    failed = [e for e in experiments if e.status in (Status.CRASH, Status.TIMEOUT)]
    lines = ["## Crashes and timeouts", ""]
    if failed:
        lines += ["| # | status | description | first error line |", "|---:|---|---|---|"]
        for e in failed:
            lines.append(f"| {e.seq} | {e.status.value} | {_cell(e.description, 60)} | "
                         f"{_cell(error_line(e.error) or '(no error text)', 160)} |")
    else:
        lines.append("None.")
    return lines + [""]


def _pruned(experiments: Sequence[Experiment]) -> list[str]:
    """The "Stopped early as hopeless" section, only when some run was stopped early."""
    pruned = [e for e in experiments if e.status is Status.PRUNED]
    if not pruned:
        return []
    return ["## Stopped early as hopeless", "",
            f"{len(pruned)} runs were stopped partway: their training curves showed they could not beat the "
            "best (`[prune]`, docs/keep.md). Stopping can only ever discard.", "",
            "| # | description | why |", "|---:|---|---|",
            *(f"| {e.seq} | {_cell(e.description, 60)} | {_cell(e.error or '', 240)} |" for e in pruned), ""]


def _containment(experiments: list[Experiment]) -> list[str]:
    """How candidate code was contained, loudly when it was not, and what was voided (docs/security.md)."""
    tampered = [e for e in experiments if e.status is Status.TAMPERED]
    lines = []
    if tampered:
        shown = "; ".join(f"#{e.seq} {_cell(tamper_reason(e.error), 80)}" for e in tampered[:10])
        lines.append(f"- **TAMPERED: {len(tampered)} experiment{'s' if len(tampered) > 1 else ''} void, never kept** "
                     f"({shown}{' ...' if len(tampered) > 10 else ''}). See docs/security.md.")
    return lines + _isolation(experiments)


def tamper_reason(error: str | None) -> str:
    """The kind of a void experiment's reason, in a few words (its first clause)."""
    text = (error or "").removeprefix("tampered: ")
    for kind in ("below the entropy floor", "non-causal", "audit failed", "clock disagrees",
                 "far closer to its entropy floor", "changed files the harness owns", "changed committed files"):
        if kind in text:
            return {"clock disagrees": "its own clock disagrees with the harness's",
                    "far closer to its entropy floor": "test score far better than its val score"}.get(kind, kind)
    return text.split(":")[0][:80] or "void"


def _isolation(experiments: list[Experiment]) -> list[str]:
    ways = [e.metrics.get("isolation") for e in experiments if e.metrics.get("isolation")]
    if not ways:
        return []
    bare, landlocked = ways.count("process"), ways.count("landlock")
    if not bare and not landlocked:
        return [f"- **Sandbox:** every run in the bubblewrap box ({len(ways)} runs)"]
    lines = []
    if bare:
        lines.append(f"- **Sandbox: NONE for {bare} of {len(ways)} runs.** Their candidate code ran without "
                     "containment (no bubblewrap and no Landlock, or AUTORESEARCH_SANDBOX=off): with your files, "
                     "network and rights. See docs/security.md.")
    if landlocked:
        lines.append(f"- **Sandbox: WEAKER (Landlock, not the bubblewrap box) for {landlocked} of {len(ways)} runs.** "
                     "Files and TCP were contained; processes, UDP and unix sockets were not. See docs/security.md.")
    return lines


def _val_vs_test(kept: list[Experiment]) -> list[str]:
    """Each kept experiment's val_bpb against the hidden test split's, and a warning when gains stop carrying
    over. The test split is measured for keeps only, never shown to the agent, never used to decide."""
    tested = [e for e in kept if e.metric is not None and isinstance(e.metrics.get("test_bpb"), float)]
    if not tested:
        return []
    lines = ["## Validation vs the hidden test split", "",
             "| # | val_bpb | test_bpb | test - val | description |", "|---:|---:|---:|---:|---|"]
    for e in tested:
        test = e.metrics["test_bpb"]
        lines.append(f"| {e.seq} | {e.metric:.6f} | {test:.6f} | {test - e.metric:+.6f} | {_cell(e.description, 60)} |")
    warning = carryover_warning([(e.seq, e.metric, e.metrics["test_bpb"]) for e in tested])
    lines += ["", f"**Warning:** {warning}." if warning else "Val gains carry over to the test split.", ""]
    return lines
