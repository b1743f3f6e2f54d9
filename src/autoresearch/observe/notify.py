"""Alerts: a POST to a webhook on a new best, when a loop stops or crashes, and when a run is `tampered`.

A loop left running overnight is watched by nobody; a message in the team's chat says what happened while it
happened: the best got better, a candidate was caught at work on what the harness owns, the loop stopped.

The parts, each apart from the others so that the messages are tested without a network:

- `NotifySettings` and `check`: the `[notify]` table of autoresearch.toml (docs/alerts.md);
- `decision_alert`, `stop_alert`: what happened, as an `Alert`, read from the loop's events and the store;
- `slack_text`, `json_body`, `payload`: an alert as the body of the POST. Descriptions and reasons were
  written by an agent or a candidate: in the slack format they are escaped as Slack requires (`&`, `<`, `>`,
  so no `<!channel>` and no link), quoted as code (no markdown link or image in Mattermost or Discord),
  their mentions defused, cut and put on one line; in both formats control characters are made visible;
- `WebhookSender`: the POSTs, from a thread of its own, so that a slow or dead webhook never holds up the
  loop; each with a timeout and a retry or two; failures are warnings on stderr, never exceptions (an
  observer that raises is left out for the rest of the run); `close` delivers what is queued with a bounded
  wait, so that the last alert leaves before the process exits;
- `WebhookAlerts`: the observer that ties them together.

The webhook's URL holds its secret: nothing here prints it; warnings name its host.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import queue
import re
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from autoresearch.safe_text import for_terminal

if TYPE_CHECKING:
    from autoresearch.config import MetricConfig
    from autoresearch.store import Experiment, Store

ALERTS = ("baseline", "best", "tampered", "stopped", "crashed")  # what `on` may name
DEFAULT_ALERTS = ("best", "tampered", "stopped", "crashed")  # the baseline is no news: add it to test the hook
FORMATS = ("slack", "json")
DESCRIPTION_CHARS = 300  # an agent's description, cut to this in a message
REASON_CHARS = 500  # why a run was void, why the loop stopped
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class NotifySettings:
    webhook: str = ""  # the URL posted to; "" (and no webhook_env) sends nothing
    webhook_env: str = ""  # or: the environment variable that holds the URL, to keep the secret out of the file
    format: str = "slack"  # slack: {"text": ...} (Slack, Mattermost, Discord's /slack); json: the alert's fields
    on: list = field(default_factory=lambda: list(DEFAULT_ALERTS))  # which of ALERTS are sent
    timeout_seconds: float = 5.0  # per POST; a webhook slower than this counts as failed
    retries: int = 2  # a POST that fails (no answer, 5xx, 429) is tried again this many times


def check(settings: NotifySettings) -> str | None:
    """What is wrong with `settings`, as the message of a `ConfigError`; None if nothing. The webhook's URL is
    never part of the message: it holds a secret, and the message may be shown or logged anywhere."""
    s = settings
    if s.format not in FORMATS:
        return (f"notify.format = {s.format!r}: use slack ({{\"text\": ...}}, for Slack, Mattermost and Discord's "
                "/slack endpoint) or json (the alert's fields as a JSON object)")
    unknown = [name for name in s.on if name not in ALERTS]
    if unknown:
        return (f"notify.on = {s.on!r}: {unknown[0]!r} is not an alert; use any of {', '.join(ALERTS)}, "
                'e.g. on = ["best", "crashed"]')
    if s.webhook and s.webhook_env:
        return ("notify.webhook and notify.webhook_env are both set: give the URL in one of them "
                "(webhook_env keeps it out of autoresearch.toml)")
    if s.webhook:
        problem = url_problem(s.webhook)
        if problem:
            return f"notify.webhook {problem}"
    if s.webhook_env and not _ENV_NAME.fullmatch(s.webhook_env):
        return (f"notify.webhook_env = {s.webhook_env!r}: give the name of an environment variable, "
                "e.g. ALERTS_WEBHOOK_URL")
    if s.webhook_env and reaches_candidates(s.webhook_env):
        return (f"notify.webhook_env = {s.webhook_env!r}: the sandbox passes this variable on to the candidates' "
                "runs, which would see the webhook's secret; use a name it keeps from them, e.g. ALERTS_WEBHOOK_URL")
    if not 0 < s.timeout_seconds <= 60:
        return f"notify.timeout_seconds = {s.timeout_seconds!r}: use more than 0 and at most 60 (default 5)"
    if not 0 <= s.retries <= 10:
        return f"notify.retries = {s.retries!r}: use 0 (one try) to 10 (default 2)"
    return None


def reaches_candidates(name: str) -> bool:
    """Does the sandbox pass the environment variable `name` on to every candidate's run (its allow-list)?"""
    from autoresearch.run.sandbox import reaches_candidates as passed_on

    return passed_on(name)


