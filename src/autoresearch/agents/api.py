"""`openai:<model>` and `anthropic:<model>`: an LLM behind an API proposes edits as SEARCH/REPLACE blocks.

One proposal is one short conversation. The model gets the prompt (`prompt.build_prompt`), the current
text of the editable files and the answer format (`edits.py`). Its answer is parsed and applied exactly.
If a block does not match, the model is told precisely why (`EditError`) and asked again, at most
`edit_retries` times. After that the proposal fails, and the loop records it as rejected.

The official SDKs do the HTTP: `openai` (chat completions: OpenAI, or any compatible server through
`base_url`, such as vLLM, Ollama, llama.cpp or OpenRouter) and `anthropic` (the Messages API). Their own
retries with backoff cover rate limits, 5xx responses and timeouts (`max_retries`). Keys come from the
usual environment variables and are never written anywhere.
"""

from __future__ import annotations

import fnmatch
import os
import time
from pathlib import Path
from typing import Any

from autoresearch.agents import AgentConfigError, AgentError, Proposal, ProposalContext
from autoresearch.agents.base import Agent, rationale_in
from autoresearch.agents.edits import EditError, apply, parse
from autoresearch.agents.prompt import build_prompt

PROVIDERS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}
MAX_FILE_CHARS = 60_000  # an editable file longer than this is shown cut, and said to be

ANSWER_FORMAT = """\
# How to answer

First line: a one-line description of your change (it becomes the commit message).
Then the edits, each as a SEARCH/REPLACE block: the file's path alone on a line, then

<<<<<<< SEARCH
(lines copied exactly from the current file)
=======
(the lines that replace them)
>>>>>>> REPLACE

SEARCH must match the file exactly, once. Keep blocks small: a few lines around each change.
To replace a whole file, give its path on a line, then the complete new text in a ``` fenced block.
"""

SYSTEM = ("You are an ML research engineer working in a loop that a harness runs. You propose one change at "
          "a time, as exact edits; the harness trains, measures and decides.")


