"""What a distillation decides, as pure functions of store records (docs/distill.md).

A run's kept changes (`KeptChange`, one per kept experiment after the baseline) are tried for removal one at
a time, the least valuable at keep time first (`removal_order`). Each removal is an experiment of the distill
line, judged by the keep rule against the distilled code so far; `outcome_of` reads what each one showed:
a removal the rule kept (the code without the change is as good within the noise, and simpler) drops the
change; any other keeps it, with what removing it cost (its effect at the end, with its standard error).
`final_check` compares the distilled code with the original best, and `report_markdown` writes distill.md.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from autoresearch.config import MetricConfig
from autoresearch.decide.stats import Noise, Thresholds, standard_error
from autoresearch.safe_text import for_markdown
from autoresearch.store import Experiment, Status

DISTILL_SUFFIX = "-distill"  # the line of removals: tag `<tag>-distill`
RESULT_SUFFIX = "-distilled"  # the branch of what is left: `autoresearch/<tag>-distilled`
AGENT = "distill"
SUPERSEDED = "superseded"  # the reason a removal fails when nothing of the change is left in the code


@dataclass(frozen=True)
class KeptChange:
    """A kept change of the run being distilled: the commit its experiment added to the run's branch."""

    seq: int
    commit: str
    description: str
    gain_at_keep: float | None  # how much better than the best before it, when it was kept (positive: better)
    adopted_from: str | None = None  # a best taken up from another run
    rationale: str | None = None  # what the agent said of it, where it said anything

    def as_dict(self) -> dict:
        return {"seq": self.seq, "commit": self.commit, "description": self.description,
                "gain_at_keep": self.gain_at_keep, "adopted_from": self.adopted_from, "rationale": self.rationale}

    @classmethod
    def from_dict(cls, data: dict) -> KeptChange:
        return cls(**data)


def kept_changes(history: Sequence[Experiment], gains: Sequence[float | None]) -> list[KeptChange]:
    """The kept changes of a run's history (its experiments in seq order, `gains` their gains against the best
    before each, positive: better), the baseline left out."""
    out = []
    for e, gain in zip(history, gains, strict=True):
        if e.status is Status.KEEP and e.seq > 0 and e.commit and e.commit != e.parent_commit:
            source = e.metrics.get("adopted_from")
            out.append(KeptChange(seq=e.seq, commit=e.commit, description=e.description, gain_at_keep=gain,
                                  adopted_from=str(source) if source else None,
                                  rationale=e.metrics.get("rationale")))
    return out


def removal_order(changes: Sequence[KeptChange]) -> list[KeptChange]:
    """The order removals are tried in: the smallest gain at keep time first (the likeliest to be worth
    nothing), ties by seq; a change whose gain is unknown last."""
    return sorted(changes, key=lambda c: (c.gain_at_keep is None, c.gain_at_keep or 0.0, c.seq))


def removal_description(change: KeptChange) -> str:
    return f"without #{change.seq}: {change.description.splitlines()[0] if change.description else ''}"


@dataclass(frozen=True)
class ChangeOutcome:
    """What trying to remove one change showed."""

    change: KeptChange
    dropped: bool
    why: str  # in words: dropped, needed, cannot be removed alone, not tried
    worth: float | None = None  # what removing it cost, in the metric's better direction (positive: it helps)
    stderr: float | None = None  # of `worth`
    experiment: int | None = None  # the distill line's experiment that tried it


def outcome_of(change: KeptChange, removal: Experiment | None) -> ChangeOutcome:
    """What `removal` (the distill line's experiment that tried to remove `change`; None: not tried yet)
    showed of it."""
    if removal is None:
        return ChangeOutcome(change, False, "not tried (the distillation stopped before it): kept")
    if removal.status is Status.RUNNING:
        return ChangeOutcome(change, False, "being measured", experiment=removal.seq)
    improvement = removal.metrics.get("improvement")
    stderr = removal.metrics.get("improvement_stderr")
    worth = -improvement if isinstance(improvement, (int, float)) else None
    if removal.status is Status.KEEP:
        return ChangeOutcome(change, True, "worth nothing beyond the noise: dropped", worth, stderr, removal.seq)
    if removal.status is Status.DISCARD:
        return ChangeOutcome(change, False, "worse without it: kept", worth, stderr, removal.seq)
    if removal.status is Status.REJECTED and SUPERSEDED in (removal.error or ""):
        return ChangeOutcome(change, True, "superseded: every line it changed was changed again later, so it "
                             "lives on in those changes", experiment=removal.seq)
    if removal.status is Status.REJECTED:
        return ChangeOutcome(change, False, "cannot be removed alone: kept", experiment=removal.seq)
    return ChangeOutcome(change, False, f"without it the run fails ({removal.status.value}): kept",
                         experiment=removal.seq)


def outcomes(order: Sequence[KeptChange], distill_history: Sequence[Experiment]) -> list[ChangeOutcome]:
    """Each change of `order` with what its removal showed: the distill agent's experiments are its removals,
    in that order (a rejected proposal counts: it is the try of a change that could not be removed)."""
    removals = [e for e in distill_history if e.seq > 0 and e.agent == AGENT]
    return [outcome_of(change, removals[i] if i < len(removals) else None) for i, change in enumerate(order)]


