#!/usr/bin/env bash
# Set everything up, then run the main job on the built-in defaults: a task folder, the built-in
# corpus, and the research loop with the built-in `tune` agent for a handful of short experiments,
# then the report (results.tsv, progress.png, report.md, report.html). A few minutes on a laptop CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
TASK=${TASK:-quickstart-task}
[ -f "$TASK/autoresearch.toml" ] || autoresearch init "$TASK"
cd "$TASK"
autoresearch prepare
TAG=${TAG:-quickstart-$(date +%Y%m%d-%H%M%S)}
autoresearch run --tag "$TAG" --budget "${BUDGET:-20}" --max-experiments "${EXPERIMENTS:-5}"
autoresearch status --tag "$TAG"
autoresearch report --tag "$TAG"
