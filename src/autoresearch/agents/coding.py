"""The coding agents people already use, run non-interactively in the worktree: `claude` (Claude Code),
`codex` and `aider`, each optionally with a model (`claude:<model>`). See docs/agents/.

None of them gets a shell tool or runs the experiment: the harness does. Each uses the user's own login
or key. What each one spends (tokens, dollars, seconds) is read from its own output where it reports it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from autoresearch.agents import AgentConfigError, AgentError
from autoresearch.agents.command import SessionAgent, described_in, task_settings

# Tools Claude Code may use: reading and editing files. No Bash: the harness trains and measures.
CLAUDE_TOOLS = "Read,Edit,Write,Glob,Grep"

INSTALL = {
    "claude": "install Claude Code (npm install -g @anthropic-ai/claude-code) and log in with `claude`",
    "codex": "install Codex (npm install -g @openai/codex) and log in with `codex login`",
    "aider": "install aider (pip install aider-chat) and set your model's key",
}


class CodingAgent(SessionAgent):
    executable = ""

    def __init__(self, task_dir: Path, model: str = "", **kwargs) -> None:
        super().__init__(task_dir, **kwargs)
        self.model = model
        self.name = f"{self.executable}:{model}" if model else self.executable
        self.label = self.executable

    def preflight(self) -> None:
        if shutil.which(self.executable) is None:
            raise AgentConfigError(f"{self.executable} is not on PATH: {INSTALL[self.executable]}")

    def _model(self) -> list[str]:
        return ["--model", self.model] if self.model else []


class ClaudeAgent(CodingAgent):
    """`claude -p PROMPT --output-format json`, with file tools only and edits accepted."""

    executable = "claude"

    def argv(self, prompt_file: Path, workdir: Path) -> list[str]:
        return ["claude", "-p", prompt_file.read_text(), "--output-format", "json", "--permission-mode",
                "acceptEdits", "--allowedTools", CLAUDE_TOOLS, *self._model()]

    def read_result(self, stdout: str) -> tuple[str | None, dict[str, float]]:
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return described_in(stdout), {}
        if not isinstance(result, dict):
            return described_in(stdout), {}
        if result.get("is_error"):
            raise AgentError(f"claude reported an error: {str(result.get('result', ''))[:300]}")
        usage = result.get("usage") or {}
        spent = {"tokens_in": float(usage.get("input_tokens", 0) + usage.get("cache_read_input_tokens", 0)
                                    + usage.get("cache_creation_input_tokens", 0)),
                 "tokens_out": float(usage.get("output_tokens", 0))}
        if isinstance(result.get("total_cost_usd"), (int, float)):
            spent["cost_usd"] = float(result["total_cost_usd"])
        return described_in(str(result.get("result", ""))), spent

    def final_message(self, stdout: str) -> str:
        try:
            result = json.loads(stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return stdout
        return str(result.get("result", "")) if isinstance(result, dict) else stdout


class CodexAgent(CodingAgent):
    """`codex exec` in a workspace-write sandbox, stdin closed, its last message kept for the description."""

    executable = "codex"

    def argv(self, prompt_file: Path, workdir: Path) -> list[str]:
        self.last_message = prompt_file.with_name("codex-last-message.txt")
        self.last_message.unlink(missing_ok=True)
        return ["codex", "exec", "--sandbox", "workspace-write", "--skip-git-repo-check", "--json",
                "--output-last-message", str(self.last_message), *self._model(), prompt_file.read_text()]

    def read_result(self, stdout: str) -> tuple[str | None, dict[str, float]]:
        spent = {"tokens_in": 0.0, "tokens_out": 0.0}
        for line in stdout.splitlines():  # JSONL events; token counts ride on the turn events
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            usage = event.get("usage") if isinstance(event, dict) else None
            if isinstance(usage, dict):
                spent["tokens_in"] += float(usage.get("input_tokens", 0))
                spent["tokens_out"] += float(usage.get("output_tokens", 0))
        last = self.last_message.read_text(errors="replace") if self.last_message.exists() else ""
        return described_in(last), spent

    def final_message(self, stdout: str) -> str:
        return self.last_message.read_text(errors="replace") if self.last_message.exists() else ""


class AiderAgent(CodingAgent):
    """`aider --message-file PROMPT --yes-always --no-auto-commits --no-git` on the editable files."""

    executable = "aider"

    def argv(self, prompt_file: Path, workdir: Path) -> list[str]:
        files = [e for e in self.editable if not any(ch in e for ch in "*?[") and (workdir / e).is_file()]
        return ["aider", "--message-file", str(prompt_file), "--yes-always", "--no-auto-commits", "--no-git",
                "--no-pretty", "--no-stream", *self._model(), *files]


AGENTS = {"claude": ClaudeAgent, "codex": CodexAgent, "aider": AiderAgent}


def make_claude(arg: str, task) -> ClaudeAgent:
    return ClaudeAgent(task.task_dir, arg, **task_settings(task.task_dir))


def make_codex(arg: str, task) -> CodexAgent:
    return CodexAgent(task.task_dir, arg, **task_settings(task.task_dir))


def make_aider(arg: str, task) -> AiderAgent:
    return AiderAgent(task.task_dir, arg, **task_settings(task.task_dir))
