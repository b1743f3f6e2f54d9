"""The text an agent is given for one proposal (pure: no I/O).

It holds the human's program.md, the rules of the step, the results so far (baseline, best, counts,
the measured noise, a stall of PLATEAU experiments without a keep), the recent experiments with their
deltas, the near misses, the recent crashes with their causes, what the runs sharing bests with this one
tried lately, a summary of everything older, and for a fix, the crash to repair.

It stays within `max_chars` (about 4 characters per token). The program, the rules, the results and
a fix request always go in. The rest is cut from the oldest end, and whatever is cut is summarised
(counts and the descriptions that were tried) rather than dropped, so the agent keeps knowing what
was already tried.
"""

from __future__ import annotations

from autoresearch.agents import ProposalContext
from autoresearch.config import MetricConfig
from autoresearch.decide import complexity
from autoresearch.report.summary import deltas
from autoresearch.report.text import error_line
from autoresearch.store import Experiment, Status

RECENT = 20  # experiments listed one per row
NEAR_MISSES = 5  # discarded experiments closest to the best at their time
CRASHES = 5  # recent crashes and timeouts, with their causes
TAIL_LINES = 40  # lines of a crash's log tail in a fix request
TAIL_CHARS = 4000  # and at most this many characters of it (what candidate code wrote is capped everywhere)
DIFF_CHARS = 6000  # characters of a crashed diff in a fix request
MAX_CHARS = 24_000  # the default size limit of the whole prompt (about 6K tokens)
PLATEAU = 10  # experiments without a keep after which the agent is told the search has stalled
OTHERS = 20  # latest experiments of the runs that share bests with this one (loop.adopt_from)


def build_prompt(context: ProposalContext, *, metric_name: str = "val_bpb", maximize: bool = False,
                 budget_seconds: float | None = None, max_chars: int = MAX_CHARS) -> str:
    metric = MetricConfig(name=metric_name, direction="maximize" if maximize else "minimize")
    history = context.history
    changes = deltas([(e.status, e.metric) for e in history], metric=metric)
    costs = _code_costs(history)
    budget_seconds = budget_seconds or context.budget_seconds
    fixed = [_program(context), _rules(context, metric, budget_seconds),
             _results(history, context.best, metric, context.noise, context.keep_margin, context.best_measured)]
    if context.pending is not None:
        fixed.append(_pending(context.pending, context.best))
    if context.failure is not None:
        fixed.append(_failure(context.failure))
    fixed.append(_checks_failed(history))
    room = max_chars - sum(len(part) for part in fixed)
    recent = history[-RECENT:]
    optional = [_recent(recent, changes[-len(recent):] if recent else [], costs[-len(recent):] if recent else [],
                        metric),
                _near_misses(history, changes, recent, metric), _crashes(history), _others(context.others, metric)]
    kept_parts = []
    for part in optional:
        if part and len(part) <= room:
            kept_parts.append(part)
            room -= len(part)
    older = history[: len(history) - len(recent)]
    summary = _earlier(older, room)
    parts = fixed[:3] + [summary] + kept_parts + fixed[3:]
    return "\n".join(part for part in parts if part).rstrip() + "\n"


def _program(context: ProposalContext) -> str:
    return "# Your research program (from the human)\n\n" + (context.program.strip() or "(program.md is empty)") + "\n"


def _rules(context: ProposalContext, metric: MetricConfig, budget_seconds: float | None) -> str:
    direction = "higher" if metric.maximize else "lower"
    budget = f" after a fixed training budget of {budget_seconds:.0f} s" if budget_seconds else " after a fixed time budget"
    return "\n".join([
        "# This step", "",
        f"Editable files (paths or globs): {', '.join(context.editable)}. Edit only these, in the current folder.",
        f"The harness measures {metric.name} ({direction} is better){budget}, keeps your change only if it "
        "beats the best so far, and records everything. Do not run the experiment yourself, do not commit, "
        "and do not touch the evaluation or the data. Make one focused change. A change whose code was "
        "measured already (comments and layout aside) is not run again.",
        "When done, write a one-line description of the change to the file named by "
        "$AUTORESEARCH_DESCRIPTION_FILE, or give it on a line of its own that starts with 'Description:'. "
        "After it, in one short paragraph, say why you expect the change to help: it is kept with the change, "
        "beside what was measured.", *_price(context, metric), ""])


def _price(context: ProposalContext, metric: MetricConfig) -> list[str]:
    """The price of code (`keep.complexity_cost`), when there is one."""
    if not context.complexity_cost:
        return []
    return [f"Code has a price: a change must beat the best by {context.complexity_cost:g} {metric.name} more for "
            "each line of code it adds (net of the lines it removes; a change that removes lines earns it back)."]