class ApiAgent(Agent):
    def __init__(self, provider: str, model: str, task_dir: Path, *, metric_name: str = "val_bpb",
                 maximize: bool = False, editable: list[str] | None = None, base_url: str | None = None,
                 max_retries: int = 4, edit_retries: int = 2, timeout: float = 600.0,
                 max_tokens: int = 8192) -> None:
        if provider not in PROVIDERS:
            raise AgentConfigError(f"unknown API provider {provider!r}: use openai:<model> or anthropic:<model>")
        if not model:
            raise AgentConfigError(f"{provider}: name the model, e.g. {provider}:"
                                   f"{'gpt-4.1' if provider == 'openai' else 'claude-sonnet-4-5'}")
        self.provider, self.model, self.name = provider, model, f"{provider}:{model}"
        self.task_dir, self.editable = Path(task_dir), list(editable or ["train.py"])
        self.metric_name, self.maximize = metric_name, maximize
        self.edit_retries, self.max_tokens = edit_retries, max_tokens
        self.spent: dict[str, float] = {}  # of the session now: tokens_in, tokens_out, seconds, requests
        self.messages: list[dict[str, str]] = []  # the session now: what was sent and answered
        self.rationale: str | None = None  # the session now: why the model expects its change to help
        self.client = _client(provider, base_url, max_retries, timeout)
        # The model thinks on someone else's machine, so the next proposal is drafted while an experiment
        # trains; not for a model served on this machine, which would take the accelerator from the training.
        self.pipelines_by_default = not is_local(base_url)

    def preflight(self) -> None:
        """Check the key and the server before the first experiment: AgentConfigError naming the fix if the
        key is refused or the server cannot be reached. A server without a model listing passes."""
        try:
            self.client.models.retrieve(self.model)
        except Exception as err:
            status = getattr(err, "status_code", None)
            if status in (401, 403):
                raise AgentConfigError(f"{self.name}: the server refused the key ({status}): check "
                                       f"{PROVIDERS[self.provider]}") from err
            if status is None:
                raise AgentConfigError(f"{self.name}: cannot reach the API ({_describe(err)}); check the network "
                                       "or --base-url") from err
            # 404 and the like: a local server that lists no models; the first proposal will tell

    # -- the Agent interface ----------------------------------------------------------------------

    def propose(self, workdir: Path, context: ProposalContext) -> Proposal:
        return self._counted(Path(workdir), context)

    def fix(self, workdir: Path, context: ProposalContext) -> Proposal:
        return self._counted(Path(workdir), context)

    def _counted(self, workdir: Path, context: ProposalContext) -> Proposal:
        """`_session` with what it cost: on the proposal, or on the error."""
        self.spent = {"tokens_in": 0, "tokens_out": 0, "requests": 0, "seconds": 0.0}
        self.messages: list[dict[str, str]] = []
        self.rationale = None
        try:
            description = self._session(workdir, context)
            return Proposal(description, usage=dict(self.spent), transcript=conversation(SYSTEM, self.messages),
                            rationale=self.rationale)
        except AgentError as err:
            err.usage = dict(self.spent)
            raise

    # -- one conversation -------------------------------------------------------------------------

    def _session(self, workdir: Path, context: ProposalContext) -> str:
        started = time.perf_counter()
        files = self._files(workdir, context.editable)
        messages = self.messages = [{"role": "user", "content": self._prompt(context, files)}]
        try:
            attempt = 0
            while True:  # one answer per turn, until the edits apply or the retries run out
                answer = self._complete(messages)
                try:
                    edits, prose = parse(answer)
                    if not edits:
                        raise EditError("the answer has no SEARCH/REPLACE block and no whole file")
                    changed = apply(files, edits)
                    for path in changed:
                        _check_path(path)
                except EditError as err:
                    if attempt == self.edit_retries:
                        raise AgentError(f"the model's edits could not be applied after {attempt + 1} answers: "
                                         f"{err}") from err
                    messages += [{"role": "assistant", "content": answer},
                                 {"role": "user", "content": f"Your edits were not applied: {err}\n\nAnswer "
                                  "again in full: the description line, then corrected blocks."}]
                    attempt += 1
                    continue
                messages.append({"role": "assistant", "content": answer})
                for path, text in changed.items():
                    target = workdir / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(text)
                first = next((line.strip() for line in prose.splitlines() if line.strip()), "")
                self.rationale = rationale_in(prose, skip=tuple(changed))
                return first[:300] or f"change by {self.name}"
        finally:
            self.spent["seconds"] = time.perf_counter() - started

    def _prompt(self, context: ProposalContext, files: dict[str, str | None]) -> str:
        shown = []
        for path, text in files.items():
            if text is None:
                continue
            body = text if len(text) <= MAX_FILE_CHARS else text[:MAX_FILE_CHARS] + "\n... (file cut here)\n"
            shown += [f"{path}", "```", body.rstrip("\n"), "```", ""]
        return "\n".join([build_prompt(context, metric_name=self.metric_name, maximize=self.maximize),
                          "# The editable files as they are now", "", *shown, ANSWER_FORMAT])

    def _files(self, workdir: Path, editable: list[str]) -> dict[str, str | None]:
        """The editable files' current text: concrete paths (None if missing), and the files a glob matches."""
        files: dict[str, str | None] = {}
        for entry in editable:
            if any(ch in entry for ch in "*?["):
                for path in sorted(workdir.rglob("*")):
                    rel = path.relative_to(workdir).as_posix()
                    if path.is_file() and not rel.startswith((".git", ".autoresearch")) and fnmatch.fnmatch(rel, entry):
                        files[rel] = path.read_text(errors="replace")
            else:
                path = workdir / entry
                files[entry] = path.read_text(errors="replace") if path.is_file() else None
        return files

    def _complete(self, messages: list[dict[str, str]]) -> str:
        """One request; the model's text. SDK errors (after the SDK's own retries) become AgentError."""
        self.spent["requests"] += 1
        try:
            if self.provider == "openai":
                response = self.client.chat.completions.create(
                    model=self.model, max_tokens=self.max_tokens,
                    messages=[{"role": "system", "content": SYSTEM}, *messages])
                if response.usage is not None:
                    self.spent["tokens_in"] += response.usage.prompt_tokens or 0
                    self.spent["tokens_out"] += response.usage.completion_tokens or 0
                if not response.choices:
                    raise AgentError(f"{self.name} answered with no choices")
                return response.choices[0].message.content or ""
            response = self.client.messages.create(model=self.model, max_tokens=self.max_tokens, system=SYSTEM,
                                                   messages=messages)
            self.spent["tokens_in"] += response.usage.input_tokens or 0
            self.spent["tokens_out"] += response.usage.output_tokens or 0
            return "".join(block.text for block in response.content if getattr(block, "type", "") == "text")
        except AgentError:
            raise
        except Exception as err:  # the SDKs' APIError family, and their parsing errors
            raise AgentError(f"{self.name}: {_describe(err)}") from err


