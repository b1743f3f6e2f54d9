"""[track]: each decided experiment exported to MLflow, TensorBoard and W&B (offline), read back with the
trackers' own readers (MlflowClient on the local store, TensorBoard's EventAccumulator, W&B's record protos).

The trackers are the real libraries writing under tmp_path, offline; a loop runs in-process on a FakeRunner
(tests/loopkit.py) whose runs write training curves to their logs, and once through the real CLI."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder
from loopkit import ReplayAgent, fake_loop, loss_of, make_task, proposals, settings

from autoresearch.config import ConfigError, MetricConfig, config_from_dict
from autoresearch.decide.measured import measured
from autoresearch.observe import ObserverError, Observers, observers_for
from autoresearch.observe.track import TrackSettings, check, libraries
from autoresearch.observe.track.export import (
    CUT_MARK,
    CurvePoint,
    curve_of,
    cut,
    experiment_export,
    plain,
    thinned,
)
from autoresearch.observe.track.settings import mlflow_target
from autoresearch.observe.track.to_tensorboard import params_markdown, tag_folder_name
from autoresearch.observe.track.to_wandb import run_id
from autoresearch.run.fake import Scripted, code_text
from autoresearch.store import Experiment, LineRecord, Run, Status, Store

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="the mlflow extra is not installed")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                        reason="the tensorboard extra is not installed")
wandb_proto = pytest.importorskip("wandb.proto.wandb_internal_pb2", reason="the wandb extra is not installed")

ALL_THREE = {"mlflow": "mlruns", "tensorboard": "tb", "wandb": "wb"}
UNTRUSTED = "\x1b[31mred\x1b[0m \u202eevil [b]x[/b] <img src=x onerror=alert(1)> `code`\n" + "long " * 3000


# -- the loop, in-process, with every tracker on ------------------------------------------------------

def curved(request) -> Scripted:
    """The code's LOSS (a little seeded noise, so the confirm rule has noise to weigh), a falling curve of
    five steps; code with `CRASH` crashes after two."""
    text = code_text(request)
    value = loss_of(text) + 0.001 * ((request.seed * 7919) % 5 - 2)
    curve = [(0.5 * i, 3.0 - 0.1 * i) for i in range(1, 6)]
    if "CRASH" in text:
        return Scripted(status="crash", curve=curve[:2], error="boom: the run crashed")
    return Scripted(metric=value, curve=curve)


CHANGES = proposals(("better", "LOSS = 0.5\n"), ("worse", "LOSS = 2.0\n"), ("crashes", "LOSS = 0.4\nCRASH = 1\n"),
                    ("nothing", "LOSS = 0.5\n"), (UNTRUSTED, "LOSS = 0.45\n"))


def run_tracked(task: Path, changes: list[dict], track: dict, *, resume: bool = False, tag: str = "t",
                before_run=None) -> tuple[list[Experiment], list[str]]:
    """Run the loop over `changes` with the trackers `track` on, as the CLI wires them: (its experiments,
    the warnings the observers gave)."""
    config = settings(track=track)
    loop, _ = fake_loop(task, curved, ReplayAgent(list(changes)), config=config, tag=tag, resume=resume)
    warnings: list[str] = []
    try:
        watchers = Observers(observers_for(config, task, loop.store, loop.tag), warn=warnings.append)
        printer = loop.on_event

        def on_event(event: dict) -> None:
            printer(event)
            watchers.on_event(event)
        loop.on_event = on_event
        if before_run is not None:
            before_run()
        reason = loop.run()
        watchers.on_stop(reason, crashed=False)
        return loop.store.experiments(loop.tag), warnings
    finally:
        loop.close()


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> tuple[Path, list[Experiment]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTORESEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        task = make_task(tmp_path_factory.mktemp("tracked"))
        experiments, warnings = run_tracked(task, CHANGES, ALL_THREE)
    assert warnings == []
    return task, experiments


def test_the_scenario_decides_every_kind(tracked):
    _, experiments = tracked
    statuses = [e.status for e in experiments]
    assert statuses[0] is Status.KEEP and {Status.KEEP, Status.DISCARD, Status.CRASH, Status.REJECTED} <= set(statuses)


def store_of(task: Path) -> Store:
    return Store.open(task)


# -- MLflow ---------------------------------------------------------------------------------------------

def mlflow_runs(task: Path, tag: str = "t") -> tuple[object, dict, object]:
    """(the client, the experiment runs by seq, the line's run) of the local store in task/mlruns."""
    client = mlflow_tracking.MlflowClient(tracking_uri=mlflow_target("mlruns", task).uri)
    experiment = client.get_experiment_by_name(f"autoresearch/{tag}")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    by_seq: dict[int, list] = {}
    line = [r for r in runs if r.data.tags.get("autoresearch.kind") == "line"]
    for r in runs:
        if r.data.tags.get("autoresearch.kind") == "experiment":
            by_seq.setdefault(int(r.data.tags["autoresearch.seq"]), []).append(r)
    assert len(line) == 1
    return client, by_seq, line[0]


def test_mlflow_has_one_run_per_experiment_with_its_metric_params_and_curve(tracked):
    task, experiments = tracked
    client, by_seq, line = mlflow_runs(task)
    assert sorted(by_seq) == [e.seq for e in experiments] and all(len(v) == 1 for v in by_seq.values())
    for e in experiments:
        run = by_seq[e.seq][0]
        assert run.data.tags["status"] == e.status.value
        assert run.data.params["description"].startswith(plain(e.description)[:20])
        assert run.data.params.get("commit") == e.commit
        assert run.data.params["protocol.train.budget_seconds"] == "10.0"
        assert "keep.rule" not in run.data.params  # no autoresearch.toml here to say it (the CLI test has one)
        assert run.data.tags["mlflow.parentRunId"] == line.info.run_id
        if e.metric is not None:
            assert run.data.metrics["val_bpb"] == pytest.approx(e.metric)
            assert [m.step for m in client.get_metric_history(run.info.run_id, "val_bpb")] == [e.seq]
    baseline = by_seq[0][0]
    curve = client.get_metric_history(baseline.info.run_id, "train/loss")
    assert [(m.step, round(m.value, 6)) for m in curve] == [(i, round(3.0 - 0.1 * i, 6)) for i in range(1, 6)]
    assert [m.value for m in client.get_metric_history(baseline.info.run_id, "train/seconds")] == [0.5, 1, 1.5, 2, 2.5]
    seeds = client.get_metric_history(baseline.info.run_id, "runs/seed")
    assert len(seeds) == 3 and baseline.data.params["run_seeds"] == "0,1,2"  # the baseline's noise seeds
    assert len(client.get_metric_history(baseline.info.run_id, "run-3/train/loss")) == 5  # each run's curve
    crashed = next(by_seq[e.seq][0] for e in experiments if e.status is Status.CRASH)
    assert crashed.info.status == "FAILED" and "boom" in crashed.data.params["reason"]
    assert len(client.get_metric_history(crashed.info.run_id, "train/loss")) == 2  # the curve up to the crash
    diff = client.download_artifacts(by_seq[1][0].info.run_id, "diff.patch", str(task / "dl"))
    assert "+LOSS = 0.5" in Path(diff).read_text()


def test_mlflow_line_run_draws_the_best_so_far_over_seq(tracked):
    task, experiments = tracked
    client, _, line = mlflow_runs(task)
    best = client.get_metric_history(line.info.run_id, "best_so_far")
    assert [m.step for m in best] == [e.seq for e in experiments]  # a step at every experiment, measured or not
    values = [m.value for m in best]  # the best as measured at each experiment's time: one that ran again
    # later (keep.best_runs) moves with its new runs
    assert values[0] == pytest.approx(next(e for e in measured(store_of(task), "t")).metric)
    assert max(values) == values[0] and values[-1] == pytest.approx(0.45, abs=0.01)
    assert line.info.status == "FINISHED"


def test_untrusted_text_goes_out_plain_and_cut_to_the_limits(tracked):
    task, experiments = tracked
    _, by_seq, _ = mlflow_runs(task)
    odd = next(e for e in experiments if e.description.startswith(UNTRUSTED[:12]))
    run = by_seq[odd.seq][0]
    description = run.data.params["description"]
    assert "\x1b" not in description and "\u202e" not in description and "\\x1b[31m" in description
    assert description.endswith(CUT_MARK) and len(description) <= 6000
    assert len(run.info.run_name) <= 100 and "\x1b" not in run.info.run_name


# -- TensorBoard --------------------------------------------------------------------------------------

def accumulated(folder: Path):
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_has_the_line_over_seq_and_a_run_folder_per_experiment(tracked):
    task, experiments = tracked
    root = task / "tb" / "t"
    line = accumulated(root)
    measured = [e for e in experiments if e.metric is not None]
    assert [(s.step, round(s.value, 5)) for s in line.Scalars("experiment/val_bpb")] == \
        [(e.seq, round(e.metric, 5)) for e in measured]
    assert [s.step for s in line.Scalars("experiment/best_so_far")] == [e.seq for e in experiments]
    assert sorted(int(p.name) for p in root.iterdir() if p.is_dir()) == [e.seq for e in experiments]
    baseline = accumulated(root / "0000")
    assert [(s.step, round(s.value, 5)) for s in baseline.Scalars("train/loss")] == \
        [(i, round(3.0 - 0.1 * i, 5)) for i in range(1, 6)]
    loss = baseline.Scalars("train/loss")
    assert loss[-1].wall_time - loss[0].wall_time == pytest.approx(2.0)  # the relative axis: training seconds
    assert len(accumulated(root / "0000" / "run-2").Scalars("train/loss")) == 5
    assert len(baseline.Scalars("runs/val_bpb")) == 3
    text = baseline.Tensors("experiment")[0].tensor_proto.string_val[0].decode()
    assert all(line.startswith("    ") for line in text.splitlines())  # a code block: shown as written
    assert "status" in text and "keep" in text


def test_tensorboard_tag_folders_are_plain_and_distinct():
    assert tag_folder_name("nov27") == "nov27"
    assert tag_folder_name("a/b") != tag_folder_name("a_b") and "/" not in tag_folder_name("a/b")
    assert not tag_folder_name("..").startswith(".")


# -- W&B offline ----------------------------------------------------------------------------------

def wandb_records(path: Path) -> list:
    """The records of a .wandb file: W&B's 7-byte header, then LevelDB log blocks of 32 KiB holding
    `wandb_internal_pb2.Record`s (W&B's Python package has no reader of its own any more: its core is Go)."""
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    records, pos, pending = [], 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        body, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            record = wandb_proto.Record()
            record.ParseFromString(pending + body if kind == 4 else body)
            records.append(record)
        pending = body if kind == 2 else pending + body if kind == 3 else b""
    return records


def wandb_runs(folder: Path) -> dict[int, dict]:
    """Each offline run under `folder`, by seq: its run record, config, summary, history rows, exit code."""
    out = {}
    for path in folder.glob("wandb/offline-run-*/*.wandb"):
        run, config, summary, history, exit_code = None, {}, {}, [], None
        for r in wandb_records(path):
            kind = r.WhichOneof("record_type")
            if kind == "run":
                run = r.run
                config.update({i.key: json.loads(i.value_json) for i in r.run.config.update})
            elif kind == "config":
                config.update({i.key: json.loads(i.value_json) for i in r.config.update})
            elif kind == "summary":
                summary.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.summary.update})
            elif kind == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item})
            elif kind == "exit":
                exit_code = r.exit.exit_code
        seq = int(config["seq"])
        assert seq not in out, f"experiment {seq} has two W&B runs"
        out[seq] = {"run": run, "config": config, "summary": summary, "history": history, "exit": exit_code}
    return out


