"""A night of experiments in minutes: the real loop, unattended, for many experiments, killed now and then.

Usage: python bench/night.py [--experiments 150] [--kills 5] [--task DIR] [--seed 0]
                              [--agent tune [--agent tune:random ...]] [--turns fixed|adaptive]

The task is a fast one of its own (a script whose loss is a smooth function of four constants plus seeded
noise, so each run takes a fraction of a second): what is measured is the loop, not training. The `tune`
agent proposes (or the agents given, taking `--turns`); the confirm rule decides. A supervisor runs `autoresearch run` and, `--kills` times at random
moments, kills its whole process group with SIGKILL and starts it again with `--resume`, as a cluster's
scheduler or a power cut would.

It prints:
- whether anything was lost: experiments numbered without gaps, none left running, every kept commit on the
  branch, the branch head the last kept commit, one results.tsv row per experiment;
- the loop's own cost per experiment (the time between one experiment's end and the next one's start:
  agent, git, store, the tables) over the first and the last experiments, so a loop that slows down as its
  history grows shows;
- the loop process's memory (peak resident set) and open files, sampled, first and last incarnation;
- what stays on disk: the store, the git objects, the logs, per experiment;
- with several agents, each one's proposals and keeps; with adaptive turns, whether every turn, replayed
  from the store, went where the rule says it should have (kills and resumes included).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from autoresearch.agents.rotation import adaptive_turn, turn_record
from autoresearch.config import TURNS
from autoresearch.store import Status, Store

LOSS_PY = '''import os, random
LR = 0.01
WD = 0.5
WARMUP_FRAC = 0.3
DEPTH = 4
seed = int(os.environ["AUTORESEARCH_SEED"])
noise = random.Random(seed * 7919 + 11).gauss(0.0, 0.005)
loss = 1.0 + (LR - 0.03) ** 2 * 100 + (WD - 0.2) ** 2 + (WARMUP_FRAC - 0.1) ** 2 + 0.01 * (DEPTH - 6) ** 2
print(f"loss: {loss + noise:.6f}")
'''


def git(task: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=task, capture_output=True, text=True, check=True).stdout.strip()


def make_task(root: Path) -> Path:
    task = root / "night"
    task.mkdir(parents=True)
    (task / "loss.py").write_text(LOSS_PY)
    subprocess.run([sys.executable, "-m", "autoresearch", "init", str(task), "--command", "python loss.py",
                    "--metric-regex", r"^loss:\s*(\S+)", "--metric-name", "loss", "--editable", "loss.py"],
                   cwd=root, check=True, capture_output=True)
    git(task, "add", "-A")
    git(task, "-c", "user.name=night", "-c", "user.email=night@localhost", "commit", "-q", "--allow-empty", "-m", "task")
    return task


class Sampler:
    """Peak resident memory (kB) and open file descriptors of the loop process, read from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid, self.rss_kb, self.fds, self._stop = pid, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                status = Path(f"/proc/{self.pid}/status").read_text()
                rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
                self.rss_kb = max(self.rss_kb, rss)
                self.fds = max(self.fds, len(os.listdir(f"/proc/{self.pid}/fd")))
            except (OSError, StopIteration, ValueError):
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def check(task: Path, tag: str, want: int) -> list[str]:
    """What was lost or left inconsistent; [] when nothing was."""
    problems = []
    with Store.open(task) as store:
        history = store.experiments(tag)
    if [e.seq for e in history] != list(range(len(history))):
        problems.append("experiment numbers have gaps")
    if len(history) != want:
        problems.append(f"{len(history)} experiments, not {want}")
    if any(e.status is Status.RUNNING for e in history):
        problems.append("an experiment is left running")
    kept = [e for e in history if e.status is Status.KEEP]
    on_branch = set(git(task, "rev-list", f"autoresearch/{tag}").split())
    lost = [e.seq for e in kept if e.commit not in on_branch]
    if lost:
        problems.append(f"kept experiments missing from the branch: {lost}")
    if kept and git(task, "rev-parse", f"autoresearch/{tag}") != kept[-1].commit:
        problems.append("the branch head is not the last kept commit")
    rows = (task / "results.tsv").read_text().splitlines()[1:]
    if len(rows) != len(history):
        problems.append(f"results.tsv has {len(rows)} rows for {len(history)} experiments")
    return problems


