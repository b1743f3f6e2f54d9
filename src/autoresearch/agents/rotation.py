"""Several agents in one run, taking turns: `autoresearch run --agent claude --agent tune --agent tune`.

A code-editing agent and a classical search find different things: the agent changes what the model is,
the search tunes the constants of the model as it is now. In one run, each builds on the other's keeps.

Turns. A member's share of the proposals is how often it is listed (`claude, tune, tune`: one in three for
claude). Each proposal goes to the member furthest behind its share of the proposals made so far in the run
(`next_turn`), the first listed on a tie: `claude, tune, tune, claude, tune, tune, ...`. The counts come from
the run's history, where every experiment names the member that proposed it, from the experiment at which
this lineup began (`since`; the loop records it), so a resumed run carries on where it stopped, and a run
that another agent began does not hand all the turns to the newcomer until the counts even out.

- A fix after a crash goes to the member that proposed the crash, if it can fix; otherwise none is made.
- A member with nothing more to propose (`AgentExhausted`) leaves the rotation, and the others go on; the run
  ends when all have left.
- What a proposal cost (`usage`) is that of the member that made it.

Adaptive turns (`--turns adaptive`, `adaptive_turn`). The turns go to the members whose proposals get kept, by
Thompson sampling: each member's keep rate is drawn from its posterior (a Beta over its proposals, kept or
not, each counting half as much once its member has made HALF_LIFE more, from a weak prior at the rate of all
members together), and the highest draw proposes. A member's old results fade as it proposes, so one whose
ideas run out loses its lead. A member yet to propose goes first, and none falls below
FLOOR of its listed share of the turns, so every member keeps being tried. The draw is seeded by the number
of proposals made, so a resumed run chooses as the uninterrupted one would have.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from autoresearch.agents import Agent, AgentConfigError, AgentExhausted, Proposal, ProposalContext
from autoresearch.config import TURNS
from autoresearch.store import Experiment, Status

FLOOR = 0.25  # adaptive turns: each member proposes at least this fraction of its listed share of the turns
HALF_LIFE = 6.0  # adaptive turns: a result counts half as much after this many more proposals of its member
PRIOR = 2.0  # adaptive turns: a member's prior is worth this many proposals at the keep rate of all members


def next_turn(shares: Mapping[str, int], made: Mapping[str, int], left: frozenset[str] = frozenset()) -> str:
    """The member whose turn it is: of `shares` (name -> how often it is listed, in listing order), not in
    `left`, the one furthest behind its share of the `made` proposals (name -> count; others' are ignored),
    the first listed on a tie."""
    active = {name: share for name, share in shares.items() if name not in left}
    if not active:
        raise ValueError("no member is left to take a turn")
    total, weight = sum(made.get(name, 0) for name in active), sum(active.values())
    # how far behind: its share of the proposals made so far, minus its own (times `weight`, to stay in integers)
    return max(active, key=lambda name: total * active[name] - weight * made.get(name, 0))


def adaptive_turn(shares: Mapping[str, int], record: Sequence[tuple[str, bool | None]],
                  left: frozenset[str] = frozenset(), *, floor: float = FLOOR, half_life: float = HALF_LIFE,
                  prior: float = PRIOR) -> str:
    """The member whose turn it is under adaptive turns (see the module docstring): of `shares` (name -> how
    often it is listed, in listing order), not in `left`, given `record`, the proposals made so far in order as
    (member, kept; None while undecided; other proposers' are ignored). Deterministic in its inputs."""
    active = {name: share for name, share in shares.items() if name not in left}
    if not active:
        raise ValueError("no member is left to take a turn")
    record = [(name, kept) for name, kept in record if name in active]
    made = Counter(name for name, _ in record)
    fresh = [name for name in active if not made[name]]
    if fresh:
        return fresh[0]
    weight = sum(active.values())
    # the floor: FLOOR of its listed share of the proposals made so far; the member furthest below it goes
    below = {name: floor * share / weight * len(record) - made[name] for name, share in active.items()}
    behind = max(active, key=below.__getitem__)
    if below[behind] > 0:
        return behind
    kept, tried = Counter(), Counter()
    later = Counter()  # of each member, how many of its own proposals came after the one being counted
    for name, outcome in reversed(record):
        if outcome is not None:
            fading = 0.5 ** (later[name] / half_life)
            tried[name] += fading
            kept[name] += fading * outcome
        later[name] += 1
    rate = (sum(kept.values()) + 1.0) / (sum(tried.values()) + 2.0)  # of all members together, smoothed
    draw = random.Random(len(record))
    return max(active, key=lambda name: draw.betavariate(prior * rate + kept[name],
                                                         prior * (1.0 - rate) + tried[name] - kept[name]))


def turn_record(proposals: Sequence[Experiment]) -> list[tuple[str, bool | None]]:
    """What `adaptive_turn` reads of `proposals` (experiments in order): who proposed each, and whether it was
    kept (None while it runs)."""
    return [(e.agent, e.status is Status.KEEP if e.status.finished else None) for e in proposals]


class Rotation(Agent):
    """Agents taking turns in one run (see the module docstring). `name` is that of the member proposing now:
    the loop calls `choose(context)` before each proposal, and records the proposal under `name`."""

    pipelines_by_default = False  # the drafting thread would pick turns apart from the loop's; `--pipeline` works

    def __init__(self, agents: Sequence[Agent], shares: Sequence[int] | None = None, turns: str = "fixed") -> None:
        if len(agents) < 2:
            raise AgentConfigError("a rotation needs two agents or more: give --agent more than once")
        names = [agent.name for agent in agents]
        twice = sorted(name for name, count in Counter(names).items() if count > 1)
        if twice:
            raise AgentConfigError(f"two agents of the rotation are both named {twice[0]}: the run could not tell "
                                   "their proposals apart; list an agent twice to give it more turns instead")
        self.members: dict[str, Agent] = dict(zip(names, agents, strict=True))
        self.shares: dict[str, int] = dict(zip(names, shares or [1] * len(agents), strict=True))
        if any(share < 1 for share in self.shares.values()):
            raise AgentConfigError("each agent of a rotation needs a share of 1 or more")
        if turns not in TURNS:
            raise AgentConfigError(f"turns {turns!r}: use fixed (by how often each agent is listed) or adaptive "
                                   "(more turns to the agents whose proposals get kept)")
        self.turns = turns
        self.lineup = "+".join(name if share == 1 else f"{name}*{share}" for name, share in self.shares.items())
        if turns == "adaptive":
            self.lineup += ", adaptive"
        self.left: set[str] = set()  # members with nothing more to propose
        self.since = 0  # the seq from which proposals count for the turns (`Loop` sets it: when this lineup began)
        self.name = names[0]

    @classmethod
    def of(cls, specs: Sequence[str], make, turns: str = "fixed") -> Rotation:
        """A rotation of the agents named by `specs` (an agent listed n times gets n shares), each made once by
        `make(spec)`, taking `turns` ("fixed" or "adaptive")."""
        shares = Counter(specs)
        return cls([make(spec) for spec in shares], list(shares.values()), turns)

    @property
    def current(self) -> Agent:
        return self.members[self.name]

    def choose(self, context: ProposalContext) -> str:
        """Pick the member for the coming proposal (a fix: the member that proposed the crash); its name."""
        if context.failure is not None and context.failure.agent in self.members:
            self.name = context.failure.agent
        elif len(self.left) < len(self.members):
            proposals = [e for e in context.history if e.seq > 0 and e.seq >= self.since]
            if self.turns == "adaptive":
                self.name = adaptive_turn(self.shares, turn_record(proposals), frozenset(self.left))
            else:
                self.name = next_turn(self.shares, Counter(e.agent for e in proposals), frozenset(self.left))
        return self.name

    def propose(self, workdir: Path, context: ProposalContext) -> Proposal | str:
        while True:
            self.choose(context)
            try:
                return self.current.propose(workdir, context)
            except AgentExhausted as exhausted:
                self.left.add(self.name)
                if len(self.left) == len(self.members):
                    raise AgentExhausted(f"every agent of the rotation is done: {exhausted}") from exhausted

    def fix(self, workdir: Path, context: ProposalContext) -> Proposal | str | None:
        fixer = self.members.get(context.failure.agent if context.failure else "")
        if fixer is None or not fixer.can_fix:
            return None
        self.name = context.failure.agent
        return fixer.fix(workdir, context)

    def observe(self, experiment: Experiment) -> None:
        member = self.members.get(experiment.agent)
        if member is not None:
            member.observe(experiment)

    def preflight(self) -> None:
        for agent in self.members.values():
            agent.preflight()

    def cancel(self) -> None:
        self.current.cancel()
