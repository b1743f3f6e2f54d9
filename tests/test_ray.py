"""`--executor ray` on a real Ray cluster on 127.0.0.1: a head node and two worker nodes, each with one CPU
and a "runs" resource of its own, started with `ray start` (each node with its own autoresearch cache, as
separate machines would have). The loops run here, as drivers; their runs go to the workers.

The task is of its own command (solve.py sleeps, so that two loops' runs overlap and need both workers);
the built-in contract's runs on a node are the same code as local ones (test_loop.py, the red team)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cli, generic_task_folder, git, ray_cluster, sleepy_solve_py

from autoresearch.run import sandbox
from autoresearch.store import Status, Store

ray = pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install 'autoresearch[ray]'")
pytestmark = pytest.mark.slow  # a cluster of three nodes and many runs: `pytest -m "not slow"` leaves them out

PROPOSALS = [
    {"description": "RATE 0.1 -> 0.2", "edits": [{"file": "solve.py", "search": "RATE = 0.1", "replace": "RATE = 0.2"}]},
    {"description": "RATE 0.2 -> 0.05", "edits": [{"file": "solve.py", "search": "RATE = 0.2", "replace": "RATE = 0.05"}]},
    {"description": "WIDTH 4 -> 6", "edits": [{"file": "solve.py", "search": "WIDTH = 4", "replace": "WIDTH = 6"}]},
]
STATUSES = ["keep", "keep", "discard", "keep"]  # baseline, then the proposals, wherever they ran
RUNS = [3, 2, 1, 2]  # the runs of each: the baseline's noise seeds, and each new best measured once more


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The cluster's address and each worker's cache folder (which tells its processes apart)."""
    root = tmp_path_factory.mktemp("ray")
    workers = {name: root / name for name in ("node-a", "node-b")}
    with ray_cluster(root, tuple(workers)) as address:
        yield address, workers


def ray_task(parent: Path, address: str, sleep: float, name: str = "task") -> Path:
    task = generic_task_folder(parent, sleepy_solve_py(sleep), name=name)
    toml = (task / "autoresearch.toml").read_text()
    toml = toml.replace('kind = "local"', 'kind = "ray"').replace('address = ""', f'address = "{address}"')
    toml = toml.replace("gpus = 1.0", "gpus = 0.0").replace("resources = {}", "resources = { runs = 1 }")
    (task / "autoresearch.toml").write_text(toml)
    git(task, "commit", "-qam", "runs on the cluster")
    (parent / "proposals.json").write_text(json.dumps(PROPOSALS))
    return task


def history(task: Path, tag: str) -> list:
    with Store.open(task) as store:
        return store.experiments(tag)


def run_counts(task: Path, tag: str) -> list[int]:
    """How many runs the store holds of each experiment: its own and those of it as the best."""
    with Store.open(task) as store:
        return [len(store.runs(e)) for e in store.experiments(tag)]


def node_of(entry: str) -> str:
    return entry.split("(")[1].rstrip(")")


