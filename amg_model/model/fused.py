"""Fused GPU kernels (Triton) for the channels-last UNet forward, with plain-torch equivalents.

On a GPU the torch versions of these steps are bound by memory traffic and by slow strided
kernels: GroupNorm as separate reductions and elementwise passes (a sixth of the UNet's time)
whose statistics took about 20 tiny kernels each, the frame <-> pixel transposes around each
temporal transformer (a tenth), the transformer blocks' LayerNorms and the residual adds before
them, the convolutions' biases (cuDNN adds them in a separate strided pass, here added with the
residual), and the feed-forward's GEGLU gating (here in the epilogue of the projection's matrix
product, whose ``[rows, 2I]`` output is then never written). The Triton kernels read and write each
activation once per pass with coalesced rows of channels. They are used for CUDA tensors when
Triton is installed and the code is not being traced by ``torch.compile`` (inductor fuses the
torch versions itself); everywhere else the torch versions run.

Layouts: activations are token arrays ``[B, S, C]`` (``S`` rows of ``C`` contiguous channels per
video); for temporal layers ``S = F * P`` (frames x pixels).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from amg_model.model import small_k

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs: the torch versions below are used
    triton = None


def _use_triton(*tensors: torch.Tensor) -> bool:
    if triton is None or torch.compiler.is_compiling():
        return False
    return all(t.is_cuda for t in tensors)


# ----------------------------------------------------------------------------------------------
# GroupNorm
# ----------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _channel_sums_kernel(
        x_ptr, sum_ptr, sq_ptr, rows, chunks, C, C_OUT,
        ROWS_PER_CHUNK: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        # x [B, rows, C] -> sums [B, chunks, C_OUT] (its first C columns; the rest: another part's)
        b = tl.program_id(0)
        chunk = tl.program_id(1)
        cols = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = cols < C
        acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
        acc2 = tl.zeros((BLOCK_C,), dtype=tl.float32)
        start = chunk * ROWS_PER_CHUNK
        for r0 in range(0, ROWS_PER_CHUNK, BLOCK_R):
            r = start + r0 + tl.arange(0, BLOCK_R)
            mask = (r < rows)[:, None] & cmask[None, :]
            offs = (b * rows + r).to(tl.int64)[:, None] * C + cols[None, :]
            v = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            acc += tl.sum(v, axis=0)
            acc2 += tl.sum(v * v, axis=0)
        out = (b * chunks + chunk) * C_OUT + cols
        tl.store(sum_ptr + out, acc, mask=cmask)
        tl.store(sq_ptr + out, acc2, mask=cmask)

    @triton.jit
    def _group_affine_kernel(
        sum_ptr, sq_ptr, w_ptr, b_ptr, off_ptr, off_stride, off_share, scale_ptr, shift_ptr, C, CG, rows,
        eps, chunks, CHUNKS_P2: tl.constexpr, HAS_OFFSET: tl.constexpr, BLOCK_K: tl.constexpr,
        BLOCK_CG: tl.constexpr,
    ):  # fmt: skip
        # per (video, group): partial channel sums [chunks, C] -> scale, shift [C] of the affine step
        # (the loop bound is a compile-time power of two >= chunks: loops with run-time bounds fail
        # in some versions of Triton's interpreter, which the tests use, and powers of two keep the
        # number of compiled variants small)
        b = tl.program_id(0)
        within = tl.arange(0, BLOCK_CG)
        cmask = within < CG
        cols = tl.program_id(1) * CG + within
        acc = tl.zeros((BLOCK_CG,), dtype=tl.float32)
        acc2 = tl.zeros((BLOCK_CG,), dtype=tl.float32)
        for k0 in range(0, CHUNKS_P2, BLOCK_K):
            k = k0 + tl.arange(0, BLOCK_K)
            mask = (k < chunks)[:, None] & cmask[None, :]
            offs = (b * chunks + k)[:, None] * C + cols[None, :]
            acc += tl.sum(tl.load(sum_ptr + offs, mask=mask, other=0.0), axis=0)
            acc2 += tl.sum(tl.load(sq_ptr + offs, mask=mask, other=0.0), axis=0)
        if HAS_OFFSET:  # statistics of x + offset from the sums of x
            a = tl.load(off_ptr + (b // off_share) * off_stride + cols, mask=cmask, other=0.0).to(tl.float32)
            acc2 = acc2 + 2.0 * a * acc + rows * a * a
            acc = acc + rows * a
        count = rows * CG
        mean = tl.sum(acc, axis=0) / count
        var = tl.maximum(tl.sum(acc2, axis=0) / count - mean * mean, 0.0)
        rstd = tl.rsqrt(var + eps)
        w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
        scale = rstd * w
        shift = tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32) - mean * scale
        if HAS_OFFSET:  # applied to x itself: (x + a) * scale + shift
            shift += a * scale
        tl.store(scale_ptr + b * C + cols, scale, mask=cmask)
        tl.store(shift_ptr + b * C + cols, shift, mask=cmask)

    @triton.jit
    def _scale_shift_kernel(
        x_ptr, x2_ptr, y_ptr, scale_ptr, shift_ptr, rows, total_rows, C, C1, P, F,
        SILU: tl.constexpr, SWAP: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        # the input: columns [0, C1) of x [rows, C1] and [C1, C) of x2 [rows, C - C1] (their
        # concatenation, never materialised); a column block lies in one of them (BLOCK_C divides C1)
        r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        col0 = tl.program_id(1) * BLOCK_C
        cols = col0 + tl.arange(0, BLOCK_C)
        rmask = r < total_rows
        mask = rmask[:, None] & (cols < C)[None, :]
        b = r // rows
        par = b[:, None] * C + cols[None, :]
        s = tl.load(scale_ptr + par, mask=mask, other=0.0)
        t = tl.load(shift_ptr + par, mask=mask, other=0.0)
        if col0 < C1:
            v = tl.load(x_ptr + r.to(tl.int64)[:, None] * C1 + cols[None, :], mask=mask, other=0.0)
        else:
            offs = r.to(tl.int64)[:, None] * (C - C1) + (cols - C1)[None, :]
            v = tl.load(x2_ptr + offs, mask=mask, other=0.0)
        v = v.to(tl.float32)
        y = v * s + t
        if SILU:
            y = y * tl.sigmoid(y)
        if SWAP:  # input row (b, f, p) goes to output row (b, p, f)
            within = r - b * rows
            f = within // P
            p = within - f * P
            r_out = b * rows + p * F + f
        else:
            r_out = r
        out = y_ptr + r_out.to(tl.int64)[:, None] * C + cols[None, :]
        tl.store(out, y.to(y_ptr.dtype.element_ty), mask=mask)

    @triton.jit
    def _add_swapped_kernel(
        x_ptr, y_ptr, out_ptr, rows, total_rows, C, P, F,
        BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        # out[b, f, p] = x[b, f, p] + y[b, p, f], rows of C channels
        r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = (r < total_rows)[:, None] & (cols < C)[None, :]
        b = r // rows
        within = r - b * rows
        f = within // P
        p = within - f * P
        r_y = b * rows + p * F + f
        cx = r.to(tl.int64)[:, None] * C + cols[None, :]
        v = tl.load(x_ptr + cx, mask=mask, other=0.0) + tl.load(
            y_ptr + r_y.to(tl.int64)[:, None] * C + cols[None, :], mask=mask, other=0.0
        )
        tl.store(out_ptr + cx, v, mask=mask)


if triton is not None:

    @triton.jit
    def _geglu_kernel(p_ptr, out_ptr, total_rows, inner, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
        # out[r, c] = p[r, c] * gelu(p[r, inner + c]), exact (erf) GELU to float32 rounding
        r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = (r < total_rows)[:, None] & (cols < inner)[None, :]
        base = r.to(tl.int64)[:, None] * (2 * inner) + cols[None, :]
        h = tl.load(p_ptr + base, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(p_ptr + base + inner, mask=mask, other=0.0).to(tl.float32)
        y = small_k._gelu_gated(h, g)
        out = out_ptr + r.to(tl.int64)[:, None] * inner + cols[None, :]
        tl.store(out, y.to(out_ptr.dtype.element_ty), mask=mask)


if triton is not None:

    @triton.autotune(
        configs=[
            triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k}, num_warps=w, num_stages=s)
            # the configurations chosen on an H100 (bench/small_k_bench.py) and a smaller one; each
            # candidate adds to the first call's tuning time. BLOCK_N columns of each half: the
            # product is BLOCK_M x 2 BLOCK_N
            for m, n, k, w, s in (
                (128, 64, 64, 8, 3),
                (128, 128, 32, 8, 5),
                (128, 128, 64, 8, 3),
                (64, 128, 64, 4, 4),
            )
        ],
        key=["M", "INNER", "K"],
    )
    @triton.jit
    def _linear_geglu_kernel(
        x_ptr, w_ptr, b_ptr, out_ptr, M, INNER, K: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ):  # fmt: skip
        # out = (x @ W_h^T + b_h) * gelu(x @ W_g^T + b_g) for W = [W_h; W_g] ([2 INNER, K], rows of K);
        # one product per step with the hidden and gate columns side by side ([BLOCK_K, 2 BLOCK_N])
        pid = tl.program_id(0)
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(INNER, BLOCK_N)
        # groups of 8 row tiles share their weight tiles in L2
        group = 8 * tiles_n
        first_m = (pid // group) * 8
        size_m = min(tiles_m - first_m, 8)
        pm = first_m + (pid % group) % size_m
        pn = (pid % group) // size_m
        rm = pm * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
        cols2 = tl.arange(0, 2 * BLOCK_N)
        gate = cols2 >= BLOCK_N
        rn2 = pn * BLOCK_N + tl.where(gate, cols2 - BLOCK_N, cols2)
        nmask2 = rn2 < INNER
        wrow = rn2 + tl.where(gate, INNER, 0)  # weight row of each column: hidden, then gate
        rk = tl.arange(0, BLOCK_K)
        mmask = rm < M
        nmask = rn < INNER
        acc = tl.zeros((BLOCK_M, 2 * BLOCK_N), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            kk = k0 + rk
            kmask = kk < K
            a_ptrs = x_ptr + rm.to(tl.int64)[:, None] * K + kk[None, :]
            a = tl.load(a_ptrs, mask=mmask[:, None] & kmask[None, :], other=0.0)
            wmask = kmask[:, None] & nmask2[None, :]
            w = tl.load(w_ptr + wrow[None, :] * K + kk[:, None], mask=wmask, other=0.0)
            acc = tl.dot(a, w, acc)
        acc += tl.load(b_ptr + wrow, mask=nmask2, other=0.0).to(tl.float32)[None, :]
        h, g = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N)), (0, 2, 1)))
        y = small_k._gelu_gated(h, g)
        out = out_ptr + rm.to(tl.int64)[:, None] * INNER + rn[None, :]
        tl.store(out, y.to(out_ptr.dtype.element_ty), mask=mmask[:, None] & nmask[None, :])


def linear_geglu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """GEGLU of a linear projection, ``geglu(F.linear(x, weight, bias))`` for ``x [..., K]`` and
    ``weight [2I, K]`` -> ``[..., I]``.

    On a GPU (fp16/bf16, ``K`` a multiple of 16) it is one matrix-product kernel with the gating in
    its epilogue: the ``[..., 2I]`` projection is never written to memory. Elsewhere
    :func:`geglu` of the torch projection (whose dtype follows autocast).
    """
    k = x.shape[-1]
    fits = (
        bias is not None
        and weight.dim() == 2
        and weight.shape[1] == k
        and weight.shape[0] % 2 == 0
        and k % 16 == 0
        and x.dtype in (torch.float16, torch.bfloat16)
        and weight.dtype == x.dtype
        and bias.dtype == x.dtype
        and x.numel() > 0
    )
    if not (fits and _use_triton(x, weight, bias)):
        return geglu(torch.nn.functional.linear(x, weight, bias))
    persistent = small_k.linear_geglu(x, weight, bias)  # TMA loads, Hopper: faster where it runs
    return persistent if persistent is not None else _linear_geglu_one_tile(x, weight, bias)


def _linear_geglu_one_tile(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    # one program per output tile, pointer loads: GPUs without tensor descriptors, and large K
    k = x.shape[-1]
    inner = weight.shape[0] // 2
    x2 = x.reshape(-1, k).contiguous()
    m = x2.shape[0]
    out = x2.new_empty(m, inner)
    weight = weight.contiguous()

    def grid(meta):
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(inner, meta["BLOCK_N"]),)

    _linear_geglu_kernel[grid](x2, weight, bias.contiguous(), out, m, inner, K=k)
    return out.view(*x.shape[:-1], inner)


def geglu(proj: torch.Tensor) -> torch.Tensor:
    """GEGLU's gating of a projection ``[..., 2I]``: ``first half * gelu(second half)`` -> ``[..., I]``."""
    if not _use_triton(proj):
        hidden, gate = proj.chunk(2, dim=-1)
        return hidden * torch.nn.functional.gelu(gate)
    proj = proj.contiguous()
    inner = proj.shape[-1] // 2
    rows = proj.numel() // (2 * inner)
    out = proj.new_empty(*proj.shape[:-1], inner)
    grid = (triton.cdiv(rows, 32), triton.cdiv(inner, 128))
    _geglu_kernel[grid](proj, out, rows, inner, BLOCK_R=32, BLOCK_C=128)
    return out


