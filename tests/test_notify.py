"""Alerts to a webhook ([notify], observe/notify.py): the messages, the settings, and a real HTTP server on
127.0.0.1 that takes (or fails, or never answers) what the loop sends."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder, git
from loopkit import fake_loop, loss_of, make_task, proposals, settings

from autoresearch.agents.replay import ReplayAgent
from autoresearch.config import ConfigError, MetricConfig, config_from_dict
from autoresearch.observe import ObserverError, Observers, notify, observers_for
from autoresearch.observe.notify import (
    Alert,
    NotifySettings,
    Origin,
    WebhookSender,
    decision_alert,
    json_body,
    payload,
    slack_text,
    stop_alert,
)
from autoresearch.run.fake import Scripted, code_text
from autoresearch.store import Experiment, Status

SCORE = MetricConfig(name="score", direction="maximize")
BPB = MetricConfig()  # val_bpb, lower is better
ORIGIN = Origin(task="mytask", tag="nov27", host="gpu1")
HOSTILE = "<!channel> <script>alert(1)</script> & see <https://evil.example|here> @everyone `code`\x1b[31m"


class Hook:
    """A webhook on 127.0.0.1 that records every POST (path and JSON body). `status`: what it answers;
    `hang`: seconds it waits before answering (it gives up at once when the test ends)."""

    def __init__(self, status: int = 200, hang: float = 0.0):
        self.status, self.hang = status, hang
        self.requests: list[tuple[str, dict]] = []
        self.released = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.requests.append((self.path, json.loads(body)))
                if hook.hang:
                    hook.released.wait(hook.hang)
                with contextlib.suppress(OSError):  # a client that gave up waiting has gone
                    self.send_response(hook.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook/T000-SECRET"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_port}"

    def bodies(self) -> list[dict]:
        return [body for _, body in self.requests]

    def __enter__(self) -> Hook:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """urllib would send 127.0.0.1 through a proxy the environment names."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def experiment(seq: int, status: Status, metric: float | None, description: str, error: str | None = None):
    values = {f.name: None for f in fields(Experiment)}
    return Experiment(**{**values, "id": seq + 1, "tag": ORIGIN.tag, "seq": seq, "parent_commit": "p", "diff": "",
                         "description": description, "agent": "a", "seed": 0, "status": status, "metric": metric,
                         "metrics": {}, "started_at": 0.0, "error": error})


HISTORY = [experiment(0, Status.KEEP, 1.0, "baseline"),
           experiment(1, Status.DISCARD, 1.01, "wider"),
           experiment(2, Status.KEEP, 0.9, "lower the learning rate"),
           experiment(3, Status.TAMPERED, 0.5, "faster eval", error="changed the evaluator: eval.py")]


def decided(seq: int, status: str, metric: float | None = None) -> dict:
    return {"event": "decided", "status": status, "metric": metric, "metric_name": "val_bpb", "seq": seq, "runs": 1,
            "reason": None}


def test_a_keep_is_a_new_best_with_its_change_and_the_first_keep_is_the_baseline():
    best = decision_alert(decided(2, "keep", 0.9), HISTORY[:3], ORIGIN, BPB, at=0.0)
    assert (best.kind, best.seq, best.previous, best.previous_seq) == ("best", 2, 1.0, 0)
    assert best.change == pytest.approx(-0.1) and best.relative_change == pytest.approx(-0.1)
    text = slack_text(best)
    assert text.startswith("autoresearch mytask/nov27 on gpu1: new best val_bpb 0.9 at #2 (was 1 at #0: -0.1, -10.00%)")
    assert "`lower the learning rate`" in text
    body = json.loads(payload(best, "json"))
    assert body == {"event": "best", "task": "mytask", "tag": "nov27", "host": "gpu1", "time": "1970-01-01T00:00:00Z",
                    "metric": "val_bpb", "maximize": False, "seq": 2, "value": 0.9, "previous_best": 1.0,
                    "previous_seq": 0, "change": -0.1, "relative_change": -0.1, "description": "lower the learning rate",
                    "reason": None, "experiments": None}
    assert json.loads(payload(best, "slack")) == {"text": text}

    baseline = decision_alert(decided(0, "keep", 1.0), HISTORY[:1], ORIGIN, BPB, at=0.0)
    assert baseline.kind == "baseline" and baseline.previous is None
    assert "baseline val_bpb 1 at #0" in slack_text(baseline) and json_body(baseline)["event"] == "baseline"
    assert decision_alert(decided(1, "discard", 1.01), HISTORY[:2], ORIGIN, BPB, at=0.0) is None
    assert decision_alert({"event": "decided", "status": "rejected", "reason": "x"}, HISTORY, ORIGIN, BPB, at=0) is None