def conversation(system: str, messages: list[dict[str, str]]) -> dict[str, str]:
    """A conversation as the transcript people read: the prompt (the system text and the first request), and
    the answer (every turn after it: the model's answers, and what it was told when its edits did not apply)."""
    if not messages:
        return {}
    turns = [f"[{m['role']}]\n{m['content']}" for m in messages[1:]]
    return {"prompt": f"[system]\n{system}\n\n[user]\n{messages[0]['content']}", "answer": "\n\n".join(turns)}


def _client(provider: str, base_url: str | None, max_retries: int, timeout: float) -> Any:
    key_name = PROVIDERS[provider]
    key = os.environ.get(key_name)
    if not key and base_url is None:
        raise AgentConfigError(f"{provider}: set {key_name} (your own key), or give --base-url for a local "
                               "server that needs none")
    try:
        sdk = __import__(provider)
    except ImportError:
        raise AgentConfigError(f"the {provider} agent needs the official SDK: pip install "
                               f"'autoresearch[{provider}]' (or pip install {provider})") from None
    cls = sdk.OpenAI if provider == "openai" else sdk.Anthropic
    return cls(api_key=key or "not-needed", base_url=base_url, max_retries=max_retries, timeout=timeout)


def is_local(base_url: str | None) -> bool:
    """Whether `base_url` points at this machine (a model served here: vLLM, Ollama, llama.cpp)."""
    if not base_url:
        return False
    from urllib.parse import urlsplit

    host = (urlsplit(base_url if "//" in base_url else "//" + base_url).hostname or "").lower()
    return host in ("localhost", "0.0.0.0", "::1", "::") or host.startswith("127.") or host.endswith(".localhost")


def _check_path(path: str) -> None:
    parts = Path(path).parts
    if Path(path).is_absolute() or ".." in parts or not parts:
        raise EditError(f"{path}: paths must be relative to the task folder, without '..'")


def _describe(err: Exception) -> str:
    status = getattr(err, "status_code", None)
    name = type(err).__name__
    if status in (401, 403):
        return f"{name} ({status}): the key was refused; check the provider's key variable"
    message = str(err).strip().splitlines()[0] if str(err).strip() else name
    return f"{name}{f' ({status})' if status else ''}: {message[:300]}"


def make_openai(arg: str, task) -> ApiAgent:
    return _make("openai", arg, task)


def make_anthropic(arg: str, task) -> ApiAgent:
    return _make("anthropic", arg, task)


def _make(provider: str, model: str, task) -> ApiAgent:
    """`openai:<model>`, `anthropic:<model>` (registry.py)."""
    from autoresearch.config import ConfigError, load_config

    try:
        config = load_config(Path(task.task_dir))
    except ConfigError as err:
        raise AgentConfigError(str(err)) from err
    return ApiAgent(provider, model, Path(task.task_dir), metric_name=config.metric.name,
                    maximize=config.metric.maximize, editable=list(config.loop.editable), base_url=task.base_url)
