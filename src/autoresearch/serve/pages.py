"""The HTML of the dashboard's pages, and the parts report.html shares with them.

Pure: `views`' dicts in, HTML text out. Every text that came from an agent or a candidate (descriptions,
agents' names, errors, diffs, logs, prompts and answers) goes through `safe_text.for_html` or Pygments,
which escape it; the data the browser's script draws from is embedded as JSON that cannot close its
`<script>` element (`embedded_json`).

Shared with report.html (`report.html`): `experiment_summary_line`, `experiment_facts` and `diff_html`, so an
experiment reads the same in the file and on the server. Only core dependencies here (Pygments comes
with rich): report.html is written without the `serve` extra.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Sequence

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer

from autoresearch.config import MetricConfig
from autoresearch.report.experiment import experiment_lines
from autoresearch.report.text import format_duration
from autoresearch.safe_text import for_html, for_terminal

MAX_DIFF_CHARS = 30_000  # a longer diff is cut in the page (the store keeps it whole: `autoresearch show`)
STATUSES = ("keep", "discard", "crash", "timeout", "rejected", "tampered", "pruned", "running")

_DIFF_FORMAT = HtmlFormatter(cssclass="diff", nowrap=False)
DIFF_CSS = _DIFF_FORMAT.get_style_defs(".diff")  # Pygments' colours for `diff_html`


def embedded_json(data: object) -> str:
    """`data` as JSON to put inside `<script type="application/json">`: `<`, `>` and `&` as \\u escapes, so
    no text in it (an agent's description with `</script>`) can end the element."""
    return (json.dumps(data, allow_nan=False, default=str).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _number(value: float | None, pattern: str = "{:.6f}") -> str:
    return "-" if value is None else pattern.format(value)


def _when(stamp: float | None) -> str:
    return "-" if stamp is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(stamp))


def status_badge(status: str) -> str:
    return f'<span class="status {html.escape(status)}">{html.escape(status)}</span>'


# ---------------------------------------------------------------------------------------- shared parts


def experiment_summary_line(data: dict) -> str:
    """`#12 keep 0.981234 (-0.0042) · agent · description`: an experiment in one line of HTML."""
    value = "" if data["metric"] is None else f" {data['metric']:.6f}"
    delta = "" if data["delta"] is None else f" ({data['delta']:+.6f})"
    first = (data["description"] or "(no description)").splitlines()[0]
    return (f"#{data['seq']} {status_badge(data['status'])}{value}{delta} · {for_html(data['agent'])} · "
            f"{for_html(first)}")


def experiment_facts(data: dict, metric: MetricConfig) -> str:
    """What `autoresearch show` prints of an experiment (its verdict and why, runs, cost), as a `<pre>`."""
    return f'<pre class="facts">{for_html(chr(10).join(experiment_lines(data, metric=metric)))}</pre>'


def diff_html(diff: str) -> str:
    """A diff, syntax-highlighted by Pygments (which escapes it); cut past `MAX_DIFF_CHARS`."""
    if not diff:
        return '<p class="muted">no change recorded</p>'
    cut = len(diff) > MAX_DIFF_CHARS
    text = for_terminal(diff[:MAX_DIFF_CHARS])  # control characters made visible; Pygments escapes the rest
    out = highlight(text, DiffLexer(), _DIFF_FORMAT)
    if cut:
        out += f'<p class="muted">cut at {MAX_DIFF_CHARS:,} characters: <code>autoresearch show</code> prints it whole</p>'
    return out


# ---------------------------------------------------------------------------------------- the frame


def layout(title: str, body: str, *, crumbs: Sequence[tuple[str, str | None]] = (), scripts: Sequence[str] = (),
           data: object = None, page: str = "") -> str:
    """A whole dashboard page: `crumbs` ((text, link or None) from the top down), `body`, the page's
    `data` as embedded JSON (id `page-data`) and `scripts` (URLs under /static)."""
    nav = " / ".join(f'<a href="{html.escape(link)}">{for_html(text)}</a>' if link else for_html(text)
                     for text, link in crumbs)
    embedded = ("" if data is None else
                f'<script type="application/json" id="page-data">{embedded_json(data)}</script>\n')
    tags = "".join(f'<script src="{html.escape(src)}"></script>\n' for src in scripts)
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<link rel=\"icon\" href=\"data:,\">"
            f"<title>{for_html(title)}</title>"
            "<link rel=\"stylesheet\" href=\"/static/dashboard.css\">"
            "<link rel=\"stylesheet\" href=\"/static/diff.css\"></head>\n"
            f"<body data-page=\"{html.escape(page)}\"><header><nav>{nav}</nav>"
            "<span id=\"live-state\" class=\"muted\"></span></header>\n<main>\n"
            f"{body}\n</main>\n{embedded}{tags}</body></html>\n")


