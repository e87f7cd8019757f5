#!/bin/bash
# One device call: the GPU few-shot bench of this tree (with lm-eval) and of a baseline tree in
# the same call, then bench/fewshot_stages.py (each speed-up's share) and, optionally, the zoo
# LongNet's few-shot step on two trees. Prepare, on the dev machine, in the checkout the device
# tool sends (repository root; `.fewfast/` must be in .git/info/exclude):
#   mkdir -p .fewfast/whl && cp -r /work/shared/data/fewglue .fewfast/fewglue
#   for w in $(cat bench/gpu_wheels_fewshot.txt); do python3 -m pip download --no-deps \
#     --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .fewfast/whl "$w"; done
#   git archive 5907745 models_zoo evalcore > .fewfast/t5907745.tar     # LongNet "before"
#   git archive BASELINE models_zoo evalcore bench > .fewfast/tmain.tar  # baseline tree
#   git archive HEAD models_zoo evalcore bench > .fewfast/tbr.tar        # tree under test
# then run `bash bench/fewshot_gpu_call.sh` (carry .fewfast; ~5 minutes plus the start).
set -o pipefail
R=$PWD; D=$R/.fewfast/fewglue; export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
echo "checkout: $(git log -1 --oneline 2>/dev/null) $(git branch --show-current 2>/dev/null)"
nvidia-smi --query-gpu=name,memory.total,clocks.sm --format=csv,noheader; uptime
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .fewfast/whl/*.whl || exit 1
for t in 5907745 main br; do mkdir -p /tmp/t/$t && tar -xf .fewfast/t$t.tar -C /tmp/t/$t; done
B="--device cuda --model-preset llama-1b --dtype bfloat16 --data-dir $D --limit 277 --shots 0,8 --repeats 3 --skip-naive"
echo "== branch + lm-eval $(date -u +%T)"
cd /tmp/t/br && PYTHONPATH=/tmp/t/br:/tmp/site timeout 260 python3 bench/fewshot.py $B --lm-eval-python python3 --lm-eval-batch-sizes 32 --out $OUT/br.json 2>&1 | grep -vE 'it/s]|Loading weights' > $OUT/br.log; grep -E '^\||^k =|load|rror' $OUT/br.log | grep -v "prefix recomputed" 
echo "== main $(date -u +%T)"
cd /tmp/t/main && PYTHONPATH=/tmp/t/main timeout 100 python3 bench/fewshot.py $B --repeats 2 --out $OUT/main.json 2>&1 | grep -vE 'it/s]|Loading weights' > $OUT/main.log; grep -E '^\| Ladder|^k =|rror' $OUT/main.log
echo "== stages $(date -u +%T)"
cd /tmp/t/br && PYTHONPATH=/tmp/t/br timeout 70 python3 bench/fewshot_stages.py --data-dir $D --shots 0 --repeats 3 2>&1 | grep -v 'it/s]' > $OUT/stages.log; grep -E '^\||host|profiled|k =|rror' $OUT/stages.log
echo "== longnet $(date -u +%T)"
for t in 5907745 main; do PYTHONPATH=/tmp/t/$t timeout 70 python3 /tmp/t/br/bench/gpu_fewshot_step.py --model gpu-longnet --checkpoints /tmp/ck --data-dir $D --tasks rte --limit 16 --warm-up 2>&1 | grep -E "rte:|cb:|step|mode|rror" | sed "s/^/$t /"; done
echo "== done $(date -u +%T)"
