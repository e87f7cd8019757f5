"""Batched generation on one GPU: ours (static cache + CUDA graph) vs transformers' generate.

    python bench/serving.py --size 1b --out results.md

Llama-shaped models with random weights (``SIZES``: the 134M of earlier rounds, Llama-3.2-1B's
shape and Llama-3-8B's), bf16, initialised on the GPU; 128 prompt tokens, 128 new tokens, greedy,
batch 1, 8 and 64 (``--batches``). Rows (same weights, same run; ``--rows``):
- ``ours``: ``models_zoo.fast_decode.generate_fast`` (static cache, CUDA-graph decode step);
- ``int8``: the same on block-wise int8 weights (``models_zoo.quantization``, block 128), whose
  decode-step products run in the fused dequantising Triton kernel
  (``models_zoo.kernels.int8_matmul``);
- ``hf-compile``: ``cache_implementation="static"`` with transformers' automatic
  ``torch.compile`` (its fastest configuration), run last (batch 64 first): each batch size
  compiles anew;
- optional: ``ours-eager``, ``hf-static`` (no compile), ``hf-dynamic``, ``ours-compile``,
  ``ours-unfused`` (the graph decoder without the fused Triton layer kernels of
  ``models_zoo.kernels.decode``: the previous round's step, for a same-run comparison; it also
  adds a ``bf16-unfused`` row to the decode-step table), ``ours-nofold`` (decode-step table
  only: the fused kernels with the RMSNorms as kernels of their own, not folded), ``ours-lt``
  (products through cuBLASLt), ``ours-norope`` (decode-step table only: rotary + cache write
  and attention as two kernels).
tokens/s counts new tokens only (prefill included in the time); memory is the peak allocated
during the call. Results are printed as they come (a partial run still reports).

First the device ceilings are measured (1 GiB device copy, bf16 8192^3 matmul), then a decode-step
table: prefill time, time per graph-replayed decode step ((128-token call - 1-token call) / 127),
optionally kernels per step (``--profile``), and the step's floors: bytes (the weights a step
reads + the KV rows) over the measured copy bandwidth, FLOPs over the measured matmul rate.
``--offload`` ends the run with CPU offload at 50 % of the weight bytes (``models_zoo.offload``)
beside the resident model, at ``--offload-new`` new tokens per call.
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
FLOOR_BANDWIDTH = 4.3e12  # bytes/s fallback; main() measures the device copy bandwidth

# Llama-shaped sizes (random weights): the 134M of earlier rounds, Llama-3.2-1B and Llama-3-8B.
SIZES: dict[str, dict[str, object]] = {
    "134m": {"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 2048,
             "num_hidden_layers": 12, "num_attention_heads": 12, "num_key_value_heads": 12},
    "1b": {"vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
           "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
           "tie_word_embeddings": True, "rope_theta": 500000.0},
    "8b": {"vocab_size": 128256, "hidden_size": 4096, "intermediate_size": 14336,
           "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
           "rope_theta": 500000.0},
}  # fmt: skip
SIZE = "134m"  # set by main()


def build_model(seed: int, size: str | None = None, device: str = "cuda") -> LlamaForCausalLM:
    """Random-weight bf16 Llama of ``size``, initialised directly on ``device``."""
    torch.manual_seed(seed)
    sizes = {"tie_word_embeddings": False, **SIZES[size or SIZE]}
    config = LlamaConfig(
        **sizes,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=None,
        bos_token_id=None,
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    return model.eval()


def measure_ceilings() -> tuple[float, float]:
    """(device copy bytes/s counting read + write, bf16 8192^3 matmul FLOP/s), medians."""
    source = torch.randn(2**29, device="cuda", dtype=torch.bfloat16)  # 1 GiB
    target = torch.empty_like(source)
    copy = median_seconds(lambda: target.copy_(source), 20)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    matmul = median_seconds(lambda: a @ b, 20)
    return 2 * 2**30 / copy, 2 * 8192**3 / matmul


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


def read_bytes(model: LlamaForCausalLM) -> int:
    """Weight bytes one decode step reads: all weights but an untied input embedding table."""
    total = weight_memory_bytes(model)
    embed, head = model.model.embed_tokens, model.lm_head
    tensors = [t for t in list(embed.parameters()) + list(embed.buffers())]
    head_ptrs = {t.data_ptr() for t in list(head.parameters()) + list(head.buffers())}
    return total - sum(
        t.numel() * t.element_size() for t in tensors if t.data_ptr() not in head_ptrs
    )


def step_rows(
    models: list[tuple[str, LlamaForCausalLM, bool | None]],
    batches: list[int],
    out: Path | None,
    bandwidth: float,
    peak_flops: float,
    profile: bool,
    step_repeats: int = 5,
) -> None:
    """Prefill ms, graph decode ms/step, kernels/step and the floors per step."""
    from models_zoo.kernels import decode as dk

    report(
        "| weights | batch | prefill ms | decode ms/step | kernels/step | kernel ms/step (eager)"
        " | byte floor ms | FLOP floor ms | share of floor |",
        out,
    )
    report("|---|---|---|---|---|---|---|---|---|", out)
    for name, model, fused in models:
        weights = read_bytes(model)
        config = model.config
        parameters = sum(p.numel() for p in model.parameters())
        for batch in batches:
            ids = torch.randint(1, config.vocab_size, (batch, PROMPT), device="cuda")
            mask = torch.ones_like(ids)
            decoder = fast_decode.FastDecoder(
                model, batch_size=batch, max_length=PROMPT + NEW, fused_kernels=fused
            )
            rope = dk.ROPE_ATTENTION
            dk.ROPE_ATTENTION = rope and not name.endswith("-norope")  # rotary, then attention
            lt = name.endswith("-lt")  # products through cuBLASLt
            torch.backends.cuda.preferred_blas_library("cublaslt" if lt else "cublas")
            if name.endswith("-nofold"):  # the fused kernels with separate RMSNorm kernels
                assert decoder.plan is not None
                for lp in decoder.plan.layers:
                    lp.qkv_folded = lp.gate_up_folded = None
            prefill = median_seconds(
                lambda d=decoder, i=ids, m=mask: d.generate(i, m, 1), step_repeats
            )
            full = median_seconds(
                lambda d=decoder, i=ids, m=mask: d.generate(i, m, NEW), step_repeats
            )
            step = (full - prefill) / (NEW - 1)
            kernels, kernel_ms = -1, float("nan")
            if profile:
                decoder.generate(ids, mask, 1)  # state at the first decode step
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
                        (out.parent / f"profile_{SIZE}_{name}_b{batch}.txt").write_text(table)
                except Exception as error:  # profiling is a diagnostic: never lose the row
                    print(f"profiler failed: {type(error).__name__}: {error}", flush=True)
            # Bytes per step: weights once, plus the K and V rows read (mean valid length).
            kv_len = PROMPT + NEW / 2
            head_dim = config.hidden_size // config.num_attention_heads
            kv = 2 * config.num_hidden_layers * batch * config.num_key_value_heads * kv_len
            floor = (weights + kv * head_dim * 2) / bandwidth
            flop_floor = 2 * parameters * batch / peak_flops
            report(
                f"| {name} | {batch} | {prefill * 1e3:.2f} | {step * 1e3:.3f} | {kernels} | "
                f"{kernel_ms:.3f} | {floor * 1e3:.3f} | {flop_floor * 1e3:.3f} | "
                f"{max(floor, flop_floor) / step * 100:.0f} % |",
                out,
            )
            torch.backends.cuda.preferred_blas_library("cublas")
            dk.ROPE_ATTENTION = rope
            del decoder
            fast_decode.clear_caches()
            gc.collect()  # decoders hold a bound-method cycle: free their caches and graphs now
            torch.cuda.empty_cache()


def hf_generate(
    model: LlamaForCausalLM, ids: torch.Tensor, new: int = NEW, **kwargs: object
) -> torch.Tensor:
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new,
        min_new_tokens=new,
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


ALL_ROWS = (
    "ours", "int8", "hf-compile", "ours-eager", "hf-static", "hf-dynamic", "ours-compile",
    "ours-unfused", "ours-nofold", "ours-lt", "ours-norope",
)  # fmt: skip


def main() -> None:
    global SIZE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=list(SIZES), default="134m")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--rows", nargs="+", choices=ALL_ROWS, default=["ours", "int8", "hf-compile"]
    )
    parser.add_argument("--hf-compile-batches", type=int, nargs="*", default=None)
    parser.add_argument("--offload", action="store_true", help="CPU offload rows at the end")
    parser.add_argument("--offload-new", type=int, default=16)
    parser.add_argument("--offload-batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--skip-steps", action="store_true")
    parser.add_argument("--step-repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="kernels per step (profiler)")
    parser.add_argument(
        "--zoo-contexts",
        type=int,
        nargs="*",
        default=None,
        help="only: the zoo's LongNet vs dense model decoding at these contexts",
    )
    parser.add_argument("--kernels", action="store_true", help="only: int8 kernel vs cuBLAS")
    parser.add_argument(
        "--layer-kernels", action="store_true", help="only: fused layer kernels vs unfused ops"
    )
    parser.add_argument(
        "--decode-kernels",
        action="store_true",
        help="only: decode attention launch configs and cuBLAS vs cuBLASLt, timed in graphs",
    )
    parser.add_argument(
        "--attention-config",
        default=None,
        help="rows,warps,stages of the decode attention kernel (default: the module's)",
    )
    parser.add_argument(
        "--no-rope-attention",
        action="store_true",
        help="decode steps run rotary + cache write and attention as two kernels",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    SIZE = args.size
    if args.no_rope_attention:
        from models_zoo.kernels import decode as dk

        dk.ROPE_ATTENTION = False
    if args.attention_config:
        from models_zoo.kernels import decode as dk

        rows, warps, stages = (int(v) for v in args.attention_config.split(","))
        dk.ATTENTION_CONFIG = (rows, warps, stages)
        print(f"decode attention config {dk.ATTENTION_CONFIG}", flush=True)
    bandwidth, peak = measure_ceilings()
    torch.cuda.empty_cache()
    if args.zoo_contexts:
        zoo_rows(args, bandwidth)
        return
    if args.kernels:
        kernel_rows(args, bandwidth)
        return
    if args.layer_kernels:
        layer_kernel_rows(args, bandwidth)
        return
    if args.decode_kernels:
        decode_kernel_rows(args, bandwidth)
        return
    model = build_model(0)
    vocab = model.config.vocab_size
    int8 = None
    if "int8" in args.rows:
        int8 = quantize_model_int8(copy.deepcopy(model), block_size=128)
        gc.collect()
        torch.cuda.empty_cache()
    bf16_bytes = weight_memory_bytes(model)
    held_out = torch.randint(
        1, vocab, (4, 256), device="cuda", generator=torch.Generator("cuda").manual_seed(1)
    )
    parameters = sum(p.numel() for p in model.parameters())
    report(
        f"\n{datetime.date.today()} on {torch.cuda.get_device_name()}, torch {torch.__version__}, "
        f"transformers {__import__('transformers').__version__}; {PROMPT} prompt + {NEW} new "
        f"tokens, greedy, random-weight {SIZE} Llama ({parameters / 1e9:.2f}B parameters: "
        f"{SIZES[SIZE]}), bf16; measured device copy {bandwidth / 1e12:.2f} TB/s (read + write),"
        f" bf16 matmul {peak / 1e12:.0f} TFLOP/s\n",
        args.out,
    )
    if int8 is not None:
        ppl, ppl8 = perplexity(model, held_out), perplexity(int8, held_out)
        int8_bytes = weight_memory_bytes(int8)
        report(
            f"weights: bf16 {bf16_bytes / 2**30:.2f} GiB, int8 {int8_bytes / 2**30:.2f} GiB "
            f"({int8_bytes / bf16_bytes:.3f}x); bytes read per decode step bf16 "
            f"{read_bytes(model) / 2**30:.2f} GiB, int8 {read_bytes(int8) / 2**30:.2f} GiB; "
            f"perplexity on random held-out tokens bf16 {ppl:.2f}, int8 {ppl8:.2f} "
            f"({(ppl8 - ppl) / ppl * 100:+.3f} %)\n",
            args.out,
        )
    if not args.skip_steps:
        models: list[tuple[str, LlamaForCausalLM, bool | None]] = [("bf16", model, None)]
        if "ours-unfused" in args.rows:
            models.append(("bf16-unfused", model, False))
        if "ours-nofold" in args.rows:  # after the other rows: it drops the plan's folded copies
            models.append(("bf16-nofold", model, None))
        if "ours-lt" in args.rows:
            models.append(("bf16-lt", model, None))
        if "ours-norope" in args.rows:
            models.append(("bf16-norope", model, None))
        if int8 is not None:
            models.append(("int8", int8, None))
        step_rows(models, args.batches, args.out, bandwidth, peak, args.profile, args.step_repeats)
        report("", args.out)
    report(
        "| run | batch | tokens/s | s per call | peak GiB | tokens equal to the first row |",
        args.out,
    )
    report("|---|---|---|---|---|---|", args.out)
    references: dict[int, torch.Tensor] = {}
    compile_batches = args.batches if args.hf_compile_batches is None else args.hf_compile_batches
    late: list[tuple[int, str, Callable[[], torch.Tensor]]] = []
    for batch in args.batches:
        ids = torch.randint(
            1, vocab, (batch, PROMPT), device="cuda",
            generator=torch.Generator("cuda").manual_seed(batch),
        )  # fmt: skip
        table: dict[str, tuple[str, Callable[[], torch.Tensor]]] = {
            "ours": (
                "ours (graph)",
                lambda m=model, ids=ids: generate_fast(m, ids, max_new_tokens=NEW),
            ),
            "int8": (
                "ours int8 (graph, fused kernel)",
                lambda m=int8, ids=ids: generate_fast(m, ids, max_new_tokens=NEW),
            ),
            "ours-eager": (
                "ours eager",
                lambda m=model, ids=ids: generate_fast(
                    m, ids, max_new_tokens=NEW, use_cuda_graph=False
                ),
            ),
            "hf-static": (
                "hf static",
                lambda m=model, ids=ids: hf_generate(
                    m, ids, cache_implementation="static", disable_compile=True
                ),
            ),
            "hf-dynamic": ("hf dynamic", lambda m=model, ids=ids: hf_generate(m, ids)),
            "ours-unfused": ("ours unfused (graph)", unfused_call(model, ids)),
        }
        for key in args.rows:
            if key in table:
                run_row(args, references, batch, *table[key])
        if "hf-compile" in args.rows and batch in compile_batches:
            late.append(
                (
                    batch,
                    "hf static+compile",
                    lambda m=model, ids=ids: hf_generate(m, ids, cache_implementation="static"),
                )
            )
        if "ours-compile" in args.rows:
            late.append(
                (
                    batch,
                    "ours (graph+compile)",
                    lambda m=model, ids=ids: generate_fast(
                        m, ids, max_new_tokens=NEW, compile_step=True
                    ),
                )
            )
    del int8
    gc.collect()
    torch.cuda.empty_cache()
    if args.offload:  # before the compiled baselines: their compile time is the long part
        offload_rows(args, model)
        return
    for batch, name, fn in sorted(late, key=lambda row: -row[0]):  # batch 64 first
        run_row(args, references, batch, name, fn)


def unfused_call(model: LlamaForCausalLM, ids: torch.Tensor) -> Callable[[], torch.Tensor]:
    """``generate_fast``'s call on a decoder without the fused layer kernels (built on first
    use, kept for the row's repeats like generate_fast's cached decoders)."""
    decoders: list[fast_decode.FastDecoder] = []

    def call() -> torch.Tensor:
        if not decoders:
            decoders.append(
                fast_decode.FastDecoder(
                    model, batch_size=ids.shape[0], max_length=PROMPT + NEW, fused_kernels=False
                )
            )
        return decoders[0].generate(ids, torch.ones_like(ids), NEW)

    return call


def kernel_rows(args: argparse.Namespace, bandwidth: float) -> None:
    """The fused int8 kernel vs cuBLAS bf16 on the decode-step products of the 1B and 8B, then
    the int8 kernel at each split-K (the default of ``default_split_k`` marked). Timed as a
    decode step runs them: back to back in one CUDA graph (no host launch cost), cycling over
    distinct weight copies of >= 256 MB in all, so no call finds its weights in the 50 MB L2."""
    from models_zoo.kernels.int8_matmul import default_split_k, int8_linear
    from models_zoo.quantization import dequantize_blockwise, quantize_blockwise

    shapes = {  # (N, K): qkv, o, gate_up, down, head
        "1b": [(3072, 2048), (2048, 2048), (16384, 2048), (2048, 8192), (128256, 2048)],
        "8b": [(6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336), (128256, 4096)],
    }
    splits = (1, 2, 4, 8, 16)
    report(
        f"\n{datetime.date.today()} on {torch.cuda.get_device_name()}: fused int8 (block 128, "
        f"default split-K) vs cuBLAS bf16 F.linear, us per call in a CUDA graph over distinct "
        f"weight copies (median of 20 replays); GB/s counts weight bytes (int8 codes + scales / "
        f"bf16) over measured copy {bandwidth / 1e12:.2f} TB/s\n",
        args.out,
    )
    report("| model | N x K | M | split | bf16 us | bf16 GB/s | int8 us | int8 GB/s | int8 share "
           "of copy | speed-up | rel. err vs dequant+matmul |", args.out)  # fmt: skip
    report("|---|---|---|---|---|---|---|---|---|---|---|", args.out)
    sweep: list[str] = []
    for size, layers in shapes.items():
        for n, k in layers:
            b16 = n * k * 2
            copies = max(1, min(16, math.ceil(256e6 / b16)))
            weights = []
            for _ in range(copies):
                qweight, scales = quantize_blockwise(
                    torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02, 128
                )
                dense = dequantize_blockwise(qweight, scales, k, torch.bfloat16).contiguous()
                weights.append((qweight, scales, dense))
            qweight, scales, dense = weights[0]
            split = default_split_k(n, scales.shape[1])
            b8 = qweight.numel() + scales.numel() * 4
            for m in (1, 8, 64):
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
                out = int8_linear(x, qweight, scales, k)
                ref = F.linear(x.float(), dense.float())
                error = ((out.float() - ref).norm() / ref.norm()).item()
                t16 = graph_us([lambda w=w, x=x: F.linear(x, w[2]) for w in weights])
                times = {
                    j: graph_us(
                        [
                            lambda w=w, j=j, x=x, k=k: int8_linear(x, w[0], w[1], k, split_k=j)
                            for w in weights
                        ]
                    )
                    for j in (splits if m < 64 else (split,))
                }
                t8 = times[split]
                report(
                    f"| {size} | {n} x {k} | {m} | {split} | {t16:.1f} | "
                    f"{b16 / t16 / 1e3:,.0f} | {t8:.1f} | {b8 / t8 / 1e3:,.0f} | "
                    f"{b8 / (t8 * 1e-6) / (bandwidth / 2) * 100:.0f} % | {t16 / t8:.2f}x | "
                    f"{error:.1e} |",
                    args.out,
                )
                if m < 64:
                    cells = " | ".join(
                        f"**{t:.1f}**" if j == split else f"{t:.1f}" for j, t in times.items()
                    )
                    sweep.append(f"| {size} | {n} x {k} | {m} | {cells} |")
            del weights
            torch.cuda.empty_cache()
    report("\nint8 kernel us by split-K (same timing; bold: the default)\n", args.out)
    report("| model | N x K | M | " + " | ".join(f"split {j}" for j in splits) + " |", args.out)
    report("|---|---|---|" + "---|" * len(splits), args.out)
    for row in sweep:
        report(row, args.out)


def layer_kernel_rows(args: argparse.Namespace, bandwidth: float) -> None:
    """The fused layer kernels (models_zoo.kernels.decode) vs the ops they replace, one decode
    step of one layer, cache of PROMPT + NEW rows with the mean valid count (PROMPT + NEW / 2)
    written; floor = bytes the fused kernel must move over the measured copy bandwidth."""
    report(
        f"\n{datetime.date.today()} on {torch.cuda.get_device_name()}: fused layer kernels vs the "
        f"unfused ops, one layer's decode step, bf16, median of do_bench; copy "
        f"{bandwidth / 1e12:.2f} TB/s\n",
        args.out,
    )
    report("| size | batch | op | unfused us | fused us | speed-up | fused floor us |", args.out)
    report("|---|---|---|---|---|---|---|", args.out)
    for size in ("134m", "1b", "8b"):
        for batch in args.batches:
            for op, slow, fast, floor in layer_kernel_case(size, batch, bandwidth):
                report(
                    f"| {size} | {batch} | {op} | {slow:.1f} | {fast:.1f} | {slow / fast:.2f}x | "
                    f"{floor:.2f} |",
                    args.out,
                )


def layer_kernel_case(
    size: str, batch: int, bandwidth: float
) -> list[tuple[str, float, float, float]]:
    """(op, unfused us, fused us, fused floor us) for one size and batch."""
    from triton.testing import do_bench

    from models_zoo.kernels import decode as dk

    def bench(fn: Callable[[], object]) -> float:
        return float(do_bench(fn, warmup=25, rep=100, return_mode="median")) * 1e3

    shape = SIZES[size]
    H, Hkv = int(shape["num_attention_heads"]), int(shape["num_key_value_heads"])
    D, inter = int(shape["hidden_size"]) // H, int(shape["intermediate_size"])
    G, bf16, L, valid = H // Hkv, torch.bfloat16, PROMPT + NEW, PROMPT + NEW // 2
    keys = torch.randn(batch, Hkv, L, D, device="cuda", dtype=bf16)
    values = torch.randn_like(keys)
    q = torch.randn(batch, H, D, device="cuda", dtype=bf16)
    bias = torch.full((batch, L), float("-inf"), device="cuda", dtype=bf16)
    bias[:, :valid] = 0
    last = torch.tensor([valid - 1], device="cuda")
    # The unfused decoder: query groups folded into the query length, mask over all L rows.
    mask = bias[:, None, None].expand(batch, 1, G, L).reshape(batch, 1, G, L)
    q4 = q.view(batch, Hkv, G, D)
    rows = [(
        "attention",
        bench(lambda: F.scaled_dot_product_attention(q4, keys, values, attn_mask=mask)),
        bench(lambda: dk.decode_attention(q, keys, values, bias, last, D**-0.5)),
        (2 * batch * Hkv * valid * D * 2 + q.numel() * 4) / bandwidth * 1e6,
    )]  # fmt: skip
    qkv = torch.randn(batch, (H + 2 * Hkv) * D, device="cuda", dtype=bf16)
    positions = torch.full((batch,), valid - 1, device="cuda")
    cos = torch.randn(L, D, device="cuda", dtype=bf16)
    sin = torch.randn_like(cos)
    rotation = torch.randn(batch, D, D, device="cuda", dtype=bf16)

    def rotary_unfused() -> None:
        heads = qkv.view(batch, H + 2 * Hkv, D)
        rotated = torch.bmm(heads[:, : H + Hkv], rotation)
        keys.index_copy_(2, last, rotated[:, H:, None])
        values.index_copy_(2, last, heads[:, H + Hkv :, None])

    rows.append((
        "rotary + cache write",
        bench(rotary_unfused),
        bench(lambda: dk.rotary_to_cache(qkv, positions, cos, sin, keys, values, last, H)),
        (qkv.numel() * 2 + batch * H * D * 2 + 2 * batch * Hkv * D * 2) / bandwidth * 1e6,
    ))  # fmt: skip
    gate_up = torch.randn(batch, 2 * inter, device="cuda", dtype=bf16)
    rows.append((
        "SwiGLU",
        bench(lambda: F.silu(gate_up[:, :inter]) * gate_up[:, inter:]),
        bench(lambda: dk.swiglu(gate_up)),
        gate_up.numel() * 3 / bandwidth * 1e6,
    ))  # fmt: skip
    return rows


def graph_us(calls: list[Callable[[], object]], replays: int = 20) -> float:
    """Median us per call of ``calls`` (one per layer, on distinct buffers) captured back to
    back in one CUDA graph, as a decode step runs them."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for call in calls:  # compile / pick algorithms before capture
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for call in calls:
            call()
    times = []
    for _ in range(replays):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3 / len(calls))
    return sorted(times)[len(times) // 2]


ATTENTION_SWEEP = [(64, 4, 2), (32, 4, 2), (64, 4, 3), (64, 8, 2), (128, 4, 2), (128, 8, 2),
                   (128, 8, 3), (64, 2, 2), (32, 2, 2), (128, 4, 3)]  # fmt: skip


def decode_kernel_rows(args: argparse.Namespace, bandwidth: float) -> None:
    """Batch-64 decode step pieces in CUDA graphs over 16 layers' distinct buffers: the decode
    attention kernel per launch config (and key splits), checked against its reference, and
    the step's products through cuBLAS and cuBLASLt."""
    from models_zoo.kernels import decode as dk

    report(
        f"\n{datetime.date.today()} on {torch.cuda.get_device_name()}: decode kernels at batch "
        f"64 in CUDA graphs (16 launches on distinct buffers, median us per launch); copy "
        f"{bandwidth / 1e12:.2f} TB/s\n",
        args.out,
    )
    report("| size | op | config | us | floor us | share of floor | rel. err |", args.out)
    report("|---|---|---|---|---|---|---|", args.out)
    batch, layers, L, valid = 64, 16, PROMPT + NEW, PROMPT + NEW // 2
    for size in ("1b", "134m"):
        shape = SIZES[size]
        H, Hkv = int(shape["num_attention_heads"]), int(shape["num_key_value_heads"])
        D = int(shape["hidden_size"]) // H
        caches = [
            (torch.randn(batch, Hkv, L, D, device="cuda", dtype=torch.bfloat16),
             torch.randn(batch, Hkv, L, D, device="cuda", dtype=torch.bfloat16))
            for _ in range(layers)
        ]  # fmt: skip
        q = torch.randn(batch, H, D, device="cuda", dtype=torch.bfloat16)
        bias = torch.zeros(batch, L, device="cuda", dtype=torch.bfloat16)
        bias[:8, :20] = float("-inf")  # some left padding
        last = torch.tensor([valid - 1], device="cuda")
        floor = (2 * batch * Hkv * valid * D * 2) / bandwidth * 1e6
        ref = dk.decode_attention_reference(q, *caches[0], bias, last, D**-0.5)
        for config in ATTENTION_SWEEP:
            for splits in (1, 2) if config == dk.ATTENTION_CONFIG else (1,):
                try:
                    out = dk.decode_attention(q, *caches[0], bias, last, D**-0.5, splits, config)
                    error = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                    us = graph_us([
                        lambda k=k, v=v, c=config, s=splits, q=q, b=bias, n=last, d=D: (
                            dk.decode_attention(q, k, v, b, n, d**-0.5, s, c)
                        )
                        for k, v in caches
                    ])  # fmt: skip
                except Exception as error_:  # keep the other configs
                    report(f"| {size} | attention | {config} | failed: {error_} |", args.out)
                    continue
                report(
                    f"| {size} | attention | {config} splits {splits} | {us:.2f} | {floor:.2f} | "
                    f"{floor / us * 100:.0f} % | {error:.1e} |",
                    args.out,
                )
        rope_attention_rows(args, size, caches, bias, last, floor)
        del caches
        torch.cuda.empty_cache()
    gemm_rows(args, bandwidth)


def rope_attention_rows(
    args: argparse.Namespace,
    size: str,
    caches: list[tuple[torch.Tensor, torch.Tensor]],
    bias: torch.Tensor,
    last: torch.Tensor,
    floor: float,
) -> None:
    """The decode step's rotary + cache write + attention kernel (folded norm) per launch
    config, against the two-kernel references."""
    from models_zoo.kernels import decode as dk

    shape = SIZES[size]
    H, Hkv = int(shape["num_attention_heads"]), int(shape["num_key_value_heads"])
    C = int(shape["hidden_size"])
    D = C // H
    batch, L = caches[0][0].shape[0], caches[0][0].shape[2]
    qkv = torch.randn(batch, (H + 2 * Hkv) * D, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(batch, C, device="cuda", dtype=torch.bfloat16)
    positions = torch.full((batch,), int(last), device="cuda")
    cos = torch.randn(L, D, device="cuda", dtype=torch.bfloat16)
    sin = torch.randn_like(cos)
    keys, values = caches[0][0].clone(), caches[0][1].clone()
    q = dk.rotary_to_cache_reference(qkv, positions, cos, sin, keys, values, last, H, x, 1e-5)
    ref = dk.decode_attention_reference(q.view(batch, H, D), keys, values, bias, last, D**-0.5)
    for config in ATTENTION_SWEEP:
        try:
            k, v = caches[0][0].clone(), caches[0][1].clone()
            out = dk.rope_decode_attention(
                qkv, positions, cos, sin, k, v, bias, last, H, D**-0.5, 1, x, 1e-5, config
            )
            error = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
            us = graph_us([
                lambda k=k, v=v, c=config: dk.rope_decode_attention(
                    qkv, positions, cos, sin, k, v, bias, last, H, D**-0.5, 1, x, 1e-5, c
                )
                for k, v in caches
            ])  # fmt: skip
        except Exception as error_:  # keep the other configs
            report(f"| {size} | rope-attention | {config} | failed: {error_} |", args.out)
            continue
        report(
            f"| {size} | rope-attention | {config} splits 1 | {us:.2f} | {floor:.2f} | "
            f"{floor / us * 100:.0f} % | {error:.1e} |",
            args.out,
        )


def gemm_rows(args: argparse.Namespace, bandwidth: float) -> None:
    """The 1B decode step's products at 64 rows (F.linear; addmm_ with the residual for o and
    down), 16 distinct weights each, through cuBLAS and cuBLASLt."""
    shapes = {"qkv": (3072, 2048), "o": (2048, 2048), "gate_up": (16384, 2048),
              "down": (2048, 8192)}  # fmt: skip
    for name, (n, k) in shapes.items():
        weights = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) for _ in range(16)]
        x = torch.randn(64, k, device="cuda", dtype=torch.bfloat16)
        residual = torch.randn(64, n, device="cuda", dtype=torch.bfloat16)
        floor = n * k * 2 / bandwidth * 1e6
        for library in ("cublas", "cublaslt"):
            torch.backends.cuda.preferred_blas_library(library)
            if name in ("o", "down"):
                calls = [lambda w=w, r=residual, x=x: r.addmm_(x, w.t()) for w in weights]
            else:
                calls = [lambda w=w, x=x: F.linear(x, w) for w in weights]
            us = graph_us(calls)
            report(
                f"| 1b | {name} {n}x{k} | {library} | {us:.2f} | {floor:.2f} | "
                f"{floor / us * 100:.0f} % | |",
                args.out,
            )
        torch.backends.cuda.preferred_blas_library("cublas")
        del weights
        torch.cuda.empty_cache()


