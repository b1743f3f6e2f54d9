"""The openai: and anthropic: agents against real HTTP servers on 127.0.0.1 that speak each wire format,
through the official SDKs: good edits, non-matching edits, 429 then success, 500s, slow replies,
malformed JSON, a refused key, and the loop end to end."""

import json
import subprocess
from pathlib import Path

import pytest
from conftest import cli
from fakeapi import FakeApi, Reply

from autoresearch.agents import AgentConfigError, AgentError, ProposalContext
from autoresearch.store import Status, Store

pytest.importorskip("openai")
pytest.importorskip("anthropic")

from autoresearch.agents.api import ApiAgent  # noqa: E402

SOLVE_PY = "RATE = 0.1\nWIDTH = 4\nscore = 1.0 - (RATE - 0.3) ** 2 - 0.01 * (WIDTH - 6) ** 2\nprint(f'score: {score:.6f}')\n"
GOOD = "Raise the rate\n\nsolve.py\n<<<<<<< SEARCH\nRATE = 0.1\n=======\nRATE = 0.3\n>>>>>>> REPLACE\n"
MISSES = "Raise the rate\n\nsolve.py\n<<<<<<< SEARCH\nRATE = 0.2\n=======\nRATE = 0.3\n>>>>>>> REPLACE\n"
PROVIDERS = [("openai", "/v1"), ("anthropic", "")]


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "solve.py").write_text(SOLVE_PY)
    return tmp_path


def context() -> ProposalContext:
    return ProposalContext(program="Maximise the score.", editable=["solve.py"], history=[], best=None)


def agent(provider: str, api: FakeApi, suffix: str, tmp_path: Path, **kw) -> ApiAgent:
    kw.setdefault("max_retries", 2)
    return ApiAgent(provider, "test-model", tmp_path, metric_name="score", maximize=True, editable=["solve.py"],
                    base_url=api.url + suffix, **kw)


