"""Fused kernels of the fast decoder's layer (Triton): rotary + cache write, decode attention,
SwiGLU.

A decode step of a 1B Llama at batch 64 ran ~15 kernels per layer, and a third of the step was
not matrix products (bench/NOTES.md, issue 19): cuDNN's SDPA took 24 us per layer for 64 rows x
<= 256 keys (about twice the bytes it must read, since it reads every cache slot), and rotary
(a batched product by a rotation matrix), two ``index_copy_`` cache writes and ``silu`` + ``mul``
were five more launches. The three kernels here replace them:

- :func:`rotary_to_cache`: one program per token rotates its query and key heads with the cos/sin
  table rows of its position (``x * cos + rotate_half(x) * sin``, computed in float32, rounded
  once), writes the queries to a ``(B*T, H, D)`` buffer and the rotated keys and the values
  straight into the static cache at the token's cache index (prefill and decode);
- :func:`decode_attention`: one query token per row over the cache rows ``0 .. last`` (``last``
  read on the device, so a captured graph attends over the rows written so far, not the whole
  static cache), with the additive key mask of the decoder (padding). Grouped-query aware: a
  program owns one (row, key/value head) and its ``G`` query heads, so every cache row is read
  once. FlashAttention-style online softmax in float32 (exp2). When rows x heads are too few to
  fill the chip (batch 1, long caches), the keys are split across programs (flash-decoding) and a
  second kernel merges the partial results by their log-sum-exp;
- :func:`swiglu`: ``silu(gate) * up`` of the fused gate/up product in one pass, float32 inside,
  rounded once.

In decode steps :func:`rope_decode_attention` does the work of the first two in one launch
(head dims >= 32): each attention program rotates its query heads and the new key itself,
attends over the older cache rows and adds the new key/value from registers; the program whose
key split holds the new row writes it to the cache.

RMSNorm needs no kernel of its own: ``rms_norm(x) @ W.T == s * (x @ (W * w).T)`` with ``s`` the
row's ``rsqrt(mean(x^2) + eps)``, so the decoder folds the norm weight ``w`` into the q/k/v and
gate/up weights, and :func:`rotary_to_cache` and :func:`swiglu` (``norm_input``) compute ``s``
from the row of ``x`` (a few KB, read once per program) and scale their inputs by it.

Integer arguments that vary with batch size, prompt width and cache length are not specialised
(``do_not_specialize``): one compilation per model shape serves every batch and length, so
:func:`models_zoo.fast_decode.warm_up` can compile them all when a model is loaded.

Each has a plain PyTorch reference (``*_reference``) that the tests compare against on random
inputs. Triton is imported guarded: without it the module imports and :func:`is_available` is
false. With ``TRITON_INTERPRET=1`` set before import, CPU tensors run through Triton's
interpreter (a CPU test).
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

from models_zoo.kernels.triton_support import LOG2_E, SUPPORTED_DTYPES, tl, triton

BLOCK_KEYS = 64  # a key split's chunk of cache rows is a multiple of this
# Decode attention launch: (cache rows per loop step, warps, pipeline stages).
ATTENTION_CONFIG = (64, 4, 2)
MERGE_BLOCK = 16  # splits merged per loop step
# Decode steps run rotary + cache write + attention as one kernel (rope_decode_attention) where
# the head dim allows; False: the two kernels (the bench measures both).
ROPE_ATTENTION = True
MIN_SPLIT_KEYS = 256  # a split of the keys (flash-decoding) covers at least this many rows
SWIGLU_BLOCK = 1024


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def is_available(x: torch.Tensor, head_dim: int) -> bool:
    """Whether the kernels can run on tensors like ``x`` with this head dim.

    True for CUDA tensors of a supported dtype and a power-of-two head dim in [16, 256] when
    Triton is importable (or for CPU tensors under ``TRITON_INTERPRET=1``).
    """
    if triton is None or x.dtype not in SUPPORTED_DTYPES:
        return False
    if head_dim < 16 or head_dim > 256 or head_dim & (head_dim - 1):
        return False
    return x.is_cuda or (x.device.type == "cpu" and _interpreting())


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# --- references (plain PyTorch; the kernels' ground truth) -----------------------------------


def rotary_to_cache_reference(
    qkv: torch.Tensor,
    positions: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    write_at: torch.Tensor,
    heads: int,
    norm_input: torch.Tensor | None = None,
    eps: float = 0.0,
) -> torch.Tensor:
    """What :func:`rotary_to_cache` computes, in plain PyTorch (float32 inside, rounded once).

    Notation: B batch, T tokens per row, H/H_kv heads, D head dim, L cache length, C hidden.

    Args:
        qkv: ``(B*T, (H + 2 H_kv) D)``, the fused q/k/v projection of the tokens.
        positions: ``(B*T,)`` rotary positions; cos, sin: ``(>= max position + 1, D)`` tables.
        keys, values: ``(B, H_kv, L, D)`` caches, written at ``write_at`` ``(T,)`` in place.
        norm_input: ``(B*T, C)``: ``qkv`` is the projection of these rows before their RMSNorm
            (its weight folded into the projection's), so q, k and v are first multiplied by
            each row's ``rsqrt(mean(x^2) + eps)`` (:func:`rms_scale_reference`).

    Returns:
        ``(B*T, H, D)`` rotated queries.
    """
    B, Hkv, _, D = keys.shape
    N = qkv.shape[0]
    T = N // B
    x = qkv.view(N, heads + 2 * Hkv, D).float()
    if norm_input is not None:  # q/k/v were projected from the unnormalised rows
        x = x * rms_scale_reference(norm_input, eps)[:, None, None]
    c = cos[positions].float()[:, None]  # (N, 1, D)
    s = sin[positions].float()[:, None]
    rotated_in = x[:, : heads + Hkv]
    half = D // 2
    swapped = torch.cat((-rotated_in[..., half:], rotated_in[..., :half]), dim=-1)
    rotated = (rotated_in * c + swapped * s).to(qkv.dtype)  # (N, H + H_kv, D)
    k = rotated[:, heads:].view(B, T, Hkv, D).transpose(1, 2)  # (B, H_kv, T, D)
    v = x[:, heads + Hkv :].to(qkv.dtype).view(B, T, Hkv, D).transpose(1, 2)
    keys.index_copy_(2, write_at, k)
    values.index_copy_(2, write_at, v)
    return rotated[:, :heads].contiguous()


def decode_attention_reference(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor,
    last: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """What :func:`decode_attention` computes: SDPA of one query per row over cache rows
    ``0 .. last`` with an additive key mask, in float32.

    Args:
        q: ``(B, H, D)``; keys, values: ``(B, H_kv, L, D)``; head h reads kv head ``h // G``.
        bias: ``(B, L)`` additive mask (0 / -inf); last: ``(1,)`` index of the last valid row.

    Returns:
        ``(B, H*D)`` in ``q.dtype``.
    """
    B, H, D = q.shape
    Hkv = keys.shape[1]
    length = int(last[0]) + 1
    k = keys[:, :, :length].float().repeat_interleave(H // Hkv, dim=1)  # (B, H, length, D)
    v = values[:, :, :length].float().repeat_interleave(H // Hkv, dim=1)
    mask = bias[:, None, None, :length].float()  # (B, 1, 1, length)
    out = F.scaled_dot_product_attention(q.float()[:, :, None], k, v, attn_mask=mask, scale=scale)
    return out.reshape(B, H * D).to(q.dtype)


def rms_scale_reference(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``(N,)`` float32 ``rsqrt(mean(x^2) + eps)`` of the rows of ``x`` ``(N, C)``: RMSNorm is
    ``x * scale * weight``, so ``norm(x) @ W.T == scale * (x @ (W * weight).T)``."""
    return torch.rsqrt(x.float().pow(2).mean(-1) + eps)


def swiglu_reference(
    gate_up: torch.Tensor, norm_input: torch.Tensor | None = None, eps: float = 0.0
) -> torch.Tensor:
    """``silu(gate) * up`` for ``gate_up`` ``(N, 2 I)`` = [gate | up], float32 inside;
    ``norm_input``: both halves first multiplied by the rows' RMS scale, as in
    :func:`rotary_to_cache_reference`."""
    width = gate_up.shape[-1] // 2
    gate, up = gate_up[:, :width].float(), gate_up[:, width:].float()
    if norm_input is not None:
        scale = rms_scale_reference(norm_input, eps)[:, None]
        gate, up = gate * scale, up * scale
    return (F.silu(gate) * up).to(gate_up.dtype)


# --- kernels ------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit  # type: ignore[untyped-decorator]
    def _row_rms_scale(  # type: ignore[no-untyped-def]
        X, row, stride_x, eps, HIDDEN: tl.constexpr, BLOCK_C: tl.constexpr
    ):
        # rsqrt(mean(x^2) + eps) of one row of the RMSNorm's input, in float32.
        c = tl.arange(0, BLOCK_C)
        x = tl.load(X + row * stride_x + c, mask=c < HIDDEN, other=0.0).to(tl.float32)
        return tl.math.rsqrt(tl.sum(x * x, 0) / HIDDEN + eps)

    # T (tokens per row) is 1 in decode steps and the prompt width in prefill: not specialised,
    # so one compiled kernel serves both (warm_up compiles it at model load).
    @triton.jit(do_not_specialize=["T"])  # type: ignore[untyped-decorator]
    def _rotary_cache_kernel(  # type: ignore[no-untyped-def]  # Triton kernel arguments are untyped
        QKV,
        POS,
        COS,
        SIN,
        WRITE,
        Q,
        K,
        V,
        X,
        T,
        stride_x,
        eps,
        stride_qkv,
        stride_cos,
        stride_sin,
        stride_kb,
        stride_kh,
        stride_kl,
        stride_vb,
        stride_vh,
        stride_vl,
        H: tl.constexpr,
        HKV: tl.constexpr,
        HALF: tl.constexpr,
        BLOCK_H: tl.constexpr,
        BLOCK_KV: tl.constexpr,
        NORM: tl.constexpr,
        HIDDEN: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        # One program per token: its H query and H_kv key heads as (BLOCK_H, D/2) halves, then
        # its H_kv value heads copied to the cache; NORM: all first scaled by the RMS scale of
        # the token's row of X (the projection's input before its folded RMSNorm).
        token = tl.program_id(0).to(tl.int64)
        b = token // T
        t = token % T
        pos = tl.load(POS + token).to(tl.int64)
        slot = tl.load(WRITE + t).to(tl.int64)
        heads = tl.arange(0, BLOCK_H)
        d = tl.arange(0, HALF)
        rotated = heads < H + HKV
        row = QKV + token * stride_qkv
        x_ptrs = row + heads[:, None] * (2 * HALF) + d[None, :]
        x1 = tl.load(x_ptrs, mask=rotated[:, None], other=0.0).to(tl.float32)
        x2 = tl.load(x_ptrs + HALF, mask=rotated[:, None], other=0.0).to(tl.float32)
        if NORM:
            r = _row_rms_scale(X, token, stride_x, eps, HIDDEN, BLOCK_C)
            x1 = x1 * r
            x2 = x2 * r
        c1 = tl.load(COS + pos * stride_cos + d).to(tl.float32)
        c2 = tl.load(COS + pos * stride_cos + HALF + d).to(tl.float32)
        s1 = tl.load(SIN + pos * stride_sin + d).to(tl.float32)
        s2 = tl.load(SIN + pos * stride_sin + HALF + d).to(tl.float32)
        # x * cos + rotate_half(x) * sin, rotate_half(x) = [-x2, x1]
        o1 = x1 * c1[None, :] - x2 * s1[None, :]
        o2 = x2 * c2[None, :] + x1 * s2[None, :]
        is_q = heads < H
        is_k = (heads >= H) & rotated
        q_ptrs = Q + token * (H * 2 * HALF) + heads[:, None] * (2 * HALF) + d[None, :]
        tl.store(q_ptrs, o1.to(Q.dtype.element_ty), mask=is_q[:, None])
        tl.store(q_ptrs + HALF, o2.to(Q.dtype.element_ty), mask=is_q[:, None])
        kv_head = tl.maximum(heads - H, 0)
        k_ptrs = K + b * stride_kb + kv_head[:, None] * stride_kh + slot * stride_kl + d[None, :]
        tl.store(k_ptrs, o1.to(K.dtype.element_ty), mask=is_k[:, None])
        tl.store(k_ptrs + HALF, o2.to(K.dtype.element_ty), mask=is_k[:, None])
        v_heads = tl.arange(0, BLOCK_KV)
        dv = tl.arange(0, 2 * HALF)
        is_v = v_heads < HKV
        v_in = row + (H + HKV) * (2 * HALF) + v_heads[:, None] * (2 * HALF) + dv[None, :]
        v = tl.load(v_in, mask=is_v[:, None], other=0.0)
        if NORM:
            v = v.to(tl.float32) * r
        v_out = V + b * stride_vb + v_heads[:, None] * stride_vh + slot * stride_vl + dv[None, :]
        tl.store(v_out, v.to(V.dtype.element_ty), mask=is_v[:, None])

    # The split count and chunk vary with batch size and cache length: not specialised.
    @triton.jit  # type: ignore[untyped-decorator]
    def _softmax_block(  # type: ignore[no-untyped-def]
        s, bias, v, m_i, l_i, acc, scale_log2, IEEE: tl.constexpr
    ):
        # One online-softmax step over a block of keys (FlashAttention-2's update, in base 2):
        # raw scores s (heads x keys), the keys' additive bias, their values v.
        s = s * scale_log2 + bias.to(tl.float32)[None, :] * 1.4426950408889634
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # A block whose keys are all masked (left padding) leaves m at -inf: shift by 0.
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.math.exp2(s - m_safe[:, None])
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + tl.sum(p, 1)
        if IEEE:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision="ieee")
        else:
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        return m_new, l_i, acc

    @triton.jit  # type: ignore[untyped-decorator]
    def _store_attention(  # type: ignore[no-untyped-def]
        Out, Part, PartM, PartL, acc, m_i, l_i, b, heads, in_group, split, splits, stride_ob,
        G: tl.constexpr, D: tl.constexpr, IS_SPLIT: tl.constexpr,
    ):  # fmt: skip
        # A program's result: normalised into Out, or (key splits) its float32 partials
        # (B, H, SPLITS, ...): unnormalised acc, running max, sum, for the merge kernel.
        d = tl.arange(0, D)
        if not IS_SPLIT:
            out = acc / l_i[:, None]
            out_ptrs = Out + b * stride_ob + heads[:, None] * D + d[None, :]
            tl.store(out_ptrs, out.to(Out.dtype.element_ty), mask=in_group[:, None])
        else:
            row = (b * (tl.num_programs(1) * G) + heads) * splits + split
            tl.store(Part + row[:, None] * D + d[None, :], acc, mask=in_group[:, None])
            tl.store(PartM + row, m_i, mask=in_group)
            tl.store(PartL + row, l_i, mask=in_group)

    @triton.jit(do_not_specialize=["chunk", "splits"])  # type: ignore[untyped-decorator]
    def _decode_attention_kernel(  # type: ignore[no-untyped-def]
        Q,
        K,
        V,
        BIAS,
        LAST,
        Out,
        Part,
        PartM,
        PartL,
        stride_qb,
        stride_qh,
        stride_kb,
        stride_kh,
        stride_kl,
        stride_vb,
        stride_vh,
        stride_vl,
        stride_bias,
        stride_ob,
        chunk,
        scale_log2,
        splits,
        G: tl.constexpr,
        BLOCK_G: tl.constexpr,
        D: tl.constexpr,
        BLOCK_N: tl.constexpr,
        IS_SPLIT: tl.constexpr,
        IEEE: tl.constexpr,
    ) -> None:
        # One program: row b, kv head h_kv, its G query heads (padded to BLOCK_G >= 16 rows for
        # the tensor cores), keys [split * chunk, min((split + 1) * chunk, last + 1)).
        b = tl.program_id(0).to(tl.int64)
        kv_head = tl.program_id(1)
        split = tl.program_id(2)
        length = tl.load(LAST).to(tl.int32) + 1
        start = split * chunk
        end = tl.minimum(start + chunk, length)
        g = tl.arange(0, BLOCK_G)
        d = tl.arange(0, D)
        in_group = g < G
        heads = kv_head * G + g
        q = tl.load(
            Q + b * stride_qb + heads[:, None] * stride_qh + d[None, :],
            mask=in_group[:, None],
            other=0.0,
        )
        k_base = K + b * stride_kb + kv_head * stride_kh
        v_base = V + b * stride_vb + kv_head * stride_vh
        m_i = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_G,), dtype=tl.float32)
        acc = tl.zeros((BLOCK_G, D), dtype=tl.float32)
        for n0 in range(start, end, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            valid = n < end
            k = tl.load(
                k_base + n[:, None] * stride_kl + d[None, :], mask=valid[:, None], other=0.0
            )
            if IEEE:
                s = tl.dot(q, tl.trans(k), input_precision="ieee")
            else:
                s = tl.dot(q, tl.trans(k))
            bias = tl.load(BIAS + b * stride_bias + n, mask=valid, other=float("-inf"))
            v = tl.load(
                v_base + n[:, None] * stride_vl + d[None, :], mask=valid[:, None], other=0.0
            )
            m_i, l_i, acc = _softmax_block(s, bias, v, m_i, l_i, acc, scale_log2, IEEE)
        _store_attention(
            Out, Part, PartM, PartL, acc, m_i, l_i, b, heads, in_group, split, splits, stride_ob,
            G, D, IS_SPLIT,
        )  # fmt: skip

    @triton.jit(do_not_specialize=["chunk", "splits"])  # type: ignore[untyped-decorator]
    def _rope_attention_kernel(  # type: ignore[no-untyped-def]
        QKV,
        POS,
        COS,
        SIN,
        K,
        V,
        BIAS,
        LAST,
        X,
        Out,
        Part,
        PartM,
        PartL,
        stride_qkv,
        stride_cos,
        stride_sin,
        stride_kb,
        stride_kh,
        stride_kl,
        stride_vb,
        stride_vh,
        stride_vl,
        stride_bias,
        stride_ob,
        stride_x,
        eps,
        chunk,
        scale_log2,
        splits,
        H: tl.constexpr,
        HKV: tl.constexpr,
        G: tl.constexpr,
        BLOCK_G: tl.constexpr,
        HALF: tl.constexpr,
        D: tl.constexpr,
        BLOCK_N: tl.constexpr,
        IS_SPLIT: tl.constexpr,
        IEEE: tl.constexpr,
        NORM: tl.constexpr,
        HIDDEN: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        # A decode step's rotary + cache write + attention in one program per (row b, kv head,
        # key split): rotate the G query heads and the new key of the token at cache row
        # ``last`` from the fused q/k/v product, attend over the old rows [start, end) of the
        # split from the cache, and add the new key/value from registers in the split whose
        # chunk holds ``last`` (which also writes them to the cache; no program reads that row).
        b = tl.program_id(0).to(tl.int64)
        kv_head = tl.program_id(1)
        split = tl.program_id(2)
        last = tl.load(LAST).to(tl.int32)
        start = split * chunk
        end = tl.minimum(start + chunk, last)
        owner = (last >= start) & (last < start + chunk)
        g = tl.arange(0, BLOCK_G)
        dh = tl.arange(0, HALF)
        d = tl.arange(0, D)
        in_group = g < G
        heads = kv_head * G + g
        row = QKV + b * stride_qkv
        r = 1.0
        if NORM:
            r = _row_rms_scale(X, b, stride_x, eps, HIDDEN, BLOCK_C)
        pos = tl.load(POS + b).to(tl.int64)
        c1 = tl.load(COS + pos * stride_cos + dh).to(tl.float32)
        c2 = tl.load(COS + pos * stride_cos + HALF + dh).to(tl.float32)
        s1 = tl.load(SIN + pos * stride_sin + dh).to(tl.float32)
        s2 = tl.load(SIN + pos * stride_sin + HALF + dh).to(tl.float32)
        q_ptrs = row + heads[:, None] * D + dh[None, :]
        x1 = tl.load(q_ptrs, mask=in_group[:, None], other=0.0).to(tl.float32) * r
        x2 = tl.load(q_ptrs + HALF, mask=in_group[:, None], other=0.0).to(tl.float32) * r
        q1 = (x1 * c1[None, :] - x2 * s1[None, :]).to(K.dtype.element_ty)
        q2 = (x2 * c2[None, :] + x1 * s2[None, :]).to(K.dtype.element_ty)
        k_row = row + (H + kv_head) * D
        y1 = tl.load(k_row + dh).to(tl.float32) * r
        y2 = tl.load(k_row + HALF + dh).to(tl.float32) * r
        new_k1 = (y1 * c1 - y2 * s1).to(K.dtype.element_ty)
        new_k2 = (y2 * c2 + y1 * s2).to(K.dtype.element_ty)
        new_v = (tl.load(row + (H + HKV + kv_head) * D + d) * r).to(V.dtype.element_ty)
        k_base = K + b * stride_kb + kv_head * stride_kh
        v_base = V + b * stride_vb + kv_head * stride_vh
        tl.store(k_base + last * stride_kl + dh, new_k1, mask=owner & (dh < HALF))
        tl.store(k_base + last * stride_kl + HALF + dh, new_k2, mask=owner & (dh < HALF))
        tl.store(v_base + last * stride_vl + d, new_v, mask=owner & (d < D))
        m_i = tl.full((BLOCK_G,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BLOCK_G,), dtype=tl.float32)
        acc = tl.zeros((BLOCK_G, D), dtype=tl.float32)
        for n0 in range(start, end, BLOCK_N):
            n = n0 + tl.arange(0, BLOCK_N)
            valid = n < end
            k_ptrs = k_base + n[:, None] * stride_kl + dh[None, :]
            k1 = tl.load(k_ptrs, mask=valid[:, None], other=0.0)
            k2 = tl.load(k_ptrs + HALF, mask=valid[:, None], other=0.0)
            if IEEE:
                s = tl.dot(q1, tl.trans(k1), input_precision="ieee")
                s += tl.dot(q2, tl.trans(k2), input_precision="ieee")
            else:
                s = tl.dot(q1, tl.trans(k1))
                s += tl.dot(q2, tl.trans(k2))
            bias = tl.load(BIAS + b * stride_bias + n, mask=valid, other=float("-inf"))
            v = tl.load(
                v_base + n[:, None] * stride_vl + d[None, :], mask=valid[:, None], other=0.0
            )
            m_i, l_i, acc = _softmax_block(s, bias, v, m_i, l_i, acc, scale_log2, IEEE)
        # The new key: its score from the rounded q and k, its value from registers.
        s_new = tl.sum(q1.to(tl.float32) * new_k1.to(tl.float32)[None, :], 1)
        s_new += tl.sum(q2.to(tl.float32) * new_k2.to(tl.float32)[None, :], 1)
        bias_new = tl.load(BIAS + b * stride_bias + last).to(tl.float32)
        s_new = s_new * scale_log2 + bias_new * 1.4426950408889634
        s_new = tl.where(owner, s_new, float("-inf"))
        m_new = tl.maximum(m_i, s_new)
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p_new = tl.math.exp2(s_new - m_safe)
        alpha = tl.math.exp2(m_i - m_safe)
        l_i = l_i * alpha + p_new
        p_rounded = p_new.to(V.dtype.element_ty).to(tl.float32)  # as the loop's p.to(v.dtype)
        acc = acc * alpha[:, None] + p_rounded[:, None] * new_v.to(tl.float32)[None, :]
        m_i = m_new
        _store_attention(
            Out, Part, PartM, PartL, acc, m_i, l_i, b, heads, in_group, split, splits, stride_ob,
            G, D, IS_SPLIT,
        )  # fmt: skip

    @triton.jit(do_not_specialize=["splits"])  # type: ignore[untyped-decorator]
    def _merge_splits_kernel(  # type: ignore[no-untyped-def]
        Part,
        PartM,
        PartL,
        Out,
        H,
        stride_ob,
        splits,
        D: tl.constexpr,
        BLOCK_S: tl.constexpr,
    ) -> None:
        # One program per (row, head): out = sum_s e^(m_s - M) acc_s / sum_s e^(m_s - M) l_s,
        # over the splits in blocks of BLOCK_S (the split count is a run-time value: one
        # compiled kernel for every batch size and cache length).
        pid = tl.program_id(0).to(tl.int64)
        b = pid // H
        head = pid % H
        s = tl.arange(0, BLOCK_S)
        d = tl.arange(0, D)
        m_max = tl.max(tl.full((BLOCK_S,), float("-inf"), dtype=tl.float32), 0)
        for s0 in range(0, splits, BLOCK_S):
            m = tl.load(PartM + pid * splits + s0 + s, mask=s0 + s < splits, other=float("-inf"))
            m_max = tl.maximum(m_max, tl.max(m, 0))  # finite: the query's own key is in one
        acc = tl.zeros((D,), dtype=tl.float32)
        total = tl.sum(tl.zeros((BLOCK_S,), dtype=tl.float32), 0)
        for s0 in range(0, splits, BLOCK_S):
            used = s0 + s < splits
            m = tl.load(PartM + pid * splits + s0 + s, mask=used, other=float("-inf"))
            l_s = tl.load(PartL + pid * splits + s0 + s, mask=used, other=0.0)
            w = tl.math.exp2(m - m_max)
            part = tl.load(
                Part + (pid * splits + s0 + s)[:, None] * D + d[None, :],
                mask=used[:, None],
                other=0.0,
            )
            acc += tl.sum(part * w[:, None], 0)
            total += tl.sum(l_s * w, 0)
        tl.store(Out + b * stride_ob + head * D + d, (acc / total).to(Out.dtype.element_ty))

    @triton.jit  # type: ignore[untyped-decorator]
    def _swiglu_kernel(  # type: ignore[no-untyped-def]
        X,
        Out,
        Norm,
        width,
        stride_x,
        stride_o,
        stride_n,
        eps,
        BLOCK: tl.constexpr,
        NORM: tl.constexpr,
        HIDDEN: tl.constexpr,
        BLOCK_C: tl.constexpr,
    ) -> None:
        row = tl.program_id(0).to(tl.int64)
        col = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        inside = col < width
        gate = tl.load(X + row * stride_x + col, mask=inside, other=0.0).to(tl.float32)
        up = tl.load(X + row * stride_x + width + col, mask=inside, other=0.0).to(tl.float32)
        if NORM:  # gate/up projected from the rows before their folded RMSNorm
            r = _row_rms_scale(Norm, row, stride_n, eps, HIDDEN, BLOCK_C)
            gate = gate * r
            up = up * r
        out = gate / (1.0 + tl.exp(-gate)) * up
        tl.store(Out + row * stride_o + col, out.to(Out.dtype.element_ty), mask=inside)


# --- wrappers -----------------------------------------------------------------------------------


@torch.compiler.disable  # type: ignore[untyped-decorator]  # a raw Triton launch: run it eagerly
def rotary_to_cache(
    qkv: torch.Tensor,
    positions: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    write_at: torch.Tensor,
    heads: int,
    norm_input: torch.Tensor | None = None,
    eps: float = 0.0,
) -> torch.Tensor:
    """Rotate queries and keys of new tokens; write keys and values into the cache.

    Same arguments and result as :func:`rotary_to_cache_reference`; ``qkv`` rows contiguous,
    ``positions`` and ``write_at`` contiguous integer tensors on the same device;
    ``norm_input`` ``(B*T, C)`` with contiguous rows.
    """
    B, Hkv, _, D = keys.shape
    N = qkv.shape[0]
    assert qkv.stride(1) == 1 and qkv.shape[1] == (heads + 2 * Hkv) * D and N % B == 0
    assert keys.stride(3) == 1 and values.stride(3) == 1 and cos.stride(1) == 1
    norm = qkv if norm_input is None else norm_input
    assert norm.shape[0] == N and norm.stride(1) == 1
    q = torch.empty(N, heads, D, dtype=qkv.dtype, device=qkv.device)
    _rotary_cache_kernel[(N,)](
        qkv,
        positions,
        cos,
        sin,
        write_at,
        q,
        keys,
        values,
        norm,
        N // B,
        norm.stride(0),
        eps,
        qkv.stride(0),
        cos.stride(0),
        sin.stride(0),
        *keys.stride()[:3],
        *values.stride()[:3],
        H=heads,
        HKV=Hkv,
        HALF=D // 2,
        BLOCK_H=_pow2(heads + Hkv),
        BLOCK_KV=_pow2(Hkv),
        NORM=norm_input is not None,
        HIDDEN=norm.shape[1] if norm_input is not None else 16,
        BLOCK_C=_pow2(norm.shape[1]) if norm_input is not None else 16,
        num_warps=4,
    )
    return q


def attention_splits(programs: int, max_length: int, device: torch.device) -> int:
    """Key splits for :func:`decode_attention`: enough programs to fill the GPU twice, each
    split at least ``MIN_SPLIT_KEYS`` cache rows (1 for a short cache or a large batch)."""
    if device.type == "cuda":
        processors = torch.cuda.get_device_properties(device).multi_processor_count
    else:
        processors = 4  # the interpreter: exercise splitting on small caches too
    wanted = -(-2 * processors // programs)
    return max(1, min(wanted, -(-max_length // MIN_SPLIT_KEYS)))


@torch.compiler.disable  # type: ignore[untyped-decorator]  # a raw Triton launch: run it eagerly
def decode_attention(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor,
    last: torch.Tensor,
    scale: float,
    splits: int = 1,
    config: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """One query per row over cache rows ``0 .. last``; see :func:`decode_attention_reference`.

    Args:
        q: ``(B, H, D)`` with contiguous head rows; keys, values: ``(B, H_kv, L, D)``.
        bias: ``(B, L)`` additive key mask; last: ``(1,)`` integer tensor on the device (read
            by the kernel, so a captured graph follows it).
        scale: softmax scale; splits: key splits (:func:`attention_splits`).
        config: (cache rows per loop step, warps, pipeline stages); default
            :data:`ATTENTION_CONFIG` (the bench sweeps others).

    Returns:
        ``(B, H*D)`` in ``q.dtype``.
    """
    B, H, D = q.shape
    Hkv, L = keys.shape[1], keys.shape[2]
    G = H // Hkv
    assert q.stride(2) == 1 and keys.stride(3) == 1 and values.stride(3) == 1
    assert bias.shape == (B, L) and bias.stride(1) == 1 and H % Hkv == 0
    block_n, warps, stages = ATTENTION_CONFIG if config is None else config
    out = torch.empty(B, H * D, dtype=q.dtype, device=q.device)
    chunk = -(-L // splits)
    rows = max(BLOCK_KEYS, block_n)
    chunk = -(-chunk // rows) * rows
    if splits > 1:
        part = torch.empty(B * H * splits, D, dtype=torch.float32, device=q.device)
        part_m = torch.empty(B * H * splits, dtype=torch.float32, device=q.device)
        part_l = torch.empty_like(part_m)
    else:
        part = part_m = part_l = out  # unused
    _decode_attention_kernel[(B, Hkv, splits)](
        q,
        keys,
        values,
        bias,
        last,
        out,
        part,
        part_m,
        part_l,
        q.stride(0),
        q.stride(1),
        *keys.stride()[:3],
        *values.stride()[:3],
        bias.stride(0),
        out.stride(0),
        chunk,
        scale * LOG2_E,
        splits,
        G=G,
        BLOCK_G=max(16, _pow2(G)),
        D=D,
        BLOCK_N=block_n,
        IS_SPLIT=splits > 1,
        IEEE=q.dtype == torch.float32,
        num_warps=warps,
        num_stages=stages,
    )
    if splits > 1:
        _merge_splits_kernel[(B * H,)](
            part, part_m, part_l, out, H, out.stride(0), splits, D=D, BLOCK_S=MERGE_BLOCK,
            num_warps=4,
        )  # fmt: skip
    return out


def rope_attention_available(head_dim: int) -> bool:
    """Whether :func:`rope_decode_attention` takes this head dim (its products run on half
    rows: D/2 >= 16 for the tensor cores)."""
    return ROPE_ATTENTION and head_dim >= 32


@torch.compiler.disable  # type: ignore[untyped-decorator]  # a raw Triton launch: run it eagerly
def rope_decode_attention(
    qkv: torch.Tensor,
    positions: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    bias: torch.Tensor,
    last: torch.Tensor,
    heads: int,
    scale: float,
    splits: int = 1,
    norm_input: torch.Tensor | None = None,
    eps: float = 0.0,
    config: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """A decode step's :func:`rotary_to_cache` and :func:`decode_attention` in one kernel.

    ``qkv`` ``(B, (H + 2 H_kv) D)`` of one new token per row at cache row ``last`` (the
    ``write_at`` of :func:`rotary_to_cache`); the rotated key and the value are written there
    and attended from registers, the rows before it from the cache. Equals
    :func:`rotary_to_cache_reference` followed by :func:`decode_attention_reference`.

    Returns:
        ``(B, H*D)`` in ``qkv.dtype``.
    """
    B, Hkv, L, D = keys.shape
    G = heads // Hkv
    assert qkv.shape == (B, (heads + 2 * Hkv) * D) and qkv.stride(1) == 1 and D >= 32
    assert keys.stride(3) == 1 and values.stride(3) == 1 and cos.stride(1) == 1
    assert bias.shape == (B, L) and bias.stride(1) == 1 and heads % Hkv == 0
    norm = qkv if norm_input is None else norm_input
    assert norm.shape[0] == B and norm.stride(1) == 1
    hidden = norm.shape[1] if norm_input is not None else 16
    block_n, warps, stages = ATTENTION_CONFIG if config is None else config
    out = torch.empty(B, heads * D, dtype=qkv.dtype, device=qkv.device)
    chunk = -(-L // splits)
    rows = max(BLOCK_KEYS, block_n)
    chunk = -(-chunk // rows) * rows
    if splits > 1:
        part = torch.empty(B * heads * splits, D, dtype=torch.float32, device=qkv.device)
        part_m = torch.empty(B * heads * splits, dtype=torch.float32, device=qkv.device)
        part_l = torch.empty_like(part_m)
    else:
        part = part_m = part_l = out  # unused
    _rope_attention_kernel[(B, Hkv, splits)](
        qkv, positions, cos, sin, keys, values, bias, last, norm, out, part, part_m, part_l,
        qkv.stride(0), cos.stride(0), sin.stride(0), *keys.stride()[:3], *values.stride()[:3],
        bias.stride(0), out.stride(0), norm.stride(0), eps, chunk, scale * LOG2_E, splits,
        H=heads, HKV=Hkv, G=G, BLOCK_G=max(16, _pow2(G)), HALF=D // 2, D=D,
        BLOCK_N=block_n, IS_SPLIT=splits > 1, IEEE=qkv.dtype == torch.float32, NORM=norm_input is not None,
        HIDDEN=hidden, BLOCK_C=_pow2(hidden), num_warps=warps, num_stages=stages,
    )  # fmt: skip
    if splits > 1:
        _merge_splits_kernel[(B * heads,)](
            part, part_m, part_l, out, heads, out.stride(0), splits, D=D, BLOCK_S=MERGE_BLOCK,
            num_warps=4,
        )  # fmt: skip
    return out


@torch.compiler.disable  # type: ignore[untyped-decorator]  # a raw Triton launch: run it eagerly
def swiglu(
    gate_up: torch.Tensor, norm_input: torch.Tensor | None = None, eps: float = 0.0
) -> torch.Tensor:
    """``silu(gate) * up`` for ``gate_up`` ``(N, 2 I)`` with contiguous rows; ``(N, I)``.
    ``norm_input`` ``(N, C)``: see :func:`swiglu_reference`."""
    N, double = gate_up.shape
    width = double // 2
    assert gate_up.stride(1) == 1 and double == 2 * width
    norm = gate_up if norm_input is None else norm_input
    assert norm.shape[0] == N and norm.stride(1) == 1
    hidden = norm.shape[1] if norm_input is not None else 16
    out = torch.empty(N, width, dtype=gate_up.dtype, device=gate_up.device)
    _swiglu_kernel[(N, math.ceil(width / SWIGLU_BLOCK))](
        gate_up, out, norm, width, gate_up.stride(0), out.stride(0), norm.stride(0), eps,
        BLOCK=SWIGLU_BLOCK, NORM=norm_input is not None, HIDDEN=hidden, BLOCK_C=_pow2(hidden),
        num_warps=4,
    )  # fmt: skip
    return out
