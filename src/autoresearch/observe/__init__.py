"""What watches a loop from outside it: alerts to a webhook (`notify`) and the experiment trackers teams
already use (`track`: MLflow, TensorBoard, Weights & Biases offline).

An observer is told of the loop's events as they happen (`on_event`, the same `{"event": ...}` dicts the
terminal shows) and of its end (`on_stop`). It reads the store; it never writes it, and it never stops the
loop: an observer that fails is reported once and then left out (`Observers`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from autoresearch.config import TaskConfig
    from autoresearch.store import Store


class ObserverError(Exception):
    """An observer the settings ask for cannot be made (its library is missing, its folder cannot be
    written); the message names the setting and the fix."""


class Observer(Protocol):
    name: str

    def on_event(self, event: dict) -> None:
        """One of the loop's events, as it happens."""

    def on_stop(self, reason: str, *, crashed: bool) -> None:
        """The loop stopped: `reason` as the terminal says it; `crashed`: by an error, not by a limit or Ctrl-C."""


class Observers:
    """Several observers as one: each is told everything, in turn; one that raises is reported through `warn`
    once and told nothing more, so a tracker or a webhook never stops the research."""

    def __init__(self, observers: Sequence[Observer], warn: Callable[[str], None]):
        self.observers, self.warn = list(observers), warn

    def __bool__(self) -> bool:
        return bool(self.observers)

    def on_event(self, event: dict) -> None:
        self._each(lambda o: o.on_event(event))

    def on_stop(self, reason: str, *, crashed: bool) -> None:
        self._each(lambda o: o.on_stop(reason, crashed=crashed))

    def _each(self, call: Callable[[Observer], None]) -> None:
        for observer in list(self.observers):
            try:
                call(observer)
            except Exception as e:  # noqa: BLE001 - an outside service must not stop the loop
                self.observers.remove(observer)
                self.warn(f"{observer.name} failed and is left out for the rest of this run: {e}")


def observers_for(config: TaskConfig, task_dir: Path, store: Store, tag: str) -> list[Observer]:
    """The observers the task's settings ask for ([notify] and [track]), for the loop of `tag`."""
    from autoresearch.observe import notify, track

    return [*notify.observers(config.notify, task_dir=task_dir, store=store, tag=tag, metric=config.metric),
            *track.observers(config.track, task_dir=task_dir, store=store, tag=tag, metric=config.metric)]
