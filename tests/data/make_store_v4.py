"""Makes tests/data/store-v4.sqlite: a store as the code of schema version 4 writes it, for the tests that
open stores made by earlier versions (test_store.py). Run from the repository root:

    .venv/bin/python tests/data/make_store_v4.py

A line of five experiments through the loop with scripted outcomes: the baseline's three seeds, a gain kept
at once and run again to settle it, a discard, a crash, and a proposal rejected; then the machine slows and
the best runs again at its new speed."""

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loopkit import Scripted, code_text, fake_loop, loss_of, make_task, proposals, settings  # noqa: E402

from autoresearch.agents.replay import ReplayAgent  # noqa: E402

OUT = Path(__file__).with_name("store-v4.sqlite")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        task = make_task(Path(tmp))
        machine = {"speed": 100.0}

        def script(request):
            text = code_text(request)
            if "CRASH" in text:
                return Scripted(status="crash", error="RuntimeError: boom")
            return Scripted(metric=loss_of(text) + request.seed * 1e-3, speed=machine["speed"])

        def on_event(event):
            if event.get("event") == "decided" and event.get("seq") == 3:
                machine["speed"] = 50.0

        changes = proposals("LOSS = 0.8\n", "LOSS = 0.9\n", "LOSS = 0.7\nCRASH = 1\n", "LOSS = 0.8\n",
                            "LOSS = 0.79\n")
        loop, _ = fake_loop(task, script, ReplayAgent(changes), on_event=on_event,
                            config=settings(keep={"speed_tolerance": 0.25}))
        try:
            loop.run()
        finally:
            loop.close()
        shutil.copy(task / ".autoresearch" / "store.sqlite", OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
