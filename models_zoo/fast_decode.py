"""Fast batched generation for Llama-shaped models: static KV cache and a CUDA-graph decode step.

Works on transformers' ``LlamaForCausalLM`` (and any model with the same module names:
``model.embed_tokens``, ``model.layers[i].{input_layernorm, self_attn.{q,k,v,o}_proj,
post_attention_layernorm, mlp}``, ``model.norm``, ``model.rotary_emb``, ``lm_head``), including
models whose Linear/Embedding modules were swapped by :mod:`models_zoo.quantization`. Weights are
the model's own; only the attention, the cache and the order of the kernels are ours.

Design (the usual recipe of gpt-fast and of transformers' static cache, made exact for padding):
- a static KV cache ``(B, H_kv, L, D)`` per layer, allocated once per (batch, length bucket);
- left-padded prompts: positions are ``cumsum(mask) - 1`` per row (as transformers does), pad
  keys are masked for every query, and a pad query attends to itself only (keeps it finite), so
  each row's tokens equal the row generated alone (tested);
- the prompt is processed eagerly in one pass; each decode step reads fixed buffers (token,
  position, write index, additive key mask) and is captured once into a CUDA graph on CUDA and
  replayed per token (Nvidia's CUDA-graphs guidance; the gpt-fast "reduce-overhead" recipe);
- greedy decoding keeps everything on the device: the captured graph also takes the argmax,
  writes it into the next step's token buffer and the output, and advances the counters, so the
  host only replays the graph ``max_new_tokens - 1`` times and never synchronises;
- few kernels per layer, because a graph replay of a small model costs ~2-3 us per kernel
  whatever its size (bench/NOTES.md): q/k/v and gate/up projections run as one matrix product
  each (weights concatenated once per model, kept in sync with in-place updates of the
  originals), rotary embedding is one batched product with a per-position 2-D rotation matrix
  (a table built once per decoder), RMSNorm is ``F.rms_norm``, the residual adds are fused into
  the output projections (``addmm_``), attention is one SDPA call with an additive mask that the
  step updates in place, and grouped-query attention folds the query groups into the query
  length instead of repeating the cache. About 12 kernels per layer instead of ~45.
- on CUDA, dense-attention models run their layers through the Triton kernels of
  :mod:`models_zoo.kernels.decode` instead: rotary + K/V cache write in one kernel (prefill
  too), a grouped-query decode attention kernel that reads only the cache rows written so far
  (the row count is read on the device, so the captured graph follows it), and a fused SwiGLU.
  The two RMSNorms of a layer are folded away: their weights are folded into copies of the
  q/k/v and gate/up weights (``rms_norm(x) @ W.T == s * (x @ (W * w).T)`` with ``s`` the row's
  ``rsqrt(mean(x^2) + eps)``; int8 products scale ``x`` by ``w`` as they load it instead), and
  the rotary and SwiGLU kernels compute ``s`` from the row and apply it; in decode steps the rotary + cache write and the attention are one kernel
  (head dims >= 32): 6 kernels per layer. LongNet's decode step keeps its gathered-key SDPA.
  :func:`warm_up` compiles these kernels when a model is loaded.

On CPU (no graphs; a batch-1 decode step streams every weight once, so it is bound by memory
bandwidth and per-op overhead) the dense float32 projections run on copies of their weights packed
into 64-column panels, read by the AVX-512 GEMV of :mod:`models_zoo.kernels.cpu_gemv` at close to
the memory bandwidth (~1.6x MKL's sgemv); without that kernel (no C compiler or no AVX-512F) on
``(in, out)`` copies, whose GEMV MKL reads ~25% faster than the ``(out, in)`` layout. Decode steps
attend over the cache rows written so far instead of the whole static cache. :meth:`FastDecoder.start` and
:meth:`FastDecoder.advance` decode token by token for callers that choose, stop and stream
themselves (:mod:`models_zoo.chat`); :func:`stream_decoder` keeps one such decoder per model.

Modules of another kind (a custom norm, a non-gated MLP, a CPU-offloaded model whose weights move
every call) are called as they are. Sampling (temperature/top-k) happens outside the graph.
Generation does not stop early at EOS: all rows run ``max_new_tokens`` steps and tokens after a
row's first EOS are replaced by ``pad_token_id`` (a host sync per step to stop early would cost
more than the steps saved at serving batch sizes).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models_zoo.kernels import cpu_gemv, int8_matmul
from models_zoo.kernels import decode as decode_kernels
from models_zoo.quantization import Int8BlockLinear

logger = logging.getLogger(__name__)

# A transformers Llama-shaped causal LM: an nn.Module whose submodules are reached through
# dynamic attributes (model.model.layers[i].self_attn.q_proj ...), so it is typed as Any.
LlamaShaped = Any


LENGTH_BUCKET = 128  # cache lengths are rounded up to this, so one graph serves many requests
# Rows up to which packed CPU projections run the GEMV kernel; longer inputs (prefill) are
# compute-bound and run as one batched product over the panels (as fast as MKL's sgemm there).
GEMV_ROWS = 8
GRAPH_WARMUP_STEPS = 2


@dataclass(frozen=True)
class _LlamaShape:
    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    inv_freq: Callable[[torch.device], torch.Tensor]  # (D/2,) float32 rotary frequencies
    rotary_scale: float
    schedule: tuple[tuple[int, ...], tuple[int, ...]] | None  # LongNet (w, r); None: dense


def _llama_shape(model: LlamaShaped) -> _LlamaShape:
    """Attention geometry of a transformers Llama or a zoo model (dense or LongNet).

    The zoo's models (:mod:`models_zoo.decoder`) have the same module names but no
    ``rotary_emb`` module: their rotary frequencies come from ``config.rope_theta`` exactly as
    :func:`models_zoo.layers.rotary_cos_sin` computes them.
    """
    config = getattr(model, "config", None)
    inner = getattr(model, "model", None)
    needed = ("embed_tokens", "layers", "norm")
    zoo = _is_zoo(model)
    if (
        config is None
        or inner is None
        or not all(hasattr(inner, n) for n in needed)
        or not (zoo or hasattr(inner, "rotary_emb"))
        or not hasattr(model, "lm_head")
    ):
        raise ValueError(
            f"{type(model).__name__} is not Llama-shaped: fast decoding needs config and "
            "model.{embed_tokens, layers, norm, rotary_emb} and lm_head (or a zoo model)"
        )
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    schedule = None
    if zoo:
        theta = float(config.rope_theta)

        def inv_freq(device: torch.device) -> torch.Tensor:
            exponent = torch.arange(0, head_dim, 2, device=device, dtype=torch.float32)
            return 1.0 / (theta ** (exponent / head_dim))  # as models_zoo.layers.rotary_cos_sin

        scale = 1.0
        segments = getattr(config, "segment_lengths", None)
        if segments:
            schedule = (tuple(segments), tuple(config.dilation_rates))
    else:
        rotary = inner.rotary_emb

        def inv_freq(device: torch.device) -> torch.Tensor:
            return rotary.inv_freq.to(device).float()

        scale = float(getattr(rotary, "attention_scaling", 1.0))
    return _LlamaShape(heads, kv_heads, head_dim, head_dim**-0.5, inv_freq, scale, schedule)


def _is_zoo(model: LlamaShaped) -> bool:
    """A zoo decoder (``models_zoo.decoder.DecoderForCausalLM``: dense or LongNet)."""
    from models_zoo.decoder import DecoderForCausalLM

    return isinstance(model, DecoderForCausalLM)


def supports(model: LlamaShaped) -> bool:
    """Whether :func:`generate_fast` can decode ``model`` (Llama-shaped or a zoo model)."""
    try:
        _llama_shape(model)
    except ValueError:
        return False
    return True


def needs_unpadded(model: LlamaShaped) -> bool:
    """True for LongNet models: their segments are aligned to absolute positions, so a batch
    must hold prompts of one length (no left padding)."""
    return _llama_shape(model).schedule is not None


def left_pad(
    prompts: Sequence[Sequence[int]], pad_token_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists into ``(input_ids, attention_mask)``, both ``(B, T)``.

    Raises:
        ValueError: for an empty batch or an empty prompt.
    """
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("left_pad needs at least one prompt and no empty prompt")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids.to(device), mask.to(device)


