#!/usr/bin/env bash
# The CUDA GEMV tuning run on the lent GPU machine (from the repository root, MLX staged as
# shared/gpu/README.md says): phase 1 checks every variant of every type in 8 parallel processes
# (NVRTC compiles land in MLX's disk cache), phase 2 times them one process and writes the plan;
# with "final", gpu_qmatmul.py runs on that plan. Results under $OUT (at most 8 files).
#   plugins/kernels_ggml/scripts/gpu_gemv_sweep.sh [final|lean]   (KG: the kernels_ggml checkout to use;
#   lean: no timing sweep, v4 wherever its check passed, gpu_qmatmul.py --compare-v3 on that plan)
set -o pipefail
kg="${KG:-plugins/kernels_ggml}"
s="$kg/scripts"
out="${OUT:-gemv-sweep}"
mkdir -p "$out" /tmp/c
export MLX_ENABLE_TF32=0 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
t0=$SECONDS
for t in Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q4_K Q5_K Q6_K; do
  timeout "${CHECK_TIMEOUT:-150}" python3 "$s/gpu_gemv_sweep.py" compile "$t" "/tmp/c/check-$t.json" >"/tmp/c/log-$t.txt" 2>&1 &
done
wait
echo "phase 1: $((SECONDS - t0)) s"
cat /tmp/c/log-*.txt >"$out/check.log"
echo "variant checks: $(grep -c ' ok' "$out/check.log") ok, $(grep -c 'FAIL' "$out/check.log") failed"
grep FAIL "$out/check.log" | cut -c1-400 | head -20
if [ "${1:-}" = lean ]; then  # NOTE: no timing sweep: v4 where it checked out, then gpu_qmatmul with v3 next to it
  python3 "$s/gpu_gemv_sweep.py" plan /tmp/c 2>&1 | tee "$out/sweep.txt"
  cp /tmp/c/plan.json "$out/"
  timeout "${FINAL_TIMEOUT:-300}" python3 "$s/gpu_qmatmul.py" --plan /tmp/c/plan.json --compare-v3 --out "$out/qmatmul.json" 2>&1 | tee "$out/qmatmul.txt"
  echo "final done: $((SECONDS - t0)) s"
  exit 0
fi
timeout "${TIME_TIMEOUT:-240}" python3 "$s/gpu_gemv_sweep.py" time /tmp/c 2>&1 | tee "$out/sweep.txt"
cp /tmp/c/sweep.json /tmp/c/plan.json "$out/" 2>/dev/null
echo "phase 2 done: $((SECONDS - t0)) s"
if [ "${1:-}" = final ]; then
  timeout "${FINAL_TIMEOUT:-300}" python3 "$s/gpu_qmatmul.py" --plan /tmp/c/plan.json --out "$out/qmatmul.json" 2>&1 | tee "$out/qmatmul.txt"
  echo "final done: $((SECONDS - t0)) s"
fi