def _checks_failed(history: list[Experiment]) -> str:
    """The output of the user's checks (`keep.checks`) that vetoed the latest proposal, for the agent to fix."""
    last = next((e for e in reversed(history) if e.status is not Status.RUNNING), None)
    if last is None or not last.metrics.get("checks_failed") or not last.error:
        return ""
    tail = "\n".join(last.error.splitlines()[-TAIL_LINES:])[-TAIL_CHARS:]
    return ("# The checks failed on the last proposal\n\n"
            f"#{last.seq} ({_cell(last.description)}) was better, but the checks the human set vetoed it, so it "
            "was not kept. Make them pass this time. Their output:\n\n```\n" + tail + "\n```\n")


def _results(history: list[Experiment], best: Experiment | None, metric: MetricConfig,
             sigma: float | None = None, margin: float | None = None, measured: tuple[float, ...] = ()) -> str:
    lines = ["# Results so far", ""]
    if not history:
        return "\n".join(lines + ["(none yet)", ""])
    counts = {s: sum(e.status is s for e in history) for s in Status if s is not Status.RUNNING}
    lines.append(f"{len(history)} experiments: " + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n) + ".")
    baseline = next((e for e in history if e.status is Status.KEEP and e.metric is not None), None)
    if baseline is not None:
        lines.append(f"Baseline: {metric.name} {baseline.metric:.6f} (#{baseline.seq}).")
    if best is not None and best.metric is not None:
        runs = list(measured) or best.metrics.get("runs") or [best.metric]  # re-measurements count too
        value = sum(runs) / len(runs)
        lines.append(f"Best so far: {metric.name} {value:.6f}" + (f" (mean of {len(runs)} runs)" if len(runs) > 1 else "")
                     + f" (#{best.seq}: {_cell(best.description)}).")
        code = complexity.summary_text(best.metrics, baseline.metrics if baseline is not None
                                       and baseline.seq != best.seq else None)
        if code is not None:
            lines.append(f"Code of the best: {code}.")
    since = _since_last_keep(history)
    if since >= PLATEAU:
        lines.append(f"No change has been kept in the last {since} experiments: the small variations around the "
                     "best are probably used up. Try a different kind of change than the recent ones.")
    noise = [e.metrics.get("val_bpb_stderr") for e in history if isinstance(e.metrics.get("val_bpb_stderr"), float)]
    if sigma is not None:
        margin = 3 * sigma if margin is None else margin
        lines.append(f"Noise: runs of the same code with different seeds differ by about {sigma:.4f} (one standard "
                     f"deviation, measured). A result must beat the best by {margin:.4f} to be kept at once; a "
                     "smaller gain is run again with other seeds before it can be kept, so aim for changes that "
                     "matter more than that. A change that removes code and does as well is kept too.")
    elif noise:
        lines.append(f"Noise: the evaluation's sampling error is about ±{noise[-1]:.4f}, and runs of the same code "
                     "differ by a similar amount or more; a change smaller than that is not a real gain.")
    return "\n".join(lines + [""])


def _since_last_keep(history: list[Experiment]) -> int:
    """Experiments finished after the latest keep (all of them if nothing was kept)."""
    finished = [e for e in history if e.status is not Status.RUNNING]
    keeps = [i for i, e in enumerate(finished) if e.status is Status.KEEP]
    return len(finished) - 1 - keeps[-1] if keeps else len(finished)


def _code_costs(history: list[Experiment]) -> list[str]:
    """What each experiment's change cost in code, as a cell (`complexity.change_cell`): the code lines it
    added and removed, and its complexity against the best of its time (the latest keep before it)."""
    cells, best = [], None
    for e in history:
        code = complexity.recorded(e.metrics)
        cells.append(complexity.change_cell(e.diff, complexity.complexity_delta(code, best)))
        if e.status is Status.KEEP:
            best = code
    return cells


def _recent(recent: list[Experiment], changes: list[float | None], costs: list[str], metric: MetricConfig) -> str:
    if not recent:
        return ""
    rows = ["# Recent experiments", "",
            f"| # | status | {metric.name} | delta vs best then | code lines +/- (complexity vs best then) | "
            "description |", "|---:|---|---:|---:|---:|---|"]
    for e, delta, cost in zip(recent, changes, costs, strict=True):
        value = "-" if e.metric is None else f"{e.metric:.6f}"
        change = "-" if delta is None else f"{delta:+.6f}"
        why = f" ({_cell(error_line(e.error), 80)})" if e.status in (Status.CRASH, Status.TIMEOUT, Status.REJECTED,
                                                                  Status.PRUNED) and e.error else ""
        rows.append(f"| {e.seq} | {e.status.value} | {value} | {change} | {cost} | {_cell(e.description)}{why} |")
    return "\n".join(rows + [""])