# ---------------------------------------------------------------------------------------- runs


def runs_page(runs: list[dict], folder: str) -> str:
    body = (f"<h1>Runs of {for_html(folder)}</h1>\n<div id=\"runs-table\">{runs_table(runs)}</div>\n"
            "<p class=\"muted\">Updated live. Click a run to open it.</p>")
    return layout(f"autoresearch: {folder}", body, crumbs=[("runs", None)], page="runs",
                  scripts=["/static/dashboard.js"])


def runs_table(runs: list[dict]) -> str:
    """Every run side by side: best, baseline, keeps, experiments, machine speed, alive or stopped, and what
    each loop does now."""
    if not runs:
        return "<p>No experiments yet: start a run with <code>autoresearch run</code>.</p>"
    head = ("<tr><th>run</th><th>loop</th><th>experiments</th><th>kept</th><th>crashes</th><th>baseline</th>"
            "<th>best</th><th>change</th><th>machine speed</th><th>last finished</th><th>now</th></tr>")
    rows = []
    for r in runs:
        alive = r["loop"]["alive"]
        loop = ('<span class="alive">running</span>' if alive else
                '<span class="muted">stopped</span>' if alive is False else '<span class="muted">?</span>')
        change = "-" if r["improvement_pct"] is None else \
            f"{'+' if r['direction'] == 'maximize' else '-'}{r['improvement_pct']:.2f}%"
        speed = "-" if r["speed"] is None else f"{r['speed']:,.0f} GFLOP/s"
        tag = for_html(r["tag"])
        rows.append(f'<tr data-tag="{tag}"><td><a href="/run/{html.escape(_path(r["tag"]))}">{tag}</a></td>'
                    f"<td>{loop}</td><td>{r['total']}</td><td>{r['kept']}</td><td>{r['crashes']}</td>"
                    f"<td>{_number(r['baseline_metric'])}</td><td>{_number(r['best_metric'])}</td><td>{change}</td>"
                    f"<td>{speed}</td><td>{_when(r['last_ended'])}</td><td>{for_html(r['doing'])}</td></tr>")
    return f'<table class="runs">{head}{"".join(rows)}</table>'


def _path(tag: str) -> str:
    from urllib.parse import quote

    return quote(tag, safe="")


# ---------------------------------------------------------------------------------------- one run


def run_page(view: dict) -> str:
    s = view["summary"]
    tag = s["tag"]
    body = (f"<h1>Run {for_html(tag)}</h1>\n<div id=\"run-summary\">{run_summary(view)}</div>\n"
            "<h2>Progress</h2>\n<div id=\"progress-chart\" class=\"chart\"></div>\n"
            "<p class=\"muted\">One point per experiment. Hover for the experiment, click to open it.</p>\n"
            "<h2>Live</h2>\n<div id=\"live\"><p id=\"live-text\" class=\"muted\">waiting for the first update"
            "</p><div id=\"live-chart\" class=\"chart small\"></div></div>\n"
            f"<h2>Experiments</h2>\n{table_controls()}<div id=\"experiments\">{experiments_table(view)}</div>\n"
            f"<h2>Kept changes</h2>\n<div id=\"lineage\">{lineage_tree(view)}</div>\n"
            f"<h2>Validation against the hidden test split</h2>\n<div id=\"val-test\">{val_test_table(view)}</div>")
    return layout(f"autoresearch: {tag}", body, crumbs=[("runs", "/"), (tag, None)], page="run", data=view,
                  scripts=["/static/plotly.min.js", "/static/dashboard.js"])


