"""Experiments to TensorBoard event files: a folder per tag, a run folder per experiment.

Layout, under the `track.tensorboard` folder (`tensorboard --logdir <folder>`):
- `<tag>/`: the line's progress, one point per experiment at step = seq: `experiment/<metric>`,
  `experiment/best_so_far` and the experiment's other figures (`experiment/tokens_per_s`, `.../mfu`, ...);
- `<tag>/<seq>/` (seq as four digits): that experiment's training curve (`train/loss`, `train/seconds`,
  `train/tokens_per_s` at each step; each point's time is the experiment's start plus its training seconds,
  so TensorBoard's "relative" axis reads as training seconds), each run's metric (`runs/<metric>` at step =
  run number), and a text summary (`experiment`) of its params; a confirmation run's curve in `run-<n>/`.

TensorBoard renders text summaries as markdown, so the params (untrusted descriptions among them) go in as an
indented code block, which it shows as written. Only the `tensorboard` package is used (its event writer and
protos), not TensorFlow or torch. An experiment whose folder holds an event file is there already; a tag
whose name is not a plain folder name gets one made of it, with a short hash so that two tags never share.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from autoresearch.observe import ObserverError
from autoresearch.observe.track.export import ExperimentExport, key_of
from autoresearch.observe.track.libraries import tracker_library
from autoresearch.observe.track.settings import folder

EVENTS_PREFIX = "events.out.tfevents"
_FOLDER_NAME = re.compile(r"[^A-Za-z0-9._-]")


def tag_folder_name(tag: str) -> str:
    """`tag` as one folder name: itself when it is plain, else its plain characters and a short hash."""
    plain_name = _FOLDER_NAME.sub("_", tag).lstrip(".") or "_"
    if plain_name == tag:
        return tag
    return f"{plain_name}-{hashlib.sha256(tag.encode()).hexdigest()[:8]}"


def params_markdown(params: dict[str, str]) -> str:
    """The params as a markdown code block (each line indented by four spaces): shown as written."""
    width = max((len(k) for k in params), default=0)
    lines = [f"{key.ljust(width)}  {line}" if i == 0 else f"{' ' * width}  {line}"
             for key, value in params.items() for i, line in enumerate(value.splitlines() or [""])]
    return "\n".join("    " + line for line in lines)


class TensorBoardTracker:
    def __init__(self, value: str, *, task_dir: Path, tag: str) -> None:
        self.name = f"track.tensorboard ({value})"
        tracker_library("tensorboard.summary.writer.event_file_writer", setting="tensorboard", extra="tensorboard",
                        value=value)
        self.tag = tag
        self.root = folder(value, task_dir) / tag_folder_name(tag)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ObserverError(f"track.tensorboard = {value!r}: cannot write the folder {self.root}: {e}") from e
        self._line_writer = None  # the `<tag>/` writer, open while the loop runs

    def experiment_folder(self, seq: int) -> Path:
        return self.root / f"{seq:04d}"

    def exported_keys(self) -> set[str]:
        return {key_of(self.tag, int(child.name)) for child in self.root.iterdir()
                if child.is_dir() and child.name.isdigit() and any(child.glob(EVENTS_PREFIX + "*"))}

    def write(self, export: ExperimentExport) -> None:
        from tensorboard.compat.proto.event_pb2 import Event

        if self._line_writer is None:
            self._line_writer = _writer(self.root)
        self._line_writer.add_event(Event(wall_time=export.ended_at, step=export.seq,
                                          summary=_scalars({f"experiment/{k}": v for k, v in export.metrics.items()})))
        self._line_writer.flush()
        target = self.experiment_folder(export.seq)
        writer = _writer(target)  # written last: its event file says the experiment is there
        try:
            writer.add_event(Event(wall_time=export.ended_at, step=export.seq,
                                   summary=_text("experiment", params_markdown(export.params))))
            for r in export.runs:
                if r.metric is not None:
                    writer.add_event(Event(wall_time=export.ended_at, step=r.number,
                                           summary=_scalars({f"runs/{export.metric_name}": r.metric})))
            for r in export.runs:
                run_writer = writer if r.number == 1 else _writer(target / f"run-{r.number}")
                for p in r.curve:
                    figures = {"train/loss": p.loss, "train/seconds": p.seconds, "train/tokens_per_s": p.tokens_per_s}
                    run_writer.add_event(Event(wall_time=export.started_at + (p.seconds or 0.0), step=p.step,
                                               summary=_scalars(figures)))
                if run_writer is not writer:
                    run_writer.close()
        finally:
            writer.close()

    def close(self) -> None:
        if self._line_writer is not None:
            self._line_writer.close()
            self._line_writer = None


def _writer(logdir: Path):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir.mkdir(parents=True, exist_ok=True)
    return EventFileWriter(str(logdir), flush_secs=5)


def _scalars(figures: dict[str, float | None]):
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Summary(value=[Summary.Value(tag=tag, simple_value=value) for tag, value in figures.items()
                          if value is not None])


def _text(tag: str, text: str):
    from tensorboard.compat.proto import types_pb2
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.compat.proto.tensor_pb2 import TensorProto
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto

    metadata = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
    tensor = TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode("utf-8")],
                         tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=1)]))
    return Summary(value=[Summary.Value(tag=tag, metadata=metadata, tensor=tensor)])