def url_problem(url: str) -> str | None:
    """Why `url` is not a webhook one can POST to, in words that do not repeat it; None if it is one."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        hostname = parts.hostname
    except ValueError:
        return "is not a valid URL: give the webhook's whole address, e.g. https://hooks.slack.com/services/..."
    if parts.scheme not in ("http", "https"):
        shown = f" (it begins {parts.scheme}:)" if re.fullmatch(r"[a-z][a-z0-9+.-]{0,9}", parts.scheme) else ""
        return (f"is not an http:// or https:// URL{shown}: give the webhook's whole address, "
                "e.g. https://hooks.slack.com/services/...")
    if not hostname:
        return "has no host: give the webhook's whole address, e.g. https://hooks.slack.com/services/..."
    return None


def host_of(url: str) -> str:
    """The part of a webhook's URL that may be shown: its host (and port), never its path or query."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    except ValueError:
        return "the webhook"


# -- what happened --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Origin:
    """Which loop an alert is about: the task folder's name, the run's tag, the machine."""

    task: str
    tag: str
    host: str


@dataclass(frozen=True)
class Alert:
    """One thing worth a message. `description` and `reason` came from an agent or a candidate (or hold
    their words): they are untrusted, and every format treats them so."""

    kind: str  # one of ALERTS
    origin: Origin
    at: float  # unix time
    metric: str  # the metric's name
    maximize: bool
    seq: int | None = None  # the experiment (best, baseline, tampered); for stopped and crashed the best's
    value: float | None = None  # its metric
    description: str = ""  # its description
    previous: float | None = None  # best: the best before it...
    previous_seq: int | None = None  # ...and its experiment
    reason: str = ""  # tampered: why it was void; stopped, crashed: why the loop stopped
    experiments: int | None = None  # stopped, crashed: how many experiments the run has

    @property
    def change(self) -> float | None:
        """best: its metric less the best's before it (negative is better when the metric is minimized)."""
        return None if self.value is None or self.previous is None else self.value - self.previous

    @property
    def relative_change(self) -> float | None:
        change = self.change
        return None if change is None or not self.previous else change / abs(self.previous)


def decision_alert(event: dict, history: Sequence[Experiment], origin: Origin, metric: MetricConfig, *,
                   at: float) -> Alert | None:
    """The alert a `decided` event calls for, if any: a keep is a new best (or the run's first keep, its
    baseline), a tampered run is one caught at work on what the harness owns. `history`: the run's
    experiments as measured now (`decide.measured.measured`), the decided one among them."""
    from autoresearch.store import Status

    if event.get("event") != "decided" or event.get("status") not in ("keep", "tampered"):
        return None
    seq = event.get("seq")
    experiment = next((e for e in reversed(history) if e.seq == seq), None)
    if experiment is None:
        return None
    base = {"origin": origin, "at": at, "metric": metric.name, "maximize": metric.maximize, "seq": experiment.seq,
            "description": experiment.description}
    value = event.get("metric") if isinstance(event.get("metric"), (int, float)) else experiment.metric
    if event["status"] == "tampered":
        return Alert("tampered", **base, value=value, reason=experiment.error or event.get("reason") or "")
    earlier = [e for e in history if e.status is Status.KEEP and e.id < experiment.id]
    if not earlier:
        return Alert("baseline", **base, value=value)
    previous = earlier[-1]
    return Alert("best", **base, value=value, previous=previous.metric, previous_seq=previous.seq)


