"""When a tracker is sent what: the `observe.Observer` that stands between the loop and one tracker.

On each `decided` event of the loop (measure.py, propose.py) the line's decided experiments that the
tracker does not hold yet are sent, in seq order. Asking "what is missing" rather than "what was just
decided" is what makes a resumed loop (or one whose tracker was turned on later) send the experiments the
tracker lacks, and nothing twice: the tracker is asked once what it holds (`exported_keys`), then told each
export as it goes. When the loop stops, whatever was decided last is sent and the tracker is closed.
"""

from __future__ import annotations

from typing import Protocol

from autoresearch.observe.track.export import ExperimentExport
from autoresearch.observe.track.source import ExportSource


class Tracker(Protocol):
    """One tracker's calls (to_mlflow.py, to_tensorboard.py, to_wandb.py)."""

    name: str  # as the warnings name it, e.g. "track.mlflow (/task/mlruns)"

    def exported_keys(self) -> set[str]:
        """The keys (`ExperimentExport.key`) of the experiments this tracker holds for the line already."""

    def write(self, export: ExperimentExport) -> None:
        """Send one experiment."""

    def close(self) -> None:
        """Finish writing; nothing is sent after this."""


class TrackerObserver:
    """An `observe.Observer` that keeps one tracker up to date with the line's decided experiments."""

    def __init__(self, tracker: Tracker, source: ExportSource) -> None:
        self.tracker, self.source = tracker, source
        self.name = tracker.name
        self._sent: set[str] | None = None  # asked of the tracker before the first export

    def on_event(self, event: dict) -> None:
        if event.get("event") != "decided":
            return
        try:
            self.send_missing()
        except BaseException:  # `Observers` leaves this tracker out now: let it finish what it can first
            self._close_quietly()
            raise

    def on_stop(self, reason: str, *, crashed: bool) -> None:
        try:
            self.send_missing()
        finally:
            self.tracker.close()

    def _close_quietly(self) -> None:
        try:
            self.tracker.close()
        except Exception:  # noqa: BLE001 - the first failure is the one reported
            pass

    def send_missing(self) -> int:
        """Send every decided experiment the tracker lacks; how many were sent."""
        if self._sent is None:
            self._sent = set(self.tracker.exported_keys())
        sent = 0
        for export in self.source.exports(skip=self._sent):
            self.tracker.write(export)
            self._sent.add(export.key)
            sent += 1
        return sent