def test_loops_on_a_cluster_run_on_both_workers_and_record_what_a_local_run_records(cluster, tmp_path):
    address, _ = cluster
    task = ray_task(tmp_path, address, sleep=1.0)
    proposals = tmp_path / "proposals.json"
    # two loops, each its own line (no sharing, so that each makes exactly the local sequence)
    cli("run", "--agent", f"replay:{proposals}", "--tag", "r", "--parallel", "2", "--adopt-from", "nobody",
        cwd=task, timeout=600)
    (tmp_path / "local").mkdir()
    local = generic_task_folder(tmp_path / "local", sleepy_solve_py(0), name="task")
    cli("run", "--agent", f"replay:{proposals}", "--tag", "r", cwd=local, timeout=600)
    expected = [(e.description, e.status, e.metric) for e in history(local, "r")]
    assert [s.value for _, s, _ in expected] == STATUSES and run_counts(local, "r") == RUNS
    nodes = set()
    for tag in ("r-0", "r-1"):
        done = history(task, tag)
        assert [(e.description, e.status, e.metric) for e in done] == expected  # as a local run decides
        assert run_counts(task, tag) == RUNS
        assert all(e.metrics.get("run_nodes") for e in done)
        nodes |= {node_of(n) for e in done for n in e.metrics["run_nodes"]}
        subjects = git(task, "log", "--format=%s", f"autoresearch/{tag}").splitlines()
        assert subjects[:3] == ["WIDTH 4 -> 6", "RATE 0.1 -> 0.2", "runs on the cluster"]
        log = Path(done[1].log_path)
        assert log.is_file() and "score: 0.950000" in log.read_text()  # the node's log, in the driver's folder
    tables = [path.read_text().splitlines() for path in sorted(task.glob("results*.tsv"))]
    assert len(tables) == 2 and all([row.split("\t")[3] for row in t[1:]] == STATUSES for t in tables)
    alive = {n["NodeID"][:8] for n in _nodes(address) if n["Resources"].get("runs")}
    assert nodes == alive, (nodes, alive)  # both workers ran runs, and only they did
    status = json.loads(cli("status", "--json", "--tag", "r-0", cwd=task).stdout)
    every = sum(run_counts(task, "r-0"))  # the experiments' own runs, and the bests' re-runs
    assert sum(status["cluster"]["nodes"].values()) == every and status["cluster"]["gpu_hours"] == 0  # no GPU
    with Store.open(task) as store:
        assert all(r.node for e in store.experiments("r-0") for r in store.runs(e))  # each run's node, recorded
    assert "cluster: " in cli("status", "--tag", "r-0", cwd=task).stdout
    assert "(Ray cluster)" in cli("show", "1", "--tag", "r-0", cwd=task).stdout


NOISY_SOLVE_PY = """\
import os, time

print("began", time.time())
SEED = int(os.environ["AUTORESEARCH_SEED"])
RATE = 0.1
time.sleep(SLEEP if SEED < 2 or RATE == 0.1 else 4 * SLEEP)  # a candidate's later confirmations: slow
score = 1.0 - (RATE - 0.3) ** 2 + 0.001 * ((SEED * 7919) % 5 - 2)
print(f"score: {score:.6f}")
print("ended", time.time())
"""
SMALL_GAINS = [{"description": f"RATE 0.1 -> {rate}", "edits": [
    {"file": "solve.py", "search": "RATE = 0.1", "replace": f"RATE = {rate}"}]} for rate in ("0.104", "0.108", "0.112")]


def _span(log: Path) -> tuple[float, float]:
    words = dict(line.split()[:2] for line in log.read_text().splitlines() if line.startswith(("began", "ended")))
    return float(words["began"]), float(words["ended"])


def test_a_lone_loop_trains_runs_at_once_on_both_workers_and_decides_as_one_at_a_time(cluster, tmp_path):
    address, _ = cluster
    task = ray_task(tmp_path, address, sleep=0)
    (task / "solve.py").write_text(NOISY_SOLVE_PY.replace("SLEEP", "1.5"))
    git(task, "commit", "-qam", "noisy")
    proposals = tmp_path / "small.json"
    proposals.write_text(json.dumps(SMALL_GAINS))
    shown = cli("run", "--agent", f"replay:{proposals}", "--tag", "a", "--runs-at-once", "2", cwd=task,
                timeout=600).stdout
    assert "experiment 2 run 3 called off" in shown  # the rule decided on run 2 while run 3 was training
    (tmp_path / "local").mkdir()
    local = generic_task_folder(tmp_path / "local", NOISY_SOLVE_PY.replace("SLEEP", "0"), name="task")
    cli("run", "--agent", f"replay:{proposals}", "--tag", "a", cwd=local, timeout=600)
    done, expected = history(task, "a"), history(local, "a")
    assert any(e.metrics.get("confirm_runs") for e in expected)  # confirmations were made
    assert [(e.description, e.status, e.metric, e.metrics.get("run_seeds")) for e in done] == \
        [(e.description, e.status, e.metric, e.metrics.get("run_seeds")) for e in expected]
    assert run_counts(task, "a") == run_counts(local, "a")
    baseline = Path(done[0].log_path).parent
    (b0, e0), (b1, e1) = _span(baseline / "train.log"), _span(baseline / "run-2" / "train.log")
    assert b0 < e1 and b1 < e0  # the baseline's first two seeds trained at the same time...
    assert len({node_of(n) for n in done[0].metrics["run_nodes"][:2]}) == 2  # ...one on each worker
    for e, runs in zip(done, run_counts(task, "a"), strict=True):  # what ran ahead, not needed, left nothing
        assert len(list(Path(e.log_path).parent.glob("run-*"))) == runs - 1