def stop_alert(reason: str, crashed: bool, history: Sequence[Experiment], origin: Origin, metric: MetricConfig, *,
               at: float) -> Alert:
    """The alert of a loop that stopped (`crashed`: by an error), with where the run got to: its best."""
    from autoresearch.store import Status

    kept = [e for e in history if e.status is Status.KEEP]
    best = kept[-1] if kept else None
    return Alert("crashed" if crashed else "stopped", origin, at, metric.name, metric.maximize,
                 seq=best.seq if best else None, value=best.metric if best else None,
                 description=best.description if best else "", reason=reason,
                 experiments=sum(1 for e in history if e.finished))


# -- the alert as a message -----------------------------------------------------------------------


def _one_line(text: object, limit: int) -> str:
    """`text` on one line, its control characters made visible escapes, cut to `limit` characters."""
    line = " ".join(for_terminal(text).split())
    return line if len(line) <= limit else line[:limit - 1].rstrip() + "…"


def slack_escaped(text: str) -> str:
    """`text` as Slack shows it literally: `&`, `<`, `>` as entities (no `<!channel>`, no `<url|link>`), and
    an invisible space after each `@` (no `@channel` or `@everyone` where Mattermost or Discord read them)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("@", "@\u200b")


def _quoted(text: object, limit: int, empty: str) -> str:
    """Untrusted `text` for a slack message: escaped, one line, cut, as inline code it cannot close."""
    line = _one_line(text, limit).replace("`", "'")
    return f"`{slack_escaped(line)}`" if line else empty


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def slack_text(alert: Alert) -> str:
    """The alert as a chat message (the `text` of the slack format)."""
    a, o = alert, alert.origin
    head = slack_escaped(_one_line(f"autoresearch {o.task}/{o.tag} on {o.host}", 200))
    name = slack_escaped(_one_line(a.metric, 60))
    description = _quoted(a.description, DESCRIPTION_CHARS, "(no description)")
    reason = _quoted(a.reason, REASON_CHARS, "(no reason given)")
    if a.kind == "best":
        change = f"{a.change:+.4g}" if a.change is not None else "-"
        relative = f", {a.relative_change:+.2%}" if a.relative_change is not None else ""
        return (f"{head}: new best {name} {_number(a.value)} at #{a.seq} (was {_number(a.previous)} at "
                f"#{a.previous_seq}: {change}{relative})\n{description}")
    if a.kind == "baseline":
        return f"{head}: baseline {name} {_number(a.value)} at #{a.seq}: the mark the experiments must beat"
    if a.kind == "tampered":
        return (f"{head}: TAMPERED: #{a.seq} touched what the harness owns; its result is void and was not kept\n"
                f"{description}\nwhy: {reason}")
    best = (f"best {name} {_number(a.value)} at #{a.seq}: {description}" if a.seq is not None
            else "nothing kept yet")
    summary = f"{a.experiments} experiments; {best}"
    if a.kind == "crashed":
        tag = slack_escaped(_one_line(o.tag, 100))
        return (f"{head}: loop CRASHED: {reason}\n{summary}\n"
                f"continue it with `autoresearch run --tag {tag} --resume`")
    return f"{head}: loop stopped: {reason}\n{summary}"


def json_body(alert: Alert) -> dict:
    """The alert as the json format's object: the same keys for every kind, null where one does not apply.
    Texts are cut and their control characters made visible; the receiver must still treat them as
    untrusted text (they are not escaped for any markup)."""
    a, o = alert, alert.origin
    return {"event": a.kind, "task": o.task, "tag": o.tag, "host": o.host,
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a.at)),
            "metric": a.metric, "maximize": a.maximize, "seq": a.seq, "value": _finite(a.value),
            "previous_best": _finite(a.previous), "previous_seq": a.previous_seq, "change": _rounded(a.change),
            "relative_change": _rounded(a.relative_change),
            "description": _one_line(a.description, DESCRIPTION_CHARS) or None,
            "reason": _one_line(a.reason, REASON_CHARS) or None, "experiments": a.experiments}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _rounded(value: float | None) -> float | None:
    """A difference without its float noise (0.9871 - 0.9912 is -0.0041, not -0.0040999999999999925)."""
    value = _finite(value)
    return None if value is None else float(f"{value:.12g}")


def payload(alert: Alert, format: str) -> bytes:
    """The body POSTed for `alert` in `format` (one of FORMATS)."""
    body = {"text": slack_text(alert)} if format == "slack" else json_body(alert)
    return json.dumps(body, allow_nan=False, default=str).encode()


# -- sending --------------------------------------------------------------------------------------


def _stderr(text: str) -> None:
    print(f"warning: {for_terminal(text)}", file=sys.stderr, flush=True)


class WebhookSender:
    """POSTs bodies to one webhook from a thread of its own, in order. `send` never waits and never raises;
    a POST that fails is tried `retries` more times (no answer, a 5xx, a 429: the webhook may come back; any
    other 4xx will not), then reported through `warn`, with the webhook's host, never its URL."""

    BACKOFF_SECONDS = 0.5  # before the first retry; doubled before each next
    CAPACITY = 100  # alerts waiting at most; more are dropped (and said so) rather than held in memory

    def __init__(self, url: str, *, timeout: float, retries: int, warn: Callable[[str], None] = _stderr):
        self.url, self.host, self.timeout, self.retries, self.warn = url.strip(), host_of(url), timeout, retries, warn
        self._queue: queue.Queue = queue.Queue()  # unbounded, so that `close` never blocks: `send` counts
        self._unsent = 0  # queued or being sent
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def send(self, what: str, body: bytes) -> None:
        """Queue `body` (`what`: its name in a warning) and return at once."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="autoresearch-notify", daemon=True)
                self._thread.start()
            if self._unsent >= self.CAPACITY:
                self.warn(f"notify: {self.CAPACITY} alerts are waiting for {self.host}; the {what} alert is dropped")
                return
            self._unsent += 1
            self._queue.put_nowait((what, body))

    def longest_send(self) -> float:
        """The longest one alert can take to be sent or given up: every try timing out, and the waits between."""
        return self.timeout * (self.retries + 1) + sum(self.BACKOFF_SECONDS * 2 ** i for i in range(self.retries))

    def close(self, wait: float | None = None) -> bool:
        """Send what is queued, waiting at most `wait` seconds (default: `longest_send`); then stop. True if
        everything was sent or given up on in time; else the rest is reported as not sent (the thread is a
        daemon: it does not keep the process alive)."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return True
        self._queue.put_nowait((None, None))  # the end, after what is queued
        thread.join(self.longest_send() if wait is None else wait)
        if thread.is_alive():
            self.warn(f"notify: gave up waiting for {self.host}: {self._unsent} alert(s) not sent")
            return False
        return True

    def _work(self) -> None:
        while True:
            what, body = self._queue.get()
            if what is None:
                return
            try:
                self._deliver(what, body)
            except Exception as e:  # noqa: BLE001 - a bug here must not end the thread with alerts queued
                self.warn(f"notify: the {what} alert to {self.host} failed: {self._scrubbed(e)}")
            with self._lock:
                self._unsent -= 1

    def _deliver(self, what: str, body: bytes) -> None:
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.BACKOFF_SECONDS * 2 ** (attempt - 1))
            problem, again = self._post(body)
            if not problem:
                return
            if not again:
                break
        tries = f" (after {attempt + 1} tries)" if attempt else ""
        self.warn(f"notify: the {what} alert was not delivered to {self.host}: {problem}{tries}")

    def _post(self, body: bytes) -> tuple[str, bool]:
        """One POST: ("", _) if the webhook took it, else (what went wrong, whether to try again)."""
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "autoresearch"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read(65536)
            return "", False
        except urllib.error.HTTPError as e:
            return f"HTTP {e.code} {e.reason}", e.code >= 500 or e.code == 429
        except urllib.error.URLError as e:
            return self._scrubbed(e.reason), True
        except (OSError, http.client.HTTPException) as e:  # a timeout, a reset, a garbled answer
            return self._scrubbed(e) or type(e).__name__, True

    def _scrubbed(self, error: object) -> str:
        """An error's text with the URL, should it hold it, replaced by the host."""
        text = str(error)
        return text.replace(self.url, self.host) if self.url else text


