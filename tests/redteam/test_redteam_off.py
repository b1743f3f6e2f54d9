"""The red-team catalogue (redteam_suite.py) with process isolation only (`AUTORESEARCH_SANDBOX=off`)."""

import pytest
from redteam_suite import *  # noqa: F403 (the suite's tests and its module-scoped run)

LAYER = "off"
pytestmark = pytest.mark.slow  # many real trainings: `pytest -m "not slow"` leaves them out
