#!/usr/bin/env bash
# Set everything up, then run the linter and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The dashboard's tests drive a real browser: Debian's chromium (Playwright's own download cannot work offline).
if [ "$(uname -s)" = Linux ] && ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && SUDO="sudo -n"; }
  export DEBIAN_FRONTEND=noninteractive
  { $SUDO apt-get install -y -q chromium >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; }; } \
    || echo "warning: could not install chromium; the dashboard's browser tests are skipped (CI fails them)" >&2
fi
.venv/bin/ruff check src tests bench
.venv/bin/python -m pytest -q "$@"