# -- the observer ---------------------------------------------------------------------------------


class WebhookAlerts:
    """The `[notify]` observer of one loop: each event that calls for an alert the settings ask for becomes a
    message, queued on the sender; at the loop's end, the stop alert, and the queue flushed."""

    name = "notify"

    def __init__(self, settings: NotifySettings, sender: WebhookSender, *, store: Store, origin: Origin,
                 metric: MetricConfig, clock: Callable[[], float] = time.time):
        self.format, self.wanted = settings.format, frozenset(settings.on)
        self.sender, self.store, self.origin, self.metric, self.clock = sender, store, origin, metric, clock

    def on_event(self, event: dict) -> None:
        if event.get("event") != "decided":
            return
        kinds = {"keep": {"best", "baseline"}, "tampered": {"tampered"}}.get(event.get("status"), set())
        if not kinds & self.wanted:  # read the store only for what will be sent
            return
        alert = decision_alert(event, self._history(), self.origin, self.metric, at=self.clock())
        if alert is not None and alert.kind in self.wanted:
            self.sender.send(alert.kind, payload(alert, self.format))

    def on_stop(self, reason: str, *, crashed: bool) -> None:
        if ("crashed" if crashed else "stopped") in self.wanted:
            alert = stop_alert(reason, crashed, self._history(), self.origin, self.metric, at=self.clock())
            self.sender.send(alert.kind, payload(alert, self.format))
        self.sender.close()

    def _history(self) -> list[Experiment]:
        from autoresearch.decide.measured import measured

        return measured(self.store, self.origin.tag)