def _near_misses(history: list[Experiment], changes: list[float | None], recent: list[Experiment],
                 metric: MetricConfig) -> str:
    shown = {e.seq for e in recent}
    sign = -1.0 if metric.maximize else 1.0
    misses = sorted(((sign * d, e) for e, d in zip(history, changes, strict=True)
                     if e.status is Status.DISCARD and d is not None and e.seq not in shown),
                    key=lambda pair: pair[0])[:NEAR_MISSES]
    if not misses:
        return ""
    rows = ["# Near misses (discarded, closest to the best of their time)", ""]
    rows += [f"- #{e.seq}: {_cell(e.description)} ({metric.name} {e.metric:.6f}, worse by {worse:.6f})"
             for worse, e in misses]
    return "\n".join(rows + [""])


def _crashes(history: list[Experiment]) -> str:
    failed = [e for e in history if e.status in (Status.CRASH, Status.TIMEOUT)][-CRASHES:]
    if not failed:
        return ""
    rows = ["# Recent crashes and their causes", ""]
    rows += [f"- #{e.seq} {e.status.value}: {_cell(e.description)}: {_cell(error_line(e.error), 160) or '?'}"
             for e in failed]
    return "\n".join(rows + [""])


def _others(others: tuple[Experiment, ...], metric: MetricConfig) -> str:
    """What the runs sharing bests with this one tried lately: their own proposals (not their baselines, nor
    the bests they took up), so that one agent does not spend a run on what another has just measured."""
    own = [e for e in others if e.seq > 0 and not e.agent.startswith("adopt:")]
    if not own:
        return ""
    rows = ["# Tried lately in the runs that share their bests with this one", "",
            "Their bests come to this run when they beat its own; a change they discarded need not be tried again.",
            "", f"| run | # | status | {metric.name} | description |", "|---|---:|---|---:|---|"]
    for e in own[-OTHERS:]:
        value = "-" if e.metric is None else f"{e.metric:.6f}"
        rows.append(f"| {_cell(e.tag, 40)} | {e.seq} | {e.status.value} | {value} | {_cell(e.description)} |")
    return "\n".join(rows + [""])


def _earlier(older: list[Experiment], room: int) -> str:
    """Experiments before the recent window, summarised: counts, then the descriptions tried, to fit `room`."""
    if not older:
        return ""
    counts = {s: sum(e.status is s for e in older) for s in Status if s is not Status.RUNNING}
    head = (f"# Earlier experiments (#{older[0].seq} to #{older[-1].seq}), summarised\n\n"
            + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n) + ". Tried: ")
    tried, left = [], room - len(head) - 40
    for e in older:
        item = f"{_cell(e.description, 60)} [{e.status.value}]"
        if len(item) + 2 > left:
            break
        tried.append(item)
        left -= len(item) + 2
    rest = len(older) - len(tried)
    tail = f"; and {rest} more" if rest else ""
    return head + "; ".join(tried) + tail + ".\n"


def _pending(pending: Experiment, best: Experiment | None) -> str:
    base = f"the best so far (#{best.seq})" if best is not None else "the current code"
    return "\n".join(["# Still training", "",
                      f"Experiment #{pending.seq} ({_cell(pending.description)}) is training now; its result is not "
                      f"known yet. Your change is made on {base}. If #{pending.seq} is kept, your change is applied on "
                      "top of it (and you are asked again if it no longer applies). Do not repeat it: propose "
                      "something that is worth trying whatever its result.", ""])


def _failure(failure: Experiment) -> str:
    tail = "\n".join((failure.error or "").splitlines()[-TAIL_LINES:])[-TAIL_CHARS:]
    diff = failure.diff if len(failure.diff) <= DIFF_CHARS else failure.diff[:DIFF_CHARS] + "\n... (cut)"
    return "\n".join(["# Fix this crash", "",
                      f"Experiment #{failure.seq} ({_cell(failure.description, 300)}) crashed. The files in the folder are that "
                      "change. Fix it so it runs, keeping the idea of the change.", "",
                      "Its change:", "```diff", diff.rstrip(), "```", "",
                      "The end of its log:", "```", tail, "```", ""])


def _cell(text: str, width: int = 120) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:width]
