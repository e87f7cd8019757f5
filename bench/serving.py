"""Batched generation on one GPU: ours (static cache + CUDA graph) vs transformers' generate.

    python bench/serving.py --out results.md

A ~134M-parameter Llama-shaped model with random weights (hidden 768, 12 layers, 12 heads,
intermediate 2048, vocab 32000, untied head), bf16; 128 prompt tokens, 128 new tokens, greedy,
batch 1, 8 and 64. Rows (same weights, same run):
- ``hf dynamic``: ``model.generate`` with the default dynamic cache;
- ``hf static``: ``cache_implementation="static"`` with ``disable_compile=True``;
- ``hf static+compile``: the same with transformers' automatic ``torch.compile`` (its fastest);
- ``ours``: ``models_zoo.fast_decode.generate_fast`` (static cache, CUDA-graph decode step),
  also with ``compile_step=True`` (Inductor-fused step inside the graph);
- the same with int8 weights (``models_zoo.quantization``), and ours eager with CPU offload at
  50 % of the weight bytes (``models_zoo.offload``).
tokens/s counts new tokens only (prefill included in the time); memory is the peak allocated
during the call. Results are printed as they come (a partial run still reports).

First, a decode-step table: prefill time, time per graph-replayed decode step ((128-token call -
1-token call) / 127), kernels per step (profiler over one eager step) and the step's byte floor
(weights + the KV cache rows read, at ``FLOOR_BANDWIDTH``). The compiled rows (ours and
transformers') run last, at ``--compile-batches`` only (each compile takes tens of seconds).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from models_zoo import fast_decode  # noqa: E402
from models_zoo.fast_decode import generate_fast  # noqa: E402
from models_zoo.offload import apply_cpu_offload  # noqa: E402
from models_zoo.quantization import quantize_model_int8, weight_memory_bytes  # noqa: E402

PROMPT, NEW = 128, 128
FLOOR_BANDWIDTH = 4.3e12  # bytes/s, device-to-device copy measured on this kind (KINDS.md)


def build_model(seed: int) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=32000,
        hidden_size=768,
        intermediate_size=2048,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        pad_token_id=0,
        eos_token_id=None,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config).to(torch.bfloat16).eval()


def timed(fn: Callable[[], torch.Tensor], repeats: int) -> tuple[float, float, torch.Tensor]:
    """(median seconds, peak GiB, last output) after one warm-up call."""
    out = fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2], torch.cuda.max_memory_allocated() / 2**30, out


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def step_rows(
    models: list[tuple[str, LlamaForCausalLM]], batches: list[int], out: Path | None
) -> None:
    """Prefill ms, graph decode ms/step, kernels/step and the byte floor per step."""
    report(
        "| weights | batch | prefill ms | decode ms/step | kernels/step | kernel ms/step (eager)"
        " | floor ms/step |",
        out,
    )
    report("|---|---|---|---|---|---|---|", out)
    for name, model in models:
        weights = weight_memory_bytes(model)
        config = model.config
        for batch in batches:
            ids = torch.randint(1, 32000, (batch, PROMPT), device="cuda")
            mask = torch.ones_like(ids)
            decoder = fast_decode.FastDecoder(model, batch_size=batch, max_length=PROMPT + NEW)
            prefill = median_seconds(lambda d=decoder, i=ids, m=mask: d.generate(i, m, 1), 5)
            full = median_seconds(lambda d=decoder, i=ids, m=mask: d.generate(i, m, NEW), 5)
            step = (full - prefill) / (NEW - 1)
            decoder.generate(ids, mask, 1)  # state at the first decode step
            kernels, kernel_ms = -1, float("nan")
            try:
                activities = [torch.profiler.ProfilerActivity.CUDA]
                with torch.no_grad(), torch.profiler.profile(activities=activities) as prof:
                    decoder._greedy_step()
                    torch.cuda.synchronize()
                device = torch.autograd.DeviceType.CUDA
                events = [e for e in prof.events() if e.device_type == device]
                kernels = len(events)
                kernel_ms = sum(e.self_device_time_total for e in events) / 1e3
                if batch == max(batches) and out is not None:
                    table = prof.key_averages().table(
                        sort_by="self_device_time_total", row_limit=25
                    )
                    (out.parent / f"profile_{name}_b{batch}.txt").write_text(table)
            except Exception as error:  # profiling is a diagnostic: never lose the row
                print(f"profiler failed: {type(error).__name__}: {error}", flush=True)
            # Bytes per step: weights once, plus the K and V rows read (mean valid length).
            kv_len = PROMPT + NEW / 2
            head_dim = config.hidden_size // config.num_attention_heads
            kv = 2 * config.num_hidden_layers * batch * config.num_key_value_heads * kv_len
            floor = (weights + kv * head_dim * 2) / FLOOR_BANDWIDTH
            report(
                f"| {name} | {batch} | {prefill * 1e3:.2f} | {step * 1e3:.3f} | {kernels} | "
                f"{kernel_ms:.3f} | {floor * 1e3:.3f} |",
                out,
            )
            del decoder
            fast_decode.clear_caches()
            gc.collect()  # decoders hold a bound-method cycle: free their caches and graphs now
            torch.cuda.empty_cache()


def hf_generate(model: LlamaForCausalLM, ids: torch.Tensor, **kwargs: object) -> torch.Tensor:
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=NEW,
        min_new_tokens=NEW,
        do_sample=False,
        pad_token_id=0,
        **kwargs,
    )
    return out[:, ids.shape[1] :]


@torch.no_grad()
def perplexity(model: LlamaForCausalLM, tokens: torch.Tensor) -> float:
    logits = model(tokens).logits[:, :-1].float()
    return math.exp(
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    )


def report(line: str, out: Path | None) -> None:
    print(line, flush=True)
    if out is not None:
        with out.open("a") as handle:
            handle.write(line + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--compile-batches", type=int, nargs="*", default=[64])
    parser.add_argument("--skip-offload", action="store_true")
    parser.add_argument("--skip-steps", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    model = build_model(0).cuda()
    int8 = quantize_model_int8(copy.deepcopy(model), block_size=128)
    bf16_bytes, int8_bytes = weight_memory_bytes(model), weight_memory_bytes(int8)
    held_out = torch.randint(
        1, 32000, (8, 512), device="cuda", generator=torch.Generator("cuda").manual_seed(1)
    )
    ppl, ppl8 = perplexity(model, held_out), perplexity(int8, held_out)
    report(
        f"\n{datetime.date.today()} on {torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"transformers {__import__('transformers').__version__}; {PROMPT} prompt + {NEW} new "
        "tokens, greedy, random-weight 134M Llama (768/12/12/2048/32000), bf16\n",
        args.out,
    )
    report(
        f"weights: bf16 {bf16_bytes / 2**20:.1f} MiB, int8 {int8_bytes / 2**20:.1f} MiB "
        f"({int8_bytes / bf16_bytes:.3f}x); perplexity on random held-out tokens "
        f"bf16 {ppl:.2f}, int8 {ppl8:.2f} ({(ppl8 - ppl) / ppl * 100:+.3f} %)\n",
        args.out,
    )
    if not args.skip_steps:
        step_rows([("bf16", model), ("int8", int8)], args.batches, args.out)
        report("", args.out)
    report(
        "| run | batch | tokens/s | s per call | peak GiB | tokens equal to hf static |", args.out
    )
    report("|---|---|---|---|---|---|", args.out)
    references: dict[int, torch.Tensor] = {}
    compiled: list[tuple[int, str, Callable[[], torch.Tensor]]] = []
    for batch in args.batches:
        ids = torch.randint(
            1,
            32000,
            (batch, PROMPT),
            device="cuda",
            generator=torch.Generator("cuda").manual_seed(batch),
        )
        runs: list[tuple[str, Callable[[], torch.Tensor]]] = [
            (
                "hf static",
                lambda m=model, ids=ids: hf_generate(
                    m, ids, cache_implementation="static", disable_compile=True
                ),
            ),
            ("ours (graph)", lambda m=model, ids=ids: generate_fast(m, ids, max_new_tokens=NEW)),
            (
                "ours eager",
                lambda m=model, ids=ids: generate_fast(
                    m, ids, max_new_tokens=NEW, use_cuda_graph=False
                ),
            ),
            (
                "ours int8 (graph)",
                lambda m=int8, ids=ids: generate_fast(m, ids, max_new_tokens=NEW),
            ),
            (
                "hf static int8",
                lambda m=int8, ids=ids: hf_generate(
                    m, ids, cache_implementation="static", disable_compile=True
                ),
            ),
            ("hf dynamic", lambda m=model, ids=ids: hf_generate(m, ids)),
        ]
        if not args.skip_compile and batch in args.compile_batches:
            compiled.append(
                (
                    batch,
                    "ours (graph+compile)",
                    lambda m=model, ids=ids: generate_fast(
                        m, ids, max_new_tokens=NEW, compile_step=True
                    ),
                )
            )
            compiled.append(
                (
                    batch,
                    "ours int8 (graph+compile)",
                    lambda m=int8, ids=ids: generate_fast(
                        m, ids, max_new_tokens=NEW, compile_step=True
                    ),
                )
            )
            compiled.append(
                (
                    batch,
                    "hf static+compile",
                    lambda m=model, ids=ids: hf_generate(m, ids, cache_implementation="static"),
                )
            )
        for name, fn in runs:
            run_row(args, references, batch, name, fn)
    for batch, name, fn in compiled:  # last: each compile takes tens of seconds
        run_row(args, references, batch, name, fn)
    if not args.skip_offload:
        offload_rows(args, model)


def run_row(
    args: argparse.Namespace,
    references: dict[int, torch.Tensor],
    batch: int,
    name: str,
    fn: Callable[[], torch.Tensor],
) -> None:
    try:
        seconds, peak, out = timed(fn, 1 if name.startswith("hf dynamic") else args.repeats)
    except Exception as error:  # a failing baseline must not lose the other rows
        report(
            f"| {name} | {batch} | failed: {type(error).__name__}: {str(error)[:120]} | | | |",
            args.out,
        )
        return
    reference = references.setdefault(batch, out)
    same = (out == reference).float().mean().item()
    report(
        f"| {name} | {batch} | {batch * NEW / seconds:,.0f} | {seconds:.3f} | {peak:.2f} | "
        f"{same:.3f} |",
        args.out,
    )
    fast_decode.clear_caches()  # drop our caches and weight copies: the next peak is its own
    gc.collect()
    torch.cuda.empty_cache()


def offload_rows(args: argparse.Namespace, resident: LlamaForCausalLM) -> None:
    """Ours eager with half of the weight bytes allowed on the GPU, vs fully resident eager."""
    model = build_model(0)  # on the CPU; apply_cpu_offload places what fits
    budget = weight_memory_bytes(model) // 2
    apply_cpu_offload(model, max_memory={"cuda": budget}, device="cuda")
    offloaded = len(model.layer_streamer.offloaded)
    report(
        f"\nCPU offload, budget {budget / 2**20:.0f} MiB (50 % of weights): {offloaded} of 12 layers streamed\n",
        args.out,
    )
    report(
        "| run | batch | tokens/s | s per call | peak GiB | tokens equal to resident |", args.out
    )
    report("|---|---|---|---|---|---|", args.out)
    for batch in (1, 8, 64):
        ids = torch.randint(
            1,
            32000,
            (batch, PROMPT),
            device="cuda",
            generator=torch.Generator("cuda").manual_seed(batch),
        )
        _, _, expected = timed(
            lambda ids=ids: generate_fast(resident, ids, max_new_tokens=NEW, use_cuda_graph=False),
            1,
        )
        for name, m in (("resident eager", resident), ("offload 50% eager", model)):
            seconds, peak, out = timed(
                lambda m=m, ids=ids: generate_fast(
                    m, ids, max_new_tokens=NEW, use_cuda_graph=False
                ),
                args.repeats,
            )
            same = (out == expected).float().mean().item()
            report(
                f"| {name} | {batch} | {batch * NEW / seconds:,.0f} | {seconds:.3f} | {peak:.2f} | {same:.3f} |",
                args.out,
            )


if __name__ == "__main__":
    main()
