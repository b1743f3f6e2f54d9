"""`autoresearch serve` in a real browser: Debian's chromium driven by Playwright, against the real server
(a subprocess) over a store made by real short loops. Also the server's safety rules over real HTTP.

Screenshots of each page go to test-artifacts/serve/ in the repository (or $AUTORESEARCH_ARTIFACTS), for a
person to look at.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, cli, generic_task_folder

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("AUTORESEARCH_ARTIFACTS", REPO / "test-artifacts")) / "serve"
SCRIPT_DESCRIPTION = "<script>alert('pwned')</script> RATE 0.25"

# A run of its own command: five steps of "training" that print progress events (a curve for the live
# chart), then the score, which peaks at RATE = 0.3.
SOLVE_PY = """\
import json, time
RATE = 0.1
PAUSE = 0.05
for i in range(5):
    time.sleep(PAUSE)
    print('@autoresearch ' + json.dumps({"event": "step", "step": i, "elapsed": PAUSE * (i + 1),
                                         "train_loss": 3.0 - i * RATE}), flush=True)
print(f'score: {1 - (RATE - 0.3) ** 2:.6f}')
"""


def _patches(path: Path, steps: list[tuple[str, str, str]]) -> Path:
    path.write_text(json.dumps([{"description": d, "edits": [{"file": "solve.py", "search": a, "replace": b}]}
                                for d, a, b in steps]))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _store_files(task: Path) -> dict[str, str]:
    """The store's data as hashes: the database and its write-ahead log (an empty or missing log is none;
    the -shm file is SQLite's shared-memory index, which readers use too)."""
    folder = task / ".autoresearch"
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("store.sqlite*"))
            if not p.name.endswith("-shm") and p.stat().st_size}


class Server:
    """`autoresearch serve` in a subprocess, until stopped."""

    def __init__(self, task: Path, *args: str):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "serve", "--dir", str(task), "--port",
                                      str(self.port), "--poll", "0.3", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited: {self.proc.stdout.read()}") from None
                time.sleep(0.2)
        raise AssertionError("serve did not start listening in 30 s")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            output, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            output, _ = self.proc.communicate()
        return output


