"""`cmd:<command>`: any coding agent run as a shell command in the harness's worktree, once per proposal.

The command runs with the worktree as its folder. `{prompt_file}` and `{workdir}` in it are replaced by
the (shell-quoted) paths of the prompt (`prompt.build_prompt`) and of the worktree; the environment also
has `AUTORESEARCH_PROMPT_FILE` and `AUTORESEARCH_DESCRIPTION_FILE`. The description of the change is the
first line of that file if the command wrote it, else the first non-empty line of its standard output.
It can also fix crashes: the prompt then carries the crash.

The command is the user's own (`claude -p ...`, `codex exec ...`, `aider ...`, a script), so it runs
through `/bin/sh` with the user's environment. It is not candidate code, and the harness still checks,
commits, runs and judges whatever it leaves behind. Where the bubblewrap box works, it runs in a box that
hides the harness's records of the task and the data (`bwrap.agent_argv`): the hidden test split's
figures are never within its reach. `[agent] box = false` turns that off.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

from autoresearch.agents import AgentConfigError, AgentError, Proposal, ProposalContext
from autoresearch.agents.base import Agent, rationale_in
from autoresearch.agents.prompt import build_prompt
from autoresearch.config import cache_root
from autoresearch.run import bwrap, sandbox

DEFAULT_TIMEOUT_S = 1800.0  # an agent session longer than this is stopped and counted as a failure


class SessionAgent(Agent):
    """An agent that is a program run once per proposal in the worktree: the shared mechanics (prompt file,
    environment, time limit, process-group kill, exit status, description). Subclasses give the command
    line (`argv`) and read what the program said (`read_result`)."""

    name = "session"
    label = "the agent command"
    # A coding agent may run code on this machine (tests, snippets), which would compete with the training
    # for the accelerator: drafting ahead is for the user to turn on (`--pipeline`).
    pipelines_by_default = False

    def __init__(self, task_dir: Path, *, metric_name: str = "val_bpb", maximize: bool = False,
                 editable: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT_S, box: bool = True) -> None:
        self.timeout, self.metric_name, self.maximize = timeout, metric_name, maximize
        self.editable = list(editable or ["train.py"])
        self.task_dir = Path(task_dir).resolve()
        self.home = self.task_dir / ".autoresearch" / "agent"
        self.box = box  # in the agent's box, where bubblewrap works (`bwrap.agent_argv`)
        self._process: subprocess.Popen | None = None  # the session running now

    def cancel(self) -> None:
        """End the session that is running now (from another thread), process tree included."""
        process = self._process
        if process is not None:
            _kill_tree(process)

    def argv(self, prompt_file: Path, workdir: Path) -> list[str]:
        raise NotImplementedError

    def read_result(self, stdout: str) -> tuple[str | None, dict[str, float]]:
        """The description the program gave (None: none) and what it reported spending."""
        return described_in(stdout), {}

    def final_message(self, stdout: str) -> str:
        """What the session said at its end, where its description and rationale are (for a plain command:
        all it printed)."""
        return stdout

    def propose(self, workdir: Path, context: ProposalContext) -> Proposal:
        return self._session(Path(workdir), context)

    def fix(self, workdir: Path, context: ProposalContext) -> Proposal:
        return self._session(Path(workdir), context)

    def _session(self, workdir: Path, context: ProposalContext) -> Proposal:
        spent: dict[str, float] = {}  # what it reported spending, and its seconds
        self._rationale: str | None = None
        try:
            description = self._run(workdir, context, spent)
            return Proposal(description, usage=spent, transcript=self._transcript(), rationale=self._rationale)
        except AgentError as err:
            err.usage = spent
            raise

    def _transcript(self) -> dict[str, str]:
        """The session as people read it: the prompt file it was given, and what it printed."""
        said = {}
        for key, name in (("prompt", "prompt.md"), ("answer", "session.out")):
            try:
                said[key] = (self.home / name).read_text(errors="replace")
            except OSError:
                pass
        return said

    def _run(self, workdir: Path, context: ProposalContext, spent: dict[str, float]) -> str:
        started = time.perf_counter()
        self.home.mkdir(parents=True, exist_ok=True)
        prompt_file, description_file = self.home / "prompt.md", self.home / "description.txt"
        prompt_file.write_text(build_prompt(context, metric_name=self.metric_name, maximize=self.maximize))
        description_file.unlink(missing_ok=True)
        env = {**os.environ, "AUTORESEARCH_PROMPT_FILE": str(prompt_file),
               "AUTORESEARCH_DESCRIPTION_FILE": str(description_file)}
        stdout_path, stderr_path = self.home / "session.out", self.home / "session.err"
        try:
            with open(stdout_path, "w") as out, open(stderr_path, "w") as errors:
                proc = subprocess.Popen(self._boxed(self.argv(prompt_file, workdir.resolve()), workdir), cwd=workdir,
                                        env=env, stdout=out,
                                        stderr=errors, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as err:
            raise AgentError(f"could not start {self.label}: {err}") from err
        self._process = proc
        try:
            code = proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise AgentError(f"{self.label} ran past {self.timeout:.0f} s and was stopped") from None
        finally:
            _kill_tree(proc)  # whatever the session left running
            proc.wait()
            self._process = None
            spent["seconds"] = time.perf_counter() - started
        output = stdout_path.read_text(errors="replace")
        if code != 0:
            said = (output + "\n" + stderr_path.read_text(errors="replace")).strip()
            tail = "\n".join(said.splitlines()[-15:])
            raise AgentError(f"{self.label} exited with code {code}: {tail}")
        description, reported = self.read_result(output)
        spent.update(reported)
        written = description_file.read_text(errors="replace") if description_file.exists() else ""
        described = described_in(written) or description
        self._rationale = rationale_in(written) or rationale_in(self.final_message(output))
        return (described or f"change by {self.name}")[:300]


    @property
    def unboxed(self) -> bool:
        """Whether its sessions run outside the agent's box (`[agent] box = false`, or no bubblewrap here)."""
        return not self.box or sandbox.isolation() != "bwrap"

    def _boxed(self, argv: list[str], workdir: Path) -> list[str]:
        if self.unboxed:
            return argv
        return bwrap.agent_argv(workdir, self.task_dir, shown=(self.home,), hidden=(cache_root(),)) + argv


