"""Candidate processes never outlive the harness."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux only")
def test_a_candidate_dies_when_the_harness_is_killed(tmp_path):
    pid_file = tmp_path / "child.pid"
    harness = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from autoresearch import sandbox
        proc = sandbox.start_python(["-c", "import time; time.sleep(300)"], cwd=Path("{tmp_path}"), env={{}})
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
    proc = sandbox.prestart_python(tmp_path, {})
    time.sleep(0.5)
    assert proc.alive()  # waiting for its script
    proc.go(Path(script), {"AUTORESEARCH_SEED": "7"})
    out = proc.popen.stdout.read().decode()
    assert proc.wait(timeout=60) == 3  # the script's own exit code
    assert "torch ready: True" in out
    assert f"__main__ ['{script}'] 7 imported from the script folder True" in out


def test_a_prestarted_interpreter_that_is_never_told_anything_exits_quietly(tmp_path):
    from autoresearch import sandbox

    proc = sandbox.prestart_python(tmp_path, {})
    proc.popen.stdin.close()
    assert proc.wait(timeout=60) == 0
