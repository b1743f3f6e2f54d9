"""Reporting: status table, deltas, progress parsing, report files. Real stores under tmp_path; no training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from rich.console import Console

from autoresearch.config import MetricConfig
from autoresearch.decide.measured import measured
from autoresearch.report import (
    build_table,
    caption,
    deltas,
    progress_from_text,
    progress_text,
    read_progress,
    render_progress,
    running_best,
    running_line,
    status_data,
    status_table,
    write_report,
)
from autoresearch.report import plot as report_plot
from autoresearch.report.experiment import experiment_data, experiment_lines
from autoresearch.report.markdown import report_markdown
from autoresearch.report.noise import noise_line
from autoresearch.report.progress import parse_event, remaining_seconds
from autoresearch.report.summary import experiment_deltas, proposers, summarize
from autoresearch.report.text import error_line, first_line, format_duration, truncate
from autoresearch.store import Run, Status, Store
from autoresearch.store.export import results_tsv

TAG = "nov27"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _add(store: Store, status: Status, description: str, metric: float | None = None, *,
         error: str | None = None, tag: str = TAG) -> None:
    store.record(status=status, tag=tag, parent_commit="a" * 40, commit="b" * 40, diff="", description=description,
                 agent="test", seed=0, metric=metric, training_seconds=None if metric is None else 300.0,
                 total_seconds=330.0, peak_memory_bytes=None if metric is None else 12 * 1024**3, error=error)


@pytest.fixture
def store(tmp_path: Path):
    task = tmp_path / "task"
    task.mkdir()
    with Store.open(task) as s:
        yield s


@pytest.fixture
def run(store: Store) -> Store:
    """baseline 1.0; discard 1.1; keep 0.9 (wider MLP); crash; discard 0.95; keep 0.85 (rope base); timeout;
    rejected."""
    _add(store, Status.KEEP, "baseline", 1.0)
    _add(store, Status.DISCARD, "lr 0.1", 1.1)
    _add(store, Status.KEEP, "wider MLP", 0.9)
    _add(store, Status.CRASH, "flash attn v9", error="\nTraceback (most recent call last):\n  File x\nOOM")
    _add(store, Status.DISCARD, "batch 2x", 0.95)
    _add(store, Status.KEEP, "rope base 50k", 0.85)
    _add(store, Status.TIMEOUT, "huge model", error="ran past 420 s")
    _add(store, Status.REJECTED, "touched prepare.py", error="edits outside the editable files")
    return store


ACCURACY = MetricConfig(name="accuracy", direction="maximize")


@pytest.fixture
def acc_run(store: Store) -> Store:
    """A maximized metric: baseline 0.5; discard 0.45; keep 0.6 (mixup); crash; discard 0.01 (diverged);
    keep 0.75 (more epochs); discard 0.7."""
    _add(store, Status.KEEP, "baseline", 0.5)
    _add(store, Status.DISCARD, "lr 0.1", 0.45)
    _add(store, Status.KEEP, "mixup", 0.6)
    _add(store, Status.CRASH, "flash attn v9", error="RuntimeError: boom")
    _add(store, Status.DISCARD, "diverged", 0.01)
    _add(store, Status.KEEP, "more epochs", 0.75)
    _add(store, Status.DISCARD, "wd 0", 0.7)
    return store


def _colours(renderable) -> dict[str, str | None]:
    """Each rendered segment's stripped text -> the name of its foreground colour (None if plain)."""
    console = Console(width=220, force_terminal=True, color_system="truecolor")
    return {seg.text.strip(): (seg.style.color.name if seg.style and seg.style.color else None)
            for seg in console.render(renderable) if seg.text.strip()}


def _text(renderable, width: int = 220) -> str:
    console = Console(record=True, width=width, color_system=None)
    console.print(renderable)
    return console.export_text()


def _flat(renderable, width: int = 220) -> str:
    """The rendered text with all whitespace runs (including a wrapped caption's line breaks) as one space."""
    return " ".join(_text(renderable, width).split())


# ---------------------------------------------------------------------- pure figures


def test_deltas_against_best_at_the_time() -> None:
    points = [(Status.KEEP, 1.0), (Status.DISCARD, 1.1), (Status.KEEP, 0.9), (Status.CRASH, None),
              (Status.DISCARD, 0.95), (Status.KEEP, 0.85), (Status.TIMEOUT, None)]
    got = deltas(points)
    want = [None, 0.1, -0.1, None, 0.05, -0.05, None]
    assert [g is None for g in got] == [w is None for w in want]
    assert all(g == pytest.approx(w) for g, w in zip(got, want, strict=True) if w is not None)
    assert running_best(points) == [1.0, 1.0, 0.9, 0.9, 0.9, 0.85, 0.85]


def test_deltas_edge_cases() -> None:
    assert deltas([]) == [] and running_best([]) == []
    # nothing kept yet: no delta, even for a scored discard; a discard never moves the best
    assert deltas([(Status.DISCARD, 1.2), (Status.KEEP, 1.0), (Status.DISCARD, 0.5)]) == [None, None, -0.5]
    assert running_best([(Status.CRASH, None), (Status.DISCARD, 0.5)]) == [None, None]
    assert deltas([("keep", 2.0), ("keep", 2.0)]) == [None, 0.0]  # plain strings are accepted


