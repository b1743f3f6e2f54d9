#!/usr/bin/env bash
# Copy this machine's bubblewrap, with the libraries it needs beyond libc, into .gpu-tools/ (ignored by
# git), for a machine that has no bwrap and no network to install it: carry .gpu-tools there and
# `bench/gpu_report.sh` puts it first on PATH, so the GPU figures are measured in the box.
# Usage: bash bench/carry_bwrap.sh     (run from the repository root)
set -euo pipefail
real=$(command -v bwrap) || { echo "no bwrap here: apt-get install bubblewrap" >&2; exit 1; }
mkdir -p .gpu-tools/lib
cp "$real" .gpu-tools/lib/bwrap.real
ldd "$real" | awk '/=> \// {print $3}' | grep -v -E '/libc\.so' | xargs -r -I{} cp {} .gpu-tools/lib/
loader=$(ldd "$real" | awk '/ld-linux/ {print $1}')
cat > .gpu-tools/bwrap <<WRAP
#!/bin/sh
# bubblewrap carried from another machine: its libraries come from here, nothing leaks into the box's environment
here=\$(dirname "\$(readlink -f "\$0")")
exec $loader --library-path "\$here/lib" "\$here/lib/bwrap.real" "\$@"
WRAP
chmod +x .gpu-tools/bwrap
.gpu-tools/bwrap --version
