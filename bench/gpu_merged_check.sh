#!/usr/bin/env bash
# One device call on merged main (issues 17 and 19): the models_zoo GPU tests, batch-64 serving
# at 1B and 134M beside transformers' static cache + compile, the few-shot k = 0 bench beside
# lm-eval (carried as wheels in .fewfast/whl, data in .fewfast/fewglue; see
# bench/fewshot_gpu_call.sh for how to fetch them), then the warm-up scenarios. Stages run in
# priority order with their own time limits; logs go to $OUT as they are written.
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
STAGES=${*:-tests 1b 134m fewshot warmup}  # a subset as arguments: bash bench/gpu_merged_check.sh tests 1b
stage() { echo "== $(date -u +%T) $*"; }
want() { [[ " $STAGES " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
want tests && stage "models_zoo GPU tests" && timeout 180 python3 -m pytest -q -p no:django -o addopts="" -m gpu tests/models_zoo -x 2>&1 | tail -15
want 1b && stage "1b batch 64" && timeout 140 python3 bench/serving.py --size 1b --rows ours hf-compile --batches 64 --step-repeats 1 \
    --repeats 3 --out "$OUT/serving_1b.md" 2>&1 | grep -vE 'it/s]|Loading weights' | tail -25
want 134m && stage "134m batch 64" && timeout 80 python3 bench/serving.py --size 134m --rows ours hf-compile --batches 64 --step-repeats 1 \
    --repeats 3 --out "$OUT/serving_134m.md" 2>&1 | grep -vE 'it/s]|Loading weights' | tail -25
if want fewshot; then
stage "few-shot k = 0"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .fewfast/whl/*.whl
PYTHONPATH=$PWD:/tmp/site timeout 120 python3 bench/fewshot.py --device cuda --model-preset llama-1b \
    --dtype bfloat16 --data-dir .fewfast/fewglue --limit 277 --shots 0 --repeats 2 --skip-naive \
    --lm-eval-python python3 --lm-eval-batch-sizes 32 --out "$OUT/fewshot.json" 2>&1 \
    | grep -vE 'it/s]|Loading weights' > "$OUT/fewshot.log"; grep -E '^\||^k =|rror' "$OUT/fewshot.log" | tail -20
fi
want warmup && stage "warm-up scenarios" && timeout 60 python3 bench/decode_warmup.py --size 1b 2>&1 | tail -15
stage "done"
