// autoresearch serve: the pages' behaviour. The server renders every page, text escaped; this script draws
// the charts from the page's embedded data, sorts and filters the experiments table, and keeps the page
// live: on each server-sent `update` it fetches the page's data again and swaps in the parts that changed
// (HTML the server rendered). Nothing is loaded from outside this server.
"use strict";

(function () {
  const page = document.body.dataset.page;
  const liveState = document.getElementById("live-state");
  const COLOURS = { keep: "#2ca02c", discard: "#9e9e9e", crash: "#d62728", timeout: "#ff7f0e",
                    tampered: "#8e24aa", pruned: "#1f77b4", rejected: "#bf8700" };
  const FAILED = ["crash", "timeout", "tampered", "pruned", "rejected"];

  function escapeText(text) {  // plotly reads a few HTML-like tags in hover text: an agent's text shows as text
    return String(text == null ? "" : text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function pageData() {
    const element = document.getElementById("page-data");
    return element ? JSON.parse(element.textContent) : null;
  }

  function runPath(tag) { return "/run/" + encodeURIComponent(tag); }

  // ------------------------------------------------------------------ the progress chart

  function progressTraces(view) {
    const points = view.points.filter(p => p.status !== "running");
    const scored = points.filter(p => p.metric !== null && !FAILED.includes(p.status));
    const values = scored.map(p => p.metric);
    const low = values.length ? Math.min(...values) : 0, high = values.length ? Math.max(...values) : 1;
    const floor = low - 0.08 * Math.max(high - low, 1e-3);  // failures sit along the bottom
    const traces = [];
    const hover = "#%{customdata[0]} %{customdata[1]}<br>%{customdata[3]}<br>%{customdata[2]}<extra></extra>";
    function group(name, list, y, marker) {
      if (!list.length) return;
      traces.push({ name: name, type: "scatter", mode: "markers", x: list.map(p => p.seq), y: list.map(y),
                    customdata: list.map(p => [p.seq, p.status, escapeText(p.description).slice(0, 120),
                                               p.metric === null ? "no result" : p.metric.toFixed(6)]),
                    hovertemplate: hover, marker: marker, meta: "experiments" });
    }
    group("kept", scored.filter(p => p.status === "keep"), p => p.metric,
          { color: COLOURS.keep, size: 10, line: { color: "#000", width: 1 } });
    group("discarded", scored.filter(p => p.status !== "keep"), p => p.metric, { color: COLOURS.discard, size: 7 });
    for (const status of FAILED) {
      group(status, points.filter(p => p.status === status), () => floor,
            { color: COLOURS[status], symbol: "x", size: 8 });
    }
    const last = points.length ? points[points.length - 1].seq : 0;
    if (view.best_line.length) {
      const xs = view.best_line.map(b => b.seq).concat([last]);
      const ys = view.best_line.map(b => b.best).concat([view.best_line[view.best_line.length - 1].best]);
      const sigma = view.noise.sigma;
      if (sigma) {
        traces.push({ name: "best - noise", x: xs, y: ys.map(y => y - sigma), mode: "lines", line: { width: 0, shape: "hv" },
                      hoverinfo: "skip", showlegend: false });
        traces.push({ name: "best \u00b1 noise (sigma " + sigma.toPrecision(3) + ")", x: xs, y: ys.map(y => y + sigma),
                      mode: "lines", line: { width: 0, shape: "hv" }, fill: "tonexty",
                      fillcolor: "rgba(44,160,44,0.13)", hoverinfo: "skip" });
      }
      traces.push({ name: "running best", x: xs, y: ys, mode: "lines", line: { color: COLOURS.keep, shape: "hv", width: 2 },
                    hoverinfo: "skip" });
    }
    if (view.val_test.length) {
      traces.push({ name: "test split (kept)", type: "scatter", mode: "markers", x: view.val_test.map(r => r.seq),
                    y: view.val_test.map(r => r.test), marker: { symbol: "diamond-open", size: 9, color: "#6f42c1" },
                    hovertemplate: "#%{x} test %{y:.6f}<extra></extra>" });
    }
    return traces;
  }

  function drawProgress(view) {
    const element = document.getElementById("progress-chart");
    if (!element || !window.Plotly) return;
    const metric = view.metric.name + (view.metric.maximize ? " (higher is better)" : " (lower is better)");
    const layout = { margin: { t: 20, r: 10, b: 45, l: 70 }, hovermode: "closest",
                     xaxis: { title: { text: "experiment #" }, zeroline: false, dtick: view.points.length > 30 ? null : 1 },
                     yaxis: { title: { text: metric } }, legend: { orientation: "h", y: -0.2 } };
    Plotly.react(element, progressTraces(view), layout, { displaylogo: false, responsive: true });
    if (!element.dataset.clicks) {
      element.dataset.clicks = "1";
      element.on("plotly_click", event => {
        const point = event.points.find(p => p.customdata);
        if (point) window.location.href = runPath(view.summary.tag) + "/exp/" + point.customdata[0];
      });
    }
  }

  function drawLive(live) {
    const text = document.getElementById("live-text");
    const element = document.getElementById("live-chart");
    if (!text || !element) return;
    if (!live.running) {
      text.textContent = "Nothing is training now.";
      element.style.display = "none";
      return;
    }
    text.textContent = "#" + live.running.seq + " " + live.running.description + ": " + live.running.progress;
    element.style.display = "";
    if (!window.Plotly) return;
    const traces = [{ name: "#" + live.running.seq + " (running)", x: live.running.curve.map(p => p[0]),
                      y: live.running.curve.map(p => p[1]), mode: "lines", line: { color: "#0969da", width: 2 } }];
    if (live.best) {
      live.best.curves.forEach((curve, i) => {
        traces.push({ name: "the best, #" + live.best.seq + (live.best.curves.length > 1 ? " (its runs)" : ""),
                      x: curve.map(p => p[0]), y: curve.map(p => p[1]), mode: "lines", showlegend: i === 0,
                      legendgroup: "best", line: { color: COLOURS.keep, dash: "dot", width: 1 } });
      });
    }
    Plotly.react(element, traces, { margin: { t: 10, r: 10, b: 40, l: 60 },
                                    xaxis: { title: { text: "training seconds" }, range: [0, live.running.budget] },
                                    yaxis: { title: { text: "train loss" } }, legend: { orientation: "h", y: -0.25 } },
                 { displaylogo: false, responsive: true });
  }

  // ------------------------------------------------------------------ the experiments table

  const order = { key: null, ascending: true };

  function applyTable() {
    const table = document.querySelector("table.sortable");
    if (!table) return;
    const text = (document.getElementById("filter") || { value: "" }).value.toLowerCase();
    const status = (document.getElementById("status-filter") || { value: "" }).value;
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    if (order.key !== null) {
      const headers = Array.from(table.tHead.rows[0].cells);
      const index = headers.findIndex(h => h.dataset.key === order.key);
      const numeric = headers[index].dataset.kind === "num";
      headers.forEach(h => h.classList.remove("asc", "desc"));
      headers[index].classList.add(order.ascending ? "asc" : "desc");
      rows.sort((a, b) => {
        const x = a.cells[index].dataset.value, y = b.cells[index].dataset.value;
        let c;
        if (numeric) {
          const nx = x === "" ? Infinity : Number(x), ny = y === "" ? Infinity : Number(y);
          c = nx - ny;
        } else c = x.localeCompare(y);
        return order.ascending ? c : -c;
      });
      rows.forEach(r => body.appendChild(r));
    }
    for (const row of rows) {
      const shown = (!status || row.dataset.status === status) && (!text || row.textContent.toLowerCase().includes(text));
      row.style.display = shown ? "" : "none";
    }
  }

  function wireTable() {
    document.addEventListener("click", event => {
      const th = event.target.closest("table.sortable th");
      if (!th) return;
      order.ascending = order.key === th.dataset.key ? !order.ascending : true;
      order.key = th.dataset.key;
      applyTable();
    });
    for (const id of ["filter", "status-filter"]) {
      const element = document.getElementById(id);
      if (element) element.addEventListener("input", applyTable);
    }
  }

  // ------------------------------------------------------------------ live updates

  function swap(fragments) {
    for (const [id, html] of Object.entries(fragments)) {
      const element = document.getElementById(id);
      if (element && element.innerHTML !== html) element.innerHTML = html;
    }
  }

  function listen(url, refresh) {
    const source = new EventSource(url);
    source.addEventListener("update", () => {
      refresh().then(() => {
        document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
      }).catch(error => { if (liveState) liveState.textContent = "update failed: " + error; });
    });
    source.onopen = () => { if (liveState) liveState.textContent = "live"; };
    source.onerror = () => { if (liveState) liveState.textContent = "reconnecting..."; };
  }

  async function fetchJson(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(response.status + " " + response.statusText);
    return response.json();
  }

  if (page === "run") {
    const view = pageData();
    wireTable();
    drawProgress(view);
    const api = "/api" + runPath(view.summary.tag);
    listen(api + "/events", async () => {
      const data = await fetchJson(api);
      swap(data.html);
      applyTable();
      drawProgress(data.run);
      drawLive(data.live);
    });
  } else if (page === "runs") {
    listen("/api/events", async () => swap((await fetchJson("/api/runs")).html));
  }
})();