def test_a_tampered_run_says_why_it_is_void():
    alert = decision_alert(decided(3, "tampered", 0.5), HISTORY, ORIGIN, BPB, at=0.0)
    assert (alert.kind, alert.seq, alert.reason) == ("tampered", 3, "changed the evaluator: eval.py")
    text = slack_text(alert)
    assert "TAMPERED: #3 touched what the harness owns" in text and "`faster eval`" in text
    assert "why: `changed the evaluator: eval.py`" in text
    body = json_body(alert)
    assert (body["event"], body["seq"], body["reason"], body["description"]) == \
        ("tampered", 3, "changed the evaluator: eval.py", "faster eval")


@pytest.mark.parametrize("crashed", [False, True])
def test_a_stop_says_why_and_where_the_run_got_to(crashed):
    alert = stop_alert("max experiments reached", crashed, HISTORY, ORIGIN, SCORE, at=0.0)
    assert (alert.kind, alert.seq, alert.value, alert.experiments) == \
        ("crashed" if crashed else "stopped", 2, 0.9, 4)
    text = slack_text(alert)
    assert ("loop CRASHED: " if crashed else "loop stopped: ") + "`max experiments reached`" in text
    assert "4 experiments; best score 0.9 at #2: `lower the learning rate`" in text
    assert ("--resume" in text) == crashed
    body = json_body(alert)
    assert (body["event"], body["reason"], body["seq"], body["experiments"], body["maximize"]) == \
        (alert.kind, "max experiments reached", 2, 4, True)
    nothing = stop_alert("the agent failed", True, [], ORIGIN, SCORE, at=0.0)
    assert "0 experiments; nothing kept yet" in slack_text(nothing) and json_body(nothing)["seq"] is None


def test_texts_from_agents_cannot_mention_link_or_inject_markup():
    alert = Alert("tampered", ORIGIN, 0.0, "val_bpb", False, seq=1, description=HOSTILE + "x" * 1000,
                  reason="line one\nline two <!here>")
    text = slack_text(alert)
    assert "<" not in text and ">" not in text  # no <!channel>, no <url|link>: Slack's only markup
    assert "&lt;!channel&gt; &lt;script&gt;alert(1)&lt;/script&gt; &amp; see &lt;https://evil.example|here&gt;" in text
    assert "@everyone" not in text and "@\u200beveryone" in text
    assert "\x1b" not in text and "\\x1b[31m" in text  # the control character shows, and does nothing
    assert "'code'" in text  # a backtick would close the code span the text is quoted in
    assert "why: `line one line two &lt;!here&gt;`" in text
    quoted = text.split("\n")[1]
    assert len(quoted) < notify.DESCRIPTION_CHARS + 200 and quoted.endswith("…`")
    body = json_body(alert)
    assert body["description"].startswith("<!channel> <script>")  # json: as written, but cut and controls shown
    assert "\x1b" not in body["description"] and len(body["description"]) == notify.DESCRIPTION_CHARS
    assert body["reason"] == "line one line two <!here>"
    hostile_origin = Alert("stopped", Origin("<!channel>", "t", "h&<"), 0.0, "<b>", False, reason="done")
    assert "<" not in slack_text(hostile_origin) and "&amp;&lt;" in slack_text(hostile_origin)


def test_a_metric_that_is_not_finite_is_null_in_json():
    alert = Alert("best", ORIGIN, 0.0, "val_bpb", False, seq=1, value=float("nan"), previous=1.0, previous_seq=0)
    assert json.loads(payload(alert, "json"))["value"] is None and "nan" in slack_text(alert)


