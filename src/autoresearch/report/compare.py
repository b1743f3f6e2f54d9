"""Comparing the runs (tags) of one task folder: which got further, for equal effort, and whether the
difference is more than the noise. What `autoresearch compare` prints and writes (docs/compare.md).

The pure part takes `Contender`s, one per tag, and returns figures and sentences; `contenders` reads them
from the store, and `write_compare` writes compare.png and compare.md. Two ways to compare:

- **runs**: each tag's best (the mean of its runs at the latest machine speed, as `status` shows it), and
  the difference between two bests against the noise each tag measured: stderr = sqrt(s_a^2/n_a +
  s_b^2/n_b), with s a tag's noise sigma and n the number of runs of its best. This compares two runs, not
  two agents: a search's best is partly the luck of its path.
- **agents**: where an agent has two or more tags (e.g. `--tag claude-1`, `--tag claude-2`), the mean of
  their bests and its spread over the tags, and Welch's difference between two agents. This is the
  comparison that says which agent is better on the task.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from autoresearch import protocol
from autoresearch.config import MetricConfig
from autoresearch.decide import speed
from autoresearch.decide.measured import current_runs, measured, speed_tolerance
from autoresearch.report.noise import latest_speed, measured_noise, speed_data
from autoresearch.report.summary import Summary, adoptions, proposers, running_best, summarize
from autoresearch.report.text import format_duration
from autoresearch.safe_text import for_markdown, for_terminal
from autoresearch.store import Status, Store

CLEAR_Z = 2.0  # a difference of at least this many standard errors is called more than the noise


@dataclass(frozen=True)
class Contender:
    """One tag as compared."""

    tag: str
    agents: tuple[str, ...]  # the agents that proposed its experiments, most used first
    summary: Summary
    curve: tuple[tuple[int, float, float], ...]  # after each finished experiment once one was kept:
    #                                               (experiments finished, hours since the first began, best so far)
    best_runs: tuple[float, ...] = ()  # the best's runs at the tag's latest machine speed
    sigma: float | None = None  # the tag's measured run-to-run noise
    budget: float | None = None  # training seconds per run
    speed: float | None = None  # the machine's median speed over the tag's runs (GFLOP/s, `speed_data`)
    programs: tuple[str, ...] = ()  # the program.md texts its proposals were made under (ids), in order
    adopted: tuple[str, ...] = ()  # the runs whose best it took up and kept (`loop.adopt_from`), in order
    lineup: str | None = None  # agents that took turns in it (`Rotation.lineup`, e.g. "claude+tune*2")
    protocol: dict | None = None  # the settings it measured under (`protocol.of`); None for a run before they were kept

    @property
    def agent(self) -> str:
        """Whom the run counts for: its agents taking turns, as one; else the agent that proposed most of it."""
        return self.lineup or (self.agents[0] if self.agents else "-")

    @property
    def best(self) -> float | None:
        return sum(self.best_runs) / len(self.best_runs) if self.best_runs else None

    @property
    def label(self) -> str:
        return f"{self.tag} ({self.lineup or ', '.join(self.agents) or 'baseline only'})"


@dataclass(frozen=True)
class Gap:
    """How much better `a` is than `b` (positive: better, in the metric's direction), with its standard error
    (None where a noise is unknown)."""

    a: str
    b: str
    value: float
    stderr: float | None

    @property
    def z(self) -> float | None:
        return self.value / self.stderr if self.stderr else None

    def sentence(self, metric: MetricConfig, what: str = "") -> str:
        head = f"{self.a} is better than {self.b}{what} by {self.value:.6f} {metric.name}"
        if self.stderr == 0.0:  # measured, and exactly 0: a deterministic task
            return f"{head}: the runs show no noise at all, so it is not luck"
        if self.z is None:
            return head + ": the noise is not measured, so it cannot be told from luck"
        verdict = "more than the noise" if self.z >= CLEAR_Z else "within the noise"
        return f"{head} ± {self.stderr:.6f} ({self.z:.1f} standard errors): {verdict}"


def ranked(contenders: Sequence[Contender], metric: MetricConfig) -> list[Contender]:
    """Best first (under the metric's direction); tags with no best last."""
    sign = -1.0 if metric.maximize else 1.0
    return sorted(contenders, key=lambda c: (c.best is None, sign * (c.best or 0.0), c.tag))


def best_at(curve: Sequence[tuple[int, float, float]], *, experiments: int | None = None,
            hours: float | None = None) -> float | None:
    """The best so far once `experiments` had finished, or by `hours`; None if nothing was kept by then."""
    found = None
    for count, at, best in curve:
        if (experiments is not None and count > experiments) or (hours is not None and at > hours):
            break
        found = best
    return found


def run_gap(a: Contender, b: Contender, metric: MetricConfig) -> Gap:
    """The difference of two tags' bests, with the noise each measured (see the module docstring)."""
    assert a.best is not None and b.best is not None
    value = (a.best - b.best) if metric.maximize else (b.best - a.best)
    stderr = None
    if a.sigma is not None and b.sigma is not None:
        stderr = math.sqrt(a.sigma ** 2 / len(a.best_runs) + b.sigma ** 2 / len(b.best_runs))
    return Gap(a.tag, b.tag, value, stderr)


@dataclass(frozen=True)
class AgentResult:
    """An agent's bests over its tags."""

    agent: str
    tags: tuple[str, ...]  # one entry per search: its runs' tags, joined by + (`searches`)
    bests: tuple[float, ...]
    sizes: tuple[int, ...] = ()  # how many runs each search had

    @property
    def unit(self) -> str:
        """What each best is of: `runs`, or `searches` where some searches had several runs."""
        return "searches" if any(size > 1 for size in self.sizes) else "runs"

    @property
    def mean(self) -> float:
        return statistics.fmean(self.bests)

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.bests) if len(self.bests) >= 2 else None


def searches(contenders: Sequence[Contender]) -> list[tuple[Contender, ...]]:
    """The runs as separate searches: runs that took up one another's bests (`adopted`, either way and through
    others among `contenders`, e.g. the loops of `run --parallel`) share code and are one search; any other
    run is a search of its own. Searches in the order their first run comes in `contenders`; runs by tag."""
    names = {c.tag for c in contenders}
    root = {c.tag: c.tag for c in contenders}

    def find(tag: str) -> str:
        while root[tag] != tag:
            root[tag] = root[root[tag]]
            tag = root[tag]
        return tag

    for c in contenders:
        for source in c.adopted:
            if source in names:
                root[find(source)] = find(c.tag)
    groups: dict[str, list[Contender]] = {}
    for c in contenders:
        groups.setdefault(find(c.tag), []).append(c)
    return [tuple(sorted(group, key=lambda c: c.tag)) for group in groups.values()]


def by_agent(contenders: Sequence[Contender], metric: MetricConfig) -> list[AgentResult]:
    """One result per agent, over its separate searches (`searches`): a search counts for the agent its runs
    count for (several: all of them, `claude & tune`), with the best any of its runs reached. Best mean
    first."""
    sign = -1.0 if metric.maximize else 1.0
    groups: dict[str, list[tuple[str, float, int]]] = {}  # agent -> (its runs' tags, best, runs) per search
    for search in searches(contenders):
        scored = [c for c in search if c.best is not None and c.agents]  # a run with only its baseline credits none
        if scored:
            best = min(scored, key=lambda c: sign * c.best)
            agent = " & ".join(sorted({c.agent for c in scored}))
            groups.setdefault(agent, []).append(("+".join(c.tag for c in search), best.best, len(search)))
    results = [AgentResult(agent, tuple(tag for tag, _, _ in found), tuple(value for _, value, _ in found),
                           tuple(size for _, _, size in found)) for agent, found in groups.items()]
    return sorted(results, key=lambda r: (sign * r.mean, r.agent))


def agent_gap(a: AgentResult, b: AgentResult, metric: MetricConfig) -> Gap:
    """Welch's difference of two agents' mean bests (the spread over each one's tags); needs 2+ tags each."""
    value = (a.mean - b.mean) if metric.maximize else (b.mean - a.mean)
    stderr = math.sqrt((a.sd or 0.0) ** 2 / len(a.bests) + (b.sd or 0.0) ** 2 / len(b.bests))
    return Gap(a.agent, b.agent, value, stderr or None)


def findings(contenders: Sequence[Contender], metric: MetricConfig, *,
             tolerance: float = speed.DEFAULT_TOLERANCE) -> list[str]:
    """The comparison in sentences: the ranking, the leader against each other tag, equal effort, the agents,
    and what makes the tags unlike (budgets, machine speeds)."""
    order = ranked(contenders, metric)
    scored = [c for c in order if c.best is not None]
    if not scored:
        return ["No run has a best yet."]
    return [*_ranking(scored, metric), *_agents(scored, metric), *_unlike(contenders, tolerance)]


def _ranking(scored: Sequence[Contender], metric: MetricConfig) -> list[str]:
    """The ranking of the tags with a best (`scored`, best first), the leader against each other, and the
    bests at equal effort (experiments, then hours)."""
    lines = ["Ranking by the best as measured: " + "; ".join(
        f"{c.label} {c.best:.6f}" + (f" (mean of {len(c.best_runs)} runs)" if len(c.best_runs) > 1 else "")
        for c in scored) + "."]
    lead = scored[0]
    for other in scored[1:]:
        lines.append(run_gap(lead, other, metric).sentence(metric) + ".")
    if len(scored) >= 2:
        fewest = min(c.curve[-1][0] for c in scored if c.curve)
        shortest = min(c.curve[-1][1] for c in scored if c.curve)
        at_n = [(c.tag, best_at(c.curve, experiments=fewest)) for c in scored]
        at_t = [(c.tag, best_at(c.curve, hours=shortest)) for c in scored]
        lines.append(f"For equal effort, after {fewest} experiments each (the fewest any run made): "
                     + ", ".join(f"{t} {_value(v)}" for t, v in at_n) + ".")
        lines.append(f"After {format_duration(shortest * 3600)} each: "
                     + ", ".join(f"{t} {_value(v)}" for t, v in at_t) + ".")
    return lines


def _agents(scored: Sequence[Contender], metric: MetricConfig) -> list[str]:
    """Each agent's mean best over its tags or searches, and the two leading agents against each other (or
    why they cannot be compared yet)."""
    lines = []
    agents = by_agent(scored, metric)
    repeated = [a for a in agents if len(a.bests) >= 2]
    for a in repeated:
        lines.append(f"Agent {a.agent} over {len(a.bests)} {a.unit} ({', '.join(a.tags)}): mean best {a.mean:.6f} "
                     f"± {a.sd:.6f} (standard deviation over the {a.unit}).")
    if len(repeated) >= 2:
        lines.append(agent_gap(repeated[0], repeated[1], metric).sentence(metric, " (mean best over its runs)")
                     + ".")
    elif len(agents) >= 2:
        one = "search" if any(a.unit == "searches" for a in agents) else "run"
        lines.append(f"Each agent has one {one} here, and a search's best is partly the luck of its path: to compare "
                     f"agents rather than {one}s, give each two or more, each under its own tag (autoresearch run "
                     "--agent tune --tag tune-2).")
    return lines


def _unlike(contenders: Sequence[Contender], tolerance: float) -> list[str]:
    """What makes the tags unlike or not independent: budgets, settings, program.md texts, shared bests and
    machine speeds."""
    lines = []
    budgets = {c.budget for c in contenders if c.budget is not None}
    if len(budgets) > 1:
        lines.append("Not like for like: the runs trained for different budgets ("
                     + ", ".join(f"{c.tag} {c.budget:.0f} s" for c in contenders if c.budget is not None) + ").")
    settings = protocol.differing([(c.tag, c.protocol) for c in contenders if c.protocol],
                                  ignore=frozenset({"train.budget_seconds"}))  # the budgets have their own line
    if settings:
        lines.append("Not like for like: the runs were measured under different settings ("
                     + "; ".join(settings) + ").")
    steered = [c for c in contenders if c.programs]
    if len(steered) >= 2 and len({c.programs for c in steered}) > 1:
        lines.append("Not like for like: the runs were steered by different program.md texts ("
                     + "; ".join(f"{c.tag} {', '.join(c.programs)}" for c in steered) + ").")
    names = {c.tag for c in contenders}
    shared = [c for c in contenders if any(t in names for t in c.adopted)]
    if shared:
        joined = [s for s in searches(contenders) if len(s) > 1]
        lines.append("Not independent: " + "; ".join(
            f"{c.tag} kept the best of {', '.join(t for t in c.adopted if t in names)}" for c in shared)
            + " (loop.adopt_from), so their results share code and are not separate draws of a search: "
            + ", ".join("+".join(c.tag for c in s) for s in joined) + " count as one search each among the agents.")
    speeds = [c for c in contenders if c.speed is not None]
    if len(speeds) >= 2 and not speed.alike(min(c.speed for c in speeds), max(c.speed for c in speeds), tolerance):
        lines.append("Not like for like: the machines ran at different speeds ("
                     + ", ".join(f"{c.tag} {c.speed:,.0f} GFLOP/s" for c in speeds)
                     + "), and a faster machine trains more in the same budget.")
    return lines


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.6f}"