def webhook_url(settings: NotifySettings, environ: dict | None = None) -> str:
    """The URL the settings give (`webhook`, or the variable `webhook_env` names); "" for none. Raises
    `ObserverError` when the variable is unset or does not hold an http(s) URL."""
    from autoresearch.observe import ObserverError

    if not settings.webhook_env:
        return settings.webhook.strip()
    url = (os.environ if environ is None else environ).get(settings.webhook_env, "").strip()
    if not url:
        raise ObserverError(f"notify.webhook_env = {settings.webhook_env!r}: the variable is not set; export it "
                            "with the webhook's URL, or remove the setting to send no alerts")
    problem = url_problem(url)
    if problem:
        raise ObserverError(f"the webhook in ${settings.webhook_env} (notify.webhook_env) {problem}")
    return url


def observers(settings: NotifySettings, *, task_dir: Path, store: Store, tag: str, metric: MetricConfig,
              warn: Callable[[str], None] = _stderr) -> list[WebhookAlerts]:
    """The alerts observer the settings ask for, for the loop of `tag`; none when no webhook is set."""
    url = webhook_url(settings)
    if not url:
        return []
    sender = WebhookSender(url, timeout=settings.timeout_seconds, retries=settings.retries, warn=warn)
    origin = Origin(task=Path(task_dir).name, tag=tag, host=socket.gethostname())
    return [WebhookAlerts(settings, sender, store=store, origin=origin, metric=metric)]