def run_summary(view: dict) -> str:
    s, metric = view["summary"], view["metric"]["name"]
    parts = [f"{s['total']} experiments, {s['kept']} kept"]
    crashes = s["counts"].get("crash", 0) + s["counts"].get("timeout", 0)
    if crashes:
        parts.append(f"{crashes} crashed or timed out")
    line = ", ".join(parts)
    if s["best_metric"] is not None:
        line += (f". Best {for_html(metric)} <b>{s['best_metric']:.6f}</b> (#{s['best_seq']}) against the "
                 f"baseline {s['baseline_metric']:.6f}")
        if s["improvement_pct"] is not None:
            line += f", {'+' if s['direction'] == 'maximize' else '-'}{s['improvement_pct']:.2f}%"
    sigma = view["noise"]["sigma"]
    noise = "not measured yet" if sigma is None else f"sigma {sigma:.4g} ({view['noise']['dof']} degrees of freedom)"
    facts = [f"noise: {noise}"]
    speed = view["speed"]
    if speed.get("runs"):
        facts.append(f"machine speed {speed['latest'] or speed['median']:,.0f} GFLOP/s")
    if view.get("cluster"):
        facts.append(f"cluster: {len(view['cluster']['nodes'])} nodes, {view['cluster']['gpu_hours']:.2f} GPU-hours")
    if s["wall_seconds"]:
        facts.append(f"wall time {format_duration(s['wall_seconds'])}")
    if s["agent"].get("cost_usd"):
        facts.append(f"agent cost ${s['agent']['cost_usd']:.2f}")
    return f"<p>{line}.</p><p class=\"muted\">{' · '.join(facts)}</p>"


def table_controls() -> str:
    options = "".join(f'<option value="{s}">{s}</option>' for s in STATUSES)
    return ('<div class="controls"><input id="filter" type="search" placeholder="filter: description, agent">'
            f'<select id="status-filter"><option value="">every status</option>{options}</select></div>')


_COLUMNS = (("seq", "#", "num"), ("status", "status", "text"), ("metric", "metric", "num"),
            ("delta", "change", "num"), ("agent", "agent", "text"), ("cost", "cost", "num"),
            ("seconds", "time", "num"), ("description", "description", "text"))


def experiments_table(view: dict) -> str:
    """Every experiment of the run, the latest first; the browser's script sorts and filters it (each cell
    carries its value in `data-value`)."""
    head = "".join(f'<th data-key="{key}" data-kind="{kind}">{label}</th>' for key, label, kind in _COLUMNS)
    tag = _path(view["summary"]["tag"])
    rows = []
    for p in reversed(view["points"]):
        cells = {
            "seq": (p["seq"], f'<a href="/run/{tag}/exp/{p["seq"]}">#{p["seq"]}</a>'),
            "status": (p["status"], status_badge(p["status"])),
            "metric": (p["metric"], _number(p["metric"])),
            "delta": (p["delta"], _number(p["delta"], "{:+.6f}")),
            "agent": (p["agent"], for_html(p["agent"])),
            "cost": (p["cost"], "-" if p["cost"] is None else f"${p['cost']:.4f}"),
            "seconds": (p["seconds"], "-" if p["seconds"] is None else format_duration(p["seconds"])),
            "description": (p["description"], for_html(p["description"] or "(no description)")),
        }
        tds = "".join(f'<td data-value="{for_html("" if value is None else value)}">{shown}</td>'
                      for value, shown in (cells[key] for key, _, _ in _COLUMNS))
        rows.append(f'<tr data-seq="{p["seq"]}" data-status="{html.escape(p["status"])}">{tds}</tr>')
    return f'<table class="experiments sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def lineage_tree(view: dict) -> str:
    """The kept commits as a tree: each after the kept commit it was built on. A line of research without
    forks reads as one list, top to bottom; where a commit has several children (a run that took up
    another's best, then went on), each child's line is indented under it. A best taken up from another run
    says from which."""
    nodes = view["lineage"]
    if not nodes:
        return "<p class=\"muted\">Nothing kept yet.</p>"
    children: dict[int | None, list[dict]] = {}
    for node in nodes:
        children.setdefault(node["parent_seq"], []).append(node)
    tag = _path(view["summary"]["tag"])

    def item(n: dict) -> str:
        origin = n["parent"] or n["adopted_from"]
        note = f' <span class="muted">(taken up from {for_html(origin)})</span>' if origin else ""
        return (f'<a href="/run/{tag}/exp/{n["seq"]}">#{n["seq"]}</a> <code>{html.escape(n["commit"])}</code> '
                f'{_number(n["metric"])} · {for_html(n["description"])}{note}')

    def line(first: dict) -> str:  # `first` and its descendants while there is one child each
        items, node = [], first
        while True:
            below = children.get(node["seq"], [])
            if len(below) == 1:
                items.append(f"<li>{item(node)}</li>")
                node = below[0]
                continue
            forks = "".join(f"<ul>{line(child)}</ul>" for child in below)
            items.append(f"<li>{item(node)}{forks}</li>")
            return "".join(items)
    return '<div class="tree"><ul>' + "".join(line(root) for root in children.get(None, [])) + "</ul></div>"


