"""The red-team catalogue (redteam_suite.py) in the bubblewrap box."""

import pytest
from redteam_suite import *  # noqa: F403 (the suite's tests and its module-scoped run)

LAYER = "bwrap"
pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out