def _get(url: str, headers: dict | None = None) -> tuple[int, str, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    """A task folder with two runs made by the real CLI: `demo` (a baseline, three keeps, one of them
    described with a <script>, a discard and a crash) and `other` (a baseline and one keep)."""
    root = tmp_path_factory.mktemp("serve")
    folder = generic_task_folder(root, SOLVE_PY)
    demo = _patches(root / "demo.json", [
        ("raise RATE to 0.2", "RATE = 0.1", "RATE = 0.2"),
        (SCRIPT_DESCRIPTION, "RATE = 0.2", "RATE = 0.25"),
        ("overshoot RATE", "RATE = 0.25", "RATE = 0.9"),
        ("break the script", "RATE = 0.25", "RATE = 0.25\nraise SystemExit('boom')"),
        ("RATE 0.3 & more", "RATE = 0.25", "RATE = 0.3")])
    cli("run", "--agent", f"replay:{demo}", "--tag", "demo", cwd=folder)
    other = _patches(root / "other.json", [("RATE 0.3 at once", "RATE = 0.1", "RATE = 0.3")])
    cli("run", "--agent", f"replay:{other}", "--tag", "other", cwd=folder)
    return folder


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no chromium at {CHROMIUM}: scripts/test.sh installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page that records console errors, uncaught exceptions and dialogs (an alert would be a
    script that ran)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.problems = []
    page.on("console", lambda m: page.problems.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (page.problems.append(f"dialog: {d.message}"), d.dismiss()))
    yield page
    context.close()


def _shoot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _experiment_points(page) -> list[int]:
    """The experiment numbers of the progress chart's points, as plotly drew them."""
    return page.evaluate("""() => document.getElementById('progress-chart').data
        .filter(t => t.meta === 'experiments').flatMap(t => t.x)""")


def test_pages_in_a_browser(task, page):
    from autoresearch.store import Store

    with Store.open(task) as store:
        demo = store.experiments("demo")
    before = _store_files(task)
    server = Server(task)
    try:
        page.goto(server.url + "/")
        rows = page.locator("table.runs tr[data-tag]")
        assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.tag)")) == ["demo", "other"]
        assert "stopped" in page.locator("tr[data-tag=demo]").inner_text()
        _shoot(page, "runs")

        page.click("text=demo")
        page.wait_for_function("() => document.getElementById('progress-chart').data !== undefined")
        assert sorted(_experiment_points(page)) == [e.seq for e in demo if e.finished]  # one point each
        assert page.locator("table.experiments tbody tr").count() == len(demo)
        statuses = page.locator("table.experiments tbody tr").evaluate_all("rs => rs.map(r => r.dataset.status)")
        assert {"keep", "discard", "crash"} <= set(statuses)
        assert page.locator("#lineage li").count() == sum(1 for e in demo if e.status.value == "keep")
        assert "taken up" not in page.locator("#lineage").inner_text()  # the other run shares only the start

        # the description with a <script> is text on the page, in the table and the tree alike
        cell = page.locator("table.experiments td", has_text="alert('pwned')")
        assert cell.inner_text() == SCRIPT_DESCRIPTION
        assert page.locator("script", has_text="pwned").count() == 0
        _shoot(page, "run")

        # sorting and filtering the table
        page.click("table.experiments th[data-key=metric]")
        values = page.locator("table.experiments tbody tr td:nth-child(3)").evaluate_all(
            "cs => cs.map(c => c.dataset.value).filter(v => v !== '').map(Number)")
        assert values == sorted(values)
        page.select_option("#status-filter", "discard")
        assert page.locator("table.experiments tbody tr:visible").count() == 1
        page.select_option("#status-filter", "")
        page.fill("#filter", "overshoot")
        assert page.locator("table.experiments tbody tr:visible").count() == 1
        page.fill("#filter", "")

        # hovering a point names its experiment; clicking it opens that experiment's page with its diff
        kept = next(e for e in demo if e.description == "raise RATE to 0.2")
        box = page.evaluate(f"""() => {{
            const chart = document.getElementById('progress-chart');
            const trace = chart.data.findIndex(t => t.meta === 'experiments' && t.x.includes({kept.seq}));
            const index = chart.data[trace].x.indexOf({kept.seq});
            const point = chart.querySelectorAll('.scatterlayer .trace')[trace].querySelectorAll('.point')[index];
            const r = point.getBoundingClientRect();
            return {{x: r.x + r.width / 2, y: r.y + r.height / 2}};
        }}""")
        page.mouse.move(box["x"], box["y"])
        page.wait_for_selector(".hoverlayer .hovertext")
        assert "raise RATE to 0.2" in page.locator(".hoverlayer").text_content()
        page.mouse.click(box["x"], box["y"])
        page.wait_for_url(f"**/run/demo/exp/{kept.seq}")
        diff = page.locator(".diff").inner_text()
        assert "-RATE = 0.1" in diff and "+RATE = 0.2" in diff
        assert page.locator(".diff .gd").count() and page.locator(".diff .gi").count()  # highlighted lines
        assert "verdict:" in page.locator("pre.facts").inner_text()
        _shoot(page, "experiment")

        page.goto(server.url + f"/run/demo/exp/{next(e.seq for e in demo if e.status.value == 'crash')}")
        assert "boom" in page.locator("pre.log").inner_text() or "boom" in page.locator("pre.facts").inner_text()
        page.goto(server.url + f"/run/demo/exp/{next(e.seq for e in demo if e.description == SCRIPT_DESCRIPTION)}")
        assert SCRIPT_DESCRIPTION in page.locator("h1").inner_text()
        assert page.locator("script", has_text="pwned").count() == 0
        assert page.problems == []
    finally:
        server.stop()
    assert _store_files(task) == before  # the server never wrote the store


def test_new_experiments_appear_without_a_reload(tmp_path, page):
    folder = generic_task_folder(tmp_path, SOLVE_PY.replace("PAUSE = 0.05", "PAUSE = 0.4"))
    first = _patches(tmp_path / "first.json", [("raise RATE to 0.2", "RATE = 0.1", "RATE = 0.2")])
    cli("run", "--agent", f"replay:{first}", "--tag", "live", cwd=folder)
    server = Server(folder)
    loop = None
    try:
        page.goto(server.url + "/run/live")
        page.wait_for_function("() => document.body.dataset.updates !== undefined")  # the first update came
        page.evaluate("() => { window.notReloaded = true; }")
        rows = page.locator("table.experiments tbody tr").count()
        points = len(_experiment_points(page))
        more = _patches(tmp_path / "more.json", [  # a resumed replay goes on after the proposals made already
            ("raise RATE to 0.2", "RATE = 0.1", "RATE = 0.2"), ("RATE 0.3 now", "RATE = 0.2", "RATE = 0.3")])
        loop = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--resume", "--tag", "live",
                                 "--agent", f"replay:{more}"], cwd=folder, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        # while #2 trains, the live part shows it and its curve
        page.wait_for_function("() => document.getElementById('live-text').textContent.startsWith('#')",
                               timeout=60_000)
        assert "RATE 0.3 now" in page.locator("#live-text").inner_text()
        page.wait_for_function("() => (document.getElementById('live-chart').data || [{x: []}])[0].x.length > 0",
                               timeout=60_000)  # its training curve, step by step
        names = page.evaluate("() => document.getElementById('live-chart').data.map(t => t.name)")
        assert "the best, #1 (its runs)" in names  # against the curves of the best's runs
        _shoot(page, "live")
        page.wait_for_function(f"() => document.querySelectorAll('table.experiments tbody tr').length > {rows}",
                               timeout=60_000)
        page.wait_for_function(f"""() => document.getElementById('progress-chart').data
            .filter(t => t.meta === 'experiments').flatMap(t => t.x).length > {points}""", timeout=60_000)
        assert page.locator("table.experiments tbody tr", has_text="RATE 0.3 now").count() == 1
        assert page.evaluate("() => window.notReloaded") is True
        assert loop.wait(timeout=120) == 0
        assert page.problems == []
    finally:
        if loop is not None:
            if loop.poll() is None:
                loop.kill()
            print(loop.communicate()[0])  # shown when the test fails
        server.stop()


