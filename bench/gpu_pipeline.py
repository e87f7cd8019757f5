"""The whole Ladder service on a GPU worker, in one device call: upload -> active -> arena.

    python3 bench/gpu_pipeline.py --download          # here: fetch the wheels into .whl/
    python3 bench/gpu_pipeline.py --out results.md    # on the device machine (see --help)

The device image has torch, transformers and triton but no Django: the project's other runtime
requirements travel as wheels (``WHEELS``, the one list; pure-Python or manylinux cp312) in
``.whl/`` and are installed into ``/tmp/site`` first. FewGLUE data travels in ``.fewglue/``.
Then, on the device:
1. an SQLite database is migrated, an API token created (``manage.py create_api_token``);
2. the web server (``manage.py runserver``) and a real ``celery worker`` on the ``default`` and
   ``models`` queues with ``LADDER_WORKER_DEVICE=cuda`` start (kombu's filesystem broker);
3. two checkpoints are written: (a) a 1B Llama-shaped model (Llama-3.2-1B's shape) with random
   bf16 weights as safetensors, (b) a zoo LongNet model; each is submitted through
   ``POST /api/models`` (``checkpoint_path``: the 1B's 2.5 GB exceed the upload limit) and its
   job followed through ``GET /api/jobs/<id>`` to ``active``;
   A prompt pool (``POOL_PROMPTS``, ``manage.py load_prompt_set``) is loaded first, so each
   job's ``arena_answers`` step answers it on the GPU (the CUDA-graph chat decoder);
4. an arena battle between them is created through ``POST /api/arena/battles`` and polled until
   both answers are there.
Printed last: a table of the job's recorded steps with their wall time, the GPU peak the worker
recorded for the step (``torch.cuda.max_memory_allocated``) beside nvidia-smi's whole-card peak
(sampled every 0.2 s), few-shot requests/s and tokens/s and arena answer tokens/s (the step's
recorded outcome), then the energy and cost the accounting recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WHEEL_DIR = ROOT / ".whl"
FEWGLUE_COPY = ROOT / ".fewglue"
# The runtime requirements the device image lacks (requirements.txt pins; their dependencies).
WHEELS = [
    "Django==5.2.19", "djangorestframework==3.18.3", "drf-spectacular==0.30.0", "celery==5.7.0",
    "kombu==5.7.0", "billiard==4.3.2", "vine==5.1.0", "amqp==5.4.2", "click==8.5.1",
    "click-didyoumean==0.3.1", "click-plugins==1.1.1.2", "click-repl==0.4.1",
    "prompt_toolkit==3.0.53", "wcwidth==0.9.5", "tzdata==2026.6", "tzlocal==5.4.5",
    "python-dateutil==2.9.0.post0", "django-celery-beat==2.9.0", "cron-descriptor==1.4.5",
    "django-timezone-field==7.2.2", "python-crontab==3.4.0", "dj-database-url==3.1.2",
    "whitenoise==6.12.0", "gunicorn==27.0.1", "nh3==0.3.8", "sqlparse==0.6.1",
    "asgiref==3.13.0", "inflection==0.5.1", "jsonschema==4.26.0",
    "jsonschema-specifications==2025.9.1", "referencing==0.37.0", "rpds-py==2026.9.1",
    "uritemplate==4.2.0", "redis==8.1.0",
]  # fmt: skip
PORT = 8765
POOL_PROMPTS = [
    "Write one sentence about a GPU worker.", "What is the capital of France?",
    "Explain dilated attention in two sentences.", "Give three uses of a hash map.",
    "Translate 'good morning' into Spanish.", "What is 17 times 23?",
    "Name a prime number larger than 100.", "Summarise the rules of chess in one line.",
]  # fmt: skip
BASE = f"http://127.0.0.1:{PORT}"


def download() -> None:
    """Here (with a package index): the wheels for the device's CPython 3.12 on x86-64."""
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", "-d", str(WHEEL_DIR)]  # fmt: skip
    for platform in platforms:
        command += ["--platform", platform]
    subprocess.run(command + WHEELS, check=True)


