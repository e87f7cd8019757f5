#!/usr/bin/env bash
# One device call for issue 19's batch-64 round 4 (folded RMSNorms, attention launch sweep,
# warm-up at load): GPU kernel tests, the decode-kernel sweep, the warm-up scenarios, then the
# serving rows (ours, ours with separate norm kernels, transformers' static cache + compile) at
# 1B and 134M. Logs to $OUT/log.txt, tables and profiles to $OUT/results.tar.
#
#     bash bench/serving_decode3.sh [stages...]   # default: all; on the device machine
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/serving-out}
RESULTS=/tmp/serving-results
mkdir -p "$OUT" "$RESULTS"
exec > >(tee -a "$OUT/log.txt") 2>&1
PYTEST=(python3 -m pytest -q -p no:django -o addopts="" -m gpu)
STAGES=${*:-tests 1b warmup 134m alltests 1b-batch1 sweep}
NOROPE=""
stage() { tar -C "$RESULTS" -cf "$OUT/results.tar" .; echo "== $(date -u +%T) $*"; }
want() { [[ " $STAGES " == *" $1 "* ]]; }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,memory.used --format=csv
if want tests; then
    stage "kernel tests"
    if ! timeout 150 "${PYTEST[@]}" tests/models_zoo/test_decode_kernels.py; then
        echo "KERNEL TESTS FAILED: the rows below run rotary and attention as two kernels"
        NOROPE=--no-rope-attention
    fi
fi
# The fastest decode attention launch config the sweep found for a size (default: the module's).
best() {
    python3 - "$1" "$RESULTS/decode_kernels.md" <<'PY' 2>/dev/null || echo ""
import re, sys
size, path = sys.argv[1], sys.argv[2]
rows = []
for line in open(path):
    m = re.match(r"\| (\S+) \| rope-attention \| \((\d+), (\d+), (\d+)\) splits 1 \| ([\d.]+) \|.*\| ([\d.e+-]+) \|$", line)
    if m and m.group(1) == size and float(m.group(6)) < 2e-2:
        rows.append((float(m.group(5)), ",".join(m.group(2, 3, 4))))
print(min(rows)[1] if rows else "")
PY
}
config() { local c; c=$(best "$1"); [[ -n "$c" ]] && echo "--attention-config $c"; }
if want 1b; then
    stage "1b"
    timeout 170 python3 bench/serving.py --size 1b --rows ours ours-nofold ours-norope ours-lt \
        hf-compile --batches 64 --step-repeats 2 --repeats 3 --profile $(config 1b) $NOROPE \
        --out "$RESULTS/serving_1b.md"
fi
if want warmup; then
    stage "warm-up scenarios"
    timeout 150 python3 bench/decode_warmup.py --size 1b | tee "$RESULTS/warmup.md"
fi
if want 134m; then
    stage "134m"
    timeout 110 python3 bench/serving.py --size 134m --rows ours ours-nofold ours-norope ours-lt \
        hf-compile --batches 64 --step-repeats 2 --repeats 3 --profile $(config 134m) $NOROPE \
        --out "$RESULTS/serving_134m.md"
fi
if want alltests; then
    stage "the other GPU tests of models_zoo"
    timeout 200 "${PYTEST[@]}" tests/models_zoo --ignore=tests/models_zoo/test_decode_kernels.py
fi
if want 1b-batch1; then
    stage "1b batch 1 hf"
    timeout 150 python3 bench/serving.py --size 1b --rows ours hf-compile --batches 1 \
        --skip-steps --repeats 3 --out "$RESULTS/serving_1b_b1.md"
fi
if want sweep; then
    stage "decode kernel sweep"
    timeout 90 python3 bench/serving.py --decode-kernels --out "$RESULTS/decode_kernels.md"
fi
if want 8b; then
    stage "8b"
    timeout 150 python3 bench/serving.py --size 8b --rows ours ours-nofold --batches 64 \
        --step-repeats 2 --repeats 2 --out "$RESULTS/serving_8b.md"
fi
stage "done"