def _nodes(address: str) -> list[dict]:
    code = f"import json, ray; ray.init(address={address!r}, logging_level='ERROR'); print(json.dumps(ray.nodes()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return [n for n in json.loads(out.stdout.strip().splitlines()[-1]) if n["Alive"]]


def test_a_driver_killed_outright_resumes_and_runs_what_was_in_flight_once(cluster, tmp_path):
    address, _ = cluster
    task = ray_task(tmp_path, address, sleep=2.0)
    base = [sys.executable, "-m", "autoresearch", "run", "--agent", f"replay:{tmp_path / 'proposals.json'}",
            "--tag", "k"]
    proc = subprocess.Popen(base, cwd=task, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not _running_past_baseline(task):
        time.sleep(0.2)
    assert _running_past_baseline(task), "the loop never got to its first proposal"
    time.sleep(0.5)  # its run is on a node now
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    cli("run", "--agent", f"replay:{tmp_path / 'proposals.json'}", "--tag", "k", "--resume", cwd=task, timeout=600)
    done = history(task, "k")
    assert [e.description for e in done] == ["baseline"] + [p["description"] for p in PROPOSALS]
    assert [e.status.value for e in done] == STATUSES and all(e.status is not Status.RUNNING for e in done)


def _running_past_baseline(task: Path) -> bool:
    if not (task / ".autoresearch" / "store.sqlite").exists():
        return False
    with Store.open(task) as store:
        return any(e.seq >= 1 for e in store.running("k"))


def test_a_worker_node_lost_mid_run_has_its_run_made_again_on_the_other_and_counted_once(cluster, tmp_path):
    address, workers = cluster
    task = ray_task(tmp_path, address, sleep=2.0)
    proc = subprocess.Popen([sys.executable, "-m", "autoresearch", "run", "--agent",
                             f"replay:{tmp_path / 'proposals.json'}", "--tag", "n"], cwd=task,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and proc.poll() is None:
        victim = next((name for name, cache in workers.items() if _run_in_flight(cache)), None)
        time.sleep(0.05)
    assert victim is not None, "no run was seen on a worker"
    raylets = _processes_of(workers[victim], "raylet")
    assert raylets
    for pid in raylets:
        os.kill(pid, signal.SIGKILL)  # the node is gone: its raylet, and with it its workers and their runs
    with Store.open(task) as store:
        in_flight = store.running("n")[0].seq
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    done = history(task, "n")
    assert [e.description for e in done] == ["baseline"] + [p["description"] for p in PROPOSALS]
    assert [e.status.value for e in done] == STATUSES  # nothing lost
    assert run_counts(task, "n") == RUNS  # nothing counted twice
    survivor = {n["NodeID"][:8] for n in _nodes(address) if n["Resources"].get("runs")}
    assert len(survivor) == 1  # the other worker is gone...
    later = [node_of(n) for e in done[in_flight + 1:] for n in e.metrics["run_nodes"]]
    assert later and set(later) == survivor  # ...and the survivor ran all that came after


def _run_in_flight(cache: Path) -> bool:
    """A run is under way on the node of `cache`: a copy's run folder has a log and no outcome yet."""
    return any(not (log.parent / "outcome.json").exists() for log in cache.glob("ray/*/slot-*/run/train.log"))


def _processes_of(cache: Path, name: str) -> list[int]:
    """The processes named `name` that were started with AUTORESEARCH_CACHE=`cache`."""
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            if name.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"AUTORESEARCH_CACHE={cache}".encode() in environ:
            found.append(pid)
    return found


def test_the_built_in_task_trains_and_is_evaluated_on_a_node_in_its_box(cluster, tiny_task, prepare, tmp_path):
    address, workers = cluster  # after the last test, one worker is left: every run goes to it
    toml = (tiny_task / "autoresearch.toml").read_text().replace("budget_seconds = 5.0", "budget_seconds = 1.0")
    (tiny_task / "autoresearch.toml").write_text(
        toml + f'\n[executor]\nkind = "ray"\naddress = "{address}"\ngpus = 0\nresources = {{ runs = 1 }}\n')
    git(tiny_task, "commit", "-qam", "tiny settings, on the cluster")
    prepare(tiny_task)
    train = (tiny_task / "train.py").read_text()
    patches = tmp_path / "patches.json"
    patches.write_text(json.dumps([{"description": "warmdown 0.2", "files": {
        "train.py": train.replace("WARMDOWN_FRAC = 0.4", "WARMDOWN_FRAC = 0.2")}}]))
    shown = cli("run", "--agent", f"replay:{patches}", "--tag", "b", cwd=tiny_task, timeout=600).stdout
    assert shown.count("started: ") >= 2 and "evaluated in" in shown  # the node's progress events reached here
    done = history(tiny_task, "b")
    assert [e.description for e in done] == ["baseline", "warmdown 0.2"]
    assert done[0].status is Status.KEEP and done[0].metric > 0.05  # the harness's own evaluation, on the node
    assert done[0].metrics["isolation"] == sandbox.isolation()
    assert done[0].metrics["test_bpb"] > 0 and done[0].metrics["causal_tv"] < 0.01  # the probe ran there too
    assert (Path(done[0].log_path).parent / "model" / "model.pt").is_file()  # the kept model came back


def test_a_node_without_the_data_takes_it_from_what_the_driver_sends_and_checks_it(tmp_path):
    from autoresearch.data.prepare import DataError
    from autoresearch.run.ray_node import DataOffer, node_dataset

    files = {"train.npy": b"train tokens", "val.npy": b"val tokens"}
    manifest = {"files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for name, data in files.items()}}
    offer = DataOffer(root=str(tmp_path / "driver" / "data-1"), name="data-1", manifest=manifest)
    node = tmp_path / "node"
    assert node_dataset(offer, None, node) is None  # not here, and nothing sent: the driver is asked for it
    dataset = node_dataset(offer, files, node)
    assert dataset.root == node / "datasets" / "data-1" and (dataset.root / "val.npy").read_bytes() == b"val tokens"
    assert node_dataset(offer, None, node).root == dataset.root  # once made, the node's copy is used
    bad = DataOffer(root=offer.root, name="data-2", manifest=manifest)
    with pytest.raises(DataError, match="val.npy"):
        node_dataset(bad, {**files, "val.npy": b"val tokenz"}, node)  # what arrived differs from the manifest
    assert not (node / "datasets" / "data-2").exists()


def test_what_a_node_sends_back_is_the_runs_own_files_and_lands_only_in_its_folder(tmp_path):
    from autoresearch.run.ray_node import run_files
    from autoresearch.run.ray_runner import inside

    secret = tmp_path / "node-secret"
    secret.write_text("credentials")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "key").write_text("more")
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "train.log").write_text("log")
    (run / "model" / "model.pt").write_bytes(b"weights")
    (run / "model" / "leak").symlink_to(secret)  # a candidate's links, to files of the node
    (run / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    os.mkfifo(run / "pipe")
    assert run_files(run) == {"train.log": b"log", "model/model.pt": b"weights"}
    assert inside(tmp_path, "model/model.pt") == tmp_path / "model" / "model.pt"
    assert [inside(tmp_path, bad) for bad in ("../x", "/etc/passwd", "model/../../x", "")] == [None] * 4


def test_a_node_sends_only_the_models_that_can_stay():
    from autoresearch.run.ray_node import model_may_stay

    assert model_may_stay(0, "kept") and not model_may_stay(1, "kept")  # a confirmation's model is deleted
    assert model_may_stay(3, "all") and not model_may_stay(0, "none")