def test_formatting_helpers() -> None:
    assert format_duration(None) == "-"
    assert format_duration(42.4) == "42s"
    assert format_duration(185) == "3m 05s"
    assert format_duration(2 * 3600 + 3 * 60 + 10) == "2h 03m"
    assert format_duration(86400 + 4 * 3600) == "1d 04h"
    assert truncate("a  b\nc", 10) == "a b c"
    assert truncate("x" * 20, 10) == "x" * 9 + "…"
    assert first_line("\n\n  boom  \nmore") == "boom"
    assert first_line(None) == ""


def test_error_line() -> None:
    assert error_line(None) == "" and error_line("\n \n") == ""
    tb = ("step 5 loss 3.2\nTraceback (most recent call last):\n  File \"train.py\", line 3, in <module>\n"
          "    x = f()\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB\n")
    assert error_line(tb) == "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"
    assert error_line("Traceback (most recent call last):\n  File x\nOOM") == "OOM"
    assert error_line("train.py ran past budget + start-up allowance (420 s) and was killed") == \
        "train.py ran past budget + start-up allowance (420 s) and was killed"
    assert error_line("just one line\nanother") == "just one line"


def test_summary_figures(run: Store) -> None:
    s = summarize(TAG, run.experiments(TAG))
    assert s.total == 8 and s.kept == 3
    assert s.counts == {"running": 0, "keep": 3, "discard": 2, "crash": 1, "timeout": 1, "rejected": 1,
                        "tampered": 0, "pruned": 0}
    assert s.baseline.seq == 0 and s.best.seq == 5 and s.best.metric == run.incumbent(TAG).metric == 0.85
    assert s.improvement == pytest.approx(0.15) and s.improvement_pct == pytest.approx(15.0)
    assert s.experiment_seconds == pytest.approx(8 * 330.0)
    assert s.running is None and s.wall_seconds is not None and s.wall_seconds >= 0


# ---------------------------------------------------------------------- status


def test_status_table_rows_and_caption(run: Store) -> None:
    text = _flat(status_table(run, TAG))
    for needle in ("baseline", "wider MLP", "rope base 50k", "lr 0.1", "keep", "discard", "crash", "timeout",
                   "rejected", "1.000000", "0.850000", "+0.100000", "-0.100000", "-0.050000", "+0.050000",
                   "300.0", "330.0", "12.0", "8 experiments", "3 kept", "2 discarded", "1 crashes",
                   "1 timeouts", "1 rejected", "val_bpb baseline 1.000000", "best 0.850000 (#5", "-0.150000",
                   "-15.00%", "wall "):
        assert needle in text, needle
    assert "flash attn v9 — OOM" in text  # a crash shows its error line next to the description
    assert "ran past 420 s" in text


def test_status_table_last_rows_only(run: Store) -> None:
    text = _text(status_table(run, TAG, last=2))
    assert "touched prepare.py" in text and "huge model" in text
    assert "wider MLP" not in text
    assert "8 experiments" in text  # the caption still counts them all


def test_status_table_colours(run: Store) -> None:
    console = Console(record=True, width=220, force_terminal=True, color_system="truecolor")
    console.print(status_table(run, TAG))
    styled = console.export_text(styles=True)
    assert "\x1b[" in styled  # the statuses are styled


def test_status_data_is_json(run: Store) -> None:
    data = json.loads(json.dumps(status_data(run, TAG)))
    assert data["tag"] == TAG and data["total"] == 8 and data["kept"] == 3
    assert data["counts"]["crash"] == 1 and data["baseline_metric"] == 1.0 and data["best_metric"] == 0.85
    assert data["best_seq"] == 5 and data["improvement_pct"] == pytest.approx(15.0)
    assert data["metric_name"] == "val_bpb" and data["direction"] == "minimize"
    assert "val_bpb" not in data and "baseline_val_bpb" not in data and "best_val_bpb" not in data
    assert data["experiments"][5]["metric"] == 0.85 and "val_bpb" not in data["experiments"][5]
    assert [r["seq"] for r in data["experiments"]] == list(range(8))
    assert data["experiments"][2]["delta"] == pytest.approx(-0.1)
    assert data["experiments"][3]["error"] == "OOM"
    assert data["experiments"][0]["peak_memory_gb"] == pytest.approx(12.0)
    assert data["running"] is None


def test_running_line(store: Store) -> None:
    assert running_line(store, TAG) is None
    _add(store, Status.KEEP, "baseline", 1.0)
    exp = store.begin(tag=TAG, parent_commit="a" * 40, commit="c" * 40, diff="", description="try GQA",
                      agent="test", seed=0, log_path="/nowhere/train.log")
    line = running_line(store, TAG, now=exp.started_at + 185)
    assert line == "running #1: try GQA (started 3m 05s ago)"
    data = status_data(store, TAG, now=exp.started_at + 10)
    assert data["running"]["seq"] == 1 and data["running"]["running_seconds"] == pytest.approx(10)
    assert data["counts"]["running"] == 1
    assert "1 running" in _text(status_table(store, TAG))
    assert running_line(store, "other") is None