@pytest.mark.parametrize(("values", "named", "fix"), [
    ({"on": ["best", "bst"]}, "notify.on", "'bst' is not an alert"),
    ({"on": "best"}, "notify.on", "should be a list"),
    ({"format": "xml"}, "notify.format", "slack"),
    ({"webhook": "ftp://hooks.example.com/T000-SECRET"}, "notify.webhook", "https://"),
    ({"webhook": "hooks.example.com/T000-SECRET"}, "notify.webhook", "https://"),
    ({"webhook": "https:///T000-SECRET"}, "notify.webhook", "no host"),
    ({"webhook": "https://h/T000-SECRET", "webhook_env": "HOOK"}, "notify.webhook_env", "one of them"),
    ({"webhook_env": "not a name"}, "notify.webhook_env", "environment variable"),
    ({"webhook_env": "AUTORESEARCH_HOOK"}, "notify.webhook_env", "ALERTS_WEBHOOK_URL"),
    ({"timeout_seconds": 0}, "notify.timeout_seconds", "more than 0"),
    ({"retries": -1}, "notify.retries", "0 (one try)"),
])
def test_bad_settings_name_the_setting_and_never_show_the_url(values, named, fix):
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"notify": values})
    message = str(caught.value)
    assert named in message and fix in message and "SECRET" not in message


def test_good_settings_and_none_at_all(tmp_path):
    config = config_from_dict({"notify": {"webhook": "https://hooks.slack.com/services/T/B/X", "format": "json",
                                          "on": ["baseline", "crashed"], "timeout_seconds": 2}})
    assert config.notify.on == ["baseline", "crashed"] and config.notify.timeout_seconds == 2.0
    assert config_from_dict({}).notify.on == ["best", "tampered", "stopped", "crashed"]
    assert notify.observers(NotifySettings(), task_dir=tmp_path, store=None, tag="t", metric=BPB) == []


def test_a_webhook_from_the_environment(tmp_path, monkeypatch):
    settings_ = NotifySettings(webhook_env="ALERTS_URL")
    monkeypatch.delenv("ALERTS_URL", raising=False)
    with pytest.raises(ObserverError, match="ALERTS_URL.*not set"):
        notify.observers(settings_, task_dir=tmp_path, store=None, tag="t", metric=BPB)
    monkeypatch.setenv("ALERTS_URL", "file:///etc/T000-SECRET")
    with pytest.raises(ObserverError, match=r"\$ALERTS_URL") as caught:
        notify.observers(settings_, task_dir=tmp_path, store=None, tag="t", metric=BPB)
    assert "SECRET" not in str(caught.value)
    monkeypatch.setenv("ALERTS_URL", "https://hooks.example.com/T000-SECRET")
    (observer,) = notify.observers(settings_, task_dir=tmp_path, store=None, tag="t", metric=BPB)
    assert observer.sender.host == "hooks.example.com"


def test_a_webhook_that_fails_is_retried_then_warned_of_by_host_and_never_raises():
    warnings: list[str] = []
    with Hook(status=500) as hook:
        sender = WebhookSender(hook.url, timeout=2.0, retries=1, warn=warnings.append)
        sender.BACKOFF_SECONDS = 0.01
        start = time.monotonic()
        sender.send("best", b'{"text": "hi"}')
        assert time.monotonic() - start < 0.1  # the loop does not wait for the webhook
        assert sender.close(wait=5.0)
    assert len(hook.requests) == 2 and hook.requests[0] == ("/hook/T000-SECRET", {"text": "hi"})
    (warning,) = warnings
    assert f"the best alert was not delivered to {hook.host}: HTTP 500" in warning and "after 2 tries" in warning
    assert "SECRET" not in warning and "/hook" not in warning


def test_a_refused_webhook_is_not_tried_again():
    warnings: list[str] = []
    with Hook(status=404) as hook:
        sender = WebhookSender(hook.url, timeout=2.0, retries=2, warn=warnings.append)
        sender.send("stopped", b"{}")
        assert sender.close(wait=5.0)
    assert len(hook.requests) == 1 and "HTTP 404" in warnings[0] and "tries" not in warnings[0]


