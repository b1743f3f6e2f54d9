#!/usr/bin/env bash
# Set everything up, then run the linter and the whole test suite.
# Without arguments: the tests on $AUTORESEARCH_TEST_WORKERS workers (default 2; pytest-xdist, a test file per
# worker at a time), then those marked `serial` alone (they change what every process of the machine shares).
# With arguments: pytest with them, in one process (e.g. `-m "not slow"`, or a test file).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
if [ "$#" -gt 0 ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
.venv/bin/python -m pytest -q -n "${AUTORESEARCH_TEST_WORKERS:-2}" --dist loadfile -m "not serial"
.venv/bin/python -m pytest -q -m serial