def test_wandb_offline_has_one_run_per_experiment_grouped_by_tag(tracked):
    task, experiments = tracked
    runs = wandb_runs(task / "wb")
    assert sorted(runs) == [e.seq for e in experiments]
    for e in experiments:
        got = runs[e.seq]
        assert got["run"].run_group == "t" and got["run"].project == "autoresearch"
        assert list(got["run"].tags) == [e.status.value]
        assert got["config"]["status"] == e.status.value and got["config"]["agent"] == e.agent
        assert got["config"]["protocol.train.budget_seconds"] == "10.0" and got["summary"]["seq"] == e.seq
        if e.metric is not None:
            assert got["summary"]["val_bpb"] == pytest.approx(e.metric)
            assert "best_so_far" in got["summary"]
    baseline = runs[0]
    curve = [(h["train/step"], h["train/loss"]) for h in baseline["history"] if "train/loss" in h]
    assert curve == [(i, pytest.approx(3.0 - 0.1 * i)) for i in range(1, 6)]
    assert [h["run-2/train/step"] for h in baseline["history"] if "run-2/train/loss" in h] == [1, 2, 3, 4, 5]
    assert baseline["summary"]["run-3/seed"] == 2 and baseline["exit"] == 0
    crashed = next(runs[e.seq] for e in experiments if e.status is Status.CRASH)
    assert crashed["exit"] == 1
    assert all(len(v) <= 4000 for v in runs[len(experiments) - 1]["config"].values() if isinstance(v, str))


