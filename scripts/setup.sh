#!/usr/bin/env bash
# Create .venv and install autoresearch with its test tools. Safe to run again.
# torch: installs torch==$TORCH_VERSION (default 2.13.0) unless a torch >= 2.9 is already in the venv;
# set TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cpu) to pick a build.
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
