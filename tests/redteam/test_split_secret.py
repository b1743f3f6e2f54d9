"""The split key, which alone keeps val and test out of reach of a rebuild of the built-in corpus, lies in the data
cache that the coding agent's box covers. (A candidate's rebuild in its own box is the red team's `split-secret`
attack: redteam_suite.py.)
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from autoresearch.data import splitkey
from autoresearch.run import sandbox


@pytest.mark.skipif(sandbox.isolation() != "bwrap", reason="the coding agent's box needs bubblewrap")
def test_the_coding_agents_box_covers_the_split_key(tmp_path):
    from autoresearch.agents.command import SessionAgent

    key = splitkey.ensure()
    task = tmp_path / "task"
    task.mkdir()
    reader = [sys.executable, "-c", f"print(open({str(splitkey.key_path())!r}).read().strip())"]
    agent = SessionAgent(task, box=True)
    boxed = subprocess.run(agent._boxed(reader, task), capture_output=True, text=True, timeout=60)
    assert boxed.returncode != 0 and "No such file" in boxed.stderr and key.hex() not in boxed.stdout
    unboxed = subprocess.run(reader, capture_output=True, text=True, timeout=60)  # the check can fail
    assert unboxed.stdout.strip() == key.hex()
