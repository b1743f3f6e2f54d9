"""The trackers' libraries, imported only when a setting asks for one, and a clear error when one is missing.

They are heavy (MLflow, TensorBoard and W&B each pull in protobuf and more) and optional, so nothing imports
them at module level: a task without `[track]` settings never pays for them, and one with a setting whose
library is not installed is told, before its first experiment, which extra to install.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from autoresearch.observe import ObserverError


def install_hint(extra: str) -> str:
    return f"pip install 'autoresearch[{extra}]'"


def tracker_library(module: str, *, setting: str, extra: str, value: str) -> ModuleType:
    """`import_module(module)`, or an `ObserverError` naming the setting and the pip command that installs it."""
    try:
        return import_module(module)
    except ImportError as e:
        raise missing(setting, extra, value, e) from e


def missing(setting: str, extra: str, value: str, error: ImportError) -> ObserverError:
    missing_name = getattr(error, "name", None) or str(error)
    return ObserverError(f"track.{setting} = {value!r} needs {missing_name}, which is not installed: "
                         f"{install_hint(extra)} (or remove track.{setting} from autoresearch.toml)")