def api(method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Token {token}"
    request = urllib.request.Request(BASE + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"{method} {path}: {error.code} {error.read()[:2000]!r}") from None


class GpuSampler:
    """nvidia-smi memory.used every 0.2 s, with wall-clock stamps."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                )  # fmt: skip
                self.samples.append((time.time(), float(out.stdout.split()[0])))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.2)

    def peak(self, start: float, end: float) -> float:
        inside = [mib for t, mib in self.samples if start - 0.2 <= t <= end + 0.2]
        return max(inside) if inside else float("nan")


def stamp(value: str | None) -> float:
    return datetime.fromisoformat(value).timestamp() if value else float("nan")


def write_checkpoints(root: Path) -> dict[str, Path]:
    """(a) a 1B Llama shape with random bf16 weights, (b) a zoo LongNet; both with a tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from models_zoo.checkpoint import ModelCard, save_checkpoint
    from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM
    from models_zoo.testing import _tiny_tokenizer

    tokenizer = _tiny_tokenizer()
    special = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda"):
            llama = LlamaForCausalLM(
                LlamaConfig(
                    vocab_size=128256, hidden_size=2048, intermediate_size=8192,
                    num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
                    tie_word_embeddings=True, rope_theta=500000.0, max_position_embeddings=4096,
                    **special,
                )
            )  # fmt: skip
    finally:
        torch.set_default_dtype(default)
    longnet = LongNetForCausalLM(
        LongNetConfig(
            vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4,
            num_attention_heads=4, intermediate_size=688, max_position_embeddings=2048,
            segment_lengths=[64, 128, 256], dilation_rates=[1, 2, 4], **special,
        )
    )  # fmt: skip
    paths = {}
    for name, model, precision in (
        ("gpu-llama-1b", llama, "bf16"),
        ("gpu-longnet", longnet, "fp32"),
    ):
        parameters = int(sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()))
        card = ModelCard.for_training(
            name=name, architecture=model.config.model_type, parameters=parameters,
            training_tokens=0, optimizer={"name": "none"}, lr_schedule={"name": "none"},
            precision=precision, steps=0, extra={"random_init": True},
        )  # fmt: skip
        paths[name] = save_checkpoint(model.cpu(), tokenizer, root / name, card)
        del model
    torch.cuda.empty_cache()
    return paths


