"""The research loop (loop.py) and its parts: a line of research (line.py), proposing (propose.py),
measuring and deciding (measure.py), sharing bests (adopt.py), running unattended (health.py)."""

from autoresearch.loop.health import crashes_in_a_row, failures_in_a_row, retry_wait
from autoresearch.loop.line import BASELINE, FAULT_POINTS, LoopError, branch_name, fault_point
from autoresearch.loop.loop import Limits, Loop, request_recalibration
from autoresearch.loop.measure import failure_status

__all__ = ["BASELINE", "FAULT_POINTS", "Limits", "Loop", "LoopError", "branch_name", "crashes_in_a_row",
           "failure_status", "failures_in_a_row", "fault_point", "request_recalibration", "retry_wait"]
