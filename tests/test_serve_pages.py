"""The dashboard's pages as pure functions, and its app in-process (Starlette's test client over real
HTTP semantics): escaping, the embedded data, the lineage tree, the token rule. The browser tests are in
test_serve.py."""

from __future__ import annotations

import json
import re

import pytest

from autoresearch.serve import pages


def test_embedded_json_cannot_end_its_script_element():
    text = pages.embedded_json({"description": "</script><script>alert(1)</script> & <!--"})
    assert "</script" not in text.lower() and "<!--" not in text and "&" not in text
    assert json.loads(text) == {"description": "</script><script>alert(1)</script> & <!--"}


def test_an_agents_text_is_escaped_in_every_part_of_a_run_page():
    evil = "<img src=x onerror=alert(1)>"
    point = {"seq": 1, "status": "keep", "metric": 0.9, "delta": -0.1, "description": evil, "agent": evil,
             "cost": None, "tokens": None, "test": 0.95, "seconds": 3.0, "started_at": 0.0, "runs": 1, "error": None}
    view = {"summary": {"tag": "t", "total": 1, "kept": 1, "counts": {}, "best_metric": 0.9, "best_seq": 1,
                        "baseline_metric": 1.0, "improvement_pct": 10.0, "direction": "minimize",
                        "wall_seconds": 5.0, "agent": {}},
            "metric": {"name": "val_bpb", "maximize": False}, "points": [point], "best_line": [],
            "noise": {"sigma": None, "dof": 0}, "speed": {"runs": 0}, "cluster": None,
            "val_test": [{"seq": 1, "val": 0.9, "test": 0.95, "description": evil}],
            "lineage": [{"seq": 1, "commit": "a" * 12, "metric": 0.9, "description": evil, "parent_seq": None,
                         "parent": None, "adopted_from": evil}]}
    page = pages.run_page(view)
    assert "<img" not in page and page.count("&lt;img src=x onerror=alert(1)&gt;") >= 4
    data = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["points"][0]["description"] == evil  # the chart's data, intact


def test_a_line_of_research_reads_top_to_bottom_and_forks_are_indented():
    nodes = [(0, None), (1, 0), (2, 1), (3, 2)]
    view = {"summary": {"tag": "t"}, "lineage": [
        {"seq": s, "commit": f"{s:012d}", "metric": 1.0, "description": f"c{s}", "parent_seq": p, "parent": None,
         "adopted_from": None} for s, p in nodes]}
    html = pages.lineage_tree(view)
    assert html.count("<ul>") == 1 and html.count("<li>") == 4  # one list, not four levels deep
    view["lineage"].append({"seq": 4, "commit": "4" * 12, "metric": 1.0, "description": "c4", "parent_seq": 1,
                            "parent": None, "adopted_from": None})  # #1 has two children: #2 and #4
    html = pages.lineage_tree(view)
    assert html.count("<ul>") == 3 and html.index("c2") < html.index("c3") and html.index("c1") < html.index("c4")
    view["lineage"][-1]["adopted_from"] = "gpu1 #7"
    assert "#4</a> <code>444444444444</code> 1.000000 · c4 <span class=\"muted\">(taken up from gpu1 #7)</span>" \
        in pages.lineage_tree(view)


@pytest.fixture
def client_for(tmp_path):
    from starlette.testclient import TestClient

    from autoresearch.config import config_from_dict
    from autoresearch.serve.app import make_app
    from autoresearch.store import Status, Store

    with Store.open(tmp_path) as store:
        store.record(status=Status.KEEP, tag="t", parent_commit="a" * 40, commit="b" * 40, diff="", metric=1.0,
                     description="baseline", agent="-", seed=0)
    config = config_from_dict({})

    def make(**options):
        return TestClient(make_app(tmp_path, config, **options), base_url="http://127.0.0.1")
    return make


def test_the_app_answers_with_its_token_only(client_for):
    client = client_for(token="x" * 20, loopback=False)
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer " + "y" * 20}).status_code == 401
    response = client.get("/api/runs", headers={"Authorization": "Bearer " + "x" * 20})
    assert response.status_code == 200 and response.json()["runs"][0]["tag"] == "t"
    assert client.get("/?token=" + "x" * 20).status_code == 200
    assert client.get("/run/t").status_code == 200  # the cookie it set


def test_a_loopback_app_needs_no_token_but_a_loopback_host(client_for):
    client = client_for()
    assert client.get("/run/t").status_code == 200
    assert client.get("/api/run/t").json()["run"]["summary"]["best_metric"] == 1.0
    assert client.get("/", headers={"Host": "rebound.example"}).status_code == 400


def test_the_app_cannot_write_the_store(client_for, tmp_path):
    client = client_for()
    store = client.app.state.store
    with pytest.raises(Exception, match="readonly|read-only|query_only"):
        store.set_state("x", 1)
    assert client.get("/").status_code == 200


def test_an_experiment_page_shows_the_agents_prompt_and_answer_as_text():
    from autoresearch.config import MetricConfig

    view = {"tag": "t", "seq": 3, "status": "discard", "metric": 0.9, "delta": 0.01, "description": "wider",
            "agent": "openai:m", "metric_name": "val_bpb", "diff": "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n",
            "run_list": [{"seed": 0, "metric": 0.9, "speed": 150.0, "purpose": "own", "of_best": False,
                          "node": None}],
            "transcript": {"prompt": "[user]\nmake it <b>wider</b>", "answer": "[assistant]\n</pre><script>x()</script>"},
            "log_tail": "step 1", "started_at": 0.0, "total_seconds": 3.0, "runs": [0.9], "best_before": 0.89,
            "best_before_seq": 1, "verdict": "not better", "test_metric": None, "training_seconds": 2.0,
            "peak_memory_gb": None, "steps": 10, "tokens": 100, "mfu": None, "metrics": {"rationale": "more room"},
            "agent_spend": {"cost_usd": 0.01}, "adopted_from": None, "same_code_as": None, "parent_commit": "a" * 40,
            "commit": "b" * 40, "on_branch": False, "error": None}
    page = pages.experiment_page(view, MetricConfig())
    assert "make it &lt;b&gt;wider&lt;/b&gt;" in page and "&lt;/pre&gt;&lt;script&gt;x()&lt;/script&gt;" in page
    assert "<script>x()" not in page and "the agent&#x27;s rationale: more room" in page
    assert "$0.0100" in page and "150" in page  # its cost and each run's machine speed
