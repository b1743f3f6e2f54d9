#!/usr/bin/env bash
# Create .venv and install autoresearch with its test tools. Safe to run again.
# torch: installs torch==$TORCH_VERSION (default 2.13.0) unless a torch >= 2.9 is already in the venv;
# set TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) to pick a build.
# bubblewrap (the sandbox for candidate code, Linux): installed with apt-get where this user may, else a
# warning says how; autoresearch then runs candidates without the box and says so in every report.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), "autoresearch needs Python >= 3.10"'
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c 'import torch, sys; v = tuple(map(int, torch.__version__.split("+")[0].split(".")[:2])); sys.exit(v < (2, 9))' 2>/dev/null; then
  "${PIP[@]}" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==${TORCH_VERSION:-2.13.0}"
fi
"${PIP[@]}" -e '.[dev]'
if [ "$(uname -s)" = Linux ] && ! command -v bwrap >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && SUDO="sudo -n"; }
  if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; }; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1 \
      || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1; } \
      || echo "warning: could not install bubblewrap; candidate code will run without the sandbox" >&2
  else
    echo "warning: bubblewrap is not installed (apt-get install bubblewrap, dnf install bubblewrap);" \
         "candidate code will run without the sandbox" >&2
  fi
fi
