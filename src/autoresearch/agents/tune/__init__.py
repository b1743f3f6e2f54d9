"""`tune`: hyperparameter search over the numeric constants of train.py with Optuna, one trial per proposal.

The package, by what each module is for:

- `constants`: the ``NAME = <number>`` constants of a train.py (module level, and the active profile's
  ``if PROFILE == "...":`` block), found in its source and rewritten as edits of their literals only;
- `space`: which of them are searched, over which ranges (inferred from the values, or the task's
  ``[tune]`` table), and how a point maps to Optuna parameters;
- `study`: the Optuna study in the experiment store's SQLite file, and telling its trials their results;
- `agent`: `TuneAgent`, the `Agent` that turns each proposal into one trial, a local move from the
  incumbent; `make` is its factory for the registry (``autoresearch.agents.tune:make``).

Importing the package imports Optuna: the registry imports it only when `tune` is used.
"""

from autoresearch.agents.tune.agent import TuneAgent, from_spec, make, tuned_file
from autoresearch.agents.tune.constants import (
    Constant,
    apply_values,
    describe,
    find_constants,
    format_value,
    profiles_of,
)
from autoresearch.agents.tune.space import (
    CONFIG_NAME,
    DEFAULT_FIXED,
    KINDS,
    Kind,
    Range,
    infer_range,
    param_value,
    pick_moves,
    read_overrides,
    search_space,
    suggest,
)
from autoresearch.agents.tune.study import TPE_STARTUP_TRIALS, TUNE_AGENTS, outcome_state

__all__ = ["CONFIG_NAME", "DEFAULT_FIXED", "KINDS", "TPE_STARTUP_TRIALS", "TUNE_AGENTS", "Constant", "Kind", "Range",
           "TuneAgent", "apply_values", "describe", "find_constants", "format_value", "from_spec", "infer_range",
           "make", "outcome_state", "param_value", "pick_moves", "profiles_of", "read_overrides", "search_space",
           "suggest", "tuned_file"]
