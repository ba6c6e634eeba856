#!/usr/bin/env bash
# The GPU check: one command that measures what only a GPU can tell, in at most 8 minutes on one H200
# with 16 CPU cores, and writes one Markdown table for the README.
#
#   bash benchmarks/gpu_check.sh                # on the GPU machine (fails at once without CUDA)
#   bash benchmarks/gpu_check.sh --cpu-smoke    # the same steps, tiny, on the CPU: that the check works
#                                               # (CI runs it: tests/test_gpu_check.py); or SSP_GPU_CHECK_SMOKE=1
#
# Steps, in order of value, each under `timeout` with the smaller of its own limit and the time left
# (SSP_GPU_CHECK_BUDGET seconds in all, default 450; a step that no longer fits is skipped):
#   warmup        numba's on-disk cache and .pyc files (a fresh machine compiles them once), fallback weights
#   cuda_tests    pytest -m gpu over the test files that hold GPU tests
#   speed         benchmarks/speed.py, every phase, against the official data path in 4 and 16 workers
#                 and in one process: steady state and the whole `ssp predict` process
#   tree          a generated GenImage-like tree (JPEG reals, PNG fakes; benchmarks/gpu_check.py)
#   train         ssp train, 2 epochs of the paper's ssp, bf16, channels-last (always), torch.compile
#   test_workers  ssp test on the tree's train split, images decoded in the DataLoader workers
#   test_device   the same with --decode device (JPEGs by nvJPEG on the GPU)
# The table goes to $OUT/gpu_check.md when $OUT is set (and to stdout); each step's log, exit status
# and seconds to $OUT/gpu_check_steps/ (or a temporary folder). Exit status 0 when every step passed.
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
if [[ "${1:-}" == "--cpu-smoke" || "${SSP_GPU_CHECK_SMOKE:-0}" == 1 ]]; then MODE=cpu-smoke; fi
BUDGET=${SSP_GPU_CHECK_BUDGET:-450}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if [[ -n "${OUT:-}" ]]; then STEPS="$OUT/gpu_check_steps"; else STEPS="$WORK/steps"; fi
rm -rf "$STEPS" && mkdir -p "$STEPS"
START=$(date +%s.%N)
DEADLINE=$(( ${START%.*} + BUDGET ))

if [[ $MODE == gpu ]]; then
  DEVICE=cuda
  SPEED=(--device cuda --images 512 --batch-size 256 --official-workers 4 16 --train-steps 3 --model-reps 20
         --select-images 60 --select-rounds 3 --phases decode select eval train process)
  TREE=(--per-class 256 --val-per-class 64)
  TRAIN=(--model ssp --epochs 2 --batch-size 64 --precision bf16 --compile)
  TEST=(--batch-size 256)
  LIMITS=(warmup=60 cuda_tests=90 speed=240 tree=30 train=150 test_workers=45 test_device=45)
else
  DEVICE=cpu
  SPEED=(--device cpu --images 2 --batch-size 2 --official-workers 1 --workers 1 --predict-threads 1
         --train-steps 1 --model-reps 1 --select-images 1 --select-rounds 1 --no-process-warmup
         --phases decode select eval train process)
  TREE=(--per-class 4 --val-per-class 2 --subsets 1)
  TRAIN=(--model ssp-lite --epochs 2 --batch-size 4 --precision bf16 --no-compile --workers 0)
  TEST=(--batch-size 4 --workers 0)
  LIMITS=(warmup=180 cuda_tests=180 speed=600 tree=120 train=240 test_workers=120 test_device=120)
fi

limit_of() { local kv; for kv in "${LIMITS[@]}"; do [[ ${kv%%=*} == "$1" ]] && echo "${kv#*=}"; done; }

