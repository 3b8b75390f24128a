"""Multi-head attention over short sequences (a pixel's frames) as one Triton kernel, with a torch fallback.

The temporal transformers attend along frames: a huge number of sequences (videos x pixels x
heads) of only ``L = frames`` tokens (8 to 32), head width 64. Generic attention kernels tile
queries and keys by 64 or 128, so for ``L = 16`` most of each tile is padding. Here one Triton
program computes one (sequence, head) pair in registers: its ``L`` (padded to a power of two
>= 16) queries, keys and values are read once with their real strides, the scores and the
weighted sum are two small ``tl.dot`` products, and the softmax is exact (no online rescaling:
the whole row of scores is in hand). The same kernel, with the queries in blocks, serves attention to
few keys and many queries (:func:`few_keys_attention`: the cross-attention to 77 text tokens). Used
for CUDA tensors when Triton is installed and the code is not being traced by ``torch.compile``;
elsewhere ``scaled_dot_product_attention`` runs.
"""

from __future__ import annotations

import math

import torch

from amg_model.model.attention import sdpa_attention
from amg_model.model.fused import _use_triton

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch version is used
    triton = None

MAX_LENGTH = 64  # longest sequence (padded to a power of two) the kernel keeps in registers
MAX_HEAD_DIM = 128
MAX_KEYS = 128  # most keys (padded to a power of two) of :func:`few_keys_attention`
FEW_KEYS_BLOCK_Q = 64
_HALF_DTYPES = (torch.float16, torch.bfloat16)  # of few_keys_attention's kernel
_SHORT_DTYPES = (*_HALF_DTYPES, torch.float32)  # of short_attention's

if triton is not None:

    @triton.jit
    def _short_attention_kernel(
        q_ptr, k_ptr, v_ptr, o_ptr, heads, lq, lk,
        sqn, sql, sqc, skn, skl, skc, svn, svl, svc, son, sol,
        scale,
        L: tl.constexpr, BLOCK_Q: tl.constexpr, HEAD_DIM: tl.constexpr, D: tl.constexpr,
        IEEE: tl.constexpr,
    ):  # fmt: skip
        # program = (sequence n, head h; block of BLOCK_Q queries), heads fastest so neighbouring
        # programs read neighbouring channels of the same rows
        pid = tl.program_id(0)
        n = (pid // heads).to(tl.int64)
        h = pid % heads
        rows = tl.program_id(1) * BLOCK_Q + tl.arange(0, BLOCK_Q)
        keys = tl.arange(0, L)
        cols = tl.arange(0, D)
        ch = h * HEAD_DIM + cols
        cmask = (cols < HEAD_DIM)[None, :]
        qmask = (rows < lq)[:, None] & cmask
        kmask = (keys < lk)[:, None] & cmask
        q = tl.load(q_ptr + n * sqn + rows[:, None] * sql + ch[None, :] * sqc, mask=qmask, other=0.0)
        k = tl.load(k_ptr + n * skn + keys[:, None] * skl + ch[None, :] * skc, mask=kmask, other=0.0)
        v = tl.load(v_ptr + n * svn + keys[:, None] * svl + ch[None, :] * svc, mask=kmask, other=0.0)
        if IEEE:  # float32 inputs: no TF32 rounding
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k))
        # scale includes log2(e): softmax with exp2; padded keys get no weight
        s = tl.where((keys < lk)[None, :], s * scale, float("-inf"))
        p = tl.exp2(s - tl.max(s, axis=1)[:, None])
        p = p / tl.sum(p, axis=1)[:, None]
        if IEEE:
            o = tl.dot(p, v, input_precision="ieee")
        else:
            o = tl.dot(p.to(v.dtype), v)
        out = o_ptr + n * son + rows[:, None] * sol + ch[None, :]
        tl.store(out, o.to(o_ptr.dtype.element_ty), mask=qmask)


def short_attention_applies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> bool:
    """Whether :func:`short_attention` runs its Triton kernel for these inputs (else it runs SDPA)."""
    return _kernel_applies(q, k, v, heads, max(q.shape[1], k.shape[1]) <= MAX_LENGTH, _SHORT_DTYPES)


def _kernel_applies(q, k, v, heads: int, lengths_fit: bool, dtypes: tuple[torch.dtype, ...]) -> bool:
    return (
        lengths_fit
        and _use_triton(q, k, v)
        and q.numel() > 0
        and q.shape[-1] // heads <= MAX_HEAD_DIM
        and q.dtype == k.dtype == v.dtype
        and q.dtype in dtypes
    )


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head attention on token arrays for short sequences: ``q [N, Lq, C]``, ``k, v [N, Lk, C]``
    -> ``[N, Lq, C]`` (contiguous), ``softmax(q k^T / sqrt(C / heads)) v`` per head.

    The same result as :func:`~amg_model.model.attention.sdpa_attention` (accumulated in
    float32). ``q, k, v`` may be strided views, e.g. chunks of one fused projection. The Triton
    kernel runs when :func:`short_attention_applies` (CUDA, ``Lq, Lk <= 64``); otherwise
    ``scaled_dot_product_attention``.
    """
    if not short_attention_applies(q, k, v, heads):
        return sdpa_attention(q, k, v, heads)
    return _short_attention_triton(q, k, v, heads)


def few_keys_attention_applies(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> bool:
    """Whether :func:`few_keys_attention` runs its Triton kernel for these inputs (else it runs SDPA)."""
    return _kernel_applies(q, k, v, heads, k.shape[1] <= MAX_KEYS, _HALF_DTYPES)


def few_keys_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """:func:`short_attention` for any number of queries and up to :data:`MAX_KEYS` keys (a
    cross-attention to 77 text tokens): the kernel takes the queries in blocks of 64, each block with
    every key in registers (an exact softmax, no rescaling). CUDA fp16/bf16 where
    :func:`few_keys_attention_applies`; otherwise ``scaled_dot_product_attention``."""
    if not few_keys_attention_applies(q, k, v, heads):
        return sdpa_attention(q, k, v, heads)
    if max(q.shape[1], k.shape[1]) <= MAX_LENGTH:  # every query in one tile too
        return _short_attention_triton(q, k, v, heads)
    return _short_attention_triton(q, k, v, heads, block_q=FEW_KEYS_BLOCK_Q)


def _short_attention_triton(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    num_warps: int | None = None,
    block_q: int | None = None,
) -> torch.Tensor:
    n, lq, c = q.shape
    lk = k.shape[1]
    d = c // heads
    if block_q is None:  # every query in one block, padded as the keys
        length = max(16, triton.next_power_of_2(max(lq, lk)))  # tl.dot needs blocks of at least 16
        block_q = length
    else:
        length = max(16, triton.next_power_of_2(lk))
    if num_warps is None:
        num_warps = 2 if max(length, block_q) <= 32 else 4
    out = torch.empty(n, lq, c, device=q.device, dtype=q.dtype)
    _short_attention_kernel[(n * heads, triton.cdiv(lq, block_q))](
        q, k, v, out, heads, lq, lk, *q.stride(), *k.stride(), *v.stride(), out.stride(0), out.stride(1),
        math.log2(math.e) / math.sqrt(d),
        L=length, BLOCK_Q=block_q, HEAD_DIM=d, D=max(16, triton.next_power_of_2(d)),
        IEEE=q.dtype == torch.float32, num_warps=num_warps,
    )  # fmt: skip
    return out
