#!/usr/bin/env bash
# Device calls on merged main (issues 17 and 19), one script: stages run in the order given, each
# under its own time limit, logs to $OUT as they are written.
#
#     bash bench/gpu_merged_check.sh [stages...]      # on the device machine (carry .fewfast)
#
# Stages (default: tests 1b 134m fewshot warmup):
#   tests      models_zoo GPU tests ($TESTS: the files, default all of tests/models_zoo)
#   more-tests the GPU tests of $MORE_TESTS (files), for a second, lower-priority batch
#   sweep      decode attention launch configs and cuBLAS vs cuBLASLt, timed in graphs; the
#              1b / 134m stages after it run the fastest exact config it found
#   1b, 134m   batch-64 serving ($ROWS, default "ours hf-compile"; $REPEATS, default 3)
#   1b-b1      batch-1 serving at 1B, ours and transformers' static cache + compile
#   8b         batch-64 serving at 8B, ours and transformers' static cache + compile
#   int8-1b, int8-8b   ours in bf16 and with int8 block-wise weights at batch 1 and 8
#   kernels    the fused int8 kernel vs cuBLAS bf16 per product of the 1B and 8B, and by split-K
#   fewshot    the few-shot bench beside lm-eval at $SHOTS (default 0), 277 RTE docs, 1B bf16;
#              lm-eval travels as wheels in .fewfast/whl, the data in .fewfast/fewglue (see
#              bench/fewshot_gpu_call.sh's header for how to fetch them)
#   warmup     first-use cost of the fast decoder with and without warm-up at load
set -u
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
exec > >(tee -a "$OUT/log.txt") 2>&1
STAGES=${*:-tests 1b 134m fewshot warmup}
ROWS=${ROWS:-ours hf-compile}; REPEATS=${REPEATS:-3}; SHOTS=${SHOTS:-0}
TESTS=${TESTS:-tests/models_zoo}; MORE_TESTS=${MORE_TESTS:-}
stage() { echo "== $(date -u +%T) $*"; }
quiet() { grep -vE 'it/s]|Loading weights|warnings.warn|TensorFloat32'; }
# The fastest decode attention launch config of the sweep for a size whose error stays small.
config() {
    [[ -f "$OUT/decode_kernels.md" ]] || return 0
    python3 - "$1" "$OUT/decode_kernels.md" <<'PY' 2>/dev/null
import re, sys
size, path = sys.argv[1], sys.argv[2]
pattern = r"\| (\S+) \| rope-attention \| \((\d+), (\d+), (\d+)\) splits 1 \| ([\d.]+) \|.*\| ([\d.e+-]+) \|$"
rows = []
for line in open(path):
    m = re.match(pattern, line)
    if m and m.group(1) == size and float(m.group(6)) < 2e-2:
        rows.append((float(m.group(5)), ",".join(m.group(2, 3, 4))))
if rows:
    print("--attention-config", min(rows)[1])
PY
}
serve() {  # serve SIZE LIMIT ARGS...
    local size=$1 limit=$2; shift 2
    # shellcheck disable=SC2046
    timeout "$limit" python3 bench/serving.py --size "$size" $(config "$size") "$@" 2>&1 | quiet | tail -30
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv,noheader
for s in $STAGES; do
    stage "$s"
    case $s in
    tests | more-tests)
        files=$TESTS; [[ $s == more-tests ]] && files=$MORE_TESTS
        # shellcheck disable=SC2086
        timeout 300 python3 -m pytest -q -rfE -p no:django -o addopts="" -m gpu $files 2>&1 | tail -15 ;;
    sweep)
        timeout 100 python3 bench/serving.py --decode-kernels --out "$OUT/decode_kernels.md" 2>&1 | quiet | tail -40 ;;
    1b | 134m)
        # shellcheck disable=SC2086
        serve "$s" 150 --rows $ROWS --batches 64 --step-repeats 1 --repeats "$REPEATS" --out "$OUT/serving_$s.md" ;;
    1b-b1)
        serve 1b 120 --rows ours hf-compile --batches 1 --skip-steps --repeats "$REPEATS" --out "$OUT/serving_1b_b1.md" ;;
    8b)
        serve 8b 170 --rows ours hf-compile --batches 64 --step-repeats 1 --repeats 2 --out "$OUT/serving_8b.md" ;;
    int8-1b | int8-8b)
        serve "${s#int8-}" 200 --rows ours int8 --batches 1 8 --step-repeats 1 --repeats "$REPEATS" --out "$OUT/serving_$s.md" ;;
    kernels)
        timeout 200 python3 bench/serving.py --kernels --out "$OUT/int8_kernels.md" 2>&1 | quiet | tail -60 ;;
    fewshot)
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .fewfast/whl/*.whl
        PYTHONPATH=$PWD:/tmp/site timeout 240 python3 bench/fewshot.py --device cuda --model-preset llama-1b \
            --dtype bfloat16 --data-dir .fewfast/fewglue --limit 277 --shots "$SHOTS" --repeats 2 --skip-naive \
            --lm-eval-python python3 --lm-eval-batch-sizes 32 --out "$OUT/fewshot.json" 2>&1 \
            | quiet > "$OUT/fewshot.log"
        grep -E '^\||^k =|requests/s|rror' "$OUT/fewshot.log" | tail -40 ;;
    warmup)
        timeout 60 python3 bench/decode_warmup.py --size 1b 2>&1 | tail -15 ;;
    *) echo "unknown stage $s" ;;
    esac
done
stage "done"