def compare_data(contenders: Sequence[Contender], metric: MetricConfig, *,
                 tolerance: float = speed.DEFAULT_TOLERANCE) -> dict:
    """JSON-ready: one entry per tag, best first, and the findings."""
    runs = [{"tag": c.tag, "agent": c.agent, "agents": list(c.agents), "experiments": c.summary.total, "kept": c.summary.kept,
             "best": c.best, "best_runs": len(c.best_runs), "noise_sigma": c.sigma, "budget_seconds": c.budget,
             "machine_speed": c.speed, "hours": c.curve[-1][1] if c.curve else None,
             "baseline": c.summary.baseline.metric if c.summary.baseline else None, "adopted_from": list(c.adopted)}
            for c in ranked(contenders, metric)]
    return {"metric_name": metric.name, "direction": metric.direction, "runs": runs,
            "findings": findings(contenders, metric, tolerance=tolerance)}


# -- reading the store ------------------------------------------------------------------------------

def contender(store: Store, tag: str, metric: MetricConfig) -> Contender:
    experiments = measured(store, tag)
    summary = summarize(tag, experiments, metric=metric)
    finished = [e for e in experiments if e.finished]
    start = min((e.started_at for e in experiments), default=0.0)
    best_so_far = running_best([(e.status, e.metric) for e in finished], metric=metric)
    curve = tuple((i + 1, ((e.ended_at or start) - start) / 3600, b)
                  for i, (e, b) in enumerate(zip(finished, best_so_far, strict=True)) if b is not None)
    # the best's runs, from its record as stored (`measured` shows its metric as their mean already)
    runs = tuple(current_runs(store, store.get(summary.best.id))) if summary.best is not None else ()
    made = sorted(proposers(experiments, metric=metric), key=lambda row: -row["proposals"])  # most first
    noise = measured_noise(store, tag, speed_now=latest_speed(store, tag))
    line = store.line(tag)
    programs = tuple(dict.fromkeys(e.metrics["program"] for e in experiments
                                   if isinstance(e.metrics.get("program"), str)))
    return Contender(tag=tag, agents=tuple(row["agent"] for row in made), summary=summary, curve=curve,
                     best_runs=runs, sigma=noise.sigma if noise.known else None,
                     budget=line.budget_seconds, speed=speed_data(store, tag).get("median"),
                     programs=programs, lineup=line.lineup,
                     protocol=line.protocol, adopted=tuple(dict.fromkeys(
                         a["source"] for a in adoptions(experiments) if a["status"] == Status.KEEP.value)))