def test_a_webhook_that_hangs_times_out_and_the_wait_at_the_end_is_bounded():
    warnings: list[str] = []
    with Hook(hang=30.0) as hook:
        sender = WebhookSender(hook.url, timeout=0.3, retries=0, warn=warnings.append)
        sender.send("best", b"{}")
        assert sender.close(wait=5.0)
        assert "the best alert was not delivered" in warnings[0] and "timed out" in warnings[0]
        slow = WebhookSender(hook.url, timeout=5.0, retries=0, warn=warnings.append)
        slow.send("best", b"{}")
        slow.send("stopped", b"{}")
        start = time.monotonic()
        assert not slow.close(wait=0.3)
        assert time.monotonic() - start < 2.0
        assert warnings[-1] == f"notify: gave up waiting for {hook.host}: 2 alert(s) not sent"


def test_nobody_listening_is_a_warning():
    warnings: list[str] = []
    with Hook() as hook:
        url = hook.url
    sender = WebhookSender(url, timeout=1.0, retries=0, warn=warnings.append)
    sender.send("crashed", b"{}")
    assert sender.close(wait=5.0) and "the crashed alert was not delivered" in warnings[0]
    assert "SECRET" not in warnings[0]


def tampering_script(request):
    """The fake runs: train.py's LOSS, and a run of code that says TAMPER is caught at it."""
    text = code_text(request)
    if "TAMPER" in text:
        return Scripted(metric=0.1, status="tampered", error="changed what the harness owns: eval.py")
    return Scripted(metric=loss_of(text))


def run_watched(task: Path, config, changes: list[dict], crash: str | None = None) -> tuple[list, list[str]]:
    """Run a fake loop with the config's observers attached, as the command line does; (experiments, warnings).
    `crash`: the loop is told it crashed with this, as the command line tells it of an exception."""
    warnings: list[str] = []
    loop, _ = fake_loop(task, tampering_script, ReplayAgent(changes), config=config)
    watchers = Observers(observers_for(config, task, loop.store, loop.tag), warn=warnings.append)
    for observer in watchers.observers:
        observer.sender.warn = warnings.append
        observer.sender.BACKOFF_SECONDS = 0.01
    loop.on_event = watchers.on_event
    try:
        reason = loop.run()
        watchers.on_stop(crash or reason, crashed=crash is not None)
        return loop.store.experiments(loop.tag), warnings
    finally:
        loop.close()


CHANGES = proposals(("halve the loss <!channel>", "LOSS = 0.5\n"), ("worse", "LOSS = 0.7\n"),
                    ("cheat", "LOSS = 0.4\nTAMPER = 1\n"))


def test_the_loop_alerts_a_best_a_tampered_run_and_its_stop_in_json(tmp_path):
    task = make_task(tmp_path)
    with Hook() as hook:
        config = settings(keep={"rule": "strict"}, notify={"webhook": hook.url, "format": "json",
                                                          "on": ["baseline", "best", "tampered", "stopped"]})
        history, warnings = run_watched(task, config, CHANGES)
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP, Status.DISCARD, Status.TAMPERED]
    bodies = hook.bodies()
    assert [b["event"] for b in bodies] == ["baseline", "best", "tampered", "stopped"] and warnings == []
    assert (bodies[1]["seq"], bodies[1]["value"], bodies[1]["previous_best"], bodies[1]["description"]) == \
        (1, 0.5, 1.0, "halve the loss <!channel>")
    assert bodies[2]["seq"] == 3 and "eval.py" in bodies[2]["reason"]
    assert (bodies[3]["seq"], bodies[3]["value"], bodies[3]["experiments"]) == (1, 0.5, 4)
    assert {b["tag"] for b in bodies} == {"t"} and bodies[0]["task"] == "task"


def test_a_crash_is_alerted_with_how_to_continue(tmp_path):
    task = make_task(tmp_path)
    with Hook() as hook:
        config = settings(keep={"rule": "strict"}, notify={"webhook": hook.url})
        run_watched(task, config, CHANGES[:1], crash="crashed: RuntimeError: <boom>")
    texts = [body["text"] for body in hook.bodies()]
    assert len(texts) == 2 and "new best" in texts[0]
    assert texts[1].startswith("autoresearch task/t on ") and "loop CRASHED: `crashed: RuntimeError: &lt;boom&gt;`" \
        in texts[1] and "`autoresearch run --tag t --resume`" in texts[1]


