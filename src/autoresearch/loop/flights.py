"""Runs in flight at once, for one line: when the runner can train several runs at the same time
(`Runner.runs_at_once`, a Ray cluster's `[executor] runs_at_once`), the measurer starts the runs it will
probably need next (the baseline's seeds, a candidate's confirmations, the best's re-runs) before it asks for
them, each in a thread of its own, and then takes their outcomes one by one, in the order the keep rule asks
for them. The rule therefore sees exactly what it would have seen had they run one after another.

A run is known by its experiment, its index in that experiment's folder and its seed: the same code with
the same seed, wherever and whenever it trains. A run that nobody takes is thrown away: cancelled in the
runner if it is still going, its folder deleted once it is done. With `runs_at_once` = 1 nothing runs in a
thread, and `run` is the runner's own.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

from autoresearch.run.seam import Outcome, Runner, RunRequest

Key = tuple[int, int, int]  # `RunRequest.key`: (experiment id, index, seed)


def checks_enough(made: RunRequest, asked: RunRequest) -> bool:
    """Whether a run made for `made` serves as the run `asked` for: the causality probe ran for every metric
    (no bar), or for those better than the same bar."""
    return made.keep_bar is None or made.keep_bar == asked.keep_bar


@dataclass
class _Flight:
    request: RunRequest
    future: Future


class Flights:
    def __init__(self, runner: Runner, on_event: Callable[[dict], None]) -> None:
        self.runner = runner
        self.width = max(1, int(getattr(runner, "runs_at_once", 1)))
        self._on_event = on_event
        self._lock = threading.RLock()  # a run that ends at once calls back in the thread that started it
        self._event_lock = threading.Lock()
        self._flights: dict[Key, _Flight] = {}  # started, not taken
        self._busy = 0  # runs training now, taken or not
        self._starts: dict[Key, int] = {}  # how often each run was started
        # threads to spare: `launch` keeps `width` runs training, and the run asked for, or one being called
        # off, still gets a thread at once
        self._pool = ThreadPoolExecutor(2 * self.width, thread_name_prefix="run") if self.width > 1 else None

    def _event(self, event: dict) -> None:
        with self._event_lock:  # handlers print and count: one event at a time, whichever run it came from
            self._on_event(event)

    def launch(self, requests: Iterable[RunRequest]) -> int:
        """Start those of `requests` that are not in flight yet, in order, while fewer than `width` runs
        train; returns how many started."""
        if self._pool is None:
            return 0
        started = []
        for request in requests:
            with self._lock:
                if self._busy >= self.width:
                    break
                if request.key in self._flights:
                    continue
                self._start(request)
            started.append(request)
        if len(started) > 1 or started and self._busy > 1:
            self._event({"event": "in_flight", "started": [(r.seq, r.index + 1) for r in started],
                         "busy": self._busy})
        return len(started)

    def _start(self, request: RunRequest) -> _Flight:
        self._busy += 1
        self._starts[request.key] = self._starts.get(request.key, 0) + 1
        future = self._pool.submit(self.runner.run, request, self._event)
        future.add_done_callback(self._landed)
        flight = self._flights[request.key] = _Flight(request, future)
        return flight

    def _landed(self, _future: Future) -> None:
        with self._lock:
            self._busy -= 1

    def run(self, request: RunRequest) -> Outcome:
        """`request`'s outcome: the run already in flight for it, else one started now; raises what the
        runner raised for it (`RunnerUnavailable`, a disk-space error)."""
        if self._pool is None:
            return self.runner.run(request, self._on_event)
        with self._lock:
            flight = self._flights.pop(request.key, None)
            if flight is not None and not checks_enough(flight.request, request):
                self._throw_away([flight])
                flight = None
            if flight is None:  # even when `width` are busy: what is asked for now never waits its turn
                flight = self._start(request)
                del self._flights[request.key]
        return flight.future.result()

    def outcomes_of(self, experiment_id: int) -> list[Outcome]:
        """Wait for the runs of `experiment_id` in flight, and give their outcomes (they stay to be taken);
        a run that raised has none."""
        with self._lock:
            flights = [f for k, f in self._flights.items() if k[0] == experiment_id]
        outcomes = []
        for flight in flights:
            try:
                outcomes.append(flight.future.result())
            except Exception:  # noqa: BLE001 (the runner could not run it: no evidence either way)
                continue
        return outcomes

    def forget(self, *, keep: int | None = None) -> None:
        """Throw away every run in flight except those of the experiment `keep` (the best: a re-run of it may
        take them)."""
        with self._lock:
            gone = [k for k in self._flights if k[0] != keep]
            flights = [self._flights.pop(k) for k in gone]
        self._throw_away(flights)

    def _throw_away(self, flights: list[_Flight]) -> None:
        for flight in flights:
            if flight.future.cancel():  # not started: nothing ran, nothing was written
                continue
            if not flight.future.done():
                self.runner.cancel(flight.request)
                self._event({"event": "called_off", "seq": flight.request.seq, "run": flight.request.index + 1})
            flight.future.add_done_callback(partial(self._clear, flight.request, self._starts[flight.request.key]))

    def _clear(self, request: RunRequest, start: int, _future: Future) -> None:
        """Delete the folder of a run thrown away, once it is over: unless the same run was started again
        since (its folder is the new one's), and never an experiment's own folder (its first run's)."""
        with self._lock:
            again = self._starts.get(request.key) != start
        if not again and request.index > 0:
            shutil.rmtree(request.run_dir, ignore_errors=True)

    def close(self) -> None:
        """Throw away what is in flight and wait for the threads to end."""
        self.forget()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