def test_empty_status(store: Store) -> None:
    text = _text(status_table(store, TAG))
    assert "no experiments yet" in text
    data = status_data(store, TAG)
    assert data["total"] == 0 and data["best_metric"] is None and data["experiments"] == []


# ---------------------------------------------------------------------- progress


LOG = """\
compiling the model...
@autoresearch {"event": "start", "params": 1000, "device": "cuda", "profile": "h100", "startup_seconds": 12.5}
step 0 free-form text {"event": "step"}
@autoresearch {"event": "step", "step": 10, "elapsed": 3.0, "train_loss": 5.5, "tokens": 1000, "tokens_per_s": 333.3}
@autoresearch not json at all
@autoresearch {"event": "step", "step": 20, "elapsed": 6.0, "train_loss": 4.25, "tokens": 2000, "tokens_per_s": 400}
warning: something odd
@autoresearch ["a list"]
@autoresearch {"event": "step", "step": 30, "elapsed": 9.0, "train_lo"""  # partial last line, still being written


def test_parse_event() -> None:
    assert parse_event('@autoresearch {"event": "done", "steps": 3}') == {"event": "done", "steps": 3}
    assert parse_event('  @autoresearch {"event": "step"}\r') == {"event": "step"}
    assert parse_event("free text") is None
    assert parse_event('@autoresearch {"no_event": 1}') is None
    assert parse_event('@autoresearch {"event": 5}') is None
    assert parse_event("@autoresearch {broken") is None


def test_progress_from_text_latest_step() -> None:
    p = progress_from_text(LOG)
    assert p["started"] and p["start"]["device"] == "cuda" and p["start"]["startup_seconds"] == 12.5
    assert p["step"] == 20 and p["elapsed"] == 6.0 and p["train_loss"] == 4.25
    assert p["tokens"] == 2000 and p["tokens_per_s"] == 400.0
    assert not p["done"]
    assert remaining_seconds(p, 300) == pytest.approx(294.0)
    text = progress_text(p, 300)
    assert text == "step 20 | loss 4.2500 | 6s / 300s | 4m 54s left | 400 tok/s"


def test_progress_states() -> None:
    assert progress_from_text("") is None
    assert progress_from_text("just text\nno events\n") is None
    assert progress_text(None, 300).startswith("waiting")
    started = progress_from_text('@autoresearch {"event": "start", "params": 5}\n')
    assert started["started"] and started["step"] is None and remaining_seconds(started, 300) is None
    assert "no step yet" in progress_text(started, 300)
    done = progress_from_text(LOG.rsplit("\n", 1)[0] + '\n@autoresearch {"event": "done", "steps": 99, '
                              '"tokens": 5, "training_seconds": 300.2, "peak_memory_bytes": 1}\n')
    assert done["done"] and done["step"] == 20  # the latest step event still wins for the step figures
    assert "training done" in progress_text(done, 300)
    only_done = progress_from_text('@autoresearch {"event": "done", "steps": 99, "training_seconds": 30}')
    assert only_done["step"] == 99 and only_done["elapsed"] == 30.0 and not only_done["started"]
    over = progress_from_text('@autoresearch {"event": "step", "step": 1, "elapsed": 400, "train_loss": NaN}')
    assert over["train_loss"] is None and remaining_seconds(over, 300) == 0.0


def test_render_progress() -> None:
    text = _text(render_progress(progress_from_text(LOG), 300), width=160)
    assert "step 20" in text and "loss 4.2500" in text and "4m 54s left" in text and "2%" in text
    assert "waiting" in _text(render_progress(None, 300), width=160)


def test_read_progress_file(tmp_path: Path) -> None:
    assert read_progress(None) is None
    assert read_progress(tmp_path / "missing" / "train.log") is None
    log = tmp_path / "train.log"
    log.write_text(LOG)
    assert read_progress(log)["step"] == 20
    assert read_progress(str(log))["step"] == 20
    # a big log: the start event at the head and the latest step at the tail are both found
    filler = "".join(f'@autoresearch {{"event": "step", "step": {i}, "elapsed": {i / 10}, "train_loss": 3.0}}\n'
                     f"free-form line {i}\n" for i in range(20000))
    log.write_text(LOG.split("\n")[1] + "\n" + filler + '@autoresearch {"event": "step", "step": 99999, '
                   '"elapsed": 299.0, "train_loss": 2.5}\n')
    assert log.stat().st_size > 1_000_000
    p = read_progress(log)
    assert p["started"] and p["step"] == 99999 and p["train_loss"] == 2.5


# ---------------------------------------------------------------------- report files