def turns_astray(history: list, shares: dict[str, int]) -> list[str]:
    """Under adaptive turns: the proposals whose agent is not the one `adaptive_turn` gives for the record
    before them (a resume that chose otherwise than the uninterrupted run would have)."""
    record = turn_record(history[1:])
    astray = [e.seq for i, e in enumerate(history[1:]) if adaptive_turn(shares, record[:i]) != e.agent]
    return [f"turns that went elsewhere than the rule says: {astray}"] if astray else []


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=150)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--task", type=Path, help="Folder to work in (default: a temporary one).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agent", action="append", help="An agent (again for agents taking turns; default: tune).")
    parser.add_argument("--turns", default="fixed", choices=TURNS)
    args = parser.parse_args()
    agents = args.agent or ["tune"]
    root = args.task or Path(tempfile.mkdtemp(prefix="autoresearch-night-"))
    task = make_task(root)
    tag, rng = "night", random.Random(args.seed)
    base = [sys.executable, "-m", "autoresearch", "run", *[w for a in agents for w in ("--agent", a)], "--turns",
            args.turns, "--tag", tag, "--max-experiments", str(args.experiments)]
    started, kills, incarnations = time.time(), 0, []
    while True:
        resume = (task / ".autoresearch" / "store.sqlite").exists() and git(task, "branch", "--list", f"autoresearch/{tag}")
        proc = subprocess.Popen(base + (["--resume"] if resume else []), cwd=task, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        sampler = Sampler(proc.pid)
        deadline = time.time() + rng.uniform(2.0, 15.0) if kills < args.kills else None
        while proc.poll() is None and (deadline is None or time.time() < deadline):
            time.sleep(0.1)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            kills += 1
        _, stderr = proc.communicate()
        sampler.stop()
        incarnations.append((sampler.rss_kb, sampler.fds))
        if proc.returncode == 0:
            break
        if proc.returncode != -signal.SIGKILL:
            sys.exit(f"the loop failed ({proc.returncode}):\n{stderr}")
    wall = time.time() - started

    with Store.open(task) as store:
        history = store.experiments(tag)
    problems = check(task, tag, args.experiments)
    shares = {name: agents.count(name) for name in dict.fromkeys(agents)}
    if args.turns == "adaptive" and len(shares) > 1:
        problems += turns_astray(history, shares)
    ends = [(e.started_at, e.ended_at) for e in history if e.ended_at is not None]
    gaps = [b[0] - a[1] for a, b in zip(ends, ends[1:], strict=False) if b[0] >= a[1]]  # the loop's time between experiments
    head, tail = gaps[:20], gaps[-20:]
    counts = {s.value: sum(1 for e in history if e.status is s) for s in Status}
    print(f"{len(history)} experiments in {wall / 60:.1f} min ({len(history) / wall * 3600:.0f} per hour), "
          f"{kills} kill -9s survived, {len(incarnations)} loop processes")
    print("statuses: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    print("lost or inconsistent: " + ("nothing" if not problems else "; ".join(problems)))
    print(f"loop time between experiments (median): first 20 {statistics.median(head):.2f} s, "
          f"last 20 {statistics.median(tail):.2f} s")
    (first_rss, first_fds), (last_rss, last_fds) = incarnations[0], incarnations[-1]
    print(f"loop process: peak memory {first_rss / 1024:.0f} MB (first process) / {last_rss / 1024:.0f} MB "
          f"(last, {len(history)} experiments in its store); open files at most {first_fds} / {last_fds}")
    store_b = sum(p.stat().st_size for p in (task / ".autoresearch").glob("store.sqlite*"))
    git_b, logs_b = du(task / ".git"), du(task / ".autoresearch" / "logs")
    n = max(1, len(history))
    print(f"on disk: store {store_b / 1e6:.1f} MB, git {git_b / 1e6:.1f} MB, logs {logs_b / 1e6:.1f} MB "
          f"({(store_b + git_b + logs_b) / n / 1e3:.0f} kB per experiment)")
    if len(shares) > 1:
        print("by agent: " + ", ".join(f"{name} {sum(e.agent == name for e in history)} proposals, "
                                       f"{sum(e.agent == name and e.status is Status.KEEP for e in history)} kept"
                                       for name in shares))
    print(f"task folder: {task}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
