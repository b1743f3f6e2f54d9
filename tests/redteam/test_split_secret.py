"""A candidate that rebuilds the built-in corpus in its box gets the train split, never val or test.

The built-in corpus is generated from seeds, and train.py can import the package and read the task's
settings. The attack below, run as one experiment through the real loop, calls `prepare` with those
settings and a cache folder of its own, and prints the SHA-256 of the token arrays it built; it also tries
to read the split key and the manifest. The test compares its digests with the real manifest's: train
must match (the rebuild is faithful, so the key alone is what keeps val and test out of reach) and val
and test must not. It runs in the bubblewrap box and in the Landlock layer. The coding agent's box is
checked too: the key lies in the data cache it covers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_TOML, cli

from autoresearch.config import load_config
from autoresearch.data import splitkey
from autoresearch.data.prepare import open_dataset
from autoresearch.run import landlock, sandbox
from autoresearch.store import Status, Store

pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out

ATTACK = '''
import hashlib as _hashlib, os as _os, shutil as _shutil, tempfile as _tempfile
from pathlib import Path as _Path

_train = _os.environ["AUTORESEARCH_TRAIN_TOKENS"]  # <cache>/datasets/<name>/train.npy
_cache = _os.path.dirname(_os.path.dirname(_os.path.dirname(_train)))
for _path in (_os.path.join(_cache, "split-key"), _os.path.join(_os.path.dirname(_train), "manifest.json")):
    try:
        print("REDTEAM split-secret READ", _path, open(_path, "rb").read(8))
    except OSError:
        print("REDTEAM split-secret blocked", _os.path.basename(_path))
try:
    print("REDTEAM split-secret listed", " ".join(sorted(_os.listdir(_cache))))
except OSError:
    print("REDTEAM split-secret listed nothing")
from autoresearch.config import load_config as _load_config
from autoresearch.data import prepare as _prepare

_own = _tempfile.mkdtemp(prefix="rebuild-", dir=_os.environ["AUTORESEARCH_OUTPUT_DIR"])  # a folder it may write
_os.environ["AUTORESEARCH_CACHE"] = _own  # a cache of its own
_built = _prepare.prepare(_load_config(_Path.cwd()).data).dataset
for _split in ("train", "val", "test"):
    print("REDTEAM split-secret built", _split, _hashlib.sha256(_built.tokens_path(_split).read_bytes()).hexdigest())
_shutil.rmtree(_own)
'''


def _layer(layer: str) -> None:
    if layer == "bwrap" and sandbox.isolation() != "bwrap":
        pytest.skip("no bubblewrap box here")
    if layer == "landlock" and landlock.abi() < 6:
        pytest.skip("the Landlock layer needs ABI 6 (TCP rules and signal scoping)")


@pytest.mark.parametrize("layer", ["bwrap", "landlock"])
def test_a_candidate_cannot_rebuild_the_held_out_splits(layer, tmp_path):
    _layer(layer)
    task = tmp_path / "task"
    cli("init", str(task), cwd=tmp_path)
    (task / "autoresearch.toml").write_text(TINY_TOML.replace("budget_seconds = 5.0", "budget_seconds = 2.0"))
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qam", "tiny settings"], cwd=task,
                   check=True)
    cli("prepare", cwd=task)
    train = (task / "train.py").read_text()
    hostile = f"if __name__ == '__main__':\n    exec({ATTACK!r})\n\n" + train  # when it trains, not when evaluated
    proposals = tmp_path / "attack.json"
    proposals.write_text(json.dumps([{"description": "rebuild the splits", "files": {"train.py": hostile}}]))
    env = {**os.environ, "AUTORESEARCH_SANDBOX": "landlock" if layer == "landlock" else ""}
    done = subprocess.run([sys.executable, "-m", "autoresearch", "run", "--agent", f"replay:{proposals}", "--tag", "rt"],
                          cwd=task, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    with Store.open(task) as store:
        history = store.experiments("rt")
    attack = history[1]
    assert attack.description == "rebuild the splits" and attack.metrics["isolation"] == layer
    assert attack.status in (Status.KEEP, Status.DISCARD), (attack.status, attack.error)
    log = Path(attack.log_path).read_text(errors="replace")

    assert log.count("REDTEAM split-secret blocked") == 2 and "REDTEAM split-secret READ" not in log, log[-3000:]
    listed = next(line for line in log.splitlines() if line.startswith("REDTEAM split-secret listed"))
    assert splitkey.FILE_NAME not in listed
    built = {words[3]: words[4] for words in map(str.split, log.splitlines())
             if words[:3] == ["REDTEAM", "split-secret", "built"]}
    assert sorted(built) == ["test", "train", "val"], log[-3000:]
    real = open_dataset(load_config(task).data).manifest["files"]
    assert built["train"] == real["train.npy"]["sha256"]  # the rebuild is faithful: train is public
    assert built["val"] != real["val.npy"]["sha256"]  # the held-out splits need the key it cannot read
    assert built["test"] != real["test.npy"]["sha256"]
    assert splitkey.read().hex() not in log


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