def follow(job_url: str, token: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = api("GET", job_url, token)
        if job["status"] in ("finished", "failed", "cancelled"):
            return job
        time.sleep(1.0)
    raise RuntimeError(f"job {job_url} not done after {timeout:.0f} s: {json.dumps(job)[:2000]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download", action="store_true", help="fetch the wheels (here)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--job-timeout", type=float, default=240)
    args = parser.parse_args()
    if args.download:
        download()
        return
    out_lines: list[str] = []

    def report(line: str = "") -> None:
        print(line, flush=True)
        out_lines.append(line)
        if args.out is not None:
            args.out.write_text("\n".join(out_lines) + "\n")

    var = Path("/tmp/ladder_var")
    checkpoints = Path("/tmp/ladder_checkpoints")
    env = {
        **os.environ,
        "LADDER_VAR_DIR": str(var),
        "LADDER_DEMO_MODE": "none",
        "LADDER_WORKER_DEVICE": "cuda",
        "LADDER_FEWGLUE_DIR": str(FEWGLUE_COPY),
        "LADDER_SUBMISSION_FEWSHOT_TASKS": "RTE,CB,COPA",
        "LADDER_SUBMISSION_FEWSHOT_SPLITS": "1",
        "LADDER_SUBMISSION_FEWSHOT_LIMIT": "32",
        "LADDER_SUBMISSION_ALLOWED_ROOTS": str(checkpoints),
        "ARENA_RATE_LIMITS_ENABLED": "false",
        "ARENA_TEMPERATURE": "0",
        "ARENA_MAX_NEW_TOKENS": "64",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    os.environ.update(env)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], check=True, env=env, cwd=ROOT)
    timings["migrate"] = time.perf_counter() - started
    pool_file = var / "pool.jsonl"
    pool_file.parent.mkdir(parents=True, exist_ok=True)
    pool_file.write_text("".join(json.dumps({"text": text}) + "\n" for text in POOL_PROMPTS))
    subprocess.run(
        [*manage, "load_prompt_set", str(pool_file), "--name", "gpu-bench"], check=True, env=env,
        cwd=ROOT,
    )  # fmt: skip
    token = subprocess.run(
        [*manage, "create_api_token", "gpu-bench"], check=True, env=env, cwd=ROOT,
        capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    logs = var / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    web_log, worker_log = (logs / "web.log").open("w"), (logs / "worker.log").open("w")
    web = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{PORT}"],
        env=env, cwd=ROOT, stdout=web_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,models", "-c",
         "1", "--loglevel", "INFO", "--hostname", "gpu-worker@%h", "--without-gossip",
         "--without-mingle"],
        env=env, cwd=ROOT, stdout=worker_log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    sampler = GpuSampler()
    try:
        t0 = time.perf_counter()
        paths = write_checkpoints(checkpoints)
        timings["write checkpoints"] = time.perf_counter() - t0
        for _ in range(120):  # the web server
            try:
                api("GET", "/api/models")
                break
            except (OSError, RuntimeError):
                time.sleep(0.5)
        jobs: dict[str, dict[str, Any]] = {}
        for name, path in paths.items():
            t0 = time.perf_counter()
            accepted = api(
                "POST", "/api/models", token,
                {"name": name, "checkpoint_path": str(path), "serving": {"device": "cuda"},
                 "license": "apache-2.0", "description": "random weights (GPU pipeline bench)"},
            )  # fmt: skip
            jobs[name] = follow(accepted["job_url"], token, args.job_timeout)
            timings[f"submit -> done: {name}"] = time.perf_counter() - t0
            model = api("GET", f"/api/models/{name}")
            report(f"{name}: job {jobs[name]['status']} {jobs[name]['reason']!r}, model status "
                   f"{model.get('status')!r}")  # fmt: skip
        t0 = time.perf_counter()
        battle = api(
            "POST", "/api/arena/battles", token,
            {"prompt": "Write one sentence about a GPU worker."},
        )  # fmt: skip
        detail: dict[str, Any] = {}
        for _ in range(600):
            detail = api("GET", f"/api/arena/battles/{battle['id']}", token)
            if detail["status"] in ("ready", "failed"):
                break
            time.sleep(0.5)
        battle_s = time.perf_counter() - t0
        timings["arena battle (live prompt)"] = battle_s
        battle_peak = sampler.peak(time.time() - battle_s, time.time())
    finally:
        sampler.stop.set()
        web.terminate()
        worker.terminate()
        for process in (web, worker):
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
    report()
    report(
        f"{datetime.now().date()} on {gpu_name()}: Ladder end to end on a GPU worker (SQLite, "
        f"filesystem broker, runserver + celery worker -Q default,models, LADDER_WORKER_DEVICE="
        f"cuda, few-shot RTE/CB/COPA x 1 split x 32 examples)"
    )
    report()
    report("| model | step | status | wall s | GPU peak MiB (worker, torch) | GPU MiB (nvidia-smi, "
           "card) | rate | detail |")  # fmt: skip
    report("|---|---|---|---|---|---|---|---|")
    for name, job in jobs.items():
        for step in job["steps"]:
            start, end = stamp(step["started_at"]), stamp(step["finished_at"])
            detail_text = str(step.get("detail", ""))[:160].replace("|", "/").replace("\n", " ")
            outcome = step.get("outcome") or {}
            report(
                f"| {name} | {step['name']} | {step['status']} | {step['duration_s'] or 0:.2f} | "
                f"{outcome.get('gpu_peak_mib', float('nan')):,.0f} | "
                f"{sampler.peak(start, end):,.0f} | {rate_text(outcome)} | {detail_text} |"
            )
    report()
    report("| model | job status | attempts | wall s | GPU s | tokens | energy kWh | source | "
           "estimate | cost USD | CO2e g |")  # fmt: skip
    report("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, job in jobs.items():
        acc = job["accounting"]
        report(
            f"| {name} | {job['status']} | {job['attempts']} | {acc['wall_time_s']:.1f} | "
            f"{acc['gpu_seconds']:.1f} | {acc['tokens_processed']:,} | {acc['energy_kwh']:.6f} | "
            f"{acc['energy_source']} | {acc['energy_is_estimate']} | {acc['cost_usd']:.5f} | "
            f"{acc['co2e_g']:.3f} |"
        )
    report()
    report(f"arena battle {detail.get('status')!r} in {battle_s:.1f} s (GPU peak "
           f"{battle_peak:,.0f} MiB):")  # fmt: skip
    for side in ("answer_a", "answer_b"):
        answer = detail.get(side) or {}
        text = answer.get("text", "") if isinstance(answer, dict) else str(answer)
        report(f"- {side}: {text[:200]!r}")
    report()
    report("| phase | wall s |")
    report("|---|---|")
    for phase, seconds in timings.items():
        report(f"| {phase} | {seconds:.1f} |")
    if args.out is not None:
        (args.out.parent / "worker_tail.log").write_text(
            "".join((logs / "worker.log").read_text().splitlines(keepends=True)[-200:])
        )


def rate_text(outcome: dict[str, Any]) -> str:
    """The step's recorded throughput: few-shot requests/s and tokens/s, answer tokens/s."""
    parts = []
    for key, unit in (("requests", "requests"), ("tokens", "tokens"), ("new_tokens", "tokens")):
        if f"{key}_per_s" in outcome:
            parts.append(f"{outcome[key]:,} {unit} in {outcome['seconds']:.2f} s = "
                         f"{outcome[f'{key}_per_s']:,.0f}/s")  # fmt: skip
    return "; ".join(parts)


def gpu_name() -> str:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
    )
    return out.stdout.strip() or "no GPU"


if __name__ == "__main__":
    main()
