"""A run's protocol: the settings under which its metric was measured, and so what it compares with.

Two results compare only when they were measured alike: the same data, evaluation, metric, way of starting
a run, training budget and kind of device. The loop records its run's protocol in the store
(`protocol:<tag>`) and refuses to resume under settings that measure differently; `compare` names the
settings in which runs differ; the exchange folder offers a best only to runs of the same protocol (`ident`).

Pure functions: `of` takes the task's settings, `changes` and `differing` compare protocols.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence

from autoresearch.config import TaskConfig

# What may change while a run goes on without changing what its results mean: which files the agent may
# edit is the person's steering; the budget is checked on its own (`Loop._run_budget`); a run on another
# kind of device is caught by its machine speed (docs/keep.md), which runs the best again.
STEERING = frozenset({"loop.editable", "train.budget_seconds", "device"})


def of(config: TaskConfig, budget: float, device: str) -> dict[str, object]:
    """The protocol of a run of `config` for `budget` seconds on `device` ("cuda:1" counts as "cuda"), as flat
    `section.key -> value` settings, JSON-ready. The data and evaluation settings count only where the
    harness evaluates (the built-in contract); a task of its own command measures itself."""
    settings: dict[str, object] = {}
    if config.evaluated:
        settings.update({f"data.{k}": v for k, v in dataclasses.asdict(config.data).items()})
        settings.update({f"eval.{k}": getattr(config.eval, k) for k in ("seq_len", "tokens")})
    settings.update({f"metric.{k}": v for k, v in dataclasses.asdict(config.metric).items()})
    settings.update({f"train.{k}": getattr(config.train, k) for k in ("script", "command", "prepare_command",
                                                                       "profile")})
    settings.update({"loop.editable": list(config.loop.editable), "train.budget_seconds": float(budget),
                     "device": device.split(":")[0]})
    return json.loads(json.dumps(settings))  # as it reads back from the store: tuples as lists


def ident(protocol: Mapping[str, object]) -> str:
    """A short hash of a protocol: equal for runs whose metrics compare."""
    return hashlib.sha256(json.dumps(dict(protocol), sort_keys=True).encode()).hexdigest()[:16]


def changes(before: Mapping[str, object], after: Mapping[str, object],
            ignore: frozenset[str] = frozenset()) -> list[str]:
    """The settings that differ between two protocols, as `key old -> new` (a setting one of them lacks
    reads as `(none)`), in key order; those in `ignore` left out."""
    keys = sorted((set(before) | set(after)) - ignore)
    return [f"{key} {_show(before.get(key))} -> {_show(after.get(key))}" for key in keys
            if before.get(key) != after.get(key)]


def differing(protocols: Sequence[tuple[str, Mapping[str, object]]],
              ignore: frozenset[str] = frozenset()) -> list[str]:
    """Where named protocols (`(name, protocol)`) differ: for each setting not in `ignore` that is not the same
    in all, `key: value (names); value (names)`, values in order of first appearance."""
    keys = sorted(set().union(*(set(p) for _, p in protocols)) - ignore) if protocols else []
    out = []
    for key in keys:
        groups: dict[str, list[str]] = {}
        for name, protocol in protocols:
            groups.setdefault(_show(protocol.get(key)), []).append(name)
        if len(groups) > 1:
            out.append(f"{key}: " + "; ".join(f"{value} ({', '.join(names)})" for value, names in groups.items()))
    return out


def _show(value: object) -> str:
    if value is None:
        return "(none)"
    return value if isinstance(value, str) else json.dumps(value)