def hasattr_streamer(model: LlamaShaped) -> bool:
    """Whether ``model`` was CPU-offloaded by :func:`models_zoo.offload.apply_cpu_offload`."""
    return getattr(model, "layer_streamer", None) is not None


# --- the model's weights as the decoder uses them -------------------------------------------


class _Projection:
    """One or more Linear modules applied to the same input, as one matrix product.

    ``dense``: plain ``nn.Linear`` (one module: its own weight; several: a concatenated copy;
    ``transposed``: on CPU, float32 weights packed into 64-column panels for
    :mod:`models_zoo.kernels.cpu_gemv` (~1.6x MKL's batch-1 GEMV), or, without that kernel,
    an ``(in, out)`` copy, which MKL's GEMV reads ~25% faster than ``(out, in)``: bench/
    RESULTS.md, issue 15);
    ``int8``: :class:`Int8BlockLinear` (codes concatenated, scales kept in the compute dtype, so
    the dequantisation is one mixed-dtype multiply, bit-equal to the module's own; a folded
    input scale multiplies the activations instead, and ``share`` names the unfolded
    projection whose codes and scales it uses, so folding costs no second copy);
    ``module``: anything else, called as it is (outputs concatenated).
    Copies are refreshed in place when an original is updated in place (tensor version counter).
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        dtype: torch.dtype,
        *,
        transposed: bool = False,
        input_scale: torch.Tensor | None = None,
        share: _Projection | None = None,
    ) -> None:
        self.modules: list[Any] = list(modules)  # nn.Linear or Int8BlockLinear (duck-typed)
        self.dtype = dtype
        # A folded RMSNorm weight (see _ModelPlan): the dense copy is W * input_scale per
        # column; int8 products scale the activations by it.
        self.input_scale = input_scale
        self.share = share
        biases = {m.bias is None for m in self.modules if hasattr(m, "bias")}
        if len(biases) != 1:
            self.kind = "module"
        elif all(type(m) is nn.Linear and m.weight.dtype == dtype for m in self.modules):
            self.kind = "dense"
        elif all(isinstance(m, Int8BlockLinear) for m in self.modules) and (
            len({(m.in_features, m.qweight.shape[1], m.scales.shape[1]) for m in self.modules}) == 1
        ):
            self.kind = "int8"
        else:
            self.kind = "module"
        self.out_features = sum(int(getattr(m, "out_features", 0)) for m in self.modules)
        self.packed = (
            transposed
            and self.kind == "dense"
            and dtype == torch.float32
            and cpu_gemv.is_available()
        )
        self.transposed = transposed and self.kind == "dense" and not self.packed
        if input_scale is not None and (
            self.kind not in ("dense", "int8") or self.packed or self.transposed
        ):
            raise ValueError("only dense CUDA-layout or int8 projections take a folded input scale")
        if share is not None and (self.kind != "int8" or share.modules != self.modules):
            raise ValueError("only an int8 projection shares the codes of one of the same modules")
        # Concatenated or folded (out, in) copies are made on first use, so a model whose
        # decoders only use the folded ones holds no unfolded copy (and vice versa).
        self.lazy = self.kind == "dense" and not self.packed and not self.transposed
        self.weight_copy: torch.Tensor | None = None  # (out, in); transposed: (in, out)
        self.panels: torch.Tensor | None = None  # packed: cpu_gemv.pack of the (out, in) weight
        self.scales: torch.Tensor | None = None
        self.bias: torch.Tensor | None = None
        self.stamp = self._stamp()
        self._build(out=False)

    def _sources(self) -> list[torch.Tensor]:
        tensors = []
        for m in self.modules:
            if self.kind == "dense":
                tensors.append(m.weight)
            elif self.kind == "int8":
                tensors += [m.qweight, m.scales]
            if self.kind != "module" and m.bias is not None:
                tensors.append(m.bias)
        if self.input_scale is not None:
            tensors.append(self.input_scale)
        return tensors

    def _stamp(self) -> list[tuple[int, int]]:
        return [(t.data_ptr(), t._version) for t in self._sources()]

    def _build(self, out: bool) -> None:
        """(Re)compute the derived tensors; ``out``: write into the existing ones (graphs)."""

        def put(name: str, value: torch.Tensor) -> None:
            current = getattr(self, name)
            if out and current is not None and current is not value:
                current.copy_(value)
            else:
                setattr(self, name, value)

        with torch.no_grad():
            if self.kind == "dense" and self.packed:
                put("panels", cpu_gemv.pack(torch.cat([m.weight for m in self.modules])))
            elif self.kind == "dense" and self.transposed:
                put("weight_copy", self._dense_copy().t().contiguous())
            elif self.lazy and self.weight_copy is not None:  # made by weight(): refresh it
                put("weight_copy", self._dense_copy())
            if self.kind == "int8" and self.share is not None:  # the same tensors as share's
                assert self.share.weight_copy is not None and self.share.scales is not None
                put("weight_copy", self.share.weight_copy)
                put("scales", self.share.scales)
            elif self.kind == "int8":
                codes = [m.qweight for m in self.modules]
                put("weight_copy", codes[0] if len(codes) == 1 else torch.cat(codes))
                put("scales", torch.cat([m.scales for m in self.modules]).to(self.dtype))
            if self.kind != "module" and self.modules[0].bias is not None:
                put("bias", torch.cat([m.bias for m in self.modules]).to(self.dtype))

    def _dense_copy(self) -> torch.Tensor:
        """``(out, in)``: the modules' weights concatenated, times the folded input scale."""
        weights = [m.weight for m in self.modules]
        weight = weights[0] if len(weights) == 1 else torch.cat(weights)
        if self.input_scale is not None:
            weight = (weight.float() * self.input_scale.float()).to(self.dtype)
        return weight

    def current(self) -> bool:
        """Refresh copies after in-place updates; False if a source tensor was replaced."""
        stamp = self._stamp()
        if stamp == self.stamp:
            return True
        if [p for p, _ in stamp] != [p for p, _ in self.stamp]:
            return False
        self._build(out=True)
        self.stamp = stamp
        return True

    def weight(self) -> torch.Tensor:
        """``(out, in)`` weight in the compute dtype (a dequantising kernel for int8)."""
        if self.kind == "dense":
            if self.panels is not None:  # (P, in, 64) -> (out, in)
                full = self.panels.transpose(1, 2).reshape(-1, self.panels.shape[1])
                return full[: self.out_features]
            if self.transposed:
                assert self.weight_copy is not None
                return self.weight_copy.t()
            if len(self.modules) == 1 and self.input_scale is None:
                return self.modules[0].weight
            if self.weight_copy is None:
                with torch.no_grad():
                    self.weight_copy = self._dense_copy()
            return self.weight_copy
        assert self.kind == "int8" and self.weight_copy is not None and self.scales is not None
        rows, blocks = self.scales.shape
        # int8 * dtype promotes to dtype in one kernel: same values as dequantize_blockwise.
        full = (self.weight_copy.view(rows, blocks, -1) * self.scales[..., None]).view(rows, -1)
        return full[:, : self.modules[0].in_features]

    def _fused_int8(self, x: torch.Tensor) -> bool:
        """Whether the int8 product runs in the fused dequantising kernel (decode steps)."""
        return (
            self.kind == "int8"
            and self.bias is None
            and x.dim() == 2
            and x.shape[0] <= int8_matmul.MAX_FUSED_ROWS
            and int8_matmul.is_available(x)
        )

    def _int8_args(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        assert self.weight_copy is not None and self.scales is not None
        return self.weight_copy, self.scales, self.modules[0].in_features

    def _int8_input(self, x: torch.Tensor) -> torch.Tensor:
        """The activations of an unfused int8 product: times the folded input scale, if any."""
        if self.kind != "int8" or self.input_scale is None:
            return x
        return int8_matmul.scale_input(x, self.input_scale)

    def _packed(self, x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``x @ W.T`` (+= into ``out``) from the packed panels: the kernel for decode steps,
        one batched product over the panels for longer inputs (prefill)."""
        assert self.panels is not None
        if x.shape[0] <= GEMV_ROWS:
            return cpu_gemv.matmul(x.contiguous(), self.panels, self.out_features, out=out)
        M = x.shape[0]
        full = torch.matmul(x, self.panels).transpose(0, 1).reshape(M, -1)  # (M, P*64)
        product = full[:, : self.out_features]
        return product if out is None else out.add_(product)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.panels is not None:
            product = self._packed(x)
            return product if self.bias is None else product.add_(self.bias)
        if self.kind == "module":
            outs = [m(x) for m in self.modules]
            return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)
        if self._fused_int8(x):
            return int8_matmul.int8_linear(x, *self._int8_args(), input_scale=self.input_scale)
        if self.transposed:
            assert self.weight_copy is not None
            if self.bias is None:
                return torch.mm(x, self.weight_copy)  # x is 2-D in the decoder
            return torch.addmm(self.bias, x, self.weight_copy)
        return F.linear(self._int8_input(x), self.weight(), self.bias)

    def add_to(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``x + self(a)``, in place in ``x`` (one GEMM with beta=1) where possible."""
        if self.kind == "module" or self.bias is not None:
            return x + self(a)
        if self.panels is not None and x.is_contiguous():  # accumulated in the kernel
            return self._packed(a, out=x)
        if self._fused_int8(a):  # residual added in the kernel's epilogue, in place
            return int8_matmul.int8_linear(
                a, *self._int8_args(), residual=x, out=x, input_scale=self.input_scale
            )
        if self.transposed:
            assert self.weight_copy is not None
            return x.addmm_(a, self.weight_copy)
        return x.addmm_(self._int8_input(a), self.weight().t())


@dataclass(frozen=True)
class _RMSNorm:
    """``F.rms_norm`` with a norm module's weight and epsilon (one fused kernel on CUDA)."""

    weight: torch.Tensor
    eps: float | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def _rms_norm(norm: LlamaShaped, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
    """:class:`_RMSNorm` for transformers' LlamaRMSNorm / ``nn.RMSNorm``; else the module."""
    weight = getattr(norm, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dtype != dtype:
        return norm
    eps: float | None
    from models_zoo.layers import RMSNorm as ZooRMSNorm

    if isinstance(norm, nn.RMSNorm) or type(norm) is ZooRMSNorm:
        eps = norm.eps
    else:
        try:
            from transformers.models.llama.modeling_llama import LlamaRMSNorm
        except ImportError:  # pragma: no cover - transformers is a dependency
            return norm
        if type(norm).forward is not LlamaRMSNorm.forward:
            return norm
        eps = norm.variance_epsilon
    return _RMSNorm(norm.weight, eps)


def _is_gated_silu_mlp(mlp: LlamaShaped) -> bool:
    from models_zoo.layers import SwiGLU

    if type(mlp) is SwiGLU:  # down(silu(gate(x)) * up(x)), as LlamaMLP
        return True
    try:
        from transformers.models.llama.modeling_llama import LlamaMLP
    except ImportError:  # pragma: no cover
        return False
    act = getattr(mlp, "act_fn", None)
    return type(mlp).forward is LlamaMLP.forward and type(act).__name__ in (
        "SiLU",
        "SiLUActivation",
    )


@dataclass
class _LayerPlan:
    norm1: Callable[[torch.Tensor], torch.Tensor]
    qkv: _Projection
    o: _Projection
    norm2: Callable[[torch.Tensor], torch.Tensor]
    gate_up: _Projection | None  # None: call layer.mlp
    down: _Projection | None
    # The same products from the un-normalised rows, norm weights folded into the weights
    # (decoders with the fused kernels: the kernel after the product applies the rows' RMS
    # scale); None where that does not apply (another norm, or biased projections).
    qkv_folded: _Projection | None = None
    gate_up_folded: _Projection | None = None


class _ModelPlan:
    """How the decoder runs one model's modules; shared by its decoders (one weight copy).

    On CPU every dense projection runs on an ``(in, out)`` copy of its weight (see
    :class:`_Projection`): one more copy of the model's dense weights, for faster decode steps.
    """

    def __init__(self, model: LlamaShaped, dtype: torch.dtype) -> None:
        inner = model.model
        self.modules = self._modules(model)
        transposed = inner.norm.weight.device.type == "cpu"

        def projection(*modules: nn.Module) -> _Projection:
            return _Projection(modules, dtype, transposed=transposed)

        self.layers = []
        for layer in inner.layers:
            attn, mlp = layer.self_attn, layer.mlp
            gated = _is_gated_silu_mlp(mlp)
            plan = _LayerPlan(
                norm1=_rms_norm(layer.input_layernorm, dtype),
                qkv=projection(attn.q_proj, attn.k_proj, attn.v_proj),
                o=projection(attn.o_proj),
                norm2=_rms_norm(layer.post_attention_layernorm, dtype),
                gate_up=projection(mlp.gate_proj, mlp.up_proj) if gated else None,
                down=projection(mlp.down_proj) if gated else None,
            )
            # (made on first use: CUDA decoders with the fused kernels, or the interpreter)
            plan.qkv_folded = _folded(plan.norm1, plan.qkv, dtype)
            plan.gate_up_folded = _folded(plan.norm2, plan.gate_up, dtype)
            self.layers.append(plan)
        self.final_norm = _rms_norm(inner.norm, dtype)
        self.head = projection(model.lm_head)

    @staticmethod
    def _modules(model: LlamaShaped) -> list[int]:
        return [id(m) for m in model.modules()]

    def projections(self) -> list[_Projection]:
        found = [self.head]
        for layer in self.layers:
            found += [
                p
                for p in (layer.qkv, layer.o, layer.gate_up, layer.down, layer.qkv_folded,
                          layer.gate_up_folded)
                if p is not None
            ]  # fmt: skip
        return found

    def current(self, model: LlamaShaped) -> bool:
        """Refresh weight copies; False if modules or weight tensors were replaced."""
        if self._modules(model) != self.modules:
            return False
        return all(p.current() for p in self.projections())


def _folded(
    norm: Callable[[torch.Tensor], torch.Tensor], projection: _Projection | None, dtype: torch.dtype
) -> _Projection | None:
    """``projection`` with ``norm``'s weight folded into its columns, where that is exact:
    ``rms_norm(x) @ W.T == rsqrt(mean(x^2) + eps) * (x @ (W * weight).T)`` for an RMSNorm and
    a dense projection without bias (its copy is made on first use), or an int8 one, whose
    product scales ``x`` by ``weight`` instead (``(x * weight) @ W.T``, same codes)."""
    if (
        not isinstance(norm, _RMSNorm)
        or projection is None
        or projection.kind not in ("dense", "int8")
        or projection.bias is not None
    ):
        return None
    share = projection if projection.kind == "int8" else None
    return _Projection(projection.modules, dtype, input_scale=norm.weight, share=share)


# --- the decoder ------------------------------------------------------------------------------


def _cos_sin(
    shape: _LlamaShape, length: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(length, D)`` cos and sin tables in ``dtype``, as transformers / the zoo compute them."""
    freqs = torch.arange(length, device=device, dtype=torch.float32)[:, None] * shape.inv_freq(
        device
    )
    angles = torch.cat((freqs, freqs), dim=-1)  # (length, D)
    scale = shape.rotary_scale
    return (angles.cos() * scale).to(dtype), (angles.sin() * scale).to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x * cos + rotate_half(x) * sin`` for ``x`` (N, heads, D) and tables (N, 1, D)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


ROTATION_TABLE_BYTES = 64 * 2**20  # above this, decode steps rotate with cos/sin tables instead


def _rotation_table(
    shape: _LlamaShape, length: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """``(length, D, D)``: ``x @ table[p]`` = transformers' rotary embedding of ``x`` at ``p``.

    ``x * cos + rotate_half(x) * sin`` is linear in ``x``: ``x @ (diag(cos) + P diag(sin))`` with
    ``P`` the signed half swap. Entries are the cos/sin values cast to ``dtype`` as transformers
    casts them; the product accumulates in fp32 and rounds once.
    """
    head_dim = shape.head_dim
    cos, sin = _cos_sin(shape, length, dtype, device)
    half = head_dim // 2
    index = torch.arange(half, device=device)
    table = torch.diag_embed(cos)  # (length, D, D)
    table[:, index + half, index] = -sin[:, :half]  # out[j] -= x[j + D/2] sin[j], j < D/2
    table[:, index, index + half] = sin[:, half:]  # out[j] += x[j - D/2] sin[j], j >= D/2
    return table


class _DilatedDecode:
    """LongNet's dilated attention for one decode step, as dense attention over gathered keys.

    For a query at position ``p`` and a branch (w, r), the branch covers the query for head
    ``h`` iff ``(p - s) % r == h % r`` with ``s = (p // w) * w`` the segment start, and then sees
    the keys ``s + h % r + j r <= p``, ``j < ceil(w / r)`` (:func:`models_zoo.attention.
    _branch_decode`). Mixing the branches by ``softmax_i(LSE_i)`` equals one softmax over the
    union of the branches' key lists in which a key listed by c branches counts c times
    (module docstring of :mod:`models_zoo.attention`). So a step gathers, per (row, head), the
    ``M = sum_i ceil(w_i / r_i)`` listed cache positions (a fixed count: the step stays
    graph-capturable), masks the entries of branches that do not cover the query or lie past
    ``p``, and runs one SDPA call over them. Indices and mask are computed once per step and
    shared by all layers. At 128K context with the paper's schedule M is 11,606 keys instead of
    131K for dense attention.
    """

    def __init__(self, shape: _LlamaShape, dtype: torch.dtype, device: torch.device) -> None:
        assert shape.schedule is not None
        if shape.kv_heads != shape.heads:
            raise ValueError("dilated decoding needs as many key/value heads as query heads")
        segments, rates = shape.schedule
        width, rate, step = [], [], []
        for w, r in zip(segments, rates):
            rows = -(-w // r)
            width += [w] * rows
            rate += [r] * rows
            step += [j * r for j in range(rows)]
        self.width = torch.tensor(width, device=device)  # (M,) the listed key's branch w
        self.rate = torch.tensor(rate, device=device)  # (M,) its branch r
        self.step = torch.tensor(step, device=device)  # (M,) j * r
        heads = torch.arange(shape.heads, device=device)[:, None]
        self.offset = heads % self.rate  # (H, M): head h starts at h % r (paper section 2.3)
        self.in_segment = self.offset + self.step < self.width  # (H, M)
        self.scaling = shape.scaling
        self.dtype = dtype

    def keys(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cache indices ``(B, H, M)`` and the additive mask ``(B, H, 1, M)`` for ``(B, 1)``
        positions (unpadded: a token's position is its cache index)."""
        p = positions[:, :1, None]  # (B, 1, 1)
        start = torch.div(p, self.width, rounding_mode="floor") * self.width  # (B, 1, M)
        index = start + self.offset + self.step  # (B, H, M)
        covers = torch.remainder(p - start, self.rate) == self.offset  # (B, H, M)
        allowed = covers & self.in_segment & (index <= p)
        bias = torch.zeros(allowed.shape, dtype=self.dtype, device=allowed.device)
        bias = bias.masked_fill_(~allowed, float("-inf"))[:, :, None]  # (B, H, 1, M)
        return index.clamp_(max=p), bias

    def attend(
        self,
        q: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        index: torch.Tensor,
        bias: torch.Tensor,
    ) -> torch.Tensor:
        """``q`` (B, H, 1, D) over the listed rows of the cache (B, H, L, D); returns (B, H*D)."""
        B, H, _, D = q.shape
        expanded = index[..., None].expand(B, H, index.shape[-1], D)
        out = F.scaled_dot_product_attention(
            q,
            keys.gather(2, expanded),
            values.gather(2, expanded),
            attn_mask=bias,
            scale=self.scaling,
        )  # (B, H, 1, D)
        return out.reshape(B, H * D)


@dataclass(frozen=True)
class _Rotary:
    """Rotary embedding of one pass: rotation matrices (decode steps) or cos/sin tables."""

    rotation: torch.Tensor | None  # (B, D, D)
    cos: torch.Tensor | None  # (B*T, 1, D)
    sin: torch.Tensor | None


@dataclass(frozen=True)
class _StepInputs:
    """What every layer of one forward pass shares."""

    rotary: _Rotary | None  # None: the fused rotary kernel reads cos/sin itself
    positions: torch.Tensor  # (B*T,) rotary positions
    write_at: torch.Tensor  # (T,) cache indices of the new tokens
    mask: torch.Tensor | None  # additive, (B, 1, G*T, visible keys)
    decode_bias: torch.Tensor | None  # fused decode step: the additive key mask (B, L)
    gathered: tuple[torch.Tensor, torch.Tensor] | None  # LongNet decode step
    visible: int | None  # cache rows attended over; None: all


def _eps(norm: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """A folded :class:`_RMSNorm`'s epsilon (``None`` means F.rms_norm's default)."""
    assert isinstance(norm, _RMSNorm)
    return norm.eps if norm.eps is not None else torch.finfo(x.dtype).eps


class FastDecoder:
    """Static-cache decoder for one model, batch size and maximum length.

    Args:
        model: a Llama-shaped causal LM (module docstring), in eval mode.
        batch_size: rows per call (prompts are left-padded to one width).
        max_length: prompt width + new tokens the cache must hold.
        use_cuda_graph: capture the decode step into a CUDA graph; default: on for CUDA
            (off for a CPU-offloaded model, whose weights move every call).
        compile_step: ``torch.compile`` the decode step (fuses its elementwise kernels) before
            it is captured; costs a compile per batch size and length bucket.
        fused_kernels: run the layers through :mod:`models_zoo.kernels.decode` (rotary + cache
            write, decode attention over the written rows, SwiGLU; Triton); default: where
            they apply (CUDA, dense attention, a power-of-two head dim, Triton importable).
    """

    def __init__(
        self,
        model: LlamaShaped,
        *,
        batch_size: int,
        max_length: int,
        use_cuda_graph: bool | None = None,
        compile_step: bool = False,
        fused_kernels: bool | None = None,
    ) -> None:
        self.model = model
        self.shape = _llama_shape(model)
        inner = model.model
        self.device = inner.norm.weight.device
        self.dtype = inner.norm.weight.dtype
        self.batch_size = batch_size
        self.max_length = max_length
        if use_cuda_graph is None:
            use_cuda_graph = self.device.type == "cuda" and not hasattr_streamer(model)
        self.use_cuda_graph = use_cuda_graph
        if self.use_cuda_graph and self.device.type != "cuda":
            raise ValueError(f"use_cuda_graph needs a CUDA model, this one is on {self.device}")
        if self.use_cuda_graph and hasattr_streamer(model):
            raise ValueError("a CPU-offloaded model streams weights per call: use_cuda_graph=False")
        # A CPU-offloaded model's weights move every call: call its modules as they are.
        self.plan = None if hasattr_streamer(model) else _model_plan(model, self.dtype)
        # Optional: let Inductor fuse the step's small kernels before capture.
        self.step = (
            torch.compile(self._decode_step, dynamic=False) if compile_step else self._decode_step
        )
        # CPU decode steps attend over the cache rows written so far, not the whole cache
        # (fixed shapes only matter to CUDA graphs and compiled steps).
        self.slice_cache = self.device.type == "cpu" and not compile_step
        shape = self.shape
        cache_shape = (batch_size, shape.kv_heads, max_length, shape.head_dim)
        self.keys = [
            torch.zeros(cache_shape, dtype=self.dtype, device=self.device) for _ in inner.layers
        ]
        self.values = [torch.zeros_like(k) for k in self.keys]
        # Prefill rotates with cos/sin (as the model does); decode steps with one batched
        # product by a per-position rotation matrix while that table stays small.
        self.cos, self.sin = _cos_sin(shape, max_length, self.dtype, self.device)
        self.fused, self.splits = self._fused_kernels(fused_kernels)
        self._make_weight_copies()
        table_bytes = max_length * shape.head_dim**2 * torch.finfo(self.dtype).bits // 8
        self.rotation = (
            _rotation_table(shape, max_length, self.dtype, self.device)
            if table_bytes <= ROTATION_TABLE_BYTES and not self.fused
            else None
        )
        self.dilated = (
            _DilatedDecode(shape, self.dtype, self.device) if shape.schedule is not None else None
        )
        self._allocate_step_state()
        self.graphs: dict[str, tuple[torch.cuda.CUDAGraph, torch.Tensor | None]] = {}

    def _make_weight_copies(self) -> None:
        """Make the (folded or plain) weight copies this decoder uses now, not in the graph
        warm-up's side stream."""
        if self.plan is None:
            return
        for lp in self.plan.layers:
            for folded, plain in ((lp.qkv_folded, lp.qkv), (lp.gate_up_folded, lp.gate_up)):
                used = folded if self.fused and folded is not None else plain
                if used is not None and used.lazy:
                    used.weight()

    def _fused_kernels(self, wanted: bool | None) -> tuple[bool, int]:
        """Whether the layers run through :mod:`models_zoo.kernels.decode`, and the key splits
        of its decode attention (1 unless rows x heads are too few to fill the GPU)."""
        usable = (
            self.plan is not None
            and self.shape.schedule is None
            and decode_kernels.is_available(self.cos, self.shape.head_dim)
        )
        fused = usable if wanted is None else wanted and usable
        if not fused:
            return False, 1
        programs = self.batch_size * self.shape.kv_heads
        return True, decode_kernels.attention_splits(programs, self.max_length, self.device)

    def _allocate_step_state(self) -> None:
        """Decode-step state: fixed buffers, so a captured graph reads and advances them."""
        B, L, device = self.batch_size, self.max_length, self.device
        self.token = torch.zeros(B, 1, dtype=torch.long, device=device)
        self.position = torch.zeros(B, 1, dtype=torch.long, device=device)
        self.counters = torch.zeros(2, dtype=torch.long, device=device)
        self.write_at = self.counters[0:1]  # cache index of the step's token
        self.out_index = self.counters[1:2]  # column of ``out`` the greedy step writes
        self.key_valid = torch.zeros(B, L, dtype=torch.bool, device=device)
        self.key_bias = torch.zeros(B, 1, 1, L, dtype=self.dtype, device=device)
        self.out = torch.zeros(B, L, dtype=torch.long, device=device)

    def _forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        write_at: torch.Tensor,
        mask: torch.Tensor | None,
        visible: int | None = None,
    ) -> torch.Tensor:
        """Run the model over new tokens, appending their keys/values to the cache.

        Notation: B batch, T new tokens, L cache length, H/H_kv heads, G = H/H_kv, D head dim,
        C hidden.

        Args:
            tokens: ``(B, T)`` token ids; positions: ``(B, T)`` rotary positions.
            write_at: ``(T,)`` cache indices of the new tokens.
            mask: ``(B, 1, T, L)``: bool, True where a query may see a cache key, or additive
                (0 / -inf) in the model's dtype; ``None``: an unpadded prompt at cache index 0
                (causal attention over the new tokens alone, no mask tensor).
            visible: attend over the first ``visible`` cache rows only (``mask`` hides every
                later one); ``None``: over the whole cache.

        Returns:
            ``(B, V)`` logits of the last new token.
        """
        inner, plan = self.model.model, self.plan
        B, T = tokens.shape
        fused_step = self.fused and T == 1 and mask is not None
        step = _StepInputs(
            rotary=None if self.fused else self._rotary(positions),
            positions=positions.reshape(-1),
            write_at=write_at,
            mask=None if fused_step else self._attention_bias(mask, T, visible),
            decode_bias=self._decode_bias(mask) if fused_step else None,
            gathered=self.dilated.keys(positions) if T == 1 and self.dilated is not None else None,
            visible=visible,
        )
        x = inner.embed_tokens(tokens).to(self.dtype).reshape(B * T, -1).contiguous()
        streamer = getattr(self.model, "layer_streamer", None)  # models_zoo.offload
        for index, layer in enumerate(inner.layers):
            if streamer is not None:
                streamer.before(layer)
            x = self._layer(index, x, B, T, step)
            if streamer is not None:
                streamer.after(layer)
        last = x.view(B, T, -1)[:, -1]  # (B, C)
        if plan is None:
            return self.model.lm_head(inner.norm(last))  # (B, V)
        return plan.head(plan.final_norm(last))

    def _attention_bias(
        self, mask: torch.Tensor | None, T: int, visible: int | None
    ) -> torch.Tensor | None:
        """``mask`` (B, 1, T, L) as an additive bias over the visible keys, ``(B, 1, G*T, L')``."""
        if mask is None:
            return None
        if visible is not None:
            mask = mask[..., :visible]
        if mask.dtype == torch.bool:
            bias = torch.zeros(mask.shape, dtype=self.dtype, device=mask.device)
            mask = bias.masked_fill_(~mask, float("-inf"))
        G = self.shape.heads // self.shape.kv_heads
        if G > 1:  # query groups folded into the query length
            B, L = mask.shape[0], mask.shape[-1]
            mask = mask[:, :, None].expand(B, 1, G, T, L).reshape(B, 1, G * T, L)
        return mask

    def _decode_bias(self, mask: torch.Tensor | None) -> torch.Tensor:
        """A decode step's ``(B, 1, 1, L)`` key mask as the ``(B, L)`` additive bias of the
        fused attention kernel (the decoder's own ``key_bias`` is already additive)."""
        assert mask is not None and mask.shape[1:3] == (1, 1)
        if mask.dtype == torch.bool:
            bias = torch.zeros(mask.shape, dtype=self.dtype, device=mask.device)
            mask = bias.masked_fill_(~mask, float("-inf"))
        return mask.view(mask.shape[0], mask.shape[-1])

    def _rotary(self, positions: torch.Tensor) -> _Rotary:
        """Decode steps: rotation matrices ``(B, D, D)`` while the table exists; else cos/sin
        ``(B*T, 1, D)``."""
        flat = positions.reshape(-1)
        if positions.shape[1] == 1 and self.rotation is not None:
            return _Rotary(self.rotation[flat], None, None)
        return _Rotary(None, self.cos[flat][:, None], self.sin[flat][:, None])

    def _layer(
        self, index: int, x: torch.Tensor, B: int, T: int, step: _StepInputs
    ) -> torch.Tensor:
        """Decoder layer ``index`` over ``x`` (B*T, C); its keys/values go to the cache."""
        layer = self.model.model.layers[index]
        lp = self.plan.layers[index] if self.plan is not None else None
        if self.fused and lp is not None:
            return self._fused_layer(layer, lp, index, x, B, T, step)
        assert step.rotary is not None
        q, k, v = self._qkv(layer, lp, x, B, T, step.rotary)
        self.keys[index].index_copy_(2, step.write_at, k)
        self.values[index].index_copy_(2, step.write_at, v)
        out = self._attend(q, k, v, index, step.mask, step.gathered, step.visible)  # (B*T, H*D)
        if lp is None:
            x = x + layer.self_attn.o_proj(out)
            return x + layer.mlp(layer.post_attention_layernorm(x))
        x = lp.o.add_to(x, out)
        h = lp.norm2(x)
        if lp.gate_up is None or lp.down is None:
            return x + layer.mlp(h)
        gate_up = lp.gate_up(h)  # (B*T, 2 I)
        width = gate_up.shape[-1] // 2
        return lp.down.add_to(x, F.silu(gate_up[:, :width]) * gate_up[:, width:])

    def _fused_layer(
        self,
        layer: LlamaShaped,
        lp: _LayerPlan,
        index: int,
        x: torch.Tensor,
        B: int,
        T: int,
        step: _StepInputs,
    ) -> torch.Tensor:
        """:meth:`_layer` through the fused kernels: 6 launches per decode step of a layer
        (4 products, rotary + cache write + attention, SwiGLU; the norms folded into the
        products and the kernels after them; 7 for head dims under 32) instead of ~14."""
        if step.decode_bias is not None and decode_kernels.rope_attention_available(
            self.shape.head_dim
        ):
            out = self._rope_attention(lp, x, B, index, step)  # one kernel for the three
        else:
            out = self._rotary_then_attention(lp, x, B, T, index, step)
        x = lp.o.add_to(x, out)
        if lp.gate_up is None or lp.down is None:
            return x + layer.mlp(lp.norm2(x))
        if lp.gate_up_folded is not None:
            eps = _eps(lp.norm2, x)
            hidden = decode_kernels.swiglu(lp.gate_up_folded(x), norm_input=x, eps=eps)
        else:
            hidden = decode_kernels.swiglu(lp.gate_up(lp.norm2(x)))
        return lp.down.add_to(x, hidden)

    def _rope_attention(
        self, lp: _LayerPlan, x: torch.Tensor, B: int, index: int, step: _StepInputs
    ) -> torch.Tensor:
        """A decode step's rotary + cache write + attention (one kernel); ``(B, H*D)``."""
        assert step.decode_bias is not None
        keys, values = self.keys[index], self.values[index]
        common = (step.positions, self.cos, self.sin, keys, values, step.decode_bias)
        scale, H = self.shape.scaling, self.shape.heads
        if lp.qkv_folded is not None:
            return decode_kernels.rope_decode_attention(
                lp.qkv_folded(x), *common, step.write_at, H, scale, self.splits,
                norm_input=x, eps=_eps(lp.norm1, x),
            )  # fmt: skip
        qkv = lp.qkv(lp.norm1(x))
        return decode_kernels.rope_decode_attention(
            qkv, *common, step.write_at, H, scale, self.splits
        )

    def _rotary_then_attention(
        self, lp: _LayerPlan, x: torch.Tensor, B: int, T: int, index: int, step: _StepInputs
    ) -> torch.Tensor:
        """Rotary + cache write, then attention (prefill, or decode steps of small head
        dims); ``(B*T, H*D)``."""
        H, D = self.shape.heads, self.shape.head_dim
        keys, values = self.keys[index], self.values[index]
        if lp.qkv_folded is not None:  # norm1's weight folded in, its row scale in the kernel
            q = decode_kernels.rotary_to_cache(
                lp.qkv_folded(x), step.positions, self.cos, self.sin, keys, values,
                step.write_at, H, norm_input=x, eps=_eps(lp.norm1, x),
            )  # fmt: skip
        else:
            qkv = lp.qkv(lp.norm1(x))  # (B*T, (H + 2 H_kv) D)
            q = decode_kernels.rotary_to_cache(
                qkv, step.positions, self.cos, self.sin, keys, values, step.write_at, H
            )  # (B*T, H, D); keys and values written at write_at
        if step.decode_bias is not None:
            out = decode_kernels.decode_attention(
                q.view(B, H, D), keys, values, step.decode_bias, step.write_at,
                self.shape.scaling, self.splits,
            )  # fmt: skip
        else:  # prefill: its tokens went to cache rows 0 .. T-1 (write_at = arange(T))
            q_heads = q.view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
            new_keys, new_values = keys[:, :, :T], values[:, :, :T]  # (B, H_kv, T, D)
            out = self._attend(q_heads, new_keys, new_values, index, step.mask, None, step.visible)
        return out

    def _qkv(
        self,
        layer: LlamaShaped,
        lp: _LayerPlan | None,
        x: torch.Tensor,
        B: int,
        T: int,
        rotary: _Rotary,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rotated queries ``(B, H, T, D)`` and keys, and values ``(B, H_kv, T, D)``."""
        H, Hkv, D = self.shape.heads, self.shape.kv_heads, self.shape.head_dim
        if lp is None:
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            qkv = torch.cat([attn.q_proj(h), attn.k_proj(h), attn.v_proj(h)], dim=-1)
        else:
            qkv = lp.qkv(lp.norm1(x))  # (B*T, (H + 2 H_kv) D)
        heads = qkv.view(B * T, H + 2 * Hkv, D)
        if rotary.rotation is not None:
            rotated = torch.bmm(heads[:, : H + Hkv], rotary.rotation)  # q and k: (B*T, H+H_kv, D)
        else:
            assert rotary.cos is not None and rotary.sin is not None
            rotated = _rotate(heads[:, : H + Hkv], rotary.cos, rotary.sin)
        q = rotated[:, :H].view(B, T, H, D).transpose(1, 2)  # (B, H, T, D)
        k = rotated[:, H:].view(B, T, Hkv, D).transpose(1, 2)
        v = heads[:, H + Hkv :].view(B, T, Hkv, D).transpose(1, 2)
        return q, k, v

    def _attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        index: int,
        mask: torch.Tensor | None,
        gathered: tuple[torch.Tensor, torch.Tensor] | None,
        visible: int | None = None,
    ) -> torch.Tensor:
        """Attention of ``q`` (B, H, T, D) over layer ``index``'s cache; returns (B*T, H*D).

        ``k``/``v`` (B, H_kv, T, D) are the new tokens' (already in the cache). Three cases:
        an unpadded prompt (``mask`` None): causal attention over the new tokens alone (LongNet:
        :func:`models_zoo.attention.dilated_attention`, the fused kernel on CUDA); a LongNet decode
        step (``gathered``): dense attention over the keys its branches see (see
        :class:`_DilatedDecode`); otherwise one SDPA call over the cache's first ``visible``
        rows (default: all) with ``mask``.
        """
        B, H, T, D = q.shape
        Hkv = k.shape[1]
        G = H // Hkv
        schedule = self.shape.schedule
        if mask is None:
            if schedule is not None:
                from models_zoo.attention import dilated_attention

                out = dilated_attention(
                    q.transpose(1, 2),
                    k.transpose(1, 2),
                    v.transpose(1, 2),
                    segment_lengths=schedule[0],
                    dilation_rates=schedule[1],
                    causal=True,
                )  # (B, T, H, D)
                return out.reshape(B * T, H * D)
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=T > 1, scale=self.shape.scaling, enable_gqa=G > 1
            )  # (B, H, T, D)
            return out.transpose(1, 2).reshape(B * T, H * D)
        if gathered is not None:
            assert self.dilated is not None
            return self.dilated.attend(q, self.keys[index], self.values[index], *gathered)
        if G > 1:  # head h uses kv head h // G (transformers' repeat_kv)
            q = q.reshape(B, Hkv, G * T, D)
        keys, values = self.keys[index][:, :, :visible], self.values[index][:, :, :visible]
        out = F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, scale=self.shape.scaling
        )  # (B, H_kv, G*T, D)
        return out.view(B, Hkv, G, T, D).permute(0, 3, 1, 2, 4).reshape(B * T, H * D)

    def _decode_step(self) -> torch.Tensor:
        self.key_bias.index_fill_(3, self.write_at, 0.0)
        visible = int(self.write_at) + 1 if self.slice_cache else None  # no sync on CPU
        return self._forward(self.token, self.position, self.write_at, self.key_bias, visible)

    def _greedy_step(self) -> None:
        """Decode step + argmax + state update: the whole greedy step stays on the device."""
        token = self.step().argmax(dim=-1, keepdim=True)  # (B, 1)
        self.token.copy_(token)
        self.out.index_copy_(1, self.out_index, token)
        self.position.add_(1)
        self.counters.add_(1)

    def _graph(self, kind: str) -> tuple[torch.cuda.CUDAGraph, torch.Tensor | None]:
        """The captured ``greedy`` step (returns nothing) or ``plain`` step (returns logits)."""
        if kind in self.graphs:
            return self.graphs[kind]
        fn: Callable[[], torch.Tensor | None] = self._greedy_step if kind == "greedy" else self.step
        # Warm up on a side stream (cuBLAS handles, allocator pools, compilation) before
        # capturing. The state this touches (cache rows 0-1, masks, counters) is rewritten by
        # the prefill that follows; counters start at 0 so the writes stay inside the cache.
        self.counters.zero_()
        self.position.zero_()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(GRAPH_WARMUP_STEPS):
                fn()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.counters.zero_()
        self.position.zero_()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            result = fn()
        self.graphs[kind] = (graph, result)
        logger.info(
            "captured %s decode graph: batch %d, length %d", kind, self.batch_size, self.max_length
        )
        return self.graphs[kind]

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        *,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """New tokens ``(B, max_new_tokens)`` for left-padded ``input_ids``/``attention_mask``."""
        valid = self._check(input_ids, attention_mask, max_new_tokens)
        kind = "plain" if do_sample else "greedy"
        graph = self._graph(kind) if self.use_cuda_graph and max_new_tokens > 1 else None
        logits = self._prefill(input_ids.to(self.device), valid)  # after capture: it resets
        token = _pick(logits, do_sample, temperature, top_k, generator)  # (B,)
        self.out[:, 0] = token
        self.token.copy_(token[:, None])
        if not do_sample:
            step = graph[0].replay if graph is not None else self._greedy_step
            for _ in range(max_new_tokens - 1):
                step()
            return self.out[:, :max_new_tokens].clone()
        for column in range(1, max_new_tokens):
            if graph is not None:
                graph[0].replay()
                assert graph[1] is not None  # the "plain" graph returns its logits buffer
                logits = graph[1]
            else:
                logits = self.step()
            token = _pick(logits, do_sample, temperature, top_k, generator)
            self.out[:, column] = token
            self.token.copy_(token[:, None])
            self.position.add_(1)
            self.counters.add_(1)
        return self.out[:, :max_new_tokens].clone()

    @torch.no_grad()
    def start(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Prefill unpadded prompts ``(B, T)`` for token-by-token decoding with :meth:`advance`.

        Returns:
            ``(B, V)`` logits of the first new token.

        Raises:
            ValueError: If the prompt and ``max_new_tokens`` do not fit this decoder.
        """
        valid = self._check(input_ids, torch.ones_like(input_ids), max_new_tokens)
        if self.use_cuda_graph:  # captured before the prefill, which then resets the state
            self._graph("plain")
        return self._prefill(input_ids.to(self.device), valid)

    @torch.no_grad()
    def advance(self, token: torch.Tensor) -> torch.Tensor:
        """Append the chosen tokens ``(B,)`` after :meth:`start`; returns the next ``(B, V)``
        logits. Equal to :meth:`generate`'s steps (tested); on CUDA a replay of the captured
        step, whose logits are copied out of the graph's buffer.

        Raises:
            ValueError: If the cache is full.
        """
        if int(self.write_at) >= self.max_length:
            raise ValueError(f"the cache holds {self.max_length} tokens and is full")
        self.token.copy_(token.view(self.batch_size, 1))
        if self.use_cuda_graph:
            graph, buffer = self.graphs["plain"]  # captured by start()
            graph.replay()
            assert buffer is not None  # the plain graph returns its logits buffer
            logits = buffer.clone()
        else:
            logits = self.step()
        self.position.add_(1)
        self.counters.add_(1)
        return logits

    def _check(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int
    ) -> torch.Tensor:
        """The mask as bool on the device, once shapes and padding are known to fit."""
        B, T = input_ids.shape
        if B != self.batch_size or T + max_new_tokens - 1 > self.max_length:
            raise ValueError(
                f"decoder built for batch {self.batch_size} and length {self.max_length}, got "
                f"batch {B} with {T} prompt + {max_new_tokens} new tokens"
            )
        valid = attention_mask.to(self.device).bool()
        if self.dilated is not None and not bool(valid.all()):
            raise ValueError(
                "LongNet segments are aligned to absolute positions: decode prompts of one "
                "length per batch (no padding)"
            )
        return valid

    def _prefill(self, input_ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Run the prompt, fill the cache and set the step state; ``(B, V)`` last logits."""
        T = input_ids.shape[1]
        unpadded = bool(valid.all())  # one host sync per call
        positions = (valid.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
        self.key_valid.zero_()
        self.key_valid[:, :T] = valid
        cache_index = torch.arange(self.max_length, device=self.device)
        if unpadded:  # causal attention over the prompt alone: no (B, T, L) mask
            logits = self._forward(input_ids, positions, cache_index[:T], None)
        else:
            causal = cache_index[None, :] <= cache_index[:T, None]  # (T, L)
            itself = cache_index[None, :] == cache_index[:T, None]
            # Pad queries see only themselves: their rows stay finite and nobody reads them.
            mask = (causal[None] & self.key_valid[:, None, :]) | itself[None]  # (B, T, L)
            logits = self._forward(input_ids, positions, cache_index[:T], mask[:, None])
        self.key_bias.zero_()
        self.key_bias.masked_fill_(~self.key_valid[:, None, None, :], float("-inf"))
        self.position.copy_(valid.long().sum(-1, keepdim=True))
        self.write_at.fill_(T)
        self.out_index.fill_(1)
        return logits


def _pick(
    logits: torch.Tensor,
    do_sample: bool,
    temperature: float,
    top_k: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if not do_sample:
        return logits.argmax(dim=-1)
    scores = logits.float() / max(temperature, 1e-5)
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.shape[-1]), dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


_PLANS: weakref.WeakKeyDictionary[nn.Module, _ModelPlan] = weakref.WeakKeyDictionary()
_DECODERS: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int, bool, bool], FastDecoder]] = (
    weakref.WeakKeyDictionary()
)
# One batch-1 decoder per model for token-by-token decoding (stream_decoder): a conversation
# whose length moves across buckets replaces it instead of piling up caches.
_STREAMS: weakref.WeakKeyDictionary[nn.Module, FastDecoder] = weakref.WeakKeyDictionary()


def _model_plan(model: LlamaShaped, dtype: torch.dtype) -> _ModelPlan:
    plan = _PLANS.get(model)
    if plan is None:
        plan = _PLANS[model] = _ModelPlan(model, dtype)
    return plan


def clear_caches(model: LlamaShaped | None = None) -> None:
    """Drop cached decoders (KV caches, graphs) and weight copies, of ``model`` or of all."""
    caches: tuple[weakref.WeakKeyDictionary[nn.Module, Any], ...] = (_DECODERS, _STREAMS, _PLANS)
    for cache in caches:
        if model is None:
            cache.clear()
        else:
            cache.pop(model, None)


def _bucket(length: int) -> int:
    return -(-length // LENGTH_BUCKET) * LENGTH_BUCKET


def _refresh(model: LlamaShaped) -> None:
    """Refresh weight copies after in-place updates; drop everything if weights were replaced."""
    plan = _PLANS.get(model)
    if plan is not None and not plan.current(model):
        clear_caches(model)  # modules or weights replaced: rebuild copies and graphs


def stream_decoder(model: LlamaShaped, prompt_tokens: int, max_new_tokens: int) -> FastDecoder:
    """A batch-1 decoder with room for ``prompt_tokens`` + ``max_new_tokens``, for
    token-by-token decoding (:meth:`FastDecoder.start`, :meth:`FastDecoder.advance`): eager on
    the CPU, the captured CUDA-graph step on a GPU.

    Kept per model and length bucket; the weight copies are shared with :func:`generate_fast`.

    Raises:
        ValueError: For a model that is not Llama-shaped.
    """
    _llama_shape(model)
    _refresh(model)
    length = _bucket(prompt_tokens + max_new_tokens)
    decoder = _STREAMS.get(model)
    if decoder is None or decoder.max_length != length:
        # Plain tensors even when called under inference_mode: generate_fast shares the plan
        # and may refresh its copies in place outside inference mode.
        with torch.inference_mode(False):
            decoder = FastDecoder(model, batch_size=1, max_length=length)
        _STREAMS[model] = decoder
    return decoder


def warm_up(model: LlamaShaped) -> float:
    """Decode two tokens on tiny inputs so that the decoder's Triton kernels compile now.

    A fresh process compiles each Triton kernel at its first launch (seconds for the layer
    kernels; later processes load them from Triton's disk cache), which otherwise lands in the
    first request a worker serves. Call this when a model is loaded
    (:func:`models_zoo.serving.load` does). It runs the prefill and an eager decode step with
    and without key splits (cache lengths 128 and 512); the kernels' integer arguments that vary
    with batch size, prompt width and cache length are not specialised
    (:mod:`models_zoo.kernels.decode`), so these compilations serve every later batch and
    length. int8 models still autotune their product kernel per new row count.

    Returns:
        Seconds spent; 0.0 where nothing ran (not on CUDA, CPU-offloaded, not Llama-shaped).
    """
    if not supports(model) or hasattr_streamer(model):
        return 0.0
    device = model.model.norm.weight.device
    if device.type != "cuda":
        return 0.0
    started = time.perf_counter()
    _warm_up_runs(model, device)
    torch.cuda.synchronize(device)
    return time.perf_counter() - started


def _warm_up_runs(model: LlamaShaped, device: torch.device) -> None:
    """:func:`warm_up`'s decoding (any device): two tokens after a two-token prompt, eager,
    with a 128-row cache (no key splits) and a 512-row one (splits at batch 1)."""
    ids = torch.zeros(1, 2, dtype=torch.long, device=device)
    with torch.inference_mode(False), torch.no_grad():
        for length in (LENGTH_BUCKET, 2 * decode_kernels.MIN_SPLIT_KEYS):
            decoder = FastDecoder(model, batch_size=1, max_length=length, use_cuda_graph=False)
            decoder.generate(ids, torch.ones_like(ids), 2)


def _decoder(
    model: LlamaShaped,
    batch_size: int,
    length: int,
    use_cuda_graph: bool | None,
    compile_step: bool,
) -> FastDecoder:
    """The cached decoder for this model, batch size, length bucket and step kind."""
    if use_cuda_graph is None:
        on_cuda = model.model.norm.weight.device.type == "cuda"
        use_cuda_graph = on_cuda and not hasattr_streamer(model)
    _refresh(model)
    per_model = _DECODERS.setdefault(model, {})
    key = (batch_size, length, use_cuda_graph, compile_step)
    if key not in per_model:
        per_model[key] = FastDecoder(
            model,
            batch_size=batch_size,
            max_length=length,
            use_cuda_graph=use_cuda_graph,
            compile_step=compile_step,
        )
    return per_model[key]


def generate_fast(
    model: LlamaShaped,
    input_ids: torch.Tensor | Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    attention_mask: torch.Tensor | None = None,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int = 0,
    generator: torch.Generator | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
    use_cuda_graph: bool | None = None,
    compile_step: bool = False,
) -> torch.Tensor:
    """Batched generation with a static KV cache (and a CUDA-graph decode step on CUDA).

    Greedy outputs of each row equal that row generated alone (left padding is exact). Decoders
    (caches, captured graphs) are kept per model, batch size and length bucket; weight copies
    per model, refreshed after in-place weight updates, rebuilt when weights are replaced.

    Args:
        model: a Llama-shaped causal LM in eval mode (module docstring).
        input_ids: ``(B, T)`` left-padded ids with ``attention_mask``, or a list of token lists
            (left-padded here with ``pad_token_id``).
        max_new_tokens: tokens to generate per row (>= 1).
        attention_mask: ``(B, T)``, 1 for real tokens; default: all real.
        do_sample: sample instead of greedy argmax (with ``temperature``, ``top_k``,
            ``generator``).
        eos_token_id: tokens after a row's first EOS are replaced by ``pad_token_id``.
        pad_token_id: pad id for left padding and after EOS.
        use_cuda_graph: default: True on CUDA (unless CPU-offloaded), False elsewhere.
        compile_step: ``torch.compile`` the decode step before capture (see FastDecoder).

    Returns:
        ``(B, max_new_tokens)`` long tensor of new tokens, on the model's device.

    Raises:
        ValueError: for a model that is not Llama-shaped, ``max_new_tokens < 1`` or bad prompts.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    _llama_shape(model)
    if not isinstance(input_ids, torch.Tensor):
        input_ids, attention_mask = left_pad(input_ids, pad_token_id)
    elif attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    B, T = input_ids.shape
    decoder = _decoder(model, B, _bucket(T + max_new_tokens), use_cuda_graph, compile_step)
    generated = decoder.generate(
        input_ids,
        attention_mask,
        max_new_tokens,
        do_sample=do_sample,
        temperature=temperature,
        top_k=top_k,
        generator=generator,
    )
    return generated if eos_token_id is None else _pad_after(generated, eos_token_id, pad_token_id)


def _pad_after(generated: torch.Tensor, eos_token_id: int, pad_token_id: int) -> torch.Tensor:
    """``generated`` with every token after a row's first EOS replaced by ``pad_token_id``."""
    is_eos = (generated == eos_token_id).long()
    return generated.masked_fill(is_eos.cumsum(-1) - is_eos > 0, pad_token_id)