def test_wandb_run_ids_are_stable_and_plain():
    assert run_id("t", 3, "/a") == run_id("t", 3, "/a") != run_id("t", 3, "/b")
    assert set(run_id("odd/tag:#?", 12, "/a")) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-tagd")


# -- resuming, and a tracker that fails -----------------------------------------------------------

def test_a_resumed_loop_exports_nothing_twice(tmp_path):
    task = make_task(tmp_path)
    changes = proposals(("better", "LOSS = 0.5\n"), ("still better", "LOSS = 0.4\n"))
    run_tracked(task, changes[:1], ALL_THREE)
    experiments, warnings = run_tracked(task, changes, ALL_THREE, resume=True)  # replay goes on at the second
    assert warnings == [] and len(experiments) == 3
    seqs = [e.seq for e in experiments]
    _, by_seq, _ = mlflow_runs(task)
    assert sorted(by_seq) == seqs and all(len(runs) == 1 for runs in by_seq.values())
    assert sorted(wandb_runs(task / "wb")) == seqs
    line = accumulated(task / "tb" / "t")  # an event file per session: TensorBoard orders the points by step
    assert sorted(s.step for s in line.Scalars("experiment/val_bpb")) == seqs


def test_a_tracker_turned_on_later_gets_the_earlier_experiments(tmp_path):
    task = make_task(tmp_path)
    changes = proposals(("better", "LOSS = 0.5\n"), ("still better", "LOSS = 0.4\n"))
    run_tracked(task, changes[:1], {"tensorboard": "tb"})
    experiments, _ = run_tracked(task, changes, ALL_THREE, resume=True)
    assert len(experiments) == 3
    _, by_seq, _ = mlflow_runs(task)
    assert sorted(by_seq) == [e.seq for e in experiments] == sorted(wandb_runs(task / "wb"))