@dataclass(frozen=True)
class FinalCheck:
    original: float
    distilled: float
    difference: float  # distilled minus original, in the metric's better direction (positive: better)
    stderr: float
    z: float
    passed: bool  # not worse than the original best beyond the noise
    unchanged: bool = False  # nothing was dropped: the distilled code is the original best's

    def text(self, metric: MetricConfig) -> str:
        if self.unchanged:
            return f"nothing was dropped: the distilled code is the original best's ({metric.name} {self.original:.6f})"
        verdict = "not worse beyond the noise" if self.passed else "WORSE than the original best beyond the noise"
        spread = f" ± {self.stderr:.6f} ({self.z:+.1f} standard errors)" if math.isfinite(self.z) else ""
        return (f"the distilled code's {metric.name} is {self.distilled:.6f} against {self.original:.6f} for the "
                f"original best ({self.difference:+.6f}, positive is better{spread}): {verdict}")


def final_check(original: Sequence[float], distilled: Sequence[float], noise: Noise, *, maximize: bool,
                thresholds: Thresholds = Thresholds()) -> FinalCheck:
    """Is the distilled code (the runs `distilled`) no worse than the original best (`original`) beyond the
    noise: not below it by `confirm_z` standard errors or more?"""
    sign = 1.0 if maximize else -1.0
    a, b = statistics.fmean(original), statistics.fmean(distilled)
    difference = sign * (b - a)
    stderr = standard_error(noise, len(distilled), len(original), thresholds) if noise.known else math.nan
    z = difference / stderr if stderr and math.isfinite(stderr) else (0.0 if difference == 0 else
                                                                      math.copysign(math.inf, difference))
    return FinalCheck(a, b, difference, stderr, z, z > -thresholds.confirm_z)


def commit_message(outcome: ChangeOutcome, tag: str, metric: MetricConfig) -> str:
    """The distilled branch's commit of one change: its description, then what it is worth and where it
    came from."""
    c = outcome.change
    lines = [c.description.strip() or f"change #{c.seq}", ""]
    if outcome.worth is not None:
        spread = f" ± {outcome.stderr:.6f}" if outcome.stderr is not None else ""
        lines.append(f"Effect: {metric.name} {_signed_gain(outcome.worth, metric)}{spread} with it "
                     f"(measured by removing it from the distilled code).")
    else:
        lines.append(f"Effect: {outcome.why}.")
    if c.gain_at_keep is not None:
        lines.append(f"When kept: {_signed_gain(c.gain_at_keep, metric)} against the best before it.")
    lines.append(f"From experiment #{c.seq} of {tag} (commit {c.commit[:12]})"
                 + (f", taken up from {c.adopted_from}" if c.adopted_from else "") + ".")
    return "\n".join(lines) + "\n"


def _signed_gain(gain: float, metric: MetricConfig) -> str:
    """A gain (positive: better) as a change of the metric: `-0.0123` for a metric to minimize."""
    return f"{gain if metric.maximize else -gain:+.6f}"


def report_markdown(tag: str, results: Sequence[ChangeOutcome], check: FinalCheck | None, *, metric: MetricConfig,
                    runs: int, branch: str | None, squashed: bool = False) -> str:
    """distill.md: every kept change of `tag`, its effect when kept and at the end, what was dropped, and how
    the distilled code compares with the original best."""
    kept = [r for r in results if not r.dropped]
    dropped = [r for r in results if r.dropped]
    superseded = [r for r in dropped if r.why.startswith(SUPERSEDED)]
    lines = [f"# Distillation of {tag}", "",
             f"{len(results)} kept changes; {len(kept)} matter, {len(dropped) - len(superseded)} dropped as worth "
             f"nothing, {len(superseded)} superseded by later ones; {runs} training runs.", ""]
    if branch:
        lines.append(f"Branch `{branch}`: the changes that matter, one commit each"
                     + (" (squashed into one: they no longer apply one by one without the dropped ones)"
                        if squashed else "") + ".")
        lines.append("")
    if check is not None:
        lines += [f"Check: {check.text(metric)}.", ""]
    direction = "lower" if not metric.maximize else "higher"
    lines += [f"Effects are changes of {metric.name} ({direction} is better) that each change brings: when it was "
              "kept, against the best before it; at the end, measured by removing it from the distilled code "
              "(± one standard error).", "",
              "| # | change | when kept | at the end | verdict | the agent's rationale |",
              "|---|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: r.change.seq):
        c = r.change
        at_keep = "-" if c.gain_at_keep is None else _signed_gain(c.gain_at_keep, metric)
        at_end = "-" if r.worth is None else _signed_gain(r.worth, metric) + (
            f" ± {r.stderr:.6f}" if r.stderr is not None else "")
        lines.append(f"| {c.seq} | {for_markdown(c.description)} | {at_keep} | {at_end} | {r.why} | "
                     f"{for_markdown(c.rationale) if c.rationale else '-'} |")
    worthless = [r for r in dropped if r not in superseded]
    if worthless:
        lines += ["", "Dropped: " + ", ".join(f"#{r.change.seq} ({for_markdown(r.change.description)})"
                                              for r in worthless) + "."]
    if superseded:
        lines += ["", "Superseded (folded into the later changes that rewrote their lines): " + ", ".join(
            f"#{r.change.seq} ({for_markdown(r.change.description)})" for r in superseded) + "."]
    return "\n".join(lines) + "\n"
