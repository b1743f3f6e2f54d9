#!/usr/bin/env bash
# GPU figures in one go: prepare the built-in corpus at the CUDA defaults, `autoresearch bench`
# (cold compile), then one full `autoresearch train` (warm compile cache), then bench/step_profile.py and
# bench/traffic.py.
# Logs go to $OUT.
# With SWEEP set ("default", or variants as bench/gpu_sweep.sh takes them), the profile's variants are
# benchmarked afterwards, as many as end before START + LIMIT seconds (default 570).
# BENCH_BUDGET=0 skips the bench (the train's own start-up is then the cold one); TRAIN_BUDGET=0 the train.
# Usage: OUT=/tmp/out TRAIN_MB=500 [SWEEP=default] bash bench/gpu_report.sh     (run from the repository root)
set -euo pipefail
START=$(date +%s)
REPO=$PWD
OUT=${OUT:-/tmp/autoresearch-gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ ! -x .gpu-tools/bwrap ] || export PATH="$PWD/.gpu-tools:$PATH"  # bubblewrap carried in (bench/carry_bwrap.sh)
export AUTORESEARCH_CACHE=${AUTORESEARCH_CACHE:-/tmp/autoresearch-cache}
TASK=${TASK:-/tmp/autoresearch-gpu-task}
ar() { python -m autoresearch "$@"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  python -c 'from autoresearch import landlock, sandbox; print("isolation", sandbox.isolation(), "landlock abi", landlock.abi())'
  python -c 'from autoresearch.speed import probe; print("machine-speed probe GFLOP/s", [round(probe("cuda")) for _ in range(5)])'
} 2>&1 | tee "$OUT/device.txt"
[ -f "$TASK/autoresearch.toml" ] || ar init "$TASK"
cd "$TASK"
[ -z "${TRAIN_MB:-}" ] || sed -i "s/^train_mb = .*/train_mb = $TRAIN_MB/" autoresearch.toml
cp autoresearch.toml "$OUT/"
/usr/bin/time -f "prepare wall %e s" python -m autoresearch prepare 2>&1 | tee "$OUT/prepare.txt"
[ "${BENCH_BUDGET:-30}" = 0 ] || ar bench --budget "${BENCH_BUDGET:-30}" --json 2>&1 | tee "$OUT/bench.txt"
[ "${TRAIN_BUDGET:-300}" = 0 ] || ar train --budget "${TRAIN_BUDGET:-300}" --json 2>&1 | tee "$OUT/train.txt"
# what one version of the code leaves in the compile cache (sandbox.compile_cache_gb caps it across a night)
du -s --block-size=1M .autoresearch/compile-cache 2>&1 | tee "$OUT/compile-cache.txt" || true
# where a step's time goes, kernel by kind (PROFILE=0 skips it)
[ "${PROFILE:-1}" = 0 ] || { python "$REPO/bench/step_profile.py" --task "$TASK" --trace "$OUT/trace.json" 2>&1 |
  tee "$OUT/profile.txt"; gzip -f "$OUT/trace.json"; } || true  # compressed: a trace of a few steps is megabytes of JSON
# the bytes each compiled kernel moves per token (TRAFFIC=0 skips it)
[ "${TRAFFIC:-1}" = 0 ] || python "$REPO/bench/traffic.py" --train-py "$TASK/train.py" 2>&1 | tee "$OUT/traffic.txt" || true
if [ -n "${SWEEP:-}" ]; then
  cd "$REPO"
  [ "$SWEEP" = default ] && SWEEP=""
  # shellcheck disable=SC2086  # the variants are words
  OUT="$OUT" TASK="$TASK" DEADLINE=$(( START + ${LIMIT:-570} )) bash bench/gpu_sweep.sh $SWEEP
fi
