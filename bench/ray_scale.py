"""Experiments per hour on a local Ray cluster with 1, 2 and 4 workers, against the local runner, and the
time Ray adds to each experiment.

Usage: python bench/ray_scale.py [--workers 1,2,4] [--experiments 12] [--seconds 2] [--lone 1,2,4]

The task is one of its own command whose "training" is `time.sleep(--seconds)`: it needs no CPU, so that
on a small machine the figures measure the orchestration (the loop, the agent, git, the store, Ray's
scheduling and transfers, the node's copy of the task and its sandbox) and not the contention of many
trainings for few cores. The keep rule is strict: one run per experiment.

- local: one loop, `--experiments` replay proposals, with the local runner.
- ray W: a cluster of a head (no CPUs) and W worker nodes with one "runs" slot each; `--parallel W` loops,
  each `--experiments` proposals, every run a Ray task.

- lone loop (`--lone 1,2,4`): one loop whose keep rule is confirm and whose runs are noisy (the score
  moves with the seed, and the proposals are small gains), so the baseline takes 3 seeds and candidates
  are confirmed; on a cluster of max(--lone) workers, with `--runs-at-once` each of the given numbers.
  Prints its wall seconds, runs, experiments per hour, and whether its decisions equal those of
  `--runs-at-once 1`.

Prints, for each: experiments, wall seconds, experiments per hour, the seconds one experiment takes
beyond its training, and the accelerator idle fraction (the share of the workers' time in which no run
was training: 1 - training seconds / (workers x wall)), and the time runs held a worker (busy). The Ray overhead per experiment is the ray 1
figure minus the local one.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
NOISY = ("import os, time\n\nRATE = {rate}\nSEED = int(os.environ['AUTORESEARCH_SEED'])\n\ntime.sleep({seconds})\n"
         "print(f'score: {{1.0 - (RATE - 0.3) ** 2 + 0.001 * ((SEED * 7919) % 5 - 2):.6f}}')\n")
SOLVE = "import time\n\nRATE = {rate}\n\ntime.sleep({seconds})\nprint(f'score: {{1.0 - (RATE - 0.3) ** 2:.6f}}')\n"


def autoresearch(*args: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run([sys.executable, "-m", "autoresearch", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"autoresearch {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def make_task(parent: Path, seconds: float, experiments: int, executor: str, *, noisy: bool = False) -> Path:
    """The task, and its replay proposals beside it: strict rule and exact scores; or (`noisy`) the confirm
    rule, scores that move with the seed, and proposals of small gains, which get confirmed."""
    template, first = (NOISY, 0.1) if noisy else (SOLVE, 0.0)
    task = parent / "task"
    task.mkdir(parents=True)
    (task / "solve.py").write_text(template.format(rate=first, seconds=seconds))
    autoresearch("init", str(task), "--command", "python solve.py", "--metric-regex", r"^score:\s*(\S+)",
                 "--metric-name", "score", "--maximize", "--editable", "solve.py", cwd=parent)
    toml = (task / "autoresearch.toml").read_text()
    toml = toml if noisy else toml.replace('rule = "confirm"', 'rule = "strict"')
    toml = toml.replace('kind = "local"', f'kind = "{executor}"').replace("gpus = 1.0", "gpus = 0.0")
    (task / "autoresearch.toml").write_text(toml.replace("resources = {}", "resources = { runs = 1 }"))
    for args in (["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "task"]):
        subprocess.run(["git", *args], cwd=task, check=True, capture_output=True)
    step = 0.004 if noisy else 0.01
    proposals = [{"description": f"rate {i}", "files": {"solve.py": template.format(rate=first + step * (i + 1),
                                                                                     seconds=seconds)}}
                 for i in range(experiments)]
    (parent / "proposals.json").write_text(json.dumps(proposals))
    return task


def measure(task: Path, loops: int, env: dict) -> dict:
    proposals = task.parent / "proposals.json"
    args = ["run", "--agent", f"replay:{proposals}", "--tag", "b"] + (["--parallel", str(loops)] if loops > 1 else [])
    start = time.perf_counter()
    autoresearch(*args, cwd=task, env=env)
    wall = time.perf_counter() - start
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from autoresearch.store import Store

    with Store.open(task) as store:
        tags = [t for t in store.tags() if t == "b" or t.startswith("b-")]
        done = [e for t in tags for e in store.experiments(t)]
    busy = sum(e.total_seconds or 0.0 for e in done)  # the time runs held a worker
    return {"experiments": len(done), "wall": wall, "busy": busy}


def lone(root: Path, widths: list[int], seconds: float, experiments: int, env: dict) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from autoresearch.store import Store

    address = start_cluster(root / "cluster-lone", max(widths))
    rows, first = [], None
    try:
        for width in widths:
            task = make_task(root / f"lone-{width}", seconds, experiments, "ray", noisy=True)
            proposals = task.parent / "proposals.json"
            start = time.perf_counter()
            autoresearch("run", "--agent", f"replay:{proposals}", "--tag", "b", "--runs-at-once", str(width),
                         cwd=task, env={**env, "RAY_ADDRESS": address})
            wall = time.perf_counter() - start
            with Store.open(task) as store:
                done = store.experiments("b")
                decisions = [(e.status.value, e.metric, tuple(r.seed for r in store.runs(e))) for e in done]
                runs = sum(len(store.runs(e)) for e in done)
            first = first or decisions
            rows.append((width, len(done), runs, wall, decisions == first))
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True)
    print(f"\nlone loop, confirm rule, {max(widths)} workers, {seconds:g} s runs")
    print(f"{'runs at once':>12} {'exps':>5} {'runs':>5} {'wall s':>8} {'exp/hour':>9} {'same decisions':>15}")
    for width, exps, runs, wall, same in rows:
        print(f"{width:>12} {exps:>5} {runs:>5} {wall:>8.1f} {3600 * exps / wall:>9.0f} {str(same):>15}")


def start_cluster(root: Path, workers: int) -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    common = ["--node-ip-address", "127.0.0.1", "--disable-usage-stats"]
    subprocess.run([RAY, "start", "--head", "--port", str(port), "--num-cpus", "0", "--include-dashboard", "false",
                    *common], check=True, capture_output=True, env={**env, "AUTORESEARCH_CACHE": str(root / "head")})
    for i in range(workers):
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--resources",
                        '{"runs": 1}', *common], check=True, capture_output=True,
                       env={**env, "AUTORESEARCH_CACHE": str(root / f"node-{i}")})
    return f"127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--experiments", type=int, default=12, help="proposals per loop")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of 'training' per run")
    parser.add_argument("--lone", default="", help="runs at once of one loop to compare, e.g. 1,2,4 (and then "
                                                   "only that)")
    args = parser.parse_args()
    if args.lone:
        with tempfile.TemporaryDirectory() as tmp:
            lone(Path(tmp), [int(w) for w in args.lone.split(",")], args.seconds, args.experiments,
                 {"AUTORESEARCH_CACHE": str(Path(tmp) / "driver-cache")})
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = {"AUTORESEARCH_CACHE": str(root / "driver-cache")}
        local = measure(make_task(root / "local", args.seconds, args.experiments, "local"), 1, env)
        rows.append(("local", 1, local))
        for workers in (int(w) for w in args.workers.split(",")):
            address = start_cluster(root / f"cluster-{workers}", workers)
            try:
                task = make_task(root / f"ray-{workers}", args.seconds, args.experiments, "ray")
                rows.append((f"ray {workers}", workers, measure(task, workers, {**env, "RAY_ADDRESS": address})))
            finally:
                subprocess.run([RAY, "stop", "--force"], capture_output=True)
    print(f"{'runner':<8} {'exps':>5} {'wall s':>8} {'exp/hour':>9} {'s/exp beyond training':>22} {'idle':>6} "
          f"{'busy s':>7}")
    for name, workers, r in rows:
        per_loop = r["experiments"] / workers
        beyond = r["wall"] / per_loop - args.seconds
        idle = 1 - args.seconds * r["experiments"] / (workers * r["wall"])
        print(f"{name:<8} {r['experiments']:>5} {r['wall']:>8.1f} {3600 * r['experiments'] / r['wall']:>9.0f} "
              f"{beyond:>22.2f} {idle:>6.1%} {r['busy']:>7.1f}")
    base = next(r for name, _, r in rows if name == "local")
    one = next((r for name, _, r in rows if name == "ray 1"), None)
    if one is not None:
        extra = (one["wall"] - base["wall"]) / base["experiments"]
        print(f"Ray adds {extra:.2f} s per experiment on top of the local runner (one loop, one worker)")


if __name__ == "__main__":
    main()
