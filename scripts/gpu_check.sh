#!/usr/bin/env bash
# GPU check, about 5 minutes on one GPU machine (run from the repository root with the virtual environment active):
#   1. the device-aware tests on CUDA (pytest --device cuda; the CPU-only tests are skipped there);
#   2. scripts/bench_explain.py for vit_base_patch16_224 at batch 32 on CUDA (its ratios to timm's forward);
#   3. a reduced mini suite (every method, 32 images, 60 reviews) on CUDA and on the CPU with the same settings and
#      the same generated data, then the differences between their numbers and the wall-time ratio
#      (scripts/compare_results.py).
# OUT (default outputs/gpu_check) collects the bench JSON and both reports. Each part has its own time limit.
set -u
OUT=${OUT:-outputs/gpu_check}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1
status=0
part() { echo; echo "== $1 ($(date -u +%T))"; }
mini=(--suite mini --num-images 32 --num-docs 60 --data-root "$OUT/data")

part "tests on CUDA"
timeout 80 python -m pytest -q -x --device cuda -p no:cacheprovider 2>&1 | tail -15 || status=1

part "bench_explain.py vit_base_patch16_224, batch 32, CUDA"
timeout 50 python scripts/bench_explain.py --model vit_base_patch16_224 --batch-size 32 --device cuda \
    --json "$OUT/bench_vit_base_b32.json" 2>&1 | tail -25 || status=1

part "reduced mini suite on CUDA"
timeout 60 python scripts/reproduce.py "${mini[@]}" --device cuda --output "$OUT/mini_cuda" 2>&1 | tail -2 || status=1

part "the same on the CPU"
timeout 100 python scripts/reproduce.py "${mini[@]}" --device cpu --output "$OUT/mini_cpu" 2>&1 | tail -2 || status=1

part "CUDA against CPU"
python scripts/compare_results.py "$OUT/mini_cpu/results.json" "$OUT/mini_cuda/results.json" \
    --run-a "$OUT/mini_cpu/run.json" --run-b "$OUT/mini_cuda/run.json" || status=1
exit $status
