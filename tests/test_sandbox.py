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
