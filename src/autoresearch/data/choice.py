"""Random choices with exact probabilities, and a counter of derivations.

A story grammar is a plain function of a `Writer`. It makes every random decision through the
writer and emits all text through it, so one function serves two purposes:

* `Sampler` draws the decisions from a seeded RNG and sums their exact log-probabilities, which
  gives the negative log-likelihood of the derivation that produced the text.
* `count_derivations` explores, by replaying the grammar with forced decisions, every sequence of
  decisions that reproduces a given text. If each text has exactly one derivation, the sampler's
  log-probability is the exact log-probability of the text, and the corpus floor is exact.

Decisions come in two shapes. `say` picks one of several strings and emits it at once; the
counter prunes options that do not match the text. `pick` makes a silent decision; the counter
branches over all of its options and prunes them when later text disagrees, so grammars should
keep silent decisions few and close to the text they affect.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Table(Generic[T]):
    """A finite distribution over options, with precomputed sampling and log-probabilities."""

    options: tuple[T, ...]
    weights: tuple[float, ...]
    cumulative: tuple[float, ...] = field(init=False, repr=False)
    logp: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.options) != len(self.weights) or not self.options:
            raise ValueError("a table needs as many weights as options, and at least one option")
        if any(w <= 0 for w in self.weights):
            raise ValueError("table weights must be positive")
        if all(isinstance(o, str) for o in self.options) and len(set(self.options)) != len(self.options):
            raise ValueError(f"duplicate options in table: {self.options}")
        total = math.fsum(self.weights)
        cumulative, running = [], 0.0
        for w in self.weights:
            running += w
            cumulative.append(running / total)
        object.__setattr__(self, "cumulative", tuple(cumulative))
        object.__setattr__(self, "logp", tuple(math.log(w / total) for w in self.weights))

    def __len__(self) -> int:
        return len(self.options)


def uniform(options: Sequence[T]) -> Table[T]:
    return Table(tuple(options), tuple(1.0 for _ in options))


def weighted(pairs: Sequence[tuple[T, float]]) -> Table[T]:
    return Table(tuple(p[0] for p in pairs), tuple(float(p[1]) for p in pairs))


class Writer:
    """What a grammar sees: emit text, say one of several strings, pick silently."""

    def emit(self, text: str) -> None:
        raise NotImplementedError

    def choose(self, table: Table[T], exclude: frozenset[int] = frozenset(), say: bool = False) -> int:
        """Choose an option index; options in `exclude` have probability zero (the rest renormalised)."""
        raise NotImplementedError

    def say(self, table: Table[str], exclude: frozenset[int] = frozenset()) -> str:
        option = table.options[self.choose(table, exclude, say=True)]
        self.emit(option)
        return option

    def pick(self, table: Table[T], exclude: frozenset[int] = frozenset()) -> T:
        return table.options[self.choose(table, exclude)]


class Sampler(Writer):
    """Draws decisions from a seeded RNG; collects the text and its exact log-probability (nats)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.parts: list[str] = []
        self.logp = 0.0
        self.decisions = 0

    def emit(self, text: str) -> None:
        self.parts.append(text)

    def choose(self, table: Table[T], exclude: frozenset[int] = frozenset(), say: bool = False) -> int:
        self.decisions += 1
        if not exclude:
            i = bisect.bisect_right(table.cumulative, self.rng.random())
            i = min(i, len(table) - 1)
            self.logp += table.logp[i]
            return i
        mass = 1.0 - math.fsum(math.exp(table.logp[i]) for i in exclude)
        if mass <= 1e-12:
            raise ValueError("every option of the table is excluded")
        while True:  # rejection sampling: exact, and cheap while the excluded mass is small
            i = min(bisect.bisect_right(table.cumulative, self.rng.random()), len(table) - 1)
            if i not in exclude:
                break
        self.logp += table.logp[i] - math.log(mass)
        return i

    @property
    def text(self) -> str:
        return "".join(self.parts)


class _Mismatch(Exception):
    """The replayed derivation emitted text that differs from the target."""


class _Branch(Exception):
    def __init__(self, options: list[int], logps: list[float]) -> None:
        self.options = options
        self.logps = logps


class _Replayer(Writer):
    """Replays forced decisions against a target text; raises _Branch at the first unforced one."""

    def __init__(self, target: str, forced: list[int]) -> None:
        self.target = target
        self.forced = forced
        self.position = 0
        self.step = 0

    def emit(self, text: str) -> None:
        if not self.target.startswith(text, self.position):
            raise _Mismatch
        self.position += len(text)

    def choose(self, table: Table[T], exclude: frozenset[int] = frozenset(), say: bool = False) -> int:
        if self.step < len(self.forced):
            i = self.forced[self.step]
            self.step += 1
            return i
        candidates = [i for i in range(len(table)) if i not in exclude]
        if say:
            candidates = [i for i in candidates if self.target.startswith(table.options[i], self.position)]
        mass = 1.0 - math.fsum(math.exp(table.logp[i]) for i in exclude)
        raise _Branch(candidates, [table.logp[i] - math.log(mass) for i in candidates])


@dataclass(frozen=True)
class Derivations:
    count: int
    logps: tuple[float, ...]  # log-probability of each derivation found, in nats

    @property
    def total_logp(self) -> float:
        top = max(self.logps)
        return top + math.log(math.fsum(math.exp(lp - top) for lp in self.logps))


def count_derivations(grammar: Callable[[Writer], None], text: str, limit: int = 16) -> Derivations:
    """Every decision sequence under which `grammar` emits exactly `text` (stops after `limit`)."""
    found: list[float] = []
    stack: list[tuple[list[int], float]] = [([], 0.0)]
    while stack and len(found) < limit:
        forced, logp = stack.pop()
        replay = _Replayer(text, forced)
        try:
            grammar(replay)
        except _Mismatch:
            continue
        except _Branch as branch:
            for option, option_logp in zip(branch.options, branch.logps, strict=True):
                stack.append((forced + [option], logp + option_logp))
            continue
        if replay.position == len(text):
            found.append(logp)
    return Derivations(len(found), tuple(found))
