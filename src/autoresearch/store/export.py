"""results.tsv: the reference's table of experiments, exported from the store, never a second source of truth.

Written atomically (a temporary file in the same folder, then a rename), so a reader sees the old file or
the new one, never a partial one. The experiments come as measured (`decide.measured`): the store records,
the decision side says what a best that ran again now measures.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from autoresearch.store.records import Experiment

RESULTS_COLUMNS = ("commit", "{metric}", "memory_gb", "status", "description")  # the reference's, for val_bpb


def results_tsv(experiments: Iterable[Experiment], metric_name: str = "val_bpb") -> str:
    """The reference `results.tsv` text: the header, then one line per finished experiment.

    Columns: short commit (7 characters, `-------` without one), the metric (6 decimals; the column is
    named `metric_name`, val_bpb in the reference), peak memory in GB (1 decimal), status, description
    (tabs and line breaks become spaces). An experiment without a metric is written `0.000000` and
    `0.0`; one without a memory figure gets `0.0`. RUNNING experiments are left out.
    """
    lines = ["\t".join(RESULTS_COLUMNS).replace("{metric}", _one_line(metric_name))]
    for exp in experiments:
        if not exp.finished:
            continue
        commit = (exp.commit or "")[:7] or "-------"
        if exp.metric is None:
            bpb, memory = "0.000000", "0.0"
        else:
            gb = (exp.peak_memory_bytes or 0) / 1024**3
            bpb, memory = f"{exp.metric:.6f}", f"{gb:.1f}"
        lines.append(f"{commit}\t{bpb}\t{memory}\t{exp.status.value}\t{_one_line(exp.description)}")
    return "\n".join(lines) + "\n"


def export_results_tsv(experiments: Iterable[Experiment], path: Path, metric_name: str = "val_bpb") -> None:
    """Write `results_tsv(experiments)` to `path` atomically."""
    path = Path(path)
    data = results_tsv(experiments, metric_name).encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


_LINE_BREAKS = str.maketrans({c: " " for c in "\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def _one_line(text: str) -> str:
    """Tabs and every kind of line break become spaces, so a description stays one TSV field; other control
    characters (a terminal's escapes) are shown, not written (`safe_text.for_terminal`)."""
    from autoresearch.safe_text import for_terminal

    return for_terminal(text.translate(_LINE_BREAKS))