def _check_files(paths: list[Path], out: Path) -> str:
    assert [p.name for p in paths] == ["results.tsv", "progress.png", "report.md", "report.html"]
    assert all(p.parent == out and p.is_file() for p in paths)
    png = (out / "progress.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE
    assert len(png) > 10_000  # a real chart, not an empty canvas
    return (out / "report.md").read_text()


def test_write_report(run: Store, tmp_path: Path) -> None:
    out = tmp_path / "report"
    md = _check_files(write_report(run, TAG, out), out)
    assert (out / "results.tsv").read_text() == results_tsv(measured(run, TAG))
    assert md.startswith(f"# autoresearch report: `{TAG}`")
    for needle in ("wider MLP", "rope base 50k", "0.850000", "1.000000", "0.150000", "15.00%",
                   "| 2 | 0.900000 | 1 | -0.100000 | - | - | wider MLP |",
                   "| 5 | 0.850000 | 1 | -0.050000 | - | - | rope base 50k |",
                   "| 3 | crash | flash attn v9 | OOM |",
                   "ran past 420 s", "progress.png", "Total time:", "8 (", "3 keep", "1 rejected"):
        assert needle in md, needle
    kept_section = md.split("## Kept changes")[1].split("## Crashes")[0]
    assert "lr 0.1" not in kept_section and "batch 2x" not in kept_section
    assert kept_section.index("wider MLP") < kept_section.index("rope base 50k")


def test_report_empty(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    md = _check_files(write_report(store, TAG, out), out)
    assert "No experiments yet" in md
    assert (out / "results.tsv").read_text().count("\n") == 1  # the header only


def test_report_only_baseline(store: Store, tmp_path: Path) -> None:
    _add(store, Status.KEEP, "baseline", 0.997)
    md = _check_files(write_report(store, TAG, tmp_path), tmp_path)
    assert "0.997000" in md and "0.000000 lower than the baseline (0.00%)" in md
    assert "## Crashes and timeouts\n\nNone." in md


def test_report_all_crashes(store: Store, tmp_path: Path) -> None:
    for i in range(4):
        _add(store, Status.CRASH if i % 2 == 0 else Status.TIMEOUT, f"attempt {i}", error=f"error {i}\ndetail")
    md = _check_files(write_report(store, TAG, tmp_path), tmp_path)
    assert "Baseline val_bpb:** none" in md and "## Kept changes\n\nNone." in md
    for i in range(4):
        assert f"error {i}" in md and "detail" not in md
    text = _flat(status_table(store, TAG))
    assert "2 crashes" in text and "2 timeouts" in text and "no val_bpb yet" in text


def test_report_with_running_experiment(run: Store, tmp_path: Path) -> None:
    run.begin(tag=TAG, parent_commit="a" * 40, commit="c" * 40, diff="", description="in flight", agent="test",
              seed=0)
    md = _check_files(write_report(run, TAG, tmp_path), tmp_path)
    assert "still running" in md
    assert "in flight" not in (tmp_path / "results.tsv").read_text()


def test_report_200_experiments(store: Store, tmp_path: Path) -> None:
    rng = random.Random(0)
    best = 1.0
    _add(store, Status.KEEP, "baseline", best)
    kept = ["baseline"]
    for i in range(1, 200):
        roll = rng.random()
        if roll < 0.08:
            _add(store, Status.CRASH, f"crashy idea {i}", error=f"RuntimeError: {i}")
        elif roll < 0.1:
            _add(store, Status.TIMEOUT, f"slow idea {i}", error="timeout")
        elif roll < 0.25:
            best -= rng.uniform(0.001, 0.01)
            _add(store, Status.KEEP, f"good idea {i} with a rather long description that goes on", best)
            kept.append(f"good idea {i}")
        elif roll < 0.27:
            _add(store, Status.DISCARD, f"diverged {i}", 7.5)  # an outlier far above the rest
        else:
            _add(store, Status.DISCARD, f"meh idea {i}", best + rng.uniform(0, 0.05))
    md = _check_files(write_report(store, TAG, tmp_path), tmp_path)
    assert "200 (" in md
    for name in kept:
        assert name in md
    assert f"{best:.6f}" in md
    assert len(results_tsv(measured(store, TAG)).splitlines()) == 201
    text = _flat(status_table(store, TAG))
    assert "200 experiments" in text and f"{len(kept)} kept" in text


def test_markdown_escapes_pipes(store: Store) -> None:
    _add(store, Status.KEEP, "baseline", 1.0)
    _add(store, Status.KEEP, "a | b\nsecond line", 0.9)
    md = report_markdown(TAG, store.experiments(TAG), image=None)
    assert "a \\| b second line" in md and "![" not in md


def test_status_table_fits_80_columns(store: Store) -> None:
    _add(store, Status.KEEP, "baseline", 1.0)
    _add(store, Status.KEEP, "a very long description of the change " * 4, 0.9)
    _add(store, Status.CRASH, "flash attention with a long description of its own",
         error="Traceback (most recent call last):\n  File x\ntorch.OutOfMemoryError: CUDA out of memory. "
               "Tried to allocate 2.00 GiB; 70.1 GiB of 79.2 GiB in use")
    _add(store, Status.DISCARD, "batch 2x", 0.95)
    console = Console(width=80, record=True, color_system=None)
    console.print(status_table(store, TAG))
    text = console.export_text()
    lines = text.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), max(lines, key=len)
    cells = [(line, line.replace("│", " ").split()) for line in lines]  # whatever frame the table has
    rows = {words[0]: line for line, words in cells if words and words[0] in ("0", "1", "2", "3")}
    assert set(rows) == {"0", "1", "2", "3"}  # one line per experiment: nothing wraps
    for needle in ("val_bpb", "delta", "train s", "total s", "mem GB"):  # the headers, whole
        assert needle in text, needle
    # the figures are whole; the description gives way, cut with an ellipsis
    assert all(f in rows["1"] for f in ("0.900000", "-0.100000", "300.0", "330.0", "12.0"))
    assert all(f in rows["3"] for f in ("0.950000", "+0.050000"))
    assert all(f in rows["2"] for f in ("crash", "330.0", "flash", "…"))
    assert all(f in rows["1"] for f in ("a very long", "…"))
    assert "OutOfMemoryError" not in text  # cut, not wrapped onto further lines
    assert "4 experiments" in " ".join(text.split())  # the caption wraps, it is not cut


# ---------------------------------------------------------------------- the metric's name and direction


def test_deltas_and_running_best_maximize() -> None:
    points = [(Status.KEEP, 0.5), (Status.DISCARD, 0.4), (Status.KEEP, 0.6), (Status.CRASH, None),
              (Status.DISCARD, 0.55), (Status.KEEP, 0.7), (Status.KEEP, 0.65)]
    got = deltas(points, metric=ACCURACY)
    want = [None, -0.1, 0.1, None, -0.05, 0.1, -0.05]
    assert [g is None for g in got] == [w is None for w in want]
    assert all(g == pytest.approx(w) for g, w in zip(got, want, strict=True) if w is not None)
    assert running_best(points, metric=ACCURACY) == [0.5, 0.5, 0.6, 0.6, 0.6, 0.7, 0.7]
    # the same points minimized: the best never moves off 0.5
    assert running_best(points) == [0.5] * 7
    assert running_best(points, metric=MetricConfig()) == [0.5] * 7


def test_summary_maximize(acc_run: Store) -> None:
    experiments = acc_run.experiments(TAG)
    s = summarize(TAG, experiments, metric=ACCURACY)
    assert s.baseline.seq == 0 and s.best.seq == 5 and s.best.metric == 0.75
    assert s.best.id == acc_run.incumbent(TAG).id
    assert s.improvement == pytest.approx(0.25) and s.improvement_pct == pytest.approx(50.0)  # positive = better
    assert experiment_deltas(experiments, metric=ACCURACY)[2] == pytest.approx(0.1)
    # read as minimized, the same best is a loss against the baseline: the sign follows the direction
    low = summarize(TAG, experiments)
    assert low.best.seq == 5 and low.improvement == pytest.approx(-0.25)


def test_summary_maximize_negative_baseline(store: Store) -> None:
    _add(store, Status.KEEP, "baseline", -2.0)
    _add(store, Status.KEEP, "first at -1", -1.0)
    s = summarize(TAG, store.experiments(TAG), metric=MetricConfig(name="reward", direction="maximize"))
    assert s.best.seq == 1
    assert s.improvement == pytest.approx(1.0) and s.improvement_pct == pytest.approx(50.0)  # relative to |-2|


def test_caption_maximize(acc_run: Store) -> None:
    s = summarize(TAG, acc_run.experiments(TAG), metric=ACCURACY)
    text = caption(s)
    assert "accuracy baseline 0.500000" in text and "best 0.750000 (#5, +0.250000 / +50.00%)" in text
    assert "val_bpb" not in text
    assert caption(s, metric=MetricConfig(name="top1", direction="maximize")).count("top1 baseline") == 1
    crashed = caption(summarize(TAG, [e for e in acc_run.experiments(TAG) if e.metric is None], metric=ACCURACY))
    assert "no accuracy yet" in crashed and "baseline" not in crashed


def test_status_table_maximize(acc_run: Store) -> None:
    table = status_table(acc_run, TAG, metric=ACCURACY)
    text = _flat(table)
    for needle in ("accuracy", "0.750000", "+0.100000", "+0.150000", "-0.050000", "-0.590000",
                   "accuracy baseline 0.500000", "best 0.750000 (#5, +0.250000 / +50.00%)"):
        assert needle in text, needle
    assert "val_bpb" not in text
    colours = _colours(table)
    assert colours["+0.100000"] == "green" and colours["+0.150000"] == "green"  # higher = better
    assert colours["-0.050000"] == "red" and colours["-0.590000"] == "red"


def test_status_table_colours_minimize(run: Store) -> None:
    colours = _colours(build_table(TAG, run.experiments(TAG)))
    assert colours["-0.100000"] == "green" and colours["-0.050000"] == "green"  # lower = better
    assert colours["+0.100000"] == "red" and colours["+0.050000"] == "red"


def test_status_data_maximize(acc_run: Store) -> None:
    data = json.loads(json.dumps(status_data(acc_run, TAG, metric=ACCURACY)))
    assert data["metric_name"] == "accuracy" and data["direction"] == "maximize"
    assert data["baseline_metric"] == 0.5 and data["best_metric"] == 0.75 and data["best_seq"] == 5
    assert data["best_description"] == "more epochs"
    assert data["improvement"] == pytest.approx(0.25) and data["improvement_pct"] == pytest.approx(50.0)
    assert [r["metric"] for r in data["experiments"]] == [0.5, 0.45, 0.6, None, 0.01, 0.75, 0.7]
    assert data["experiments"][5]["delta"] == pytest.approx(0.15)


def test_markdown_maximize(acc_run: Store) -> None:
    md = report_markdown(TAG, acc_run.experiments(TAG), metric=ACCURACY)
    for needle in ("**Baseline accuracy:** 0.500000 (#0, baseline)",
                   "**Best accuracy:** 0.750000 (#5, more epochs): 0.250000 higher than the baseline (50.00%)",
                   "| # | accuracy | runs | delta | gain ± standard error | lines | description |",
                   "| 2 | 0.600000 | 1 | +0.100000 | - | - | mixup |",
                   "| 5 | 0.750000 | 1 | +0.150000 | - | - | more epochs |", "![accuracy per experiment](progress.png)"):
        assert needle in md, needle
    assert "val_bpb" not in md and "lower than" not in md
    crashed = report_markdown(TAG, [e for e in acc_run.experiments(TAG) if e.metric is None], metric=ACCURACY)
    assert "**Baseline accuracy:** none (no experiment finished with a accuracy)" in crashed


def test_plot_labels_follow_the_metric(acc_run: Store, tmp_path: Path, monkeypatch) -> None:
    figures = []

    class Recording(report_plot.Figure):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            figures.append(self)

    monkeypatch.setattr(report_plot, "Figure", Recording)
    experiments = acc_run.experiments(TAG)
    report_plot.plot_progress(TAG, experiments, tmp_path / "acc.png", metric=ACCURACY)
    ax = figures[-1].axes[0]
    assert ax.get_ylabel() == "accuracy (higher is better)"
    assert "best accuracy 0.750000 vs baseline 0.500000 (+50.00%)" in ax.get_title()
    lo, hi = ax.get_ylim()
    assert hi > 0.75 and 0.01 < lo < 0.45  # the far-below outlier is clipped, not the scale's bottom
    step = next(line for line in ax.get_lines() if line.get_label() == "running best")
    assert max(step.get_ydata()) == pytest.approx(0.75)

    report_plot.plot_progress(TAG, experiments, tmp_path / "bpb.png")
    assert figures[-1].axes[0].get_ylabel() == "val_bpb (lower is better)"

    report_plot.plot_progress(TAG, [e for e in experiments if e.metric is None], tmp_path / "none.png",
                              metric=ACCURACY)
    assert "no experiment produced a accuracy" in [t.get_text() for t in figures[-1].axes[0].texts]


def test_write_report_maximize(acc_run: Store, tmp_path: Path) -> None:
    out = tmp_path / "acc"
    md = _check_files(write_report(acc_run, TAG, out, metric=ACCURACY), out)
    tsv = (out / "results.tsv").read_text()
    assert tsv.splitlines()[0] == "commit\taccuracy\tmemory_gb\tstatus\tdescription"
    assert tsv == results_tsv(measured(acc_run, TAG), "accuracy")
    assert "**Best accuracy:** 0.750000" in md and "higher than the baseline" in md
    # the default stays val_bpb
    assert (tmp_path / "bpb" / "results.tsv").exists() is False
    write_report(acc_run, TAG, tmp_path / "bpb")
    assert (tmp_path / "bpb" / "results.tsv").read_text().startswith("commit\tval_bpb\t")


def test_the_report_says_loudly_when_runs_were_not_boxed(store: Store) -> None:
    for isolation in ("bwrap", "bwrap"):
        store.record(status=Status.KEEP, tag=TAG, parent_commit="a" * 40, commit="b" * 40, diff="", description="x",
                     agent="test", seed=0, metric=1.0, metrics={"isolation": isolation})
    assert "- **Sandbox:** every run in the bubblewrap box (2 runs)" in report_markdown(TAG, store.experiments(TAG))
    store.record(status=Status.DISCARD, tag=TAG, parent_commit="a" * 40, commit="c" * 40, diff="", description="y",
                 agent="test", seed=0, metric=1.1, metrics={"isolation": "process"})
    assert "- **Sandbox: NONE for 1 of 3 runs.**" in report_markdown(TAG, store.experiments(TAG))
    store.record(status=Status.DISCARD, tag=TAG, parent_commit="a", diff="", description="landlocked",
                 agent="test", seed=0, metric=1.2, metrics={"isolation": "landlock"})
    report = report_markdown(TAG, store.experiments(TAG))
    assert "- **Sandbox: NONE for 1 of 4 runs.**" in report and "WEAKER (Landlock" in report and "1 of 4 runs" in report


def test_the_noise_line_counts_its_runs_in_words():
    data = {"sigma": 0.0279, "dof": 5, "confirmation_runs": 1, "confirmed_experiments": 1, "extra_runs": 3}
    assert noise_line(data) == ("noise: sigma 0.0279 val_bpb (5 degrees of freedom); 1 confirmation run for "
                                "1 experiment")
    data.update(confirmation_runs=4, confirmed_experiments=3)
    assert noise_line(data).endswith("; 4 confirmation runs for 3 experiments")
    assert noise_line({**data, "confirmation_runs": 0}) == "noise: sigma 0.0279 val_bpb (5 degrees of freedom)"
    assert noise_line({**data, "sigma": None}) == "noise: not measured yet"


def test_steering_finds_each_change_of_program_md():
    from autoresearch.report.summary import steering, steering_text
    from autoresearch.store import Experiment

    def proposal(seq: int, program: str | None) -> Experiment:
        return Experiment(id=seq + 1, tag="t", seq=seq, parent_commit="p", commit="c", diff="", description="d",
                          agent="a", seed=0, status=Status.DISCARD, metric=1.0,
                          metrics={} if program is None else {"program": program}, training_seconds=1.0,
                          total_seconds=1.0, peak_memory_bytes=None, tokens=None, steps=None, log_path=None,
                          started_at=0.0, ended_at=1.0, error=None)

    texts = {"a": "line 1\nline 2\n", "b": "line 1\nline 2 changed\nline 3\n"}
    history = [proposal(0, None), proposal(1, "a"), proposal(2, "a"), proposal(3, "b"), proposal(4, "a")]
    changes = steering(history, texts)
    assert changes == [{"seq": 3, "program": "b", "added": 2, "removed": 1},
                       {"seq": 4, "program": "a", "added": 1, "removed": 2}]
    assert steering_text(history, changes) == ("program.md changed 2 times: before #3 (+2/-1 lines), "
                                               "before #4 (+1/-2 lines)")
    assert steering_text(history[:3], steering(history[:3], texts)) == "program.md was the same for every proposal"
    assert steering_text(history[:1], []) is None  # an older store: nothing recorded


def test_the_best_is_the_branch_head_even_when_measured_again_worse(store: Store, tmp_path: Path) -> None:
    """A best whose later runs read worse than an earlier keep's first figure is still the best: it beat that
    keep when it was kept, and it is the code the branch holds."""
    _add(store, Status.KEEP, "baseline", 1.0)
    _add(store, Status.KEEP, "wider MLP", 0.95)
    _add(store, Status.KEEP, "rope base 50k", 0.90)
    _add(store, Status.DISCARD, "batch 2x", 0.99)
    head = store.incumbent(TAG)
    for seed in (1, 2):  # a lucky first run: its mean is now 0.9667, above 0.95
        store.add_run(head, Run(1.0, seed, purpose="remeasure", of_best=True))
    s = summarize(TAG, measured(store, TAG))
    assert s.best.seq == 2 and s.best.metric == pytest.approx(2.9 / 3)
    assert s.improvement == pytest.approx(1.0 - 2.9 / 3)
    md = _check_files(write_report(store, TAG, tmp_path), tmp_path)
    assert "(#2, rope base 50k" in md and "(#1, wider MLP" not in md


def test_one_experiment_in_full(run: Store) -> None:
    run.record(status=Status.DISCARD, tag=TAG, parent_commit="c" * 40, commit="d" * 40, diff="-A = 1\n+A = 2\n",
               description="A 1 -> 2\nsecond line of the why", agent="claude", seed=0, metric=0.87,
               training_seconds=300.0, total_seconds=330.0, peak_memory_bytes=3 * 1024**3,
               metrics={"runs": [0.86, 0.88], "run_seeds": [0, 1], "verdict": "+0.5 standard errors: within the noise",
                        "agent_tokens_in": 12000.0, "agent_cost_usd": 0.25, "mfu": 0.41, "test_bpb": 0.91,
                        "agent_notes": {"tune_trial": 3}})  # what the agent is told back: not spend
    history = measured(run, TAG)
    data = experiment_data(history[-1], history)
    assert data["seq"] == 8 and data["best_before"] == 0.85 and data["best_before_seq"] == 5
    assert data["delta"] == pytest.approx(0.02) and not data["on_branch"]
    assert data["agent_spend"] == {"tokens_in": 12000.0, "cost_usd": 0.25}
    text = "\n".join(experiment_lines(data))
    assert text.startswith("#8 of nov27: discard · proposed by claude")
    assert "    A 1 -> 2\n    second line of the why" in text
    assert "val_bpb 0.870000 (mean of 2 runs: 0.860000, 0.880000); +0.020000 against the best before it, #5 at " \
           "0.850000" in text
    assert "verdict: +0.5 standard errors: within the noise" in text and "test split: 0.910000" in text
    assert "peak memory 3.00 GB" in text and "MFU 41.0%" in text and "agent: $0.2500, 12,000 tokens in" in text
    assert "not on the branch" in text
    crash = experiment_data(history[3], history)  # the crash: its error in full, no figures
    crash_text = "\n".join(experiment_lines(crash))
    assert crash["metric"] is None and "why:\n    Traceback (most recent call last):" in crash_text
    assert "against the best" not in crash_text


def test_agents_taking_turns_are_shown_side_by_side(store: Store) -> None:
    def add(agent, status, metric=None, **metrics):
        store.record(status=status, tag=TAG, parent_commit="a" * 40, commit="b" * 40, diff="", description=agent,
                     agent=agent, seed=0, metric=metric, metrics=metrics, error=None if metric else "boom")
    add("-", Status.KEEP, 1.0)
    add("claude", Status.KEEP, 0.9, agent_cost_usd=0.5)
    add("tune", Status.DISCARD, 0.95)
    add("tune", Status.KEEP, 0.85)
    add("claude", Status.CRASH, agent_cost_usd=0.25)
    add("adopt:gpu1", Status.KEEP, 0.8, adopted_from="gpu1")  # taken up, not proposed: not an agent's
    rows = proposers(store.experiments(TAG))
    assert [(r["agent"], r["proposals"], r["kept"], r["failed"]) for r in rows] == [("claude", 2, 1, 1),
                                                                                     ("tune", 2, 1, 0)]
    assert rows[0]["gain"] == pytest.approx(0.1) and rows[1]["gain"] == pytest.approx(0.05)
    assert rows[0]["spent"] == {"cost_usd": 0.75} and rows[1]["spent"] == {}
    md = report_markdown(TAG, store.experiments(TAG), image=None)
    assert "## By agent" in md and "| claude | 2 | 1 | 1 | 0.100000 | $0.75 |" in md
    assert "| tune | 2 | 1 | 0 | 0.050000 | - |" in md
    one = [e for e in store.experiments(TAG) if e.agent in ("-", "tune")]
    assert "## By agent" not in report_markdown(TAG, one, image=None)  # one agent: nothing to set side by side


def test_report_html_holds_every_experiment_with_its_change_and_the_plot(run: Store, tmp_path: Path) -> None:
    run.record(status=Status.DISCARD, tag=TAG, parent_commit="c" * 40, commit="d" * 40,
               diff="--- a/train.py\n+++ b/train.py\n@@ -1 +1 @@\n-LR = 1\n+LR = 2  # <b>bold?</b>\n",
               description="LR 1 -> 2 <script>alert(1)</script>", agent="claude", seed=0, metric=0.95)
    write_report(run, TAG, tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<script>" not in page  # text from agents stays text
    assert "LR 1 -&gt; 2 &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<span class="gi">+LR = 2  # &lt;b&gt;bold?&lt;/b&gt;</span>' in page  # the dashboard's highlighting
    assert '<span class="gd">-LR = 1</span>' in page and '<span class="gu">@@ -1 +1 @@</span>' in page
    assert page.count('<details class="experiment">') == 9 and page.index("#8 ") < page.index("#0 ")  # latest first
    assert ".status.keep" in page and ".diff .gi" in page  # the dashboard's styles, inline: no file to fetch
    assert "<table>" in page and "Kept changes</h2>" in page  # report.md's tables, rendered
    assert 'src="data:image/png;base64,' in page and 'src="progress.png"' not in page
    assert "flash attn v9" in page and "OOM" in page  # a crash opens to why it failed


def test_the_cluster_figures_count_the_runs_of_each_node_and_the_gpu_hours():
    from types import SimpleNamespace

    from autoresearch.report.status import cluster_data, cluster_line

    ran = [SimpleNamespace(metrics={"run_nodes": ["10.0.0.5 (aa)", "10.0.0.6 (bb)", "10.0.0.5 (aa)"],
                                    "gpu_seconds": 5400.0}),
           SimpleNamespace(metrics={"run_nodes": ["10.0.0.6 (bb)"], "gpu_seconds": 1800.0}),
           SimpleNamespace(metrics={})]  # a rejected proposal: no run
    cluster = cluster_data(ran)
    assert cluster == {"nodes": {"10.0.0.5 (aa)": 2, "10.0.0.6 (bb)": 2}, "gpu_hours": 2.0}
    assert cluster_line(cluster) == "cluster: 2 nodes (10.0.0.5 (aa) 2 runs, 10.0.0.6 (bb) 2 runs), 2.00 GPU-hours"
    assert cluster_data([SimpleNamespace(metrics={"isolation": "bwrap"})]) is None  # all on this machine
    from autoresearch.store import Run

    later = [Run(0.9, 3, None, "remeasure", True, "10.0.0.7 (cc)", 3600.0), Run(0.9, 4, None, "noise", True)]
    assert cluster_data(ran, later) == {"nodes": {"10.0.0.5 (aa)": 2, "10.0.0.6 (bb)": 2, "10.0.0.7 (cc)": 1},
                                        "gpu_hours": 3.0}  # the bests' re-runs count too (the local one not)
