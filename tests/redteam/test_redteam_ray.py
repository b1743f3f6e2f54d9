"""The red-team catalogue (redteam_suite.py) in the bubblewrap box on a Ray cluster's node (`--executor
ray`): the same attacks get the same outcomes when they run in a node's copy of the task, and what the
node sends back (logs, outcomes, models) carries nothing more here."""

import pytest
from redteam_suite import *  # noqa: F403 (the suite's tests and its module-scoped run)

pytest.importorskip("ray", reason="the Ray layer needs Ray: pip install 'autoresearch[ray]'")
LAYER = "bwrap"
EXECUTOR = "ray"
pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out
