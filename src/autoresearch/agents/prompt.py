"""The text an LLM agent is given for one proposal (pure: no I/O).

It holds the human's program.md, what may be edited, the best result so far, the recent experiments
(the agent's memory of what was tried), and for a fix, the crash it is asked to repair.
"""

from __future__ import annotations

from autoresearch.agents import ProposalContext
from autoresearch.store import Experiment

RECENT = 20  # experiments listed in the prompt
TAIL_LINES = 40  # lines of a crash's log tail
DIFF_CHARS = 6000  # characters of a crashed diff


def build_prompt(context: ProposalContext, *, metric_name: str = "val_bpb", maximize: bool = False) -> str:
    direction = "higher" if maximize else "lower"
    parts = [
        "# Your research program (from the human)",
        "",
        context.program.strip() or "(program.md is empty)",
        "",
        "# This step",
        "",
        f"Editable files (paths or globs): {', '.join(context.editable)}. Edit only these, in the current folder.",
        f"The harness measures {metric_name} ({direction} is better) after a fixed time budget, keeps your "
        "change only if it beats the best so far, and records everything. Do not run the experiment yourself; "
        "do not commit. Make one focused change.",
        "When done, write a one-line description of the change to the file named by "
        "$AUTORESEARCH_DESCRIPTION_FILE, or give it on a line of its own that starts with 'Description:'.",
        "",
    ]
    if context.best is not None and context.best.metric is not None:
        parts += [f"Best so far: {metric_name} {context.best.metric:.6f} (experiment #{context.best.seq}: "
                  f"{context.best.description}).", ""]
    parts += ["# Recent experiments", "", _history(context.history), ""]
    if context.failure is not None:
        parts += _failure(context.failure)
    return "\n".join(parts).rstrip() + "\n"


def _history(history: list[Experiment]) -> str:
    if not history:
        return "(none yet)"
    rows = ["| # | status | metric | description |", "|---:|---|---:|---|"]
    for e in history[-RECENT:]:
        metric = "-" if e.metric is None else f"{e.metric:.6f}"
        rows.append(f"| {e.seq} | {e.status.value} | {metric} | {_cell(e.description)} |")
    return "\n".join(rows)


def _failure(failure: Experiment) -> list[str]:
    tail = "\n".join((failure.error or "").splitlines()[-TAIL_LINES:])
    diff = failure.diff if len(failure.diff) <= DIFF_CHARS else failure.diff[:DIFF_CHARS] + "\n... (cut)"
    return ["# Fix this crash", "",
            f"Experiment #{failure.seq} ({failure.description}) crashed. The files in the folder are that "
            "change. Fix it so it runs, keeping the idea of the change.", "",
            "Its change:", "```diff", diff.rstrip(), "```", "",
            "The end of its log:", "```", tail, "```", ""]


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")[:120]