ZOO_SIZES = {"vocab_size": 32000, "hidden_size": 2048, "num_hidden_layers": 8,
             "num_attention_heads": 16, "intermediate_size": 5632}  # fmt: skip
LM_SCHEDULE = ([2048, 4096, 8192, 16384, 32768], [1, 2, 4, 6, 12])  # LongNet's LM schedule
ZOO_NEW = 32


def zoo_rows(args: argparse.Namespace, bandwidth: float) -> None:
    """The zoo's LongNet and dense models (same weights) on the fast decoder at long contexts."""
    from models_zoo.baseline_transformer import DenseConfig, DenseForCausalLM
    from models_zoo.dilated_transformer import LongNetConfig, LongNetForCausalLM

    def build(arch: str) -> torch.nn.Module:
        torch.manual_seed(0)
        default = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16)
        try:
            with torch.device("cuda"):
                if arch == "longnet":
                    config = LongNetConfig(
                        segment_lengths=LM_SCHEDULE[0], dilation_rates=LM_SCHEDULE[1], **ZOO_SIZES
                    )
                    return LongNetForCausalLM(config).eval()
                return DenseForCausalLM(DenseConfig(**ZOO_SIZES)).eval()
        finally:
            torch.set_default_dtype(default)

    H = ZOO_SIZES["num_attention_heads"]
    D = ZOO_SIZES["hidden_size"] // H
    layers = ZOO_SIZES["num_hidden_layers"]
    listed = sum(-(-w // r) for w, r in zip(*LM_SCHEDULE))
    report(
        f"\n{datetime.date.today()} on {torch.cuda.get_device_name()}, torch {torch.__version__}: "
        f"zoo models {ZOO_SIZES}, bf16, batch 1, {ZOO_NEW} new tokens, greedy, CUDA-graph decode "
        f"step; LongNet schedule w={LM_SCHEDULE[0]}, r={LM_SCHEDULE[1]} ({listed} listed keys per"
        f" decode query); measured copy {bandwidth / 1e12:.2f} TB/s\n",
        args.out,
    )
    report(
        "| model | context | prefill s | decode ms/step | tokens/s (decode) | byte floor ms "
        "| share of floor | peak GiB |",
        args.out,
    )
    report("|---|---|---|---|---|---|---|---|", args.out)
    for arch in ("longnet", "dense"):
        model = build(arch)
        weights = read_bytes(model)  # type: ignore[arg-type]
        for context in args.zoo_contexts:
            ids = torch.randint(1, 32000, (1, context), device="cuda")
            try:
                torch.cuda.reset_peak_memory_stats()
                prefill = median_seconds(
                    lambda m=model, i=ids: generate_fast(m, i, max_new_tokens=1), 2
                )
                full = median_seconds(
                    lambda m=model, i=ids: generate_fast(m, i, max_new_tokens=ZOO_NEW), 2
                )
            except Exception as error:  # keep the other rows
                report(
                    f"| {arch} | {context} | failed: {type(error).__name__}: {error} |", args.out
                )
                continue
            step = (full - prefill) / (ZOO_NEW - 1)
            keys = min(listed, context) if arch == "longnet" else context + ZOO_NEW / 2
            # K and V rows read per step; LongNet also writes and re-reads the gathered copy.
            kv = 2 * layers * keys * H * D * 2 * (3 if arch == "longnet" else 1)
            floor = (weights + kv) / bandwidth
            report(
                f"| {arch} | {context // 1024}K | {prefill:.3f} | {step * 1e3:.3f} | "
                f"{1 / step:,.0f} | {floor * 1e3:.3f} | {floor / step * 100:.0f} % | "
                f"{torch.cuda.max_memory_allocated() / 2**30:.2f} |",
                args.out,
            )
            fast_decode.clear_caches()
            gc.collect()
            torch.cuda.empty_cache()
        del model
        gc.collect()
        torch.cuda.empty_cache()


def run_row(
    args: argparse.Namespace,
    references: dict[int, torch.Tensor],
    batch: int,
    name: str,
    fn: Callable[[], torch.Tensor],
) -> None:
    gc.collect()  # an earlier row's decoder (a reference cycle) must not count in this peak
    torch.cuda.empty_cache()
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


def offload_rows(args: argparse.Namespace, model: LlamaForCausalLM) -> None:
    """Ours with half of the weight bytes allowed on the GPU, beside the resident model.

    The resident rows run first (graph and eager, same token count); then the same model object
    is offloaded in place (its later layers move to pinned CPU memory).
    """
    new = args.offload_new
    vocab = model.config.vocab_size
    prompts = {
        batch: torch.randint(
            1, vocab, (batch, PROMPT), device="cuda",
            generator=torch.Generator("cuda").manual_seed(batch),
        )
        for batch in args.offload_batches
    }  # fmt: skip
    rows: list[str] = []
    expected: dict[int, torch.Tensor] = {}
    for batch, ids in prompts.items():
        for name, graph in (("resident (graph)", True), ("resident eager", False)):
            seconds, peak, out = timed(
                lambda ids=ids, g=graph: generate_fast(
                    model, ids, max_new_tokens=new, use_cuda_graph=g
                ),
                args.repeats,
            )
            expected.setdefault(batch, out)
            rows.append(
                f"| {name} | {batch} | {batch * new / seconds:,.1f} | {seconds:.3f} | {peak:.2f} |"
                f" {(out == expected[batch]).float().mean().item():.3f} |"
            )
        fast_decode.clear_caches()
        gc.collect()
        torch.cuda.empty_cache()
    budget = weight_memory_bytes(model) // 2
    started = time.perf_counter()
    apply_cpu_offload(model, max_memory={"cuda": budget}, device="cuda")
    gc.collect()
    torch.cuda.empty_cache()
    placed = time.perf_counter() - started
    streamer = model.layer_streamer
    offloaded = len(streamer.offloaded) if streamer is not None else 0
    layer_bytes = sum(
        t.numel() * t.element_size() for e in streamer.offloaded for t in e.host.values()
    ) if streamer is not None else 0  # fmt: skip
    # Host-to-device bandwidth of one offloaded layer's pinned tensors, for the floor.
    h2d = float("nan")
    if streamer is not None:
        host = list(streamer.offloaded[0].host.values())
        size = sum(t.numel() * t.element_size() for t in host)
        h2d = size / median_seconds(lambda: [t.to("cuda", non_blocking=True) for t in host], 5)
    report(
        f"\nCPU offload ({SIZE}), budget {budget / 2**30:.2f} GiB (50 % of weights): {offloaded} "
        f"of {model.config.num_hidden_layers} layers streamed, {layer_bytes / 2**30:.2f} GiB "
        f"per token over PCIe; pinned host-to-device copy {h2d / 1e9:.1f} GB/s -> floor "
        f"{layer_bytes / h2d * 1e3:.0f} ms per decode step; placing took {placed:.1f} s; "
        f"{new} new tokens per call\n",
        args.out,
    )
    report(
        "| run | batch | tokens/s | s per call | peak GiB | tokens equal to resident |",
        args.out,
    )
    report("|---|---|---|---|---|---|", args.out)
    for line in rows:
        report(line, args.out)
    for batch, ids in prompts.items():
        seconds, peak, out = timed(
            lambda ids=ids: generate_fast(model, ids, max_new_tokens=new, use_cuda_graph=False),
            1,
        )
        report(
            f"| offload 50% eager (prefetch overlapped) | {batch} | {batch * new / seconds:,.1f} "
            f"| {seconds:.3f} | {peak:.2f} | {(out == expected[batch]).float().mean().item():.3f} |",
            args.out,
        )


if __name__ == "__main__":
    main()