# step NAME COMMAND...: run COMMAND with the smaller of the step's limit and the time left; record its
# exit status (124/137: timed out), seconds and log in $STEPS.
step() {
  local name=$1 limit left start rc
  shift
  limit=$(limit_of "$name")
  left=$(( DEADLINE - $(date +%s) - 10 ))  # 10 s kept for the report
  if (( left < 5 )); then
    echo skipped > "$STEPS/$name.status"
    echo "gpu_check: $name skipped, out of time" >&2
    return 1
  fi
  (( limit > left )) && limit=$left
  start=$(date +%s.%N)
  timeout --kill-after=10 "$limit" "$@" > "$STEPS/$name.log" 2>&1
  rc=$?
  echo "$rc" > "$STEPS/$name.status"
  awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", b - a }' > "$STEPS/$name.seconds"
  echo "gpu_check: $name exit $rc in $(cat "$STEPS/$name.seconds") s" >&2
  return "$rc"
}

"$PY" - "$MODE" "$BUDGET" > "$STEPS/env.json" <<'EOF'
import json, os, sys, time
import torch
mode, budget = sys.argv[1], int(sys.argv[2])
cuda = torch.cuda.is_available()
print(json.dumps({
    "date": time.strftime("%Y-%m-%d %H:%M %Z"), "mode": mode, "budget_s": budget, "cpus": os.cpu_count(),
    "torch": torch.__version__, "cuda": cuda,
    "device": torch.cuda.get_device_name(0) if cuda else "CPU only",
}))
EOF
if [[ $MODE == gpu ]] && ! grep -q '"cuda": true' "$STEPS/env.json"; then
  echo "gpu_check: no CUDA device here; run 'bash benchmarks/gpu_check.sh --cpu-smoke' to check the check on the CPU" >&2
  exit 2
fi

step warmup "$PY" - "$WORK/official.pth" <<'EOF'
import sys
import numpy as np
import torch
from ssp_detect.data.patch import select_simplest_patch
from tests.reference.official import OfficialSSP

img = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
for mode in ("seeded", "random", "exhaustive"):  # compiles and caches numba's kernels once, before any worker
    select_simplest_patch(img, 32, mode)
torch.manual_seed(0)
torch.save(OfficialSSP().state_dict(), sys.argv[1])  # official-format weights if training gives none
EOF

# shellcheck disable=SC2046
step cuda_tests "$PY" -m pytest -q -m gpu -p no:cacheprovider $(grep -l "mark.gpu" tests/test_*.py)

step speed "$PY" -m benchmarks.speed "${SPEED[@]}" --json "$STEPS/speed.json"

TREE_ROOT="$WORK/tree"
step tree "$PY" -m benchmarks.gpu_check make-tree "$TREE_ROOT" "${TREE[@]}" \
  && tail -n 1 "$STEPS/tree.log" > "$STEPS/tree.images"
find "$TREE_ROOT" -path "*/train/*" -type f 2>/dev/null | wc -l | tr -d ' ' > "$STEPS/train.images"

step train "$PY" -m ssp_detect train --data "$TREE_ROOT" --val-split val --device "$DEVICE" --out "$STEPS/train_run" \
  --no-progress "${TRAIN[@]}"
WEIGHTS="$STEPS/train_run/best.pt"
[[ -f $WEIGHTS ]] || WEIGHTS="$WORK/official.pth"
rm -f "$STEPS/train_run/last.pt"  # the optimizer state: not wanted among the results

for decode in workers device; do
  cp "$STEPS/train.images" "$STEPS/test_$decode.images"
  step "test_$decode" "$PY" -m ssp_detect test --weights "$WEIGHTS" --data "$TREE_ROOT" --split train \
    --device "$DEVICE" --decode "$decode" --bootstrap 0 --no-progress --out "$WORK/test_$decode" "${TEST[@]}"
done
rm -f "$STEPS/train_run/best.pt"  # ~100 MB: the table and metrics.jsonl say what it did

TABLE=$("$PY" -m benchmarks.gpu_check report "$STEPS")
if [[ -n "${OUT:-}" ]]; then printf '%s\n' "$TABLE" > "$OUT/gpu_check.md"; fi
printf '%s\n' "$TABLE"
for status in "$STEPS"/*.status; do
  [[ $(cat "$status") == 0 ]] || exit 1
done
exit 0