def test_a_failing_webhook_never_stops_the_loop(tmp_path):
    task = make_task(tmp_path)
    with Hook(status=500) as hook:
        config = settings(keep={"rule": "strict"}, notify={"webhook": hook.url, "retries": 1})
        start = time.monotonic()
        history, warnings = run_watched(task, config, CHANGES)
        took = time.monotonic() - start
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP, Status.DISCARD, Status.TAMPERED]
    assert len(hook.requests) == 6  # best, tampered, stopped: each tried twice
    assert len(warnings) == 3 and all("HTTP 500" in w and "SECRET" not in w for w in warnings)
    assert took < 10


def test_a_webhook_that_never_answers_never_holds_up_the_loop(tmp_path):
    task = make_task(tmp_path)
    with Hook(hang=30.0) as hook:
        config = settings(keep={"rule": "strict"}, notify={"webhook": hook.url, "retries": 0,
                                                          "timeout_seconds": 0.5})
        start = time.monotonic()
        history, warnings = run_watched(task, config, CHANGES)
        took = time.monotonic() - start
        assert [e.status for e in history] == [Status.KEEP, Status.KEEP, Status.DISCARD, Status.TAMPERED]
        assert took < 5  # the alerts' 1.5 s of timeouts are not the loop's: it waits for one at the end
        assert any(w.startswith("notify: gave up waiting for 127.0.0.1:") for w in warnings)
        deadline = time.monotonic() + 5  # the sender's thread tells of its timeouts as they happen
        while not any("the best alert was not delivered" in w for w in warnings) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any("the best alert was not delivered" in w and "timed out" in w for w in warnings)
        assert not any("SECRET" in w for w in warnings)


def test_only_the_alerts_asked_for_are_sent(tmp_path):
    task = make_task(tmp_path)
    with Hook() as hook:
        config = settings(keep={"rule": "strict"}, notify={"webhook": hook.url, "on": ["tampered"]})
        run_watched(task, config, CHANGES)
    (body,) = hook.bodies()
    assert "TAMPERED: #3" in body["text"]


SOLVE_PY = """\
RATE = 0.1
score = 1.0 - (RATE - 0.3) ** 2
print(f"score: {score:.6f}")
"""


def test_a_real_run_through_the_command_line_posts_its_alerts(tmp_path):
    task = generic_task_folder(tmp_path, SOLVE_PY)
    (task / "notes.md").write_text("committed, not editable\n")
    git(task, "add", "-A")
    git(task, "commit", "-qm", "notes")
    best = SOLVE_PY.replace("RATE = 0.1", "RATE = 0.3")
    (task / "patches.json").write_text(json.dumps([
        {"description": "RATE 0.3 <!channel> & <https://evil|x>", "files": {"solve.py": best}},
        {"description": "rewrite the notes", "files": {"solve.py": best + "open('notes.md', 'w').write('x')\n"}},
    ]))
    with Hook() as hook:
        toml = task / "autoresearch.toml"  # init writes every setting, [notify]'s too
        toml.write_text(toml.read_text().replace('webhook = ""', f'webhook = "{hook.url}"', 1))
        done = cli("run", "--agent", f"replay:{task / 'patches.json'}", "--tag", "n", cwd=task,
                   env={"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}, timeout=120)
    texts = [body["text"] for body in hook.bodies()]
    assert len(texts) == 3, texts
    assert texts[0].startswith("autoresearch task/n on ") and ": new best score 1 at #1 (was 0.96 at #0" in texts[0]
    assert "`RATE 0.3 &lt;!channel&gt; &amp; &lt;https://evil|x&gt;`" in texts[0]
    assert "TAMPERED: #2" in texts[1] and "`rewrite the notes`" in texts[1] and "notes.md" in texts[1]
    assert "loop stopped: " in texts[2] and "3 experiments; best score 1 at #1" in texts[2]
    assert "SECRET" not in done.stdout + done.stderr