@pytest.mark.parametrize("provider, suffix", PROVIDERS)
def test_a_good_answer_is_applied_exactly(provider, suffix, workdir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-secret")
    with FakeApi([Reply(GOOD)]) as api:
        chosen = agent(provider, api, suffix, workdir)
        proposal = chosen.propose(workdir, context())
        assert proposal.description == "Raise the rate"
    assert (workdir / "solve.py").read_text() == SOLVE_PY.replace("RATE = 0.1", "RATE = 0.3")
    (request,) = api.posts()
    body = request["body"]
    assert body["model"] == "test-model"
    user = body["messages"][-1]["content"]
    assert "Maximise the score." in user and "RATE = 0.1" in user and "<<<<<<< SEARCH" in user
    assert "score (higher is better)" in user
    if provider == "openai":
        assert request["path"] == "/v1/chat/completions" and body["messages"][0]["role"] == "system"
        assert request["headers"]["authorization"] == "Bearer sk-test-secret"
    else:
        assert request["path"] == "/v1/messages" and "harness" in body["system"]
        sent = request["headers"].get("x-api-key", "") + request["headers"].get("authorization", "")
        assert "sk-ant-test-secret" in sent and "anthropic-version" in request["headers"]
    assert proposal.usage["tokens_in"] == 100 and proposal.usage["tokens_out"] == 20 and proposal.usage["requests"] == 1


@pytest.mark.parametrize("provider, suffix", PROVIDERS)
def test_a_non_matching_edit_is_sent_back_with_the_exact_mismatch(provider, suffix, workdir):
    with FakeApi([Reply(MISSES), Reply(GOOD)]) as api:
        chosen = agent(provider, api, suffix, workdir)
        assert chosen.propose(workdir, context()).description == "Raise the rate"
    first, second = api.posts()
    retry = second["body"]["messages"]
    assert retry[-2] == {"role": "assistant", "content": MISSES}
    feedback = retry[-1]["content"]
    assert "not found in solve.py" in feedback and "lines 1-1" in feedback and "1| RATE = 0.1" in feedback
    assert (workdir / "solve.py").read_text().startswith("RATE = 0.3")


def test_edits_that_never_match_fail_the_proposal_and_change_nothing(workdir):
    with FakeApi([Reply(MISSES)] * 3) as api:
        chosen = agent("openai", api, "/v1", workdir, edit_retries=2)
        with pytest.raises(AgentError, match="could not be applied after 3 answers"):
            chosen.propose(workdir, context())
    assert len(api.posts()) == 3 and (workdir / "solve.py").read_text() == SOLVE_PY


@pytest.mark.parametrize("provider, suffix", PROVIDERS)
def test_a_rate_limit_is_retried(provider, suffix, workdir):
    with FakeApi([Reply(status=429), Reply(GOOD)]) as api:
        assert agent(provider, api, suffix, workdir).propose(workdir, context()).description == "Raise the rate"
    assert len(api.posts()) == 2


@pytest.mark.parametrize("provider, suffix", PROVIDERS)
def test_server_errors_are_retried_then_reported(provider, suffix, workdir):
    with FakeApi([Reply(status=500)] * 3) as api:
        with pytest.raises(AgentError, match="500"):
            agent(provider, api, suffix, workdir, max_retries=1).propose(workdir, context())
    assert len(api.posts()) == 2  # the first try and one retry
    assert (workdir / "solve.py").read_text() == SOLVE_PY


def test_a_slow_reply_times_out(workdir):
    with FakeApi([Reply(GOOD, delay=3.0)]) as api:
        with pytest.raises(AgentError, match="(?i)timeout|timed out"):
            agent("openai", api, "/v1", workdir, max_retries=0, timeout=0.5).propose(workdir, context())


@pytest.mark.parametrize("provider, suffix", PROVIDERS)
def test_malformed_json_is_an_agent_error(provider, suffix, workdir):
    with FakeApi([Reply(raw=b"{not json")] * 3) as api:
        with pytest.raises(AgentError):
            agent(provider, api, suffix, workdir, max_retries=0).propose(workdir, context())


def test_an_answer_without_edits_is_asked_again(workdir):
    with FakeApi([Reply("I would raise the rate."), Reply(GOOD)]) as api:
        assert agent("openai", api, "/v1", workdir).propose(workdir, context()).description == "Raise the rate"
    assert "no SEARCH/REPLACE block" in api.posts()[1]["body"]["messages"][-1]["content"]


def test_keys_are_checked_before_the_first_experiment(workdir, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AgentConfigError, match="set OPENAI_API_KEY"):
        ApiAgent("openai", "m", workdir)
    with FakeApi([]) as api:
        agent("openai", api, "/v1", workdir).preflight()  # a server that needs no key
        assert api.requests[-1]["path"] == "/v1/models/test-model"
    unreachable = ApiAgent("openai", "m", workdir, base_url="http://127.0.0.1:9/v1", max_retries=0, timeout=2)
    with pytest.raises(AgentConfigError, match="cannot reach the API"):
        unreachable.preflight()


# ---------------------------------------------------------------------------------------------- end to end


def score_task(tmp_path: Path, source: str = SOLVE_PY) -> Path:
    """A generic task through the real CLI: maximise the score solve.py prints."""
    task = tmp_path / "task"
    task.mkdir()
    (task / "solve.py").write_text(source)
    cli("init", str(task), "--command", "python solve.py", "--metric-regex", r"^score:\s*(\S+)", "--maximize",
        "--editable", "solve.py", cwd=tmp_path)
    return task


def test_the_openai_agent_drives_the_loop(tmp_path):
    task = score_task(tmp_path)
    outside = "Edit the settings\n\nautoresearch.toml\n```autoresearch.toml\n[train]\n```\n"
    replies = [Reply(GOOD), Reply(outside), Reply(MISSES), Reply(MISSES), Reply(MISSES)]
    with FakeApi(replies) as api:
        cli("run", "--agent", "openai:test-model", "--base-url", api.url + "/v1", "--tag", "api",
            "--max-experiments", "4", cwd=task)
    with Store.open(task) as store:
        history = store.experiments("api")
    assert [e.status for e in history] == [Status.KEEP, Status.KEEP, Status.REJECTED, Status.REJECTED]
    assert history[1].description == "Raise the rate" and history[1].agent == "openai:test-model"
    assert history[1].metrics["agent_tokens_in"] == 100 and history[1].metrics["agent_requests"] == 1
    assert "outside the editable files" in history[2].error
    assert "could not be applied" in history[3].error and history[3].metrics["agent_requests"] == 3
    log = subprocess.run(["git", "log", "--format=%s", "autoresearch/api"], cwd=task, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert log[0] == "Raise the rate"
    stored = json.dumps([e.metrics for e in history]) + (task / "results.tsv").read_text()
    assert "sk-" not in stored
    with Store.open(task) as store:  # what the agent was asked and answered, kept beside each record
        said = store.transcript(history[1].id)
        retried = store.transcript(history[3].id)
    assert said["prompt"].startswith("[system]") and "RATE = 0.1" in said["prompt"]
    assert said["answer"] == f"[assistant]\n{GOOD}"
    assert retried is None  # edits that never applied: a failed proposal has no answer to show


def test_prices_give_the_cost_and_the_cost_limit_stops_the_loop(tmp_path):
    task = score_task(tmp_path)
    toml = (task / "autoresearch.toml").read_text()
    toml = toml.replace("price_in_per_mtok = 0.0", "price_in_per_mtok = 1000.0")
    toml = toml.replace("price_out_per_mtok = 0.0", "price_out_per_mtok = 5000.0")
    (task / "autoresearch.toml").write_text(toml)
    width = "Wider\n\nsolve.py\n<<<<<<< SEARCH\nWIDTH = 4\n=======\nWIDTH = 6\n>>>>>>> REPLACE\n"
    with FakeApi([Reply(GOOD), Reply(width), Reply(GOOD)]) as api:
        done = cli("run", "--agent", "openai:test-model", "--base-url", api.url + "/v1", "--tag", "cost",
                   "--max-cost", "0.3", cwd=task)
    assert "reached the cost limit ($0.40 of $0.30)" in done.stdout
    with Store.open(task) as store:
        history = store.experiments("cost")
    assert len(history) == 3  # 100 tokens in at $1000/M + 20 out at $5000/M = $0.20 per proposal
    assert history[1].metrics["agent_cost_usd"] == pytest.approx(0.2)
    status = json.loads(cli("status", "--json", cwd=task).stdout)
    assert status["agent"]["cost_usd"] == pytest.approx(0.4) and status["agent"]["tokens_in"] == 200
    assert "agent $0.40, 240 tokens" in " ".join(cli("status", cwd=task).stdout.split())
    cli("report", cwd=task)
    assert "- **Agent spend:** $0.40, 200 tokens in, 40 out" in (task / "report.md").read_text()


def test_an_api_agent_drafts_ahead_and_its_draft_is_rebased(tmp_path):
    slow = "import time\n\n" + SOLVE_PY.replace("WIDTH = 4\n", "\n# width:\n\nWIDTH = 4\n") + "time.sleep(1.0)\n"
    task = score_task(tmp_path, slow)
    width = "Wider\n\nsolve.py\n<<<<<<< SEARCH\nWIDTH = 4\n=======\nWIDTH = 6\n>>>>>>> REPLACE\n"
    with FakeApi([Reply(GOOD), Reply(width)]) as api:
        done = cli("run", "--agent", "openai:test-model", "--base-url", api.url + "/v1", "--tag", "pipe",
                   "--max-experiments", "3", "--pipeline", cwd=task)
        prompts = [json.dumps(post["body"]) for post in api.posts()]
    assert "openai:test-model drafts the next proposal while this one trains" in done.stdout
    with Store.open(task) as store:
        history = store.experiments("pipe")
    assert [(e.status, e.description) for e in history] == [
        (Status.KEEP, "baseline"), (Status.KEEP, "Raise the rate"), (Status.KEEP, "Wider")]
    assert "# Still training" in prompts[0] and "Experiment #0 (baseline)" in prompts[0]
    assert "Experiment #1 (Raise the rate) is training now" in prompts[1]
    assert history[2].parent_commit == history[1].commit and history[2].metrics["rebased"] == 1
    assert history[2].metrics["agent_tokens_in"] == 100  # each draft's own usage, not the next one's
    with Store.open(task) as store:  # a drafted proposal keeps its own prompt and answer
        assert "Wider" in store.transcript(history[2].id)["answer"]
        assert "Raise the rate" in store.transcript(history[1].id)["answer"]
    assert float(history[2].metric) == pytest.approx(1.0)


def test_the_models_rationale_is_kept_with_its_change_and_shown_in_distill_md(tmp_path):
    task = score_task(tmp_path)
    reasoned = ("Raise the rate\n\nThe score peaks near RATE = 0.3, and 0.1 is far below it; raising it should\n"
                "gain about 0.04.\n\nsolve.py\n<<<<<<< SEARCH\nRATE = 0.1\n=======\nRATE = 0.3\n>>>>>>> REPLACE\n")
    with FakeApi([Reply(reasoned)]) as api:
        cli("run", "--agent", "openai:test-model", "--base-url", api.url + "/v1", "--tag", "why",
            "--max-experiments", "2", cwd=task)
    with Store.open(task) as store:
        kept = store.experiments("why")[1]
    assert kept.metrics["rationale"] == ("The score peaks near RATE = 0.3, and 0.1 is far below it; raising it "
                                         "should gain about 0.04.")
    assert "the agent's rationale: The score peaks near" in cli("show", "1", "--tag", "why", cwd=task).stdout
    cli("distill", "--tag", "why", cwd=task)
    assert "| 1 | Raise the rate | +0.040000 |" in (task / "distill.md").read_text()
    assert "The score peaks near RATE = 0.3" in (task / "distill.md").read_text()
