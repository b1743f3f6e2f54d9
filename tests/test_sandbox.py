"""Candidate processes never outlive the harness."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_a_candidate_dies_when_the_harness_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    harness = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from autoresearch.run import sandbox
        proc = sandbox.start_python(["-c", "import time; time.sleep(300)"], sandbox.Box(Path("{tmp_path}")), {{}})
        Path("{pid_file}").write_text(str(proc.pid))
        time.sleep(300)
    """)
    parent = subprocess.Popen([sys.executable, "-c", harness])
    deadline = time.time() + 30
    while not pid_file.exists() and time.time() < deadline:
        time.sleep(0.1)
    child = int(pid_file.read_text())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the candidate outlived its harness")


def test_a_prestarted_interpreter_runs_the_script_like_python_would(tmp_path):
    from pathlib import Path

    from autoresearch.run import sandbox

    script = tmp_path / "job" / "train.py"
    script.parent.mkdir()
    (script.parent / "helper.py").write_text("VALUE = 'imported from the script folder'\n")
    script.write_text(textwrap.dedent("""
        import os, sys
        print("torch ready:", "torch" in sys.modules)
        import helper
        print(__name__, sys.argv, os.environ["AUTORESEARCH_SEED"], helper.VALUE, sys.stdin.readline() == "stop\\n")
        sys.exit(3)
    """))
    proc = sandbox.prestart_python(sandbox.Box(tmp_path), {})
    time.sleep(0.5)
    assert proc.alive()  # waiting for its script
    proc.go(Path(script), {"AUTORESEARCH_SEED": "7"})
    proc.popen.stdin.write(b"stop\n")  # its input stays open after the order: the harness's stop line comes on it
    proc.popen.stdin.flush()
    out = proc.popen.stdout.read().decode()
    assert proc.wait(timeout=60) == 3  # the script's own exit code
    assert "torch ready: True" in out
    assert f"__main__ ['{script}'] 7 imported from the script folder True" in out


def test_a_prestarted_interpreter_that_is_never_told_anything_exits_quietly(tmp_path):
    from autoresearch.run import sandbox

    proc = sandbox.prestart_python(sandbox.Box(tmp_path), {})
    proc.popen.stdin.close()
    assert proc.wait(timeout=60) == 0


# ---------------------------------------------------------------------------------------------- the box

boxed = pytest.mark.skipif(sys.platform != "linux" or __import__("shutil").which("bwrap") is None,
                           reason="the box needs bubblewrap on Linux")


def run_boxed(box, code: str, env: dict | None = None, timeout: float = 60) -> str:
    from autoresearch.run import sandbox

    proc = sandbox.start_python(["-c", textwrap.dedent(code)], box, env or {})
    out = proc.popen.stdout.read().decode()
    assert proc.wait(timeout=timeout) == 0, out
    assert proc.isolation == "bwrap"
    return out


@pytest.fixture
def layout(tmp_path):
    """A task folder as the loop sees it: a worktree with .git and .autoresearch (store, model folder), and a
    data cache with the three splits."""
    work = tmp_path / "task"
    (work / ".git").mkdir(parents=True)
    (work / ".git" / "config").write_text("[core]\n")
    (work / ".autoresearch" / "model").mkdir(parents=True)
    (work / ".autoresearch" / "store.sqlite").write_text("the store")
    (work / "train.py").write_text("print('hi')\n")
    cache = tmp_path / "cache" / "data"
    cache.mkdir(parents=True)
    for split in ("train", "val", "test"):
        (cache / f"{split}.bin").write_text(split)
    return work, cache


@boxed
def test_the_box_cuts_the_network_loopback_included(layout):
    import socket

    from autoresearch.run import sandbox

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        out = run_boxed(sandbox.Box(layout[0]), f"""
            import socket
            for address in [("127.0.0.1", {port}), ("1.1.1.1", 443)]:
                try:
                    socket.create_connection(address, timeout=3)
                    print("connected", address)
                except OSError as err:
                    print("refused", address, type(err).__name__)
        """)
    finally:
        server.close()
    assert "connected" not in out and out.count("refused") == 2


