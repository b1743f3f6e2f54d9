#!/usr/bin/env bash
# Throughput of variants of the baseline's `h100` profile, for choosing its shape: one short
# `autoresearch bench` per variant (cold compile each, as the shapes differ), then a table of tokens/s,
# MFU, start-up and peak memory. Runs in the task that bench/gpu_report.sh prepared (same data cache).
# A variant is a space-free list of edits joined by commas: NAME=VALUE sets one of the constants of train.py's
# `if PROFILE == "h100":` block (or one of its shared ones, such as WARMDOWN_FRAC); +NAME applies
# bench/variants/NAME.patch, a change to the code (e.g. "+fused_qkv,LOGIT_SOFTCAP=0"). "base" is the profile
# unchanged. Variants that would end after DEADLINE (epoch seconds) are skipped. DRY_RUN=1 only writes each
# variant's folder.
# Usage: OUT=/tmp/out bash bench/gpu_sweep.sh [VARIANT ...]     (run from the repository root)
set -euo pipefail
REPO=$PWD
OUT=${OUT:-/tmp/autoresearch-gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export AUTORESEARCH_CACHE=${AUTORESEARCH_CACHE:-/tmp/autoresearch-cache}
TASK=${TASK:-/tmp/autoresearch-gpu-task}
BUDGET=${SWEEP_BUDGET:-15}
DEADLINE=${DEADLINE:-$(( $(date +%s) + 3600 ))}
[ -f "$TASK/autoresearch.toml" ] || { echo "no task at $TASK: run bench/gpu_report.sh first" >&2; exit 1; }
H100_BLOCK='/^if PROFILE == "h100":/,/^[^ ]/'  # sed's range of train.py's h100 block, to its first unindented line
# by default, the changes that cut the memory traffic or the kernels' time at the default shape
# (docs/baseline.md), most telling first, as a GPU's time may end before the list: the two that leave the
# arithmetic as it is together, then the bf16 residual stream with them, then with each compiler setting as
# well (max-autotune's compile is the longest), then each change alone
[ $# -gt 0 ] || set -- base +fused_head,+fused_qkv +fused_head,+fused_qkv,+bf16_residual \
  +fused_head,+fused_qkv,+bf16_residual,+coordinate_descent +bf16_residual \
  +fused_head,+fused_qkv,+bf16_residual,+max_autotune +coordinate_descent +fused_head +fused_qkv +max_autotune
printf '%-58s %10s %6s %9s %8s %8s\n' variant tokens/s MFU start-up peakGB params | tee "$OUT/sweep.txt"
for variant in "$@"; do
  if [ $(( $(date +%s) + BUDGET + 60 )) -gt "$DEADLINE" ]; then echo "$variant: skipped (deadline)" | tee -a "$OUT/sweep.txt"; continue; fi
  dir="$TASK-sweep-${variant//[^A-Za-z0-9]/_}"
  rm -rf "$dir" && mkdir -p "$dir"
  cp "$TASK/train.py" "$TASK/autoresearch.toml" "$dir/"
  [ -f "$TASK/program.md" ] && cp "$TASK/program.md" "$dir/"
  if [ "$variant" != base ]; then
    for edit in ${variant//,/ }; do
      name=${edit%%=*}
      value=${edit#*=}
      if [ "${edit#+}" != "$edit" ]; then
        (cd "$dir" && git apply "$REPO/bench/variants/${edit#+}.patch") ||
          { echo "bench/variants/${edit#+}.patch does not apply to train.py" >&2; exit 1; }
      elif sed -n "$H100_BLOCK p" "$dir/train.py" | grep -q "^    $name = "; then
        # one the h100 profile sets in its own block (the line of the same name above it is the cpu profile's)
        sed -i "$H100_BLOCK s/^    $name = [^#]*[^# ]/    $name = $value/" "$dir/train.py"
      elif grep -q "^$name = " "$dir/train.py"; then  # a constant shared by the profiles
        sed -i "0,/^$name = [^#]*[^# ]/s//$name = $value/" "$dir/train.py"
      else
        echo "no constant $name in train.py" >&2; exit 1
      fi
    done
  fi
  (cd "$dir" && git init -q && git add -A && git -c user.name=sweep -c user.email=sweep@localhost commit -qm sweep)
  if [ -n "${DRY_RUN:-}" ]; then echo "$variant: written to $dir" | tee -a "$OUT/sweep.txt"; continue; fi
  python -m autoresearch bench --dir "$dir" --budget "$BUDGET" --json > "$OUT/sweep-${variant//[^A-Za-z0-9]/_}.json" 2> "$OUT/sweep-${variant//[^A-Za-z0-9]/_}.log" || true
  python - "$variant" "$OUT/sweep-${variant//[^A-Za-z0-9]/_}.json" <<'PY' | tee -a "$OUT/sweep.txt"
import json, sys
variant, path = sys.argv[1], sys.argv[2]
try:
    d = json.loads(open(path).read().strip().splitlines()[-1])
except (OSError, ValueError, IndexError):
    print(f"{variant:<58} failed: see the .log next to {path}")
    sys.exit()
if d.get("status") != "ok":
    print(f"{variant:<58} {d.get('status')}: {(d.get('error') or '')[:80]}")
else:
    print(f"{variant:<58} {d['tokens_per_s']:>10,.0f} {100 * (d.get('mfu') or 0):>5.1f}% {d['startup_seconds']:>8.1f}s "
          f"{d['peak_memory_bytes'] / 1e9:>8.1f} {d['params'] / 1e6:>7.1f}M")
PY
done