def val_test_table(view: dict) -> str:
    rows = view["val_test"]
    if not rows:
        return "<p class=\"muted\">No kept change was scored on the test split.</p>"
    body = "".join(f"<tr><td>#{r['seq']}</td><td>{_number(r['val'])}</td><td>{_number(r['test'])}</td>"
                   f"<td>{_number(r['test'] - r['val'], '{:+.6f}') if r['val'] is not None else '-'}</td>"
                   f"<td>{for_html(r['description'])}</td></tr>" for r in rows)
    return ("<table><tr><th>#</th><th>validation</th><th>test</th><th>test - val</th><th>change</th></tr>"
            f"{body}</table>")


def run_fragments(view: dict) -> dict[str, str]:
    """The parts of the run page that change as experiments finish, by element id, for the live update."""
    return {"run-summary": run_summary(view), "experiments": experiments_table(view),
            "lineage": lineage_tree(view), "val-test": val_test_table(view)}


# ---------------------------------------------------------------------------------------- one experiment


def experiment_page(view: dict, metric: MetricConfig) -> str:
    tag, seq = view["tag"], view["seq"]
    runs = "".join(f"<tr><td>{i + 1}</td><td>{r['seed']}</td><td>{_number(r['metric'])}</td>"
                   f"<td>{_number(r['speed'], '{:,.0f}')}</td><td>{html.escape(r['purpose'])}"
                   f"{' (the best, measured again)' if r['of_best'] else ''}</td><td>{for_html(r['node'] or 'here')}</td></tr>"
                   for i, r in enumerate(view["run_list"]))
    runs_html = ("<table><tr><th>run</th><th>seed</th><th>" + for_html(view["metric_name"]) +
                 "</th><th>machine speed (GFLOP/s)</th><th>why</th><th>where</th></tr>" + runs + "</table>") \
        if runs else "<p class=\"muted\">No run gave a result.</p>"
    said = view.get("transcript") or {}
    transcript = "".join(
        f"<details><summary>{label}</summary><pre class=\"transcript\">{for_html(said[key])}</pre></details>"
        for key, label in (("prompt", "the agent's prompt"), ("answer", "the agent's answer")) if said.get(key))
    log = view.get("log_tail")
    body = (f"<h1>{experiment_summary_line(view)}</h1>\n"
            f"<h2>Verdict</h2>\n{experiment_facts(view, metric)}\n"
            f"<h2>Runs</h2>\n{runs_html}\n"
            f"<h2>Diff</h2>\n<div class=\"diff-box\">{diff_html(view['diff'])}</div>\n"
            f"<h2>Agent</h2>\n{transcript or '<p class=muted>No prompt or answer was kept for this proposal.</p>'}\n"
            "<h2>Log (tail)</h2>\n" + (f"<pre class=\"log\">{for_html(log)}</pre>" if log else
                                       "<p class=\"muted\">No log.</p>"))
    return layout(f"#{seq} of {tag}", body, crumbs=[("runs", "/"), (tag, f"/run/{_path(tag)}"), (f"#{seq}", None)],
                  page="experiment", scripts=["/static/dashboard.js"])


def not_found_page(what: str) -> str:
    return layout("not found", f"<h1>Not found</h1><p>{for_html(what)}</p>", crumbs=[("runs", "/")])