@boxed
def test_the_box_shows_only_what_the_run_needs(layout, tmp_path):
    from autoresearch.run import sandbox

    work, cache = layout
    (tmp_path / "elsewhere.txt").write_text("a file of the user's")
    box = sandbox.Box(work, read=(cache / "train.bin",), write=(work / ".autoresearch" / "model",))
    out = run_boxed(box, f"""
        import os
        def can_write(path):
            try:
                open(path, "w").write("x")
                return True
            except OSError:
                return False
        print("train", open("{cache}/train.bin").read())
        for path in ["{cache}/val.bin", "{cache}/test.bin", "{work}/.git/config",
                     "{work}/.autoresearch/store.sqlite", "{tmp_path}/elsewhere.txt", "/run", "/root/.bashrc"]:
            print("visible" if os.path.exists(path) else "hidden", path)
        print("write workdir", can_write("{work}/out.txt"))
        print("write model", can_write("{work}/.autoresearch/model/model.pt"))
        print("write data", can_write("{cache}/train.bin"))
        print("write usr", can_write("/usr/evil"))
        print("write root", can_write("/evil"))
        print("write parent", can_write("{work}/../evil"))
        print("write tmp", can_write("/tmp/scratch"))
        print("caps", [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0])
    """)
    assert "train train" in out and "visible" not in out, out
    assert "write workdir True" in out and "write model True" in out and "write tmp True" in out
    assert "write data False" in out and "write usr False" in out
    assert "write root False" in out
    assert not (work.parent / "evil").exists()  # under /tmp it lands in the box's own /tmp, never the host's
    assert "caps 0000000000000000" in out
    assert (work / "out.txt").exists() and (work / ".autoresearch" / "model" / "model.pt").exists()
    assert (work / ".autoresearch" / "store.sqlite").read_text() == "the store"


@boxed
def test_the_box_hides_sockets_in_its_folder(layout):
    import socket

    from autoresearch.run import sandbox

    work, _ = layout
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(work / "agent.sock"))
    server.listen()
    try:
        out = run_boxed(sandbox.Box(work), f"""
            import socket
            s = socket.socket(socket.AF_UNIX)
            try:
                s.connect("{work}/agent.sock")
                print("connected")
            except OSError as err:
                print("refused", type(err).__name__)
        """)
    finally:
        server.close()
    assert "refused" in out


def test_the_environment_is_an_allow_list_without_secrets(layout, monkeypatch):
    from autoresearch.run import sandbox

    for name, value in {"OPENAI_API_KEY": "sk-secret", "GITHUB_TOKEN": "ghp-secret", "AWS_SECRET_ACCESS_KEY": "x",
                        "SOME_RANDOM_SETTING": "1", "CUDA_VISIBLE_DEVICES": "0", "AUTORESEARCH_API_TOKEN": "y"}.items():
        monkeypatch.setenv(name, value)
    env = sandbox.candidate_env({"AUTORESEARCH_TRAIN_TOKENS": "/data/train.bin"}, boxed=True)
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["AUTORESEARCH_TRAIN_TOKENS"] == "/data/train.bin"
    assert env["TMPDIR"] == "/tmp" and "PATH" in env
    for gone in ("OPENAI_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "SOME_RANDOM_SETTING",
                 "AUTORESEARCH_API_TOKEN"):
        assert gone not in env
    out = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.environ))"], capture_output=True,
                         text=True, env=env).stdout
    assert "sk-secret" not in out and "OPENAI" not in out