class ChannelSums(NamedTuple):
    """Per-channel sums and sums of squares of a tensor's rows in chunks, ``[B, chunks, C]`` float32
    each (``B`` the GroupNorm's videos): what a kernel that wrote the tensor can hand to
    :func:`group_norm_tokens` so that it does not read the tensor for its statistics."""

    sums: torch.Tensor
    squares: torch.Tensor


def _blocks(c: int) -> int:
    return min(128, triton.next_power_of_2(c))


def group_norm_tokens(
    x: torch.Tensor,
    num_groups: int,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    silu: bool = False,
    swap_frames: int = 0,
    offset: torch.Tensor | None = None,
    sums: ChannelSums | None = None,
    concat: torch.Tensor | None = None,
) -> torch.Tensor:
    """GroupNorm of token arrays ``x [B, S, C]``: statistics per video and group of channels.

    Args:
        offset: ``[B, C]`` added to every row of ``x`` before normalising (a ResNet block's time
            embedding), without materialising the sum; ``[B / k, C]`` (or a row broadcast to it):
            each row is shared by ``k`` consecutive videos.
        silu: apply SiLU after the affine step.
        swap_frames: if ``F > 0``, the rows are ``[F, P]`` (frames x pixels) and the result comes as
            ``[B, P*F, C]`` rows ordered ``[P, F]`` (the temporal transformers' order), in the same pass.
        sums: ``x``'s channel sums from the kernel that wrote it (used where the Triton kernels run);
            None: a first pass over ``x`` computes them.
        concat: ``[B, S, C2]``: normalise the channel concatenation of ``x`` and ``concat`` (a skip
            connection), without writing it where the Triton kernels run; not with ``sums``.

    Returns:
        ``[B, S, C]`` (``C + C2`` with ``concat``) in ``x``'s dtype (statistics in float32).
    """
    if concat is not None:
        if sums is not None or concat.shape[:2] != x.shape[:2] or concat.dtype != x.dtype:
            raise ValueError(
                f"cannot concatenate {tuple(concat.shape)} {concat.dtype} to {tuple(x.shape)} "
                f"{x.dtype} token arrays (or given channel sums) for a GroupNorm"
            )
        if not _use_triton(x, concat) or x.shape[2] % 16:
            x, concat = torch.cat([x, concat], dim=2), None
    b, s, c = x.shape
    c1 = c
    if concat is not None:
        c += concat.shape[2]
    g = num_groups
    if offset is not None and (
        offset.ndim != 2 or offset.shape[1] != c or not offset.shape[0] or b % offset.shape[0]
    ):
        raise ValueError(
            f"GroupNorm offset of shape {tuple(offset.shape)} does not fit {b} videos of {c} channels"
        )
    if not _use_triton(x):
        if offset is not None and offset.shape[0] != b:
            offset = offset.repeat_interleave(b // offset.shape[0], dim=0)
        return _group_norm_tokens_torch(x, g, weight, bias, eps, silu, swap_frames, offset)
    x = x.contiguous()
    parts = [(x, 0, c1)] if concat is None else [(x, 0, c1), (concat.contiguous(), c1, c - c1)]
    block_c = _blocks(c)
    if concat is not None:  # a power of two dividing c1: no column block spans both parts
        block_c = min(block_c, c1 & -c1)
    if sums is None:
        chunks = triton.cdiv(s, 64)  # of 64 rows
        sums = ChannelSums(*torch.empty(2, b, chunks, c, device=x.device, dtype=torch.float32))
        for part, first, width in parts:
            _channel_sums_kernel[(b, chunks, triton.cdiv(width, block_c))](
                part, sums.sums[..., first:], sums.squares[..., first:], s, chunks, width, c,
                ROWS_PER_CHUNK=64, BLOCK_R=64, BLOCK_C=block_c,
            )  # fmt: skip
    elif sums.sums.shape[0] != b or sums.sums.shape[2] != c or sums.squares.shape != sums.sums.shape:
        raise ValueError(
            f"channel sums of shape {tuple(sums.sums.shape)} do not fit {b} videos of {c} channels"
        )
    chunks = sums.sums.shape[1]
    sums, sqs = sums.sums.contiguous(), sums.squares.contiguous()
    # one kernel for the statistics and the affine step (as torch ops these are about 20 tiny
    # kernels per GroupNorm, a tenth of the UNet's GPU time)
    scale = torch.empty(b, c, device=x.device, dtype=torch.float32)
    shift = torch.empty_like(scale)
    off, share = scale, 1
    if offset is not None:
        off = offset if offset.stride(-1) == 1 else offset.contiguous()
        share = b // offset.shape[0]
    cg = c // g
    _group_affine_kernel[(b, g)](
        sums, sqs, weight, bias, off, off.stride(0), share, scale, shift, c, cg, s, eps,
        chunks, CHUNKS_P2=triton.next_power_of_2(chunks), HAS_OFFSET=offset is not None, BLOCK_K=64,
        BLOCK_CG=triton.next_power_of_2(cg),
    )  # fmt: skip
    y = x.new_empty(b, s, c)
    frames = swap_frames or 1
    _scale_shift_kernel[(triton.cdiv(b * s, 32), triton.cdiv(c, block_c))](
        x, parts[-1][0], y, scale, shift, s, b * s, c, c1, s // frames, frames,
        SILU=silu, SWAP=swap_frames > 0, BLOCK_R=32, BLOCK_C=block_c,
    )  # fmt: skip
    return y


def _affine(
    sums: torch.Tensor, sqs: torch.Tensor, rows: int, g: int, weight: torch.Tensor, bias: torch.Tensor,
    eps: float, offset: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per-channel sums of ``rows`` rows -> float32 ``scale, shift [B, C]`` of the GroupNorm's affine step.

    With ``offset [B, C]`` the statistics are those of ``x + offset`` (shifted sums), and the shift
    applies to ``x`` itself: ``(x + offset) * scale + shift == x * scale + (shift + offset * scale)``.
    """
    b, c = sums.shape
    if offset is not None:
        a = offset.float()
        sqs = sqs + 2.0 * a * sums + rows * a.square()
        sums = sums + rows * a
    count = rows * (c // g)
    mean = sums.view(b, g, c // g).sum(-1) / count
    var = (sqs.view(b, g, c // g).sum(-1) / count - mean.square()).clamp_min(0.0)
    rstd = torch.rsqrt(var + eps)
    w = weight.float().view(1, g, c // g)
    scale = rstd[:, :, None] * w
    shift = bias.float().view(1, g, c // g) - mean[:, :, None] * scale
    scale, shift = scale.reshape(b, c), shift.reshape(b, c)
    if offset is not None:
        shift = shift + offset.float() * scale
    return scale.contiguous(), shift.contiguous()


def _group_norm_tokens_torch(x, g, weight, bias, eps, silu, swap_frames, offset):
    b, s, c = x.shape
    sums = x.sum(dim=1, dtype=torch.float32)
    sqs = torch.linalg.vector_norm(x, dim=1, dtype=torch.float32).square()
    scale, shift = _affine(sums, sqs, s, g, weight, bias, eps, offset)
    y = torch.addcmul(shift.to(x.dtype)[:, None], x, scale.to(x.dtype)[:, None])
    if silu:
        y = torch.nn.functional.silu(y, inplace=True)
    if swap_frames:
        y = y.view(b, swap_frames, s // swap_frames, c).transpose(1, 2).reshape(b, s, c)
    return y


def add_swapped(x: torch.Tensor, y: torch.Tensor, frames: int) -> torch.Tensor:
    """``x [B, F*P, C]`` (rows ``[F, P]``) plus ``y [B, P*F, C]`` (rows ``[P, F]``), in ``x``'s order."""
    b, s, c = x.shape
    if not _use_triton(x, y):
        return x + y.view(b, s // frames, frames, c).transpose(1, 2).reshape(b, s, c)
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(x)
    block_c = _blocks(c)
    _add_swapped_kernel[(triton.cdiv(b * s, 32), triton.cdiv(c, block_c))](
        x, y, out, s, b * s, c, s // frames, frames, BLOCK_R=32, BLOCK_C=block_c
    )
    return out


# ----------------------------------------------------------------------------------------------
# Convolution bias and residual
# ----------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _add_bias_residual_kernel(
        y_ptr, r_ptr, b_ptr, sum_ptr, sq_ptr, rows, C,
        SUMS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        # y[r, c] += residual[r, c] + bias[c], rows of C channels; with SUMS, the block's channel
        # sums of the result at [program_id(0), c]
        r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = (r < rows)[:, None] & (cols < C)[None, :]
        offs = r.to(tl.int64)[:, None] * C + cols[None, :]
        y = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        y += tl.load(r_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        y += tl.load(b_ptr + cols, mask=cols < C, other=0.0).to(tl.float32)[None, :]
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)
        if SUMS:  # (the rows are whole blocks of a frame; masked columns hold zeros and are not stored)
            out = tl.program_id(0) * C + cols
            tl.store(sum_ptr + out, tl.sum(y, axis=0), mask=cols < C)
            tl.store(sq_ptr + out, tl.sum(y * y, axis=0), mask=cols < C)


def add_bias_residual_(y: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``y += residual + bias`` in place for ``[N, C, H, W]`` tensors (``bias [C]`` per channel), in
    one pass where the kernel runs (CUDA, channels-last ``y`` and ``residual`` of one dtype); returns ``y``.

    A convolution's output without its bias plus the block's residual: cuDNN convolutions add the
    bias in a separate, strided pass.
    """
    return _add_bias_residual(y, residual, bias, sums=False)[0]


def add_bias_residual_and_sums_(
    y: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, ChannelSums | None]:
    """:func:`add_bias_residual_`, and the result's channel sums per frame (``[N, chunks, C]``, for a
    GroupNorm that follows) where the kernel runs and ``H * W`` is a multiple of 16; else None."""
    return _add_bias_residual(y, residual, bias, sums=True)


def _add_bias_residual(y, residual, bias, sums: bool) -> tuple[torch.Tensor, ChannelSums | None]:
    cl = torch.channels_last
    if (
        bias is None
        or y.dim() != 4
        or residual.shape != y.shape
        or residual.dtype != y.dtype
        or not (y.is_contiguous(memory_format=cl) and residual.is_contiguous(memory_format=cl))
        or not _use_triton(y, residual, bias)
    ):
        y.add_(residual)
        return (y if bias is None else y.add_(bias.view(1, -1, 1, 1))), None
    n, c, h, w = y.shape
    rows = n * h * w
    block_r = 32 if not sums or (h * w) % 32 == 0 else 16  # with sums: blocks within a frame
    sums = sums and (h * w) % block_r == 0
    chunks = h * w // block_r if sums else 1
    channel_sums = ChannelSums(*torch.empty(2, n, chunks, c, device=y.device, dtype=torch.float32))
    block_c = _blocks(c)
    _add_bias_residual_kernel[(triton.cdiv(rows, block_r), triton.cdiv(c, block_c))](
        y, residual, bias.contiguous(), channel_sums.sums, channel_sums.squares, rows, c, SUMS=sums,
        BLOCK_R=block_r, BLOCK_C=block_c,
    )  # fmt: skip
    return y, (channel_sums if sums else None)


# ----------------------------------------------------------------------------------------------
# LayerNorm (and the residual add before it)
# ----------------------------------------------------------------------------------------------

_NORM_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_MAX_NORM_C = 4096  # a whole row stays in one program's registers
_NORM_TILE = 4096  # elements per program: rows x padded channels

if triton is not None:

    @triton.jit
    def _layer_norm_kernel(
        x_ptr, d_ptr, s_ptr, y_ptr, w_ptr, b_ptr, sb_ptr, rows, C, eps,
        ADD: tl.constexpr, STORED_BIAS: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr,
    ):  # fmt: skip
        # y = LayerNorm(x) or, with ADD, s = x + d (rounded to s's dtype) and y = LayerNorm(s);
        # with STORED_BIAS the stored sum is s + sb (y is still the norm of s)
        r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
        cols = tl.arange(0, BLOCK_C)
        cmask = cols < C
        mask = (r < rows)[:, None] & cmask[None, :]
        offs = r.to(tl.int64)[:, None] * C + cols[None, :]
        v = tl.load(x_ptr + offs, mask=mask, other=0.0)
        if ADD:
            d = tl.load(d_ptr + offs, mask=mask, other=0.0)
            v = (v.to(tl.float32) + d.to(tl.float32)).to(s_ptr.dtype.element_ty)
            if STORED_BIAS:
                sb = tl.load(sb_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
                tl.store(s_ptr + offs, (v.to(tl.float32) + sb[None, :]).to(s_ptr.dtype.element_ty), mask=mask)
            else:
                tl.store(s_ptr + offs, v, mask=mask)
        v = v.to(tl.float32)
        mean = tl.sum(v, axis=1) / C
        diff = tl.where(mask, v - mean[:, None], 0.0)
        var = tl.sum(diff * diff, axis=1) / C
        rstd = tl.rsqrt(var + eps)
        w = tl.load(w_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
        b = tl.load(b_ptr + cols, mask=cmask, other=0.0).to(tl.float32)
        y = diff * rstd[:, None] * w[None, :] + b[None, :]
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


def _norm_runs_triton(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, delta: torch.Tensor | None = None
) -> bool:
    """Whether the LayerNorm kernel takes these inputs (CUDA, supported dtypes and sizes)."""
    if weight is None or bias is None or x.dim() == 0 or x.numel() == 0:
        return False
    c = x.shape[-1]
    if x.dtype not in _NORM_DTYPES or c > _MAX_NORM_C or weight.shape != (c,) or bias.shape != (c,):
        return False
    if delta is not None and (delta.shape != x.shape or delta.dtype != x.dtype):
        return False  # torch's x + delta would promote or broadcast
    tensors = (x, weight, bias) if delta is None else (x, delta, weight, bias)
    return _use_triton(*tensors)


def _launch_layer_norm(x, delta, s, y, weight, bias, eps, stored_bias=None) -> None:
    c = x.shape[-1]
    rows = x.numel() // c
    block_c = triton.next_power_of_2(c)
    block_r = max(1, _NORM_TILE // block_c)
    _layer_norm_kernel[(triton.cdiv(rows, block_r),)](
        x, delta if delta is not None else x, s if s is not None else y, y,
        weight.contiguous(), bias.contiguous(), stored_bias if stored_bias is not None else bias,
        rows, c, eps, ADD=delta is not None, STORED_BIAS=stored_bias is not None,
        BLOCK_R=block_r, BLOCK_C=block_c, num_warps=4 if block_c <= 1024 else 8,
    )  # fmt: skip


def layer_norm(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> torch.Tensor:
    """LayerNorm over the last dimension of ``x [..., C]`` (float32 statistics, ``x``'s dtype out)."""
    if not _norm_runs_triton(x, weight, bias):
        return torch.nn.functional.layer_norm(x, x.shape[-1:], weight, bias, eps)
    x = x.contiguous()
    y = torch.empty_like(x)
    _launch_layer_norm(x, None, None, y, weight, bias, eps)
    return y


def add_layer_norm(
    x: torch.Tensor,
    delta: torch.Tensor,
    weight: torch.Tensor | None,
    bias: torch.Tensor | None,
    eps: float,
    stored_bias: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A residual add and the LayerNorm of its result in one pass: ``s = x + delta`` (rounded as
    torch rounds it) and ``y = layer_norm(s)``; returns ``(s, y)``.

    ``stored_bias [C]`` is added to the returned sum only, ``(s + stored_bias, layer_norm(s))``: the
    bias of a later layer whose output joins this residual (it then needs no pass of its own).
    """
    if stored_bias is not None and stored_bias.shape != x.shape[-1:]:
        shape = tuple(stored_bias.shape)
        raise ValueError(f"stored_bias of shape {shape} does not fit rows of {x.shape[-1]} channels.")
    if not _norm_runs_triton(x, weight, bias, delta) or not (stored_bias is None or _use_triton(stored_bias)):
        s = x + delta
        y = torch.nn.functional.layer_norm(s, s.shape[-1:], weight, bias, eps)
        return (s if stored_bias is None else s + stored_bias.to(s.dtype)), y
    x, delta = x.contiguous(), delta.contiguous()
    s, y = torch.empty_like(x), torch.empty_like(x)
    stored_bias = None if stored_bias is None else stored_bias.contiguous()
    _launch_layer_norm(x, delta, s, y, weight, bias, eps, stored_bias)
    return s, y