def test_runs_page_shows_a_new_run_without_a_reload(tmp_path, page):
    folder = generic_task_folder(tmp_path, SOLVE_PY)
    cli("run", "--agent", f"replay:{_patches(tmp_path / 'a.json', [])}", "--tag", "first", cwd=folder)
    server = Server(folder)
    try:
        page.goto(server.url + "/")
        page.wait_for_function("() => document.body.dataset.updates !== undefined")
        page.evaluate("() => { window.notReloaded = true; }")
        cli("run", "--agent", f"replay:{_patches(tmp_path / 'b.json', [])}", "--tag", "second", cwd=folder)
        page.wait_for_selector("tr[data-tag=second]", timeout=30_000)
        assert page.evaluate("() => window.notReloaded") is True
        assert page.problems == []
    finally:
        server.stop()


def test_a_token_is_needed_off_loopback_and_checked_on_every_request(task):
    refused = cli("serve", "--dir", str(task), "--host", "0.0.0.0", check=False, cwd=task, timeout=60)
    assert refused.returncode == 2 and "--token" in refused.stderr and "loopback" in refused.stderr

    token = "s3cret-token-for-the-test"
    server = Server(task, "--token", token)
    try:
        for path in ("/", "/run/demo", "/api/runs", "/api/run/demo", "/static/dashboard.js", "/api/events"):
            status, body, _ = _get(server.url + path)
            assert status == 401, path
            assert _get(server.url + path, {"Authorization": "Bearer wrong-token-0000000"})[0] == 401
        status, body, _ = _get(server.url + "/api/runs", {"Authorization": f"Bearer {token}"})
        assert status == 200 and {r["tag"] for r in json.loads(body)["runs"]} == {"demo", "other"}
        status, _, headers = _get(server.url + f"/run/demo?token={token}")
        assert status == 200
        cookie = headers["set-cookie"].split(";")[0]
        assert "httponly" in headers["set-cookie"].lower()
        assert _get(server.url + "/run/demo/exp/1", {"Cookie": cookie})[0] == 200  # the page's own requests
    finally:
        output = server.stop()
    assert "token" in output


def test_generated_token_is_printed(task):
    server = Server(task, "--token", "generate")
    try:
        time.sleep(0.5)
        assert _get(server.url + "/")[0] == 401
    finally:
        output = server.stop()
    token = output.split("?token=")[1].split()[0]
    assert len(token) >= 16


def test_loopback_server_refuses_other_host_names(task):
    server = Server(task)
    try:
        assert _get(server.url + "/api/runs")[0] == 200
        assert _get(server.url + "/api/runs", {"Host": "attacker.example"})[0] == 400  # DNS rebinding
        status, body, headers = _get(server.url + "/run/demo")
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert _get(server.url + "/run/nosuch")[0] == 404
        assert _get(server.url + "/run/demo/exp/999")[0] == 404
    finally:
        server.stop()


def test_report_html_shows_an_experiment_as_the_dashboard_does(task):
    from autoresearch.config import load_config
    from autoresearch.report.experiment import experiments_data
    from autoresearch.serve.pages import experiment_summary_line
    from autoresearch.store import Store

    cli("report", "--tag", "demo", cwd=task)
    report = (task / "report.html").read_text()
    with Store.open(task) as store:
        data = experiments_data(store.experiments("demo"), metric=load_config(task).metric)
    server = Server(task)
    try:
        for one in data:
            line = experiment_summary_line(one)
            page = _get(server.url + f"/run/demo/exp/{one['seq']}")[1]
            assert line in report and line in page  # one rendering of each experiment for both
    finally:
        server.stop()
    assert "<script" not in report  # the file runs no script: it can be mailed
