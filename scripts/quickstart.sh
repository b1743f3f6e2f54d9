#!/usr/bin/env bash
# Set everything up, then run the main job on the built-in defaults: a task folder, the built-in
# corpus, and one experiment on the baseline train.py (60 s on CPU, 300 s on a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
TASK=${TASK:-quickstart-task}
[ -f "$TASK/autoresearch.toml" ] || autoresearch init "$TASK"
cd "$TASK"
autoresearch prepare
autoresearch train
