"""Record lm-evaluation-harness's per-request log-likelihoods on a tiny local Llama: the fixture
of ``tests/models_zoo/test_lm_eval_parity.py``.

The model is ``models_zoo.testing.make_tiny_llama`` (random init, seed 0, a locally trained
tokenizer that adds BOS, a chat template); the tasks are the task files in
``tests/models_zoo/fixtures/lm_eval_parity/``. lm-eval runs in its own interpreter
(``--lm-eval-python``, a throwaway venv; it is never a dependency of Ladder), at batch 1,
float32, CPU, with its default few-shot seed (1234) and ``--log_samples``; the script writes
every (context, continuation, log-likelihood, is_greedy) and the task metrics to
``expected.json`` beside the task files, with the model's weights digest.

    python3 -m venv /tmp/lmeval-venv && /tmp/lmeval-venv/bin/pip install lm_eval==0.4.13 accelerate
    PYTHONPATH=. .venv/bin/python bench/fewshot_parity.py --lm-eval-python /tmp/lmeval-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parent.parent / "tests/models_zoo/fixtures/lm_eval_parity"
# (task file, num_fewshot, chat format): plain prompts at 0 and 2 shots, the chat format at 2.
RUNS = (
    ("parity_mc.yaml", 0, False),
    ("parity_mc.yaml", 2, False),
    ("parity_mc.yaml", 2, True),
    ("parity_ll.yaml", 0, False),
)
LM_EVAL_SCRIPT = """\
import json, sys, torch
torch.set_num_threads(1)
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
model, include, runs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
lm = HFLM(pretrained=model, batch_size=1, device="cpu", dtype="float32")
manager = TaskManager(include_path=include)
out = []
for task_file, shots, chat in runs:
    name = "ladder_parity_mc" if "mc" in task_file else "ladder_parity_ll"
    result = simple_evaluate(model=lm, tasks=[name], num_fewshot=shots, task_manager=manager,
                             log_samples=True, apply_chat_template=chat,
                             fewshot_as_multiturn=chat, fewshot_random_seed=1234)
    requests = []
    for sample in sorted(result["samples"][name], key=lambda s: s["doc_id"]):
        for argument, response in zip(sample["arguments"], sample["resps"]):
            loglik, greedy = response[0]
            requests.append({"doc_id": sample["doc_id"], "context": argument[0],
                             "continuation": argument[1], "loglik": loglik,
                             "is_greedy": bool(greedy)})
    metrics = {key.split(",")[0]: value for key, value in result["results"][name].items()
               if key.endswith(",none") and "stderr" not in key}
    out.append({"task_file": task_file, "num_fewshot": shots, "chat": chat,
                "metrics": metrics, "requests": requests})
import lm_eval
print(json.dumps({"lm_eval_version": lm_eval.__version__, "runs": out}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lm-eval-python", required=True, help="interpreter with lm_eval")
    parser.add_argument("--out", type=Path, default=FIXTURE / "expected.json")
    args = parser.parse_args(argv)
    from models_zoo.checkpoint import weights_digest
    from models_zoo.testing import make_tiny_llama

    with tempfile.TemporaryDirectory() as scratch:
        model = make_tiny_llama(Path(scratch) / "llama", positions=256)
        recorded = run_lm_eval(args.lm_eval_python, model)
        recorded["model"] = {
            "builder": "models_zoo.testing.make_tiny_llama(positions=256)",
            "weights_digest": weights_digest(model),
        }
    args.out.write_text(json.dumps(recorded, indent=1) + "\n")
    for run in recorded["runs"]:
        print(
            f"{run['task_file']} k={run['num_fewshot']} chat={run['chat']}: "
            f"{len(run['requests'])} requests, metrics {run['metrics']}"
        )
    print(f"wrote {args.out} (lm-eval {recorded['lm_eval_version']})")
    return 0


def run_lm_eval(python: str, model: Path) -> dict[str, Any]:
    """lm-eval's samples for every run in ``RUNS``, from its own interpreter."""
    command = [
        python, "-c", textwrap.dedent(LM_EVAL_SCRIPT), str(model), str(FIXTURE),
        json.dumps(RUNS),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=FIXTURE, capture_output=True, text=True, timeout=900, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"lm-eval failed with exit status {done.returncode}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    sys.exit(main())