def test_a_tracker_that_fails_is_dropped_with_a_warning_and_the_loop_goes_on(tmp_path):
    task = make_task(tmp_path)

    def break_tensorboard() -> None:  # its folder becomes a file: every write fails
        import shutil
        shutil.rmtree(task / "tb")
        (task / "tb").write_text("not a folder")

    experiments, warnings = run_tracked(task, proposals(("better", "LOSS = 0.5\n")), ALL_THREE,
                                        before_run=break_tensorboard)
    assert len(warnings) == 1 and warnings[0].startswith("track.tensorboard (tb) failed")
    assert [e.status for e in experiments] == [Status.KEEP, Status.KEEP]
    _, by_seq, _ = mlflow_runs(task)
    assert sorted(by_seq) == [0, 1] == sorted(wandb_runs(task / "wb"))


# -- settings and libraries -------------------------------------------------------------------------

@pytest.mark.parametrize(("track", "says"), [
    ({"mlflow": "  "}, "track.mlflow is blank"),
    ({"tensorboard": "s3://bucket/tb"}, "track.tensorboard = 's3://bucket/tb' looks like a URI"),
    ({"wandb": "https://wandb.ai"}, "give a local folder"),
    ({"wandb_project": "p"}, "track.wandb_project is set but track.wandb is not"),
    ({"wandb": "wb", "wandb_project": "a/b"}, "W&B project names"),
])
def test_bad_settings_are_refused_with_the_fix(track, says):
    with pytest.raises(ConfigError, match=None) as caught:
        config_from_dict({"track": track})
    assert says in str(caught.value)


