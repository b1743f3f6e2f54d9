"""The search space of `tune`: which constants it moves, over which ranges, and how a point of the space maps
to Optuna parameters.

Default ranges (`infer_range`) come from each constant's current value, checked in this order: names ending
``_FRAC`` -> float [0, min(1, max(2v, 0.2))]; then a value of 0 (or a negative one) stays fixed; names
containing ``LR`` -> log-scale float [v/4, 4v]; ``BATCH`` or ``TOKENS`` -> powers of two in [v/4, 4v]; names
ending ``_DIM`` or ``SEQ_LEN`` -> powers of two in [v/2, 2v]; ``DEPTH`` or ``LAYER`` -> int v-2..v+2 (>= 1);
other ints -> [max(1, v//2), 2v]; other floats -> [v/2, 2v], capped at 0.999 for names containing
``MOMENTUM`` with v < 1 (a momentum of 1 diverges). ``LOG_EVERY_S`` (logging cadence, not a
hyperparameter) is fixed by default. The task's ``autoresearch.toml`` may override any of this in a
``[tune]`` table (`read_overrides`)::

    [tune]
    MATRIX_LR = [0.005, 0.1, "log"]     # kinds: "float", "log", "int", "pow2"
    DEPTH = [1, 4, "int"]
    SEQ_LEN = [128, 512, "pow2"]
    LOG_EVERY_S = false                 # never tune this one (true: tune it with the default range)

Invariants: a range in the space has high > low (a range of one value is left out); a "pow2" range's bounds
are powers of two >= 1; an override for a name that is not a constant of the file is an error, not ignored.
The Optuna parameter of a constant is named after it and its range's kind (`suggest`), so a kind changed
between runs starts a new parameter instead of clashing with the one the study recorded.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from autoresearch.agents import AgentConfigError
from autoresearch.agents.tune.constants import Constant

if TYPE_CHECKING:
    import optuna

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Kind = Literal["float", "log", "int", "pow2"]
KINDS: tuple[str, ...] = ("float", "log", "int", "pow2")
DEFAULT_FIXED = frozenset({"LOG_EVERY_S"})
MOVES, MOVE_WEIGHTS = (1, 2, 3), (0.5, 0.35, 0.15)  # how many constants one trial changes
CONFIG_NAME = "autoresearch.toml"


@dataclass(frozen=True)
class Range:
    """A search range: `low`..`high` inclusive; for "pow2" both are powers of two and only those are tried."""

    low: float
    high: float
    kind: Kind


def _pow2_range(low: float, high: float) -> Range | None:
    if low <= 0 or high < low:
        return None
    lo, hi = math.ceil(math.log2(low) - 1e-9), math.floor(math.log2(high) + 1e-9)
    lo = max(lo, 0)
    return Range(2**lo, 2**hi, "pow2") if hi >= lo else None


def infer_range(name: str, value: int | float) -> Range | None:
    """The default search range of a constant from its name and current value; None when it stays fixed."""
    key = name.rsplit(".", 1)[-1].upper()
    if key.endswith("_FRAC"):
        return Range(0.0, min(1.0, max(2.0 * value, 0.2)), "float")
    if value <= 0:
        return None  # 0 stays fixed; a negative value's rules are not guessed
    if "LR" in key:
        return Range(value / 4, value * 4, "log")
    if "BATCH" in key or "TOKENS" in key:
        return _pow2_range(value / 4, value * 4)
    if key.endswith("_DIM") or key.endswith("SEQ_LEN"):  # shapes: kernels and head splits want powers of two
        return _pow2_range(value / 2, value * 2)
    if "DEPTH" in key or "LAYER" in key:
        v = round(value)
        return Range(max(1, v - 2), v + 2, "int")
    if isinstance(value, int):
        low, high = max(1, value // 2), 2 * value
        return Range(low, high, "int") if high > low else None
    if "MOMENTUM" in key and value < 1:  # a momentum of 1 or more diverges
        return Range(value / 2, min(value * 2, 0.999), "float")
    return Range(value / 2, value * 2, "float")


def read_overrides(task_dir: Path) -> dict[str, Range | bool]:
    """The ``[tune]`` table of ``<task_dir>/autoresearch.toml``: name -> `Range`, or a bool (False: fixed,
    True: default range). Missing file or table -> {}. Raises `AgentConfigError` on a malformed entry."""
    path = Path(task_dir) / CONFIG_NAME
    if not path.exists():
        return {}
    try:
        table = tomllib.loads(path.read_text()).get("tune", {})
    except tomllib.TOMLDecodeError as err:
        raise AgentConfigError(f"{path}: not valid TOML ({err})") from err
    if not isinstance(table, dict):
        raise AgentConfigError(f"{path}: [tune] must be a table of NAME = [low, high, kind]")
    return {name: spec if isinstance(spec, bool) else _override(f"{path}: [tune] {name}", spec)
            for name, spec in table.items()}


def _override(where: str, spec: object) -> Range:
    """The range of one ``[tune]`` entry ``[low, high]`` or ``[low, high, kind]``; `where` names it in errors."""
    if not isinstance(spec, list) or len(spec) not in (2, 3):
        raise AgentConfigError(f"{where} = {spec!r}: use [low, high] or [low, high, kind], or false")
    low, high = spec[0], spec[1]
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in (low, high)) or not low < high:
        raise AgentConfigError(f"{where} = {spec!r}: low and high must be numbers with low < high")
    kind = spec[2] if len(spec) == 3 else ("int" if isinstance(low, int) and isinstance(high, int) else "float")
    if kind not in KINDS:
        raise AgentConfigError(f"{where}: kind {kind!r} must be one of {', '.join(KINDS)}")
    if kind == "log" and low <= 0:
        raise AgentConfigError(f"{where}: a log range needs low > 0")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise AgentConfigError(f"{where}: an int range needs integer bounds")
    if kind == "pow2":
        found = _pow2_range(low, high)
        if found is None:
            raise AgentConfigError(f"{where}: no power of two >= 1 lies in [{low}, {high}]")
        return found
    return Range(int(low), int(high), "int") if kind == "int" else Range(float(low), float(high), kind)


def search_space(constants: list[Constant], overrides: dict[str, Range | bool],
                 origin: str = CONFIG_NAME) -> list[tuple[Constant, Range]]:
    """The constants to tune and their ranges: overrides first, else `infer_range`; fixed ones left out.

    Raises `AgentConfigError` naming any override for a constant that is not among `constants`.
    """
    names = {c.name for c in constants}
    unknown = [n for n in overrides if n not in names]
    if unknown:
        raise AgentConfigError(f"{origin}: [tune] names unknown constant {unknown[0]!r}"
                               f"{' (and ' + ', '.join(unknown[1:]) + ')' if unknown[1:] else ''}; "
                               f"tunable constants of train.py: {', '.join(sorted(names)) or '(none)'}")
    out = []
    for constant in constants:
        override = overrides.get(constant.name)
        if isinstance(override, Range):
            found: Range | None = override
        elif override is False or (override is None and constant.name in DEFAULT_FIXED):
            found = None
        else:
            found = infer_range(constant.name, constant.value)
        if found is not None and found.high > found.low:
            out.append((constant, found))
    return out


# ---------------------------------------------------------------------------------------------- trials


def param_value(constant: Constant, rng: Range) -> tuple[str, int | float]:
    """The Optuna parameter (name and value, see `suggest`) that stands for the constant's current value."""
    if rng.kind == "pow2":
        return f"{constant.name}:log2", int(round(math.log2(max(constant.value, 1))))
    if rng.kind == "int":
        return f"{constant.name}:int", int(constant.value)
    return (f"{constant.name}:log" if rng.kind == "log" else constant.name), float(constant.value)


