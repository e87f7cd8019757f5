#!/usr/bin/env bash
# One device call for the fused layer kernels (issue 19, batch-64 serving): GPU tests first
# (the kernels vs their references, then the decoder's exactness tests), then the layer-kernel
# table and the serving rows (ours, ours without the fused kernels, transformers' static cache +
# compile) at 1B, 134M and 8B. Results go to $OUT/results.tar (markdown tables, profiles) and
# $OUT/log.txt.
#
#     bash bench/serving_fused.sh            # on the device machine, from the repository root
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/serving-out}
RESULTS=/tmp/serving-results
mkdir -p "$OUT" "$RESULTS"
exec > >(tee -a "$OUT/log.txt") 2>&1
PYTEST=(python3 -m pytest -q -p no:django -o addopts="" -m gpu)
# Each stage first packs what the earlier ones wrote: a run cut off at its limit still returns it.
stage() { tar -C "$RESULTS" -cf "$OUT/results.tar" .; echo "== $(date -u +%T) $*"; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv
stage "kernel tests"
if ! timeout 120 "${PYTEST[@]}" -x tests/models_zoo/test_decode_kernels.py; then
    echo "kernel tests failed: stopping"
    exit 1
fi
stage "decoder exactness tests"
timeout 150 "${PYTEST[@]}" tests/models_zoo/test_gpu_decode.py tests/models_zoo/test_fast_decode.py
stage "layer kernels"
timeout 60 python3 bench/serving.py --layer-kernels --batches 1 8 64 \
    --out "$RESULTS/layer_kernels.md"
stage "1b"
timeout 150 python3 bench/serving.py --size 1b --rows ours ours-unfused hf-compile \
    --hf-compile-batches 64 --step-repeats 2 --repeats 2 --profile --out "$RESULTS/serving_1b.md"
stage "134m"
timeout 100 python3 bench/serving.py --size 134m --rows ours ours-unfused hf-compile \
    --hf-compile-batches 64 --step-repeats 2 --repeats 2 --profile \
    --out "$RESULTS/serving_134m.md"
stage "8b"
timeout 200 python3 bench/serving.py --size 8b --rows ours ours-unfused hf-compile \
    --batches 1 64 --hf-compile-batches 64 --step-repeats 2 --repeats 2 \
    --out "$RESULTS/serving_8b.md"
stage "done"