def assert_a_daemon_dies_with_its_run(box, beat: Path) -> str:
    """Start a candidate that leaves a double-forked daemon writing `beat`, kill the run, and check that
    nothing writes any more. Returns how the candidate was contained."""
    from autoresearch.run import sandbox

    code = textwrap.dedent(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    open("{beat}", "w").write(str(time.time()))
                    time.sleep(0.05)
            os._exit(0)
        time.sleep(300)
    """)
    proc = sandbox.start_python(["-c", code], box, {})
    deadline = time.time() + 30
    while not beat.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert beat.exists()
    proc.kill()
    time.sleep(0.5)
    last = beat.read_text()
    time.sleep(1.0)
    assert beat.read_text() == last  # nothing is writing any more
    return proc.isolation


@boxed
def test_killing_the_box_kills_a_double_forked_daemon(layout):
    from autoresearch.run import sandbox

    work, _ = layout
    assert assert_a_daemon_dies_with_its_run(sandbox.Box(work), work / "heartbeat") == "bwrap"


def test_a_file_larger_than_the_limit_cannot_be_written(layout, monkeypatch):
    from autoresearch.run import limits, sandbox

    monkeypatch.setattr(limits, "MAX_FILE_BYTES", 1 << 20)
    work, _ = layout
    proc = sandbox.start_python(["-c", textwrap.dedent("""
        try:
            open("big.bin", "wb").write(b"x" * (2 << 20))
            print("written")
        except OSError as err:
            print("refused", err.errno)
    """)], sandbox.Box(work), {})
    out = proc.popen.stdout.read().decode()
    proc.wait(timeout=60)
    assert "refused 27" in out  # EFBIG
    assert (work / "big.bin").stat().st_size <= 1 << 20


@pytest.mark.skipif(os.environ.get("AUTORESEARCH_REQUIRE_SANDBOX") != "1", reason="only where the box is required")
def test_the_box_is_there_where_it_is_required():
    from autoresearch.run import sandbox

    assert sandbox.isolation() == "bwrap"


@pytest.mark.skipif(sys.platform != "linux", reason="pids cgroups are Linux only")
def test_a_fork_bomb_meets_the_process_limit(layout, monkeypatch):
    from autoresearch.run import limits, sandbox

    if limits._pids_parent() is None:
        pytest.skip("no writable pids cgroup here")
    monkeypatch.setattr(limits, "MAX_TASKS", 64)
    work, _ = layout
    proc = sandbox.start_python(["-c", textwrap.dedent("""
        import os, time
        children = 0
        try:
            for _ in range(1000):  # a fork bomb with a safety stop, for where the limit were missing
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                children += 1
            print("no limit", children, flush=True)
        except OSError as err:
            print("limited at", children, err.errno, flush=True)
        time.sleep(60)
    """)], sandbox.Box(work), {})
    line = proc.popen.stdout.readline().decode()
    folder = proc._tasks.folder
    proc.kill()
    assert line.startswith("limited at") and int(line.split()[2]) < 64, line
    assert not folder.exists()  # the candidate's cgroup is removed with it


# ------------------------------------------------------------------------------- the Landlock layer

@pytest.fixture
def landlock_layer(monkeypatch):
    """Candidates contained by Landlock, as where bubblewrap cannot run."""
    from autoresearch.run import landlock, sandbox

    if landlock.abi() < 1:
        pytest.skip("this kernel has no Landlock")
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "landlock")
    sandbox.isolation.cache_clear()
    yield landlock.abi()
    sandbox.isolation.cache_clear()


def run_landlocked(box, code: str) -> str:
    from autoresearch.run import sandbox

    proc = sandbox.start_python(["-c", textwrap.dedent(code)], box, {})
    out = proc.popen.stdout.read().decode()
    assert proc.wait(timeout=60) == 0, out
    assert proc.isolation == "landlock"
    return out


def test_landlock_lets_a_run_reach_only_what_it_needs(landlock_layer, layout, tmp_path, monkeypatch):
    from autoresearch.run import sandbox

    work, cache = layout
    (tmp_path / "elsewhere.txt").write_text("a file of the user's")
    monkeypatch.syspath_prepend(str(tmp_path))  # as `python -m` from a folder around the task puts it first
    box = sandbox.Box(work, read=(cache / "train.bin",), write=(work / ".autoresearch" / "model",))
    out = run_landlocked(box, f"""
        import os, tempfile
        def can(action, path):
            try:
                open(path, action).write("x") if action == "w" else open(path).read()
                return True
            except OSError:
                return False
        print("read train", can("r", "{cache}/train.bin"))
        for path in ["{cache}/val.bin", "{cache}/test.bin", "{work}/.git/config", "{work}/.autoresearch/store.sqlite",
                     "{tmp_path}/elsewhere.txt", "/etc/shadow"]:
            print("READABLE" if can("r", path) else "unreadable", path)
        print("write train.py", can("w", "{work}/train.py"))
        print("write model", can("w", "{work}/.autoresearch/model/model.pt"))
        print("write tmpdir", can("w", os.path.join(tempfile.gettempdir(), "scratch")))
        for path in ["{cache}/train.bin", "/usr/evil", "/tmp/evil", "{work}/.autoresearch/store.sqlite",
                     "{work}/.git/HEAD", "{tmp_path}/evil"]:
            print("WRITABLE" if can("w", path) else "unwritable", path)
    """)
    assert "read train True" in out and "READABLE" not in out and "WRITABLE" not in out, out
    assert "write train.py True" in out and "write model True" in out and "write tmpdir True" in out
    assert (work / ".autoresearch" / "store.sqlite").read_text() == "the store"
    assert not list((work / ".autoresearch" / "scratch").iterdir())  # its TMPDIR went with it


def test_landlock_cuts_tcp_and_signals_to_the_harness(landlock_layer, layout):
    import socket

    from autoresearch.run import sandbox

    if landlock_layer < 6:
        pytest.skip("TCP rules need Landlock ABI 4 and signal scoping ABI 6")
    server = socket.create_server(("127.0.0.1", 0))
    try:
        out = run_landlocked(sandbox.Box(layout[0]), f"""
            import os, signal, socket
            try:
                socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=3)
                print("CONNECTED")
            except OSError as err:
                print("refused", err.errno)
            try:
                os.kill({os.getpid()}, signal.SIGTERM)
                print("SIGNALLED")
            except OSError as err:
                print("no signal", err.errno)
        """)
    finally:
        server.close()
    assert "refused 13" in out and "no signal 1" in out, out


def test_landlock_layer_kills_a_double_forked_daemon_through_its_cgroup(landlock_layer, layout):
    from autoresearch.run import limits, sandbox

    if limits._pids_parent() is None:
        pytest.skip("without a pids cgroup, a daemon can leave the Landlock layer's process group")
    work, _ = layout
    beat = work / ".autoresearch" / "model" / "heartbeat"  # (no new files at the top of the folder)
    assert assert_a_daemon_dies_with_its_run(sandbox.Box(work, write=(beat.parent,)), beat) == "landlock"


def test_the_harness_start_folder_is_not_shown_to_candidates(monkeypatch, tmp_path):
    import sys

    from autoresearch.run import sandbox, view

    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert str(tmp_path) not in view.python_paths()
    work = tmp_path / "task" / ".autoresearch" / "worktrees" / "t"
    work.mkdir(parents=True)
    assert view.shown(sandbox.Box(work), [str(tmp_path), sys.prefix]) == [os.path.realpath(sys.prefix)]


def test_a_prestarted_interpreter_is_landlocked_with_rules_made_when_it_is_told_to_run(landlock_layer, layout):
    from autoresearch.run import sandbox

    work, cache = layout
    proc = sandbox.prestart_python(sandbox.Box(work, read=(cache / "train.bin",)), {})
    script = work / "train.py"
    script.unlink()  # replaced after the interpreter started, as git does when it checks out a commit
    script.write_text(textwrap.dedent(f"""
        for path in ["{cache}/train.bin", "{cache}/val.bin", "{work}/.autoresearch/store.sqlite"]:
            try:
                open(path).read()
                print("read", path)
            except OSError:
                print("blocked", path)
    """))
    proc.go(script, {})
    out = proc.popen.stdout.read().decode()
    assert proc.wait(timeout=60) == 0, out
    assert out.count("read") == 1 and out.count("blocked") == 2 and "read " + str(cache) + "/train.bin" in out, out


def test_output_is_read_in_lines_until_the_process_ends_even_if_a_daemon_holds_the_pipe():
    from autoresearch.run.supervise import output_lines

    code = textwrap.dedent("""
        import os, subprocess, sys
        sys.stdout.write("first\\n" + "y" * 2500 + "\\nlast")
        sys.stdout.flush()
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)  # keeps stdout
    """)
    popen = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started = time.monotonic()
    lines = list(output_lines(popen, max_line=1000, linger=0.5))
    assert time.monotonic() - started < 15  # not the daemon's 30 s
    assert lines == [b"first\n", b"y" * 1000, b"y" * 1000, b"y" * 500 + b"\n", b"last"]
    popen.stdout.close()


# ------------------------------------------------------------------------------------ the memory limit

def memory_cgroup_or_skip() -> None:
    from autoresearch.run import limits

    if sys.platform != "linux" or limits._memory_parent() is None:
        pytest.skip("no memory cgroup of ours here")


# Allocates (and touches) memory in steps of 16 MB, printing how much it holds; 960 MB at most, a safety stop
# should the limit be missing.
HOG = """
blocks = []
for i in range(60):
    blocks.append(b"x" * (16 << 20))
    print("allocated", (i + 1) * 16, flush=True)