def pick_moves(space: list[tuple[Constant, Range]], seed: str) -> set[str]:
    """The names of the constants one trial moves: 1 (half the time), 2 or 3 of them, at random."""
    rng = random.Random(seed)
    k = rng.choices(MOVES, weights=MOVE_WEIGHTS)[0]
    return set(rng.sample([c.name for c, _ in space], min(k, len(space))))


def suggest(trial: optuna.Trial, constant: Constant, rng: Range) -> int | float:
    """Ask `trial` for this constant's value (absolute). Ints for "int"/"pow2" ranges; floats to 4 digits.

    The Optuna parameter is named after the constant and the range's kind (``NAME`` float, ``NAME:log``,
    ``NAME:int``, ``NAME:log2`` for pow2, whose parameter is the exponent), so a kind that changes between
    runs (a [tune] edit) starts a new parameter instead of clashing with the study's recorded distribution.
    Ranges may move between trials (they follow the incumbent); Optuna allows that within one kind.
    """
    if rng.kind == "pow2":
        exponent = trial.suggest_int(f"{constant.name}:log2", int(math.log2(rng.low)), int(math.log2(rng.high)))
        return 2**exponent
    if rng.kind == "int":
        return trial.suggest_int(f"{constant.name}:int", int(rng.low), int(rng.high))
    name = f"{constant.name}:log" if rng.kind == "log" else constant.name
    value = trial.suggest_float(name, float(rng.low), float(rng.high), log=rng.kind == "log")
    return float(f"{value:.4g}")
