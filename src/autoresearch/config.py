"""The task's protocol, read from `autoresearch.toml`, as frozen dataclasses with clear errors."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_NAME = "autoresearch.toml"
PROFILES = ("cpu", "h100")


class ConfigError(Exception):
    """A problem with the task settings; the message names the setting and the fix."""


@dataclass(frozen=True)
class DataConfig:
    source: str = "builtin"  # builtin | hf:<owner/name>[@revision] | <path>
    vocab_size: int = 2048  # BPE vocabulary, bytes included (>= 256); BOS is added on top
    seed: int = 0  # built-in corpus only
    train_mb: float = 24.0  # built-in corpus only: size of each split in MB of UTF-8 text
    val_mb: float = 2.0
    test_mb: float = 2.0
    hf_train_shards: int = 2  # hf only: how many parquet shards to train on
    tokenizer_sample_mb: float = 64.0  # how much training text the tokenizer learns from


@dataclass(frozen=True)
class TrainConfig:
    script: str = "train.py"
    budget_seconds: float = 60.0
    profile: str = "auto"  # auto | cpu | h100
    device: str = "auto"  # auto | cpu | cuda | mps
    startup_allowance_seconds: float = 180.0  # killed at budget + this


@dataclass(frozen=True)
class EvalConfig:
    seq_len: int = 256
    tokens: int = 262_144
    batch_size: int = 16


@dataclass(frozen=True)
class LoopConfig:
    editable: list = field(default_factory=lambda: ["train.py"])  # paths or globs the agent may change
    keep_rule: str = "strict"  # strict: keep when val_bpb is lower than the best so far
    seed: int = 0  # seed passed to every run


@dataclass(frozen=True)
class TaskConfig:
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)

    def validate(self) -> TaskConfig:
        d, t, e = self.data, self.train, self.eval
        if d.vocab_size < 256:
            raise ConfigError(f"data.vocab_size = {d.vocab_size} is too small: it counts the 256 byte tokens, "
                              "so use 256 (plain bytes) or more, e.g. 2048 or 8192")
        if d.vocab_size > 1_000_000:
            raise ConfigError(f"data.vocab_size = {d.vocab_size} is too large: use at most 1,000,000")
        for name in ("train_mb", "val_mb", "test_mb", "tokenizer_sample_mb"):
            if getattr(d, name) <= 0:
                raise ConfigError(f"data.{name} must be positive")
        if t.budget_seconds <= 0:
            raise ConfigError("train.budget_seconds must be positive, e.g. 60 on CPU or 300 on a GPU")
        if t.profile not in ("auto", *PROFILES):
            raise ConfigError(f"train.profile = {t.profile!r}: use auto, cpu or h100")
        if t.device not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"train.device = {t.device!r}: use auto, cpu, cuda or mps")
        if e.seq_len < 2 or e.tokens < e.seq_len or e.batch_size < 1:
            raise ConfigError("eval needs seq_len >= 2, tokens >= seq_len and batch_size >= 1")
        if not self.loop.editable or not all(isinstance(p, str) and p for p in self.loop.editable):
            raise ConfigError('loop.editable must list the files the agent may edit, e.g. ["train.py"]')
        if self.loop.keep_rule != "strict":
            raise ConfigError(f"loop.keep_rule = {self.loop.keep_rule!r}: use strict")
        return self


_SECTIONS = {"data": DataConfig, "train": TrainConfig, "eval": EvalConfig, "loop": LoopConfig}


def config_from_dict(raw: dict[str, Any], origin: str = CONFIG_NAME) -> TaskConfig:
    parts: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values = raw.get(section, {})
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: [{section}] must be a table")
        known = {f.name: f for f in fields(cls)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{origin}: unknown setting {section}.{key}; known: {', '.join(known)}")
            expected = type(getattr(cls(), key))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise ConfigError(f"{origin}: {section}.{key} = {value!r} should be a {expected.__name__}")
            values = {**values, key: value}
        parts[section] = cls(**values)
    return TaskConfig(**parts).validate()


def load_config(task_dir: Path) -> TaskConfig:
    path = task_dir / CONFIG_NAME
    if not path.exists():
        raise ConfigError(f"no {CONFIG_NAME} in {task_dir}: run `autoresearch init` there first")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from err
    return config_from_dict(raw, str(path))


def default_config(accelerated: bool) -> TaskConfig:
    """Settings `init` writes: a 60 s CPU task, or a 5-minute task sized for one H100."""
    base = TaskConfig()
    if not accelerated:
        return base
    return TaskConfig(
        data=replace(base.data, vocab_size=8192, train_mb=1000.0, val_mb=40.0, test_mb=40.0),
        train=replace(base.train, budget_seconds=300.0),
        eval=EvalConfig(seq_len=2048, tokens=8 * 1024 * 1024, batch_size=32),
    )


def render_config(config: TaskConfig) -> str:
    """The toml text `init` writes, one line per setting."""
    lines = ["# The fixed protocol of this task. The agent may not edit this file.", ""]
    for section in _SECTIONS:
        lines.append(f"[{section}]")
        for f in fields(getattr(config, section)):
            value = getattr(getattr(config, section), f.name)
            rendered = json.dumps(value) if isinstance(value, (str, list)) else str(value).lower() \
                if isinstance(value, bool) else repr(value)
            lines.append(f"{f.name} = {rendered}")
        lines.append("")
    return "\n".join(lines)


def cache_root() -> Path:
    """Where prepared data lives: $AUTORESEARCH_CACHE, else ~/.cache/autoresearch."""
    env = os.environ.get("AUTORESEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autoresearch"