print("no limit")
"""


def test_a_run_past_its_memory_limit_is_stopped_and_recorded_as_a_crash(tmp_path):
    from autoresearch.config import ConfigError, MetricConfig, SandboxConfig, TaskConfig, TrainConfig
    from autoresearch.run.runner import run_experiment

    memory_cgroup_or_skip()
    task = tmp_path / "task"
    task.mkdir()
    (task / "hog.py").write_text(HOG)
    config = TaskConfig(train=TrainConfig(command="python hog.py", budget_seconds=60),
                        metric=MetricConfig(name="score", source="regex", regex=r"^score:\s*(\S+)"),
                        sandbox=SandboxConfig(max_memory_gb=0.3, min_free_gb=0.001)).validate()
    started = time.monotonic()
    outcome = run_experiment(task, config, None, run_dir=tmp_path / "run")
    assert time.monotonic() - started < 30
    assert outcome.status == "crash", outcome
    assert outcome.error == "the command was stopped: it used more than its memory limit of 0.3 GB " \
                            "(sandbox.max_memory_gb)", outcome.error
    log = (tmp_path / "run" / "train.log").read_text()
    held = [int(line.split()[1]) for line in log.splitlines() if line.startswith("allocated")]
    assert "no limit" not in log and held and max(held) < 0.3 * 1024, log
    with pytest.raises(ConfigError, match="max_memory_gb"):  # the settings refuse a negative limit
        TaskConfig(sandbox=SandboxConfig(max_memory_gb=-1)).validate()


@boxed
def test_files_in_the_boxs_ram_count_against_its_memory_limit(layout):
    from autoresearch.run import sandbox

    memory_cgroup_or_skip()
    work, _ = layout
    proc = sandbox.start_python(["-c", textwrap.dedent("""
        import os
        for folder in ("/dev/shm", "/tmp"):
            size = os.statvfs(folder).f_blocks * os.statvfs(folder).f_frsize >> 20
            written = 0
            try:
                with open(folder + "/fill", "wb") as f:
                    for _ in range(100):  # 400 MB at most
                        f.write(b"x" * (4 << 20))
                        f.flush()
                        written += 4
                print("no cap", folder, flush=True)
            except OSError as err:
                print("full", folder, size, written, err.errno, flush=True)
    """) + HOG], sandbox.Box(work, max_memory_gb=0.4), {})
    folder = proc._memory.folder
    out = proc.popen.stdout.read().decode()
    code = proc.wait(timeout=60)
    assert code != 0 and proc.memory_exceeded() and proc.isolation == "bwrap", out
    full = {line.split()[1]: [int(n) for n in line.split()[2:]] for line in out.splitlines() if line.startswith("full")}
    assert sorted(full) == ["/dev/shm", "/tmp"], out
    for size, written, errno in full.values():
        assert size <= 0.4 * 1024 / 4 and written >= size - 8 and errno == 28, out  # ENOSPC at a quarter of it
    held = max(int(line.split()[1]) for line in out.splitlines() if line.startswith("allocated"))
    # the ~200 MB of files took their share of the 410 MB: without them counted, ~400 MB could be held
    assert held + sum(written for _, written, _ in full.values()) <= 0.4 * 1024 and held < 250, out
    assert not folder.exists()  # the candidate's memory cgroup is removed with it


@boxed
def test_dev_is_read_only_in_the_box_and_its_shared_memory_is_small_but_works(layout):
    from autoresearch.run import sandbox

    work, _ = layout
    out = run_boxed(sandbox.Box(work, max_memory_gb=1.0), """
        import errno, multiprocessing, os
        for path in ("/dev/planted", "/dev/pts/planted", "/etc/ssh/planted"):
            try:
                open(path, "w").write("x")
                print("wrote", path)
            except OSError as err:
                print("refused", path, errno.errorcode[err.errno])
        open("/dev/null", "w").write("x")
        lock = multiprocessing.Lock()  # a semaphore in /dev/shm
        with lock:
            print("lock works")
        print("shm MB", os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize >> 20)
    """)
    assert "refused /dev/planted EROFS" in out and "wrote" not in out and "lock works" in out, out
    assert int(out.split("shm MB ")[1].split()[0]) <= 256, out  # a quarter of the 1 GB limit


def test_without_a_memory_cgroup_a_cpu_candidate_gets_an_address_space_limit(layout, monkeypatch):
    from autoresearch.run import limits, sandbox

    if sys.platform != "linux":
        pytest.skip("rlimits as Linux applies them")
    monkeypatch.setattr(limits, "_memory_parent", lambda: None)  # as where no memory cgroup is ours
    work, _ = layout
    proc = sandbox.start_python(["-c", "try:\n" + textwrap.indent(HOG, "    ") + "\nexcept MemoryError:\n"
                                 "    print('refused', flush=True)\n"], sandbox.Box(work, max_memory_gb=0.5), {})
    out = proc.popen.stdout.read().decode()
    proc.wait(timeout=60)
    held = [int(line.split()[1]) for line in out.splitlines() if line.startswith("allocated")]
    assert "refused" in out and max(held, default=0) < 512, out
    assert limits.MemoryLimit(1 << 30, gpu=True).rlimit is None  # CUDA reserves far more address space


def test_a_kill_for_memory_is_read_from_the_counters_of_cgroup_v1_and_v2(tmp_path):
    from autoresearch.run.limits import _oom_killed

    v1, v2, old = tmp_path / "v1", tmp_path / "v2", tmp_path / "old-kernel"
    for folder in (v1, v2, old):
        folder.mkdir()
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 0\n")
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\noom_group_kill 0\n")
    assert not _oom_killed(v1, 1, 1 << 30) and not _oom_killed(v2, 2, 1 << 30)
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n")
    assert _oom_killed(v1, 1, 1 << 30) and _oom_killed(v2, 2, 1 << 30)
    # before Linux 4.13 v1 counts no kills: the limit was met and the use came to it
    (old / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\n")
    (old / "memory.failcnt").write_text("3\n")
    (old / "memory.max_usage_in_bytes").write_text(str(1 << 30))
    assert _oom_killed(old, 1, 1 << 30) and not _oom_killed(old, 1, 4 << 30)
    assert not _oom_killed(tmp_path / "gone", 1, 1 << 30)


def test_the_default_memory_limit_is_a_share_of_the_machines_split_among_parallel_loops(tmp_path, monkeypatch):
    from autoresearch.run import limits, sandbox

    monkeypatch.delenv("AUTORESEARCH_MEMORY_SHARE", raising=False)
    total = limits.machine_memory()
    assert limits.memory_limit(sandbox.Box(tmp_path)) == int(0.75 * total) > 0
    assert limits.memory_limit(sandbox.Box(tmp_path, max_memory_gb=1.5)) == int(1.5 * (1 << 30))
    monkeypatch.setenv("AUTORESEARCH_MEMORY_SHARE", "0.25")  # what `--parallel 3` gives each loop
    assert limits.memory_limit(sandbox.Box(tmp_path)) == int(0.25 * total)


# ------------------------------------------------------------------------------------ the GPUs of a box

GPUS = [("0000:1b:00.0", 0, "GPU-bbbbbbbb-0000-1111-2222-333333333333", "NVIDIA H100 80GB HBM3"),
        ("0000:07:00.0", 1, "GPU-aaaaaaaa-0000-1111-2222-333333333333", "NVIDIA H100 80GB HBM3"),
        ("0000:c0:00.0", 2, "GPU-cccccccc-0000-1111-2222-333333333333", "NVIDIA H100 80GB HBM3")]
CONTROL = ["nvidia-caps", "nvidia-modeset", "nvidia-uvm", "nvidia-uvm-tools", "nvidiactl"]
SMI_LIST = """GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaaaaaa-0000-1111-2222-333333333333)
  MIG 3g.20gb     Device  0: (UUID: MIG-11111111-2222-3333-4444-555555555555)
GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbbbbbb-0000-1111-2222-333333333333)
  MIG 3g.20gb     Device  0: (UUID: MIG-66666666-2222-3333-4444-555555555555)
"""


def nvidia_tree(tmp_path: Path, gpus=GPUS, mig: bool = False) -> tuple[Path, Path]:
    """A fake /proc/driver/nvidia and /dev, as the driver makes them. The minors are not in PCI bus order."""
    driver, dev = tmp_path / "driver", tmp_path / "dev"
    (dev / "nvidia-caps").mkdir(parents=True)
    (dev / "nvidia-caps" / "nvidia-cap1").touch()
    for name in CONTROL[1:]:
        (dev / name).touch()
    for address, minor, uuid, model in gpus:
        (driver / "gpus" / address).mkdir(parents=True)
        (driver / "gpus" / address / "information").write_text(
            f"Model: \t\t {model}\nIRQ:   \t\t 42\nGPU UUID: \t {uuid}\nVideo BIOS: \t 96.00.74.00.0d\n"
            f"Bus Type: \t PCIe\nDMA Size: \t 52 bits\nBus Location: \t {address}\nDevice Minor: \t {minor}\n"
            "GPU Excluded:\t No\n")
        (dev / f"nvidia{minor}").touch()
        if mig:
            (driver / "capabilities" / f"gpu{minor}" / "mig" / "gi1").mkdir(parents=True)
    return driver, dev


def node_names(found) -> list[str]:
    return [Path(node).name for node in found.nodes]


def test_a_box_gets_the_nodes_of_the_gpus_cuda_visible_devices_names_by_index_in_pci_order(tmp_path):
    from autoresearch.run.gpus import gpu_nodes

    driver, dev = nvidia_tree(tmp_path)
    found = gpu_nodes("1", driver, dev)  # the second by PCI address, 0000:1b:00.0
    assert node_names(found) == sorted([*CONTROL, "nvidia0"]) and found.problem is None
    assert found.env == {"CUDA_VISIBLE_DEVICES": GPUS[0][2]}  # in the box, CUDA counts only the GPUs it has
    found = gpu_nodes("2,0", driver, dev)
    assert node_names(found) == sorted([*CONTROL, "nvidia1", "nvidia2"])
    assert found.env == {"CUDA_VISIBLE_DEVICES": f"{GPUS[2][2]},{GPUS[1][2]}"}  # its order kept
    for every in (None, "0,1,2", "2,1,0,-1"):  # unset, or all of them: every node, the environment as it is
        found = gpu_nodes(every, driver, dev)
        assert node_names(found) == sorted([*CONTROL, "nvidia0", "nvidia1", "nvidia2"]) and found.env == {}
    for none in ("", "-1", "-1,0"):
        assert node_names(gpu_nodes(none, driver, dev)) == CONTROL
    # the order CUDA counts in without CUDA_DEVICE_ORDER=PCI_BUS_ID is that order for GPUs of one model only
    assert gpu_nodes("1", driver, dev, pci_order=False).problem is None
    mixed = nvidia_tree(tmp_path / "mixed", [*GPUS[:2], (*GPUS[2][:3], "NVIDIA L4")])
    assert "fastest first" in gpu_nodes("1", *mixed, pci_order=False).problem


def test_a_box_gets_the_nodes_of_the_gpus_named_by_uuid_and_of_a_mig_devices_gpu(tmp_path):
    from autoresearch.run.gpus import gpu_nodes, mig_parents

    driver, dev = nvidia_tree(tmp_path)
    found = gpu_nodes("GPU-cccccccc", driver, dev)  # a unique start of a UUID, as CUDA takes it
    assert node_names(found) == sorted([*CONTROL, "nvidia2"]) and found.env == {"CUDA_VISIBLE_DEVICES": "GPU-cccccccc"}
    parents = mig_parents(SMI_LIST)
    assert parents == {"MIG-11111111-2222-3333-4444-555555555555": GPUS[1][2],
                       "MIG-66666666-2222-3333-4444-555555555555": GPUS[0][2]}
    driver, dev = nvidia_tree(tmp_path / "mig", mig=True)
    found = gpu_nodes("MIG-66666666-2222-3333-4444-555555555555", driver, dev, mig_parents=parents)
    assert node_names(found) == sorted([*CONTROL, "nvidia0"])  # its GPU's node and nvidia-caps
    assert found.env == {"CUDA_VISIBLE_DEVICES": "MIG-66666666-2222-3333-4444-555555555555"}
    legacy = f"MIG-{GPUS[2][2]}/1/0"
    assert node_names(gpu_nodes(legacy, driver, dev)) == sorted([*CONTROL, "nvidia2"])


def test_what_cannot_be_mapped_to_a_gpu_gets_every_node_and_says_why(tmp_path):
    from autoresearch.run.gpus import gpu_nodes

    driver, dev = nvidia_tree(tmp_path)
    every = sorted([*CONTROL, "nvidia0", "nvidia1", "nvidia2"])
    for visible, says in [("GPU-dddddddd", "no GPUs have the UUID"), ("GPU-", "3 GPUs have the UUID"),
                          ("3", "there are 3 GPUs"), ("MIG-99999999-2222-3333-4444-555555555555", "is not known"),
                          ("first", "neither an index nor")]:
        found = gpu_nodes(visible, driver, dev)
        assert node_names(found) == every and found.env == {} and says in found.problem, (visible, found)
    found = gpu_nodes("0", tmp_path / "no-driver", dev)  # no /proc/driver/nvidia
    assert node_names(found) == every and "lists no GPU" in found.problem
    mig = nvidia_tree(tmp_path / "mig", mig=True)
    assert "MIG mode" in gpu_nodes("0", *mig).problem  # CUDA's indices count MIG devices there
    unknown = nvidia_tree(tmp_path / "unknown", [(*GPUS[0][:2], "??", GPUS[0][3]), *GPUS[1:]])
    found = gpu_nodes("1", *unknown)  # no UUID shown: counted again among the box's GPUs
    assert node_names(found) == sorted([*CONTROL, "nvidia0"])
    assert found.env == {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert "no UUID" in gpu_nodes(f"1,{GPUS[2][2]}", *unknown).problem


def test_torch_is_asked_about_a_gpu_only_where_a_gpu_drivers_node_exists(tmp_path):
    from autoresearch.run.gpus import may_have_gpu

    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "null").touch()
    assert not may_have_gpu(dev)
    for node in ("nvidiactl", "dxg", "kfd"):  # NVIDIA's driver, WSL2's, ROCm's
        (dev / node).touch()
        assert may_have_gpu(dev), node
        (dev / node).unlink()


def test_a_box_with_the_gpu_binds_only_the_nodes_it_is_given_and_then_makes_dev_read_only(tmp_path):
    from autoresearch.run import bwrap, sandbox

    argv = bwrap.bwrap_argv(sandbox.Box(tmp_path, gpu=True), devices=["/dev/nvidiactl", "/dev/nvidia1"],
                            tmp_bytes=1 << 20, shm_bytes=2 << 20)
    assert [argv[i + 1] for i, arg in enumerate(argv) if arg == "--dev-bind"] == ["/dev/nvidiactl", "/dev/nvidia1"]
    text = " ".join(argv)
    assert "--dev /dev" in text and "--size 2097152 --tmpfs /dev/shm --remount-ro /dev" in text
    assert text.index("--remount-ro /dev") > text.index("--dev-bind /dev/nvidia1")
    assert "--size 1048576 --tmpfs /tmp" in text


ATTEMPTS_ON_THE_GIT_FILE = """
    import os
    link = "{work}/.git"
    os.makedirs("{work}/sub", exist_ok=True)
    try:
        print("content", repr(open(link).read()))
    except OSError as err:
        print("unreadable", err.errno)
    def attempt(name, act):
        try:
            act()
            print(name, "done")
        except OSError as err:
            print(name, "refused", err.errno)
    def replace():
        open("{work}/sub/theirs", "w").write("gitdir: /tmp/theirs\\n")
        os.replace("{work}/sub/theirs", link)
    attempt("write", lambda: open(link, "w").write("gitdir: /tmp/theirs\\n"))
    attempt("unlink", lambda: os.unlink(link))
    attempt("rename", lambda: os.rename(link, "{work}/sub/moved"))
    attempt("replace", replace)
