"""The fixed folders a run writes besides its working folder's own files: the model folder train.py saves to
(`model_dir`) and the run's copy of the compile cache (`compile_cache`), made from the frozen one
(`frozen_cache`); and the models kept in an experiment's log folder afterwards (`keep_model`, `remove_models`).

Invariants: these folders are fixed, and emptied in place, never replaced (`empty`), because a prestarted
interpreter's box has them mounted; nothing one run compiles reaches another, because each run's cache is
made afresh from the frozen one, which no candidate ever writes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from autoresearch.run import diskguard


def model_dir(task_dir: Path) -> Path:
    """Where train.py saves its model: a fixed folder of the working folder, emptied before each run and
    moved into the run's log folder after it (fixed, so a prestarted interpreter's box can show it)."""
    return task_dir / ".autoresearch" / "model"


def compile_cache(task_dir: Path) -> Path:
    """The compile cache a run writes (torch.compile's and Triton's): its own copy of the frozen cache
    (`frozen_cache`), made afresh before each run and thrown away after it, so that nothing one run compiles (or
    plants there) reaches another. A fixed folder, like the model folder, so a prestarted interpreter's box
    shows it."""
    return task_dir / ".autoresearch" / "compile-cache"


def frozen_cache(task_dir: Path) -> Path:
    """The compile cache each run starts from: what the loop's own baseline compiled in its first run
    (`freeze_compile_cache`), never written by a candidate; or the folder a person named in
    TORCHINDUCTOR_CACHE_DIR, which is only ever read."""
    placed = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    return Path(placed) if placed else task_dir / ".autoresearch" / "compile-cache-frozen"


def reset_compile_cache(task_dir: Path) -> None:
    """Make the run's compile cache an exact copy of the frozen one: emptied in place (a prestarted box has it
    mounted), then filled. Symbolic links in the frozen cache are not followed."""
    run = compile_cache(task_dir)
    empty(run)
    frozen = frozen_cache(task_dir)
    if frozen.is_dir():
        shutil.copytree(frozen, run, symlinks=True, dirs_exist_ok=True)


def freeze_compile_cache(task_dir: Path, max_gb: float) -> int | None:
    """Keep what the run just compiled as the frozen cache, unless there is one already (or a person placed
    theirs). Called by the loop after its baseline's first sound run only: the baseline is the task's own code.
    Returns the bytes frozen; None when nothing was, because the cache was over `max_gb` (0: no cap)."""
    frozen, run = frozen_cache(task_dir), compile_cache(task_dir)
    if "TORCHINDUCTOR_CACHE_DIR" in os.environ or frozen.exists() or not run.is_dir():
        return 0
    size = sum(f.stat().st_size for f in run.rglob("*") if f.is_file() and not f.is_symlink())
    if max_gb > 0 and size > max_gb * diskguard.GB:
        return None
    scratch = frozen.with_name(frozen.name + f".tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(run, scratch, symlinks=True)
    os.replace(scratch, frozen)
    return size


def empty(folder: Path) -> None:
    """`folder` exists and is empty. Emptied in place, never replaced: a prestarted interpreter's box has
    this very folder mounted."""
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        folder.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def remove_models(experiment_dir: Path, *, keep_first: bool) -> None:
    """Delete the trained models in an experiment's log folder (its first run's `model/`, and each later run's
    `run-N/model/`), all or all but the first run's."""
    folders = sorted(experiment_dir.glob("run-*/model"))
    if not keep_first:
        folders.append(experiment_dir / "model")
    for folder in folders:
        if folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder, ignore_errors=True)


def keep_model(output_dir: Path, destination: Path) -> None:
    """Move what the run saved into its log folder, leaving the output folder itself (see `empty`)."""
    entries = list(output_dir.iterdir()) if output_dir.is_dir() else []
    if not entries:
        return
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    for entry in entries:
        shutil.move(str(entry), str(destination / entry.name))
