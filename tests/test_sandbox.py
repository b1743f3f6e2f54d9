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
        from autoresearch import sandbox
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

    from autoresearch import sandbox

    script = tmp_path / "job" / "train.py"
    script.parent.mkdir()
    (script.parent / "helper.py").write_text("VALUE = 'imported from the script folder'\n")
    script.write_text(textwrap.dedent("""
        import os, sys
        print("torch ready:", "torch" in sys.modules)
        import helper
        print(__name__, sys.argv, os.environ["AUTORESEARCH_SEED"], helper.VALUE, sys.stdin.read() == "")
        sys.exit(3)
    """))
    proc = sandbox.prestart_python(sandbox.Box(tmp_path), {})
    time.sleep(0.5)
    assert proc.alive()  # waiting for its script
    proc.go(Path(script), {"AUTORESEARCH_SEED": "7"})
    out = proc.popen.stdout.read().decode()
    assert proc.wait(timeout=60) == 3  # the script's own exit code
    assert "torch ready: True" in out
    assert f"__main__ ['{script}'] 7 imported from the script folder True" in out


def test_a_prestarted_interpreter_that_is_never_told_anything_exits_quietly(tmp_path):
    from autoresearch import sandbox

    proc = sandbox.prestart_python(sandbox.Box(tmp_path), {})
    proc.popen.stdin.close()
    assert proc.wait(timeout=60) == 0


# ---------------------------------------------------------------------------------------------- the box

boxed = pytest.mark.skipif(sys.platform != "linux" or __import__("shutil").which("bwrap") is None,
                           reason="the box needs bubblewrap on Linux")


def run_boxed(box, code: str, env: dict | None = None, timeout: float = 60) -> str:
    from autoresearch import sandbox

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

    from autoresearch import sandbox

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
    from autoresearch import sandbox

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

    from autoresearch import sandbox

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
    from autoresearch import sandbox

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
    from autoresearch import sandbox

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
    from autoresearch import sandbox

    work, _ = layout
    assert assert_a_daemon_dies_with_its_run(sandbox.Box(work), work / "heartbeat") == "bwrap"


def test_a_file_larger_than_the_limit_cannot_be_written(layout, monkeypatch):
    from autoresearch import sandbox

    monkeypatch.setattr(sandbox, "MAX_FILE_BYTES", 1 << 20)
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
    from autoresearch import sandbox

    assert sandbox.isolation() == "bwrap"


@pytest.mark.skipif(sys.platform != "linux", reason="pids cgroups are Linux only")
def test_a_fork_bomb_meets_the_process_limit(layout, monkeypatch):
    from autoresearch import sandbox

    if sandbox._pids_parent() is None:
        pytest.skip("no writable pids cgroup here")
    monkeypatch.setattr(sandbox, "MAX_TASKS", 64)
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
    from autoresearch import landlock, sandbox

    if landlock.abi() < 1:
        pytest.skip("this kernel has no Landlock")
    monkeypatch.setenv("AUTORESEARCH_SANDBOX", "landlock")
    sandbox.isolation.cache_clear()
    yield landlock.abi()
    sandbox.isolation.cache_clear()


def run_landlocked(box, code: str) -> str:
    from autoresearch import sandbox

    proc = sandbox.start_python(["-c", textwrap.dedent(code)], box, {})
    out = proc.popen.stdout.read().decode()
    assert proc.wait(timeout=60) == 0, out
    assert proc.isolation == "landlock"
    return out


def test_landlock_lets_a_run_reach_only_what_it_needs(landlock_layer, layout, tmp_path, monkeypatch):
    from autoresearch import sandbox

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

    from autoresearch import sandbox

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
    from autoresearch import sandbox

    if sandbox._pids_parent() is None:
        pytest.skip("without a pids cgroup, a daemon can leave the Landlock layer's process group")
    work, _ = layout
    beat = work / ".autoresearch" / "model" / "heartbeat"  # (no new files at the top of the folder)
    assert assert_a_daemon_dies_with_its_run(sandbox.Box(work, write=(beat.parent,)), beat) == "landlock"


def test_the_harness_start_folder_is_not_shown_to_candidates(monkeypatch, tmp_path):
    import sys

    from autoresearch import sandbox

    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert str(tmp_path) not in sandbox.python_paths()
    work = tmp_path / "task" / ".autoresearch" / "worktrees" / "t"
    work.mkdir(parents=True)
    assert sandbox._shown(sandbox.Box(work), [str(tmp_path), sys.prefix]) == [os.path.realpath(sys.prefix)]


def test_a_prestarted_interpreter_is_landlocked_with_rules_made_when_it_is_told_to_run(landlock_layer, layout):
    from autoresearch import sandbox

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
    from autoresearch.runner import output_lines

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