def test_settings_are_typed_and_known():
    with pytest.raises(ConfigError, match=r"track.mlflow = 1 should be a str"):
        config_from_dict({"track": {"mlflow": 1}})
    with pytest.raises(ConfigError, match="unknown setting track.neptune"):
        config_from_dict({"track": {"neptune": "x"}})
    assert config_from_dict({"track": ALL_THREE}).track == TrackSettings(**ALL_THREE)
    assert check(TrackSettings(mlflow="http://127.0.0.1:5000", wandb="wb", wandb_project="mine")) is None


def test_mlflow_folders_are_sqlite_stores_in_the_task_and_uris_pass_through(tmp_path):
    local = mlflow_target("mlruns", tmp_path)
    assert local.uri == f"sqlite:///{tmp_path}/mlruns/mlflow.db" and local.local == tmp_path / "mlruns"
    assert mlflow_target("/abs/ml", tmp_path).local == Path("/abs/ml")
    for uri in ("http://127.0.0.1:5000", "sqlite:///x.db", "databricks", "file:///tmp/mlruns"):
        assert mlflow_target(uri, tmp_path).uri == uri and mlflow_target(uri, tmp_path).local is None


@pytest.mark.parametrize(("setting", "module"), [("mlflow", "mlflow"), ("mlflow", "sqlalchemy"),
                                                 ("tensorboard", "tensorboard.summary.writer.event_file_writer"),
                                                 ("wandb", "wandb")])
def test_a_missing_library_fails_the_start_with_the_pip_command(tmp_path, monkeypatch, setting, module):
    real = libraries.import_module

    def without(name: str):
        if name == module:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real(name)
    monkeypatch.setattr(libraries, "import_module", without)
    config = settings(track={setting: "out"})
    with pytest.raises(ObserverError) as caught:
        observers_for(config, tmp_path, store=None, tag="t")
    extra = {"mlflow": "mlflow", "tensorboard": "tensorboard", "wandb": "wandb"}[setting]
    assert f"pip install 'autoresearch[{extra}]'" in str(caught.value)
    assert f"track.{setting} = 'out'" in str(caught.value)


def test_no_setting_no_observer_and_no_import(tmp_path):
    assert observers_for(settings(), tmp_path, store=None, tag="t") == []


# -- what is exported (pure) ------------------------------------------------------------------------

def test_the_export_of_an_experiment_holds_its_figures():
    e = Experiment(id=7, tag="t", seq=4, parent_commit="p" * 40, commit="c" * 40, diff="+x", description="wider\nmore",
                   agent="claude", seed=4, status=Status.KEEP, metric=0.9,
                   metrics={"mfu": 0.41, "agent_cost_usd": 0.12, "agent_seconds": 30.0, "gpu_seconds": 300.0,
                            "verdict": "clear", "test_bpb": 0.95, "notes": {"x": 1}},
                   training_seconds=100.0, total_seconds=130.0, peak_memory_bytes=2_500_000_000, tokens=1_000_000,
                   steps=50, log_path=None, started_at=1000.0, ended_at=1140.0, error=None)
    line = LineRecord(tag="t", budget_seconds=100.0, protocol={"device": "cuda", "train.budget_seconds": 100.0})
    export = experiment_export(e, runs=[Run(0.91, 4), Run(0.89, 5, purpose="confirm")],
                               curves=[[CurvePoint(1, 0.5, 3.0)]], best_so_far=0.9, best_before=1.0, line=line,
                               metric=MetricConfig(), keep_rule="confirm")
    assert export.key == "t#4" and export.name == "#4 wider" and export.metric == 0.9
    assert export.params["commit"] == "c" * 40 and export.params["run_seeds"] == "4,5"
    assert export.params["device"] == "cuda" and export.params["keep.rule"] == "confirm"
    assert export.params["reason"] == "clear" and export.params["protocol.train.budget_seconds"] == "100.0"
    m = export.metrics
    assert m["tokens_per_s"] == 10_000 and m["peak_memory_gb"] == 2.5 and m["mfu"] == 0.41
    assert m["delta"] == pytest.approx(-0.1) and m["wall_seconds"] == 140 and m["test_val_bpb"] == 0.95
    assert m["cost/agent_cost_usd"] == 0.12 and m["cost/gpu_seconds"] == 300 and "notes" not in str(m)
    assert [(r.number, r.seed, r.metric, len(r.curve)) for r in export.runs] == [(1, 4, 0.91, 1), (2, 5, 0.89, 0)]


