"""Distillation (`autoresearch distill`): a run's kept changes, each measured by removing it from the end
result, and a branch of only those that matter. `plan` decides (pure), `agent` proposes the removals, `run`
drives the loop that measures them and writes the branch and distill.md. docs/distill.md."""

from autoresearch.distill.run import Distilled, DistillError, distill

__all__ = ["DistillError", "Distilled", "distill"]