"""


def git_file_layout(layout) -> Path:
    """The layout's folder as a linked worktree: `.git` is a file that points git at the repository."""
    import shutil

    work = layout[0]
    shutil.rmtree(work / ".git")
    (work / ".git").write_text("gitdir: /somewhere/.git/worktrees/run\n")
    return work


@boxed
def test_the_box_covers_a_worktree_git_file(layout):
    """git follows a worktree's `.git` file to its configuration, which could run programs when the harness runs
    git there: in the box it is covered, and cannot be rewritten, removed or replaced."""
    from autoresearch.run import sandbox

    work = git_file_layout(layout)
    out = run_boxed(sandbox.Box(work), ATTEMPTS_ON_THE_GIT_FILE.format(work=work))
    assert "/somewhere" not in out, out  # covered: nothing of the repository's place shows
    assert "done" not in out and out.count("refused") == 4, out
    assert (work / ".git").read_text() == "gitdir: /somewhere/.git/worktrees/run\n"


def test_landlock_leaves_a_worktree_git_file_alone(landlock_layer, layout):
    from autoresearch.run import landlock_rules, sandbox, view

    work = git_file_layout(layout)
    (work / "sub").mkdir()
    rules = landlock_rules.landlock_ruleset(sandbox.Box(work), python_paths=view.python_paths())
    assert not [path for path, _ in rules.rules if path == str(work / ".git")]  # no right on it at all
    out = run_landlocked(sandbox.Box(work), ATTEMPTS_ON_THE_GIT_FILE.format(work=work))
    assert "unreadable" in out and "done" not in out and out.count("refused") == 4, out
    assert (work / ".git").read_text() == "gitdir: /somewhere/.git/worktrees/run\n"