def test_curves_come_from_step_events_and_are_thinned():
    events = [{"event": "start"}, {"event": "step", "step": 1, "elapsed": 0.1, "train_loss": 3.0},
              {"event": "step", "step": "2"}, {"event": "step", "step": 2.5}, {"event": "step", "step": 3,
                                                                              "train_loss": float("nan")}]
    assert curve_of(events) == (CurvePoint(1, 0.1, 3.0), CurvePoint(3, None, None))
    points = [CurvePoint(i, None, None) for i in range(5000)]
    kept = thinned(points, 1000)
    assert len(kept) == 1000 and kept[0].step == 0 and kept[-1].step == 4999
    assert cut("x" * 10, 10) == "x" * 10 and cut("x" * 20, 10).endswith(CUT_MARK) and len(cut("x" * 20, 10)) == 10
    assert params_markdown({"a": "1\n2", "bb": "3"}) == "    a   1\n        2\n    bb  3"


# -- the real CLI --------------------------------------------------------------------------------------

SOLVE_PY = """\
import json
RATE = 0.1
for step in range(1, 4):
    print("@autoresearch " + json.dumps({"event": "step", "step": step, "elapsed": 0.01 * step,
                                          "train_loss": 1.0 / step}), flush=True)
print(f"score: {1.0 - (RATE - 0.3) ** 2:.6f}")
"""


def test_autoresearch_run_exports_to_all_three(tmp_path):
    task = generic_task_folder(tmp_path, SOLVE_PY)
    toml = task / "autoresearch.toml"
    text = toml.read_text()
    for key, value in {**ALL_THREE, "wandb_project": "demo"}.items():
        assert f'\n{key} = ""\n' in text  # `init` writes every setting, [track]'s too
        text = text.replace(f'\n{key} = ""\n', f'\n{key} = "{value}"\n')
    toml.write_text(text)
    patches = task / "patches.json"
    patches.write_text(json.dumps([
        {"description": "rate 0.2", "edits": [{"file": "solve.py", "search": "RATE = 0.1", "replace": "RATE = 0.2"}]},
        {"description": "rate 0.5", "edits": [{"file": "solve.py", "search": "RATE = 0.2", "replace": "RATE = 0.5"}]},
    ]))
    done = cli("run", "--agent", f"replay:{patches}", "--tag", "e2e", cwd=task,
               env={"WANDB_MODE": "online"})  # offline whatever the environment says: no network, no login
    assert "failed and is left out" not in done.stdout + done.stderr
    assert "wandb" not in done.stdout + done.stderr and "mlflow" not in done.stdout + done.stderr  # quiet
    client, by_seq, line = mlflow_runs(task, "e2e")
    assert sorted(by_seq) == [0, 1, 2]
    assert by_seq[1][0].data.metrics["score"] == pytest.approx(1.0 - 0.01)
    assert by_seq[1][0].data.params["metric.direction"] == "maximize"
    assert by_seq[1][0].data.params["keep.rule"] == "confirm"
    assert [m.value for m in client.get_metric_history(line.info.run_id, "best_so_far")] == \
        pytest.approx([1.0 - 0.04, 1.0 - 0.01, 1.0 - 0.01])
    assert len(client.get_metric_history(by_seq[0][0].info.run_id, "train/loss")) == 3
    assert [s.step for s in accumulated(task / "tb" / "e2e").Scalars("experiment/score")] == [0, 1, 2]
    runs = wandb_runs(task / "wb")
    assert sorted(runs) == [0, 1, 2] and runs[2]["run"].project == "demo" and runs[2]["run"].run_group == "e2e"