class CommandAgent(SessionAgent):
    """`cmd:<command>`: the user's command line, run by /bin/sh."""

    name = "cmd"

    def __init__(self, command: str, task_dir: Path, **kwargs) -> None:
        if not command.strip():
            raise AgentConfigError("cmd: give the command to run, e.g. --agent 'cmd:my-agent --prompt {prompt_file}'")
        super().__init__(task_dir, **kwargs)
        self.command = command

    def argv(self, prompt_file: Path, workdir: Path) -> list[str]:
        command = (self.command.replace("{prompt_file}", shlex.quote(str(prompt_file)))
                   .replace("{workdir}", shlex.quote(str(workdir))))
        return ["/bin/sh", "-c", command]


def _kill_tree(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def described_in(text: str) -> str | None:
    """A `Description: ...` line if there is one, else the first non-empty line; None for no text."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.lower().startswith("description:") and line[12:].strip():
            return line[12:].strip()
    return lines[0] if lines else None


def task_settings(task_dir: Path) -> dict:
    """What a session agent takes from the task's settings: the metric, the editable files, the box."""
    from autoresearch.config import ConfigError, load_config

    try:
        config = load_config(Path(task_dir))
    except ConfigError as err:
        raise AgentConfigError(str(err)) from err
    return {"metric_name": config.metric.name, "maximize": config.metric.maximize,
            "editable": list(config.loop.editable), "box": config.agent.box}


def make(arg: str, task) -> CommandAgent:
    """`cmd:<command>` (registry.py)."""
    return CommandAgent(arg, task.task_dir, **task_settings(task.task_dir))