def contenders(store: Store, tags: Sequence[str], metric: MetricConfig) -> list[Contender]:
    return [contender(store, tag, metric) for tag in tags]


# -- writing ------------------------------------------------------------------------------------------

def plot_compare(contenders: Sequence[Contender], path: Path, metric: MetricConfig) -> Path:
    """compare.png: each tag's best so far against the experiments it made and against the hours it ran."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, x_of, label in ((axes[0], 0, "experiments"), (axes[1], 1, "hours")):
        ax.set_xlabel(label)
        ax.grid(True, alpha=0.3)
        for c in ranked(contenders, metric):
            if c.curve:
                xs = [point[x_of] for point in c.curve]
                ys = [point[2] for point in c.curve]
                ax.step(xs, ys, where="post", linewidth=1.6, label=for_terminal(c.label))
    axes[0].set_ylabel(f"best {metric.name} so far ({'higher' if metric.maximize else 'lower'} is better)")
    if any(c.curve for c in contenders):
        legend = axes[1].legend(loc="upper right" if not metric.maximize else "lower right", fontsize=8,
                                framealpha=0.85)
        for text in legend.get_texts():  # the agents' names are text, not mathtext
            text.set_parse_math(False)
    fig.suptitle(f"{len(contenders)} runs compared", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def compare_markdown(contenders: Sequence[Contender], metric: MetricConfig, *, image: str | None = None,
                     tolerance: float = speed.DEFAULT_TOLERANCE) -> str:
    lines = ["# autoresearch: runs compared", ""]
    if image:
        lines += [f"![best so far]({image})", ""]
    lines += [f"| tag | agents | experiments | kept | best {metric.name} | runs of the best | noise sigma | "
              "budget | hours |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for c in ranked(contenders, metric):
        lines.append(f"| {for_markdown(c.tag)} | {for_markdown(c.lineup or ', '.join(c.agents) or '-')} | "
                     f"{c.summary.total} | {c.summary.kept} | "
                     f"{_value(c.best)} | {len(c.best_runs)} | {_value(c.sigma)} | "
                     f"{'-' if c.budget is None else f'{c.budget:.0f} s'} | "
                     f"{'-' if not c.curve else f'{c.curve[-1][1]:.2f}'} |")
    lines += [""] + [f"- {for_markdown(line)}" for line in findings(contenders, metric, tolerance=tolerance)] + [""]
    return "\n".join(lines)


def tolerance_of(store: Store, tags: Sequence[str]) -> float:
    """How far apart two machine speeds may be and still count as alike: the tags' `keep.speed_tolerance`
    (the largest; the default where every tag had the check off)."""
    return max((speed_tolerance(store, t) for t in tags), default=0.0) or speed.DEFAULT_TOLERANCE


def write_compare(found: Sequence[Contender], out_dir: Path, metric: MetricConfig, *,
                  tolerance: float = speed.DEFAULT_TOLERANCE) -> list[Path]:
    """Write compare.png and compare.md for `found` into `out_dir`; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = plot_compare(found, out_dir / "compare.png", metric)
    md = out_dir / "compare.md"
    md.write_text(compare_markdown(found, metric, image=png.name, tolerance=tolerance), encoding="utf-8")
    return [png, md]
