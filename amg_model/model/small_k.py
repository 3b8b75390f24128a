"""Persistent Triton kernels for matrix products with few input channels (``K <= 640``).

The UNet's token projections at the highest resolutions are ``[rows, K] x [K, N]`` products with
``K`` of 320 or 640: a few k-steps per output tile, so a kernel of one program per tile spends
much of its time in each tile's prologue (the first loads) and epilogue. The kernels here are
persistent (one program per multiprocessor, or two, looping over output tiles in a grouped order):
the software pipeliner then issues the next tile's first loads while the current tile finishes.

* :func:`linear`: what the UNet calls for its token projections: :func:`linear_tma` for the
  shapes where it beat cuBLAS on an H100 (``[32768, 320] x [320, 320] + bias``: 24 us against 33),
  else ``F.linear``.
* :func:`linear_tma`: ``x @ W^T + b`` for ``N <= 640`` with tensor-descriptor (TMA) loads and
  stores, optionally added in place to a residual (as ``residual.addmm_(x, W^T)``, one rounding).
* GEGLU projections ``geglu(x @ W^T + b)``, candidates measured by ``bench/small_k_bench.py``:
  :func:`linear_geglu_persistent` (pointer loads of the weight ``[2I, K]``),
  :func:`linear_geglu_tma` (TMA, a weight packed once by :func:`pack_geglu`: hidden and gate rows
  interleaved per block of ``BLOCK_N``), :func:`linear_geglu_tma_split` (TMA, the weight as it is,
  two products per step) and :func:`linear_geglu_tma_paired` (TMA through a ``[2, I, K]`` view of
  the weight as it is: one load and one product per step). On an H100 the packed and paired ones
  run 1.2x faster than :func:`~amg_model.model.fused.linear_geglu`, which hands ``K <= 640`` to the
  paired one (:func:`linear_geglu`).

Each equals its torch definition with fp32 accumulation; where its kernel does not run (CPU,
``torch.compile`` tracing, other dtypes or shapes, GPUs before Hopper) the torch version runs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

try:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # CPU-only installs: the torch versions below are used
    triton = None

MAX_K = 640
MAX_N = 640  # of :func:`linear_tma`


def _use_triton(*tensors: torch.Tensor) -> bool:
    if triton is None or torch.compiler.is_compiling():
        return False
    return all(t.is_cuda for t in tensors)


def _fits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, max_k: int = MAX_K) -> bool:
    k = x.shape[-1]
    return (
        x.dtype in (torch.float16, torch.bfloat16)
        and weight.dtype == x.dtype
        and (bias is None or bias.dtype == x.dtype)
        and weight.dim() == 2
        and weight.shape[1] == k
        and (bias is None or bias.shape == weight.shape[:1])
        and k % 16 == 0
        and k <= max_k
        and x.numel() > 0
    )


def _tma_ok(*tensors: torch.Tensor) -> bool:
    """Tensor descriptors: a Hopper or newer GPU, 16-byte aligned bases and rows."""
    if tensors[0].is_cuda and torch.cuda.get_device_capability(tensors[0].device)[0] < 9:
        return False
    return all(t.data_ptr() % 16 == 0 and (t.stride(0) * t.element_size()) % 16 == 0 for t in tensors)


@functools.cache
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _programs(device: torch.device, tiles: int, per_sm: int) -> int:
    # off CUDA (Triton's interpreter) one multiprocessor: each program loops over several tiles
    sms = _multiprocessors(device.index or 0) if device.type == "cuda" else 1
    return max(1, min(tiles, per_sm * sms))


def _gelu_gate(proj: torch.Tensor) -> torch.Tensor:
    hidden, gate = proj.chunk(2, dim=-1)
    return hidden * F.gelu(gate)


def _launch(kernel, grid, args: dict, config: triton.Config | None, set_blocks=None) -> None:
    """``kernel`` (autotuned) on ``args``, or with the fixed ``config`` (tests, benchmarks);
    ``set_blocks`` gives the tensor descriptors the configuration's block shapes."""
    if config is None:
        kernel[grid](**args)
        return
    full = {**args, **config.kwargs}
    if set_blocks is not None:
        set_blocks(full)
    kernel.fn[grid](**full, num_warps=config.num_warps, num_stages=config.num_stages)


# ----------------------------------------------------------------------------------------------
# GEGLU projection, persistent, pointer loads
# ----------------------------------------------------------------------------------------------

if triton is not None:

    @triton.jit
    def _tile_of(tile, tiles_m, tiles_n, GROUP: tl.constexpr):
        # grouped order: GROUP row tiles, column by column, share their weight tiles in L2
        per_group = GROUP * tiles_n
        first_m = (tile // per_group) * GROUP
        size_m = min(tiles_m - first_m, GROUP)
        pm = first_m + (tile % per_group) % size_m
        pn = (tile % per_group) // size_m
        return pm, pn

    @triton.jit
    def _gelu_gated(h, g):
        # h * gelu(g), exact (erf) GELU
        return h * (0.5 * g * (1.0 + tl.erf(g * 0.7071067811865476)))

    def _persistent_configs():
        # PER_SM programs per multiprocessor; the first is the existing kernel's best tile
        return [
            triton.Config({"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "PER_SM": p}, num_warps=w, num_stages=s)
            for m, n, k, w, s, p in (
                (128, 128, 64, 8, 3, 1),
                (128, 64, 64, 8, 4, 1),
                (64, 128, 64, 4, 2, 2),
            )
        ]

    @triton.autotune(configs=_persistent_configs(), key=["M", "INNER", "K", "HAS_BIAS"])
    @triton.jit
    def _geglu_persistent_kernel(
        x_ptr, w_ptr, b_ptr, out_ptr, M, INNER,
        K: tl.constexpr, HAS_BIAS: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PER_SM: tl.constexpr,
    ):  # fmt: skip
        # out = (x @ W_h^T + b_h) * gelu(x @ W_g^T + b_g) for W = [W_h; W_g] ([2 INNER, K]); a step's
        # product has the hidden and gate columns side by side ([BLOCK_K, 2 BLOCK_N])
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(INNER, BLOCK_N)
        cols2 = tl.arange(0, 2 * BLOCK_N)
        gate = cols2 >= BLOCK_N
        within = tl.where(gate, cols2 - BLOCK_N, cols2)
        rk = tl.arange(0, BLOCK_K)
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, tl.num_programs(0), flatten=True):
            pm, pn = _tile_of(tile, tiles_m, tiles_n, GROUP=8)
            rm = pm * BLOCK_M + tl.arange(0, BLOCK_M)
            rn2 = pn * BLOCK_N + within
            # rows past the end read row 0 and columns past INNER read column 0 (unmasked loads);
            # their results are not stored
            rows = tl.where(rm < M, rm, 0).to(tl.int64) * K
            wrow = tl.where(rn2 < INNER, rn2, 0) + tl.where(gate, INNER, 0)
            acc = tl.zeros((BLOCK_M, 2 * BLOCK_N), dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                kk = k0 + rk
                if K % BLOCK_K == 0:
                    a = tl.load(x_ptr + rows[:, None] + kk[None, :])
                    w = tl.load(w_ptr + wrow[None, :] * K + kk[:, None])
                else:
                    a = tl.load(x_ptr + rows[:, None] + kk[None, :], mask=(kk < K)[None, :], other=0.0)
                    w = tl.load(w_ptr + wrow[None, :] * K + kk[:, None], mask=(kk < K)[:, None], other=0.0)
                acc = tl.dot(a, w, acc)
            if HAS_BIAS:
                acc += tl.load(b_ptr + wrow).to(tl.float32)[None, :]
            h, g = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N)), (0, 2, 1)))
            y = _gelu_gated(h, g)
            rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
            out = out_ptr + rm.to(tl.int64)[:, None] * INNER + rn[None, :]
            tl.store(out, y.to(out_ptr.dtype.element_ty), mask=(rm < M)[:, None] & (rn < INNER)[None, :])


def linear_geglu_persistent(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, config: triton.Config | None = None
) -> torch.Tensor:
    """``geglu(F.linear(x, weight, bias))`` for ``x [..., K]``, ``weight [2I, K]`` -> ``[..., I]``: a
    persistent Triton kernel on CUDA (fp16/bf16, ``K`` a multiple of 16 up to :data:`MAX_K`), else
    torch. ``config`` fixes the kernel's configuration instead of autotuning it."""
    if not (_fits(x, weight, bias) and weight.shape[0] % 2 == 0 and _use_triton(x, weight)):
        return _gelu_gate(F.linear(x, weight, bias))
    k = x.shape[-1]
    inner = weight.shape[0] // 2
    x2 = x.reshape(-1, k).contiguous()
    m = x2.shape[0]
    out = x2.new_empty(m, inner)

    def grid(meta):
        tiles = triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(inner, meta["BLOCK_N"])
        return (_programs(x.device, tiles, meta["PER_SM"]),)

    args = dict(
        x_ptr=x2, w_ptr=weight.contiguous(), b_ptr=x2 if bias is None else bias.contiguous(), out_ptr=out,
        M=m, INNER=inner, K=k, HAS_BIAS=bias is not None,
    )  # fmt: skip
    _launch(_geglu_persistent_kernel, grid, args, config)
    return out.view(*x.shape[:-1], inner)


# ----------------------------------------------------------------------------------------------
# GEGLU projection, persistent, tensor descriptors, packed weight
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PackedGeglu:
    """A GEGLU projection's weight ``[2I, K]`` and bias packed by :func:`pack_geglu`.

    ``weight [2 T block_n, K]``: for each of the ``T = ceil(I / block_n)`` column blocks, its
    ``block_n`` hidden rows, then its ``block_n`` gate rows (rows past ``I`` zero); ``bias`` likewise
    (zeros for a projection without one)."""

    weight: torch.Tensor
    bias: torch.Tensor
    inner: int
    block_n: int


def pack_geglu(weight: torch.Tensor, bias: torch.Tensor | None, block_n: int = 128) -> PackedGeglu:
    """Pack a GEGLU projection ``[W_h; W_g]`` for :func:`linear_geglu_tma` (once per weight)."""
    two_inner, k = weight.shape
    inner = two_inner // 2
    blocks = -(-inner // block_n)
    if bias is None:
        bias = weight.new_zeros(two_inner)
    w = weight.new_zeros(blocks * block_n, 2, k)
    b = bias.new_zeros(blocks * block_n, 2)
    w[:inner, 0], w[:inner, 1] = weight[:inner], weight[inner:]
    b[:inner, 0], b[:inner, 1] = bias[:inner], bias[inner:]
    w = w.view(blocks, block_n, 2, k).transpose(1, 2).reshape(blocks * 2 * block_n, k).contiguous()
    b = b.view(blocks, block_n, 2).transpose(1, 2).reshape(-1).contiguous()
    return PackedGeglu(w, b, inner, block_n)


def _unpacked_geglu(x: torch.Tensor, packed: PackedGeglu) -> torch.Tensor:
    p = F.linear(x, packed.weight, packed.bias)
    p = p.view(*x.shape[:-1], -1, 2, packed.block_n)
    y = p[..., 0, :] * F.gelu(p[..., 1, :])
    return y.reshape(*x.shape[:-1], -1)[..., : packed.inner]


if triton is not None:

    def _tma_geglu_blocks(nargs):
        bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
        nargs["x_desc"].block_shape = [bm, bk]
        nargs["w_desc"].block_shape = [2 * bn, bk]
        nargs["out_desc"].block_shape = [bm, bn]

    def _tma_geglu_configs():
        # BLOCK_N is the packing's block, not tuned
        return [
            triton.Config(
                {"BLOCK_M": m, "BLOCK_K": k, "PER_SM": p}, num_warps=w, num_stages=s,
                pre_hook=_tma_geglu_blocks,
            )
            for m, k, w, s, p in ((128, 64, 8, 3, 1), (128, 64, 8, 4, 1), (64, 64, 4, 2, 2))
        ]  # fmt: skip

    @triton.autotune(configs=_tma_geglu_configs(), key=["M", "INNER", "K", "BLOCK_N"])
    @triton.jit
    def _geglu_tma_kernel(
        x_desc, w_desc, b_ptr, out_desc, M, INNER,
        K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        PER_SM: tl.constexpr,
    ):  # fmt: skip
        # packed weight: the tile of column block pn is rows [2 BLOCK_N pn, 2 BLOCK_N (pn + 1)), its
        # hidden rows then its gate rows. Loads past the ends of x and w read zeros, stores past the
        # ends of out are dropped (the descriptors' bounds)
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(INNER, BLOCK_N)
        cols2 = tl.arange(0, 2 * BLOCK_N)
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, tl.num_programs(0), flatten=True):
            pm, pn = _tile_of(tile, tiles_m, tiles_n, GROUP=8)
            acc = tl.zeros((BLOCK_M, 2 * BLOCK_N), dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                a = x_desc.load([pm * BLOCK_M, k0])
                w = w_desc.load([pn * 2 * BLOCK_N, k0])
                acc = tl.dot(a, w.T, acc)
            acc += tl.load(b_ptr + pn * 2 * BLOCK_N + cols2).to(tl.float32)[None, :]
            h, g = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N)), (0, 2, 1)))
            y = _gelu_gated(h, g)
            out_desc.store([pm * BLOCK_M, pn * BLOCK_N], y.to(out_desc.dtype))


def linear_geglu_tma(
    x: torch.Tensor, packed: PackedGeglu, config: triton.Config | None = None
) -> torch.Tensor:
    """``geglu(F.linear(x, weight, bias))`` of a projection packed by :func:`pack_geglu`: a persistent
    Triton kernel with tensor-descriptor (TMA) loads and stores on a Hopper GPU (fp16/bf16, ``K`` a
    multiple of 16 up to :data:`MAX_K`, ``I`` a multiple of 8), else torch."""
    k = x.shape[-1]
    inner = packed.inner
    fits = _fits(x, packed.weight, packed.bias) and inner % 8 == 0 and _use_triton(x, packed.weight)
    if fits:
        x2 = x.reshape(-1, k).contiguous()
        out = x2.new_empty(x2.shape[0], inner)
        fits = _tma_ok(x2, packed.weight, out)
    if not fits:
        return _unpacked_geglu(x, packed)
    m = x2.shape[0]
    bn = packed.block_n

    def grid(meta):
        tiles = triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(inner, bn)
        return (_programs(x.device, tiles, meta["PER_SM"]),)

    # block shapes are placeholders until the configuration's pre_hook sets them
    args = dict(
        x_desc=TensorDescriptor.from_tensor(x2, [16, 16]),
        w_desc=TensorDescriptor.from_tensor(packed.weight, [16, 16]),
        b_ptr=packed.bias, out_desc=TensorDescriptor.from_tensor(out, [16, 16]),
        M=m, INNER=inner, K=k, BLOCK_N=bn,
    )  # fmt: skip
    _launch(_geglu_tma_kernel, grid, args, config, _tma_geglu_blocks)
    return out.view(*x.shape[:-1], inner)


if triton is not None:

    def _tma_geglu_split_blocks(nargs):
        bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
        nargs["x_desc"].block_shape = [bm, bk]
        nargs["w_desc"].block_shape = [bn, bk]
        nargs["out_desc"].block_shape = [bm, bn]

    def _tma_geglu_split_configs():
        return [
            triton.Config(
                {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "PER_SM": p}, num_warps=w, num_stages=s,
                pre_hook=_tma_geglu_split_blocks,
            )
            for m, n, k, w, s, p in ((128, 128, 64, 8, 3, 1), (128, 128, 64, 8, 4, 1), (64, 128, 64, 4, 2, 2))
        ]  # fmt: skip

    @triton.autotune(configs=_tma_geglu_split_configs(), key=["M", "INNER", "K"])
    @triton.jit
    def _geglu_tma_split_kernel(
        x_desc, w_desc, b_ptr, out_desc, M, INNER,
        K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        PER_SM: tl.constexpr,
    ):  # fmt: skip
        # the weight as it is, [W_h; W_g]: per step one hidden and one gate tile, two products
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(INNER, BLOCK_N)
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, tl.num_programs(0), flatten=True):
            pm, pn = _tile_of(tile, tiles_m, tiles_n, GROUP=8)
            h = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            g = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                a = x_desc.load([pm * BLOCK_M, k0])
                h = tl.dot(a, w_desc.load([pn * BLOCK_N, k0]).T, h)
                g = tl.dot(a, w_desc.load([INNER + pn * BLOCK_N, k0]).T, g)
            rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
            nmask = rn < INNER
            h += tl.load(b_ptr + rn, mask=nmask, other=0.0).to(tl.float32)[None, :]
            g += tl.load(b_ptr + INNER + rn, mask=nmask, other=0.0).to(tl.float32)[None, :]
            out_desc.store([pm * BLOCK_M, pn * BLOCK_N], _gelu_gated(h, g).to(out_desc.dtype))


def linear_geglu_tma_split(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, config: triton.Config | None = None
) -> torch.Tensor:
    """``geglu(F.linear(x, weight, bias))`` with the weight ``[2I, K]`` as it is (no packing): a
    persistent Triton kernel with tensor-descriptor (TMA) loads and stores on a Hopper GPU (fp16/bf16,
    ``K`` a multiple of 16 up to :data:`MAX_K`, ``I`` a multiple of 8), else torch."""
    k = x.shape[-1]
    inner = weight.shape[0] // 2
    fits = (
        bias is not None and _fits(x, weight, bias) and weight.shape[0] % 2 == 0 and inner % 8 == 0
        and _use_triton(x, weight, bias)
    )  # fmt: skip
    if fits:
        x2, w = x.reshape(-1, k).contiguous(), weight.contiguous()
        out = x2.new_empty(x2.shape[0], inner)
        fits = _tma_ok(x2, w, out)
    if not fits:
        return _gelu_gate(F.linear(x, weight, bias))
    m = x2.shape[0]

    def grid(meta):
        tiles = triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(inner, meta["BLOCK_N"])
        return (_programs(x.device, tiles, meta["PER_SM"]),)

    # block shapes are placeholders until the configuration's pre_hook sets them
    args = dict(
        x_desc=TensorDescriptor.from_tensor(x2, [16, 16]), w_desc=TensorDescriptor.from_tensor(w, [16, 16]),
        b_ptr=bias.contiguous(), out_desc=TensorDescriptor.from_tensor(out, [16, 16]), M=m, INNER=inner, K=k,
    )  # fmt: skip
    _launch(_geglu_tma_split_kernel, grid, args, config, _tma_geglu_split_blocks)
    return out.view(*x.shape[:-1], inner)


if triton is not None:

    def _tma_geglu_paired_blocks(nargs):
        bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
        nargs["x_desc"].block_shape = [bm, bk]
        nargs["w_desc"].block_shape = [2, bn, bk]
        nargs["out_desc"].block_shape = [bm, bn]

    def _tma_geglu_paired_configs():
        return [
            triton.Config(
                {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "PER_SM": p}, num_warps=w, num_stages=s,
                pre_hook=_tma_geglu_paired_blocks,
            )
            for m, n, k, w, s, p in ((128, 128, 64, 8, 3, 1), (128, 128, 64, 8, 4, 1), (64, 128, 64, 4, 2, 2))
        ]  # fmt: skip

    @triton.autotune(configs=_tma_geglu_paired_configs(), key=["M", "INNER", "K"])
    @triton.jit
    def _geglu_tma_paired_kernel(
        x_desc, w_desc, b_ptr, out_desc, M, INNER,
        K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
        PER_SM: tl.constexpr,
    ):  # fmt: skip
        # the weight as it is, seen as [2, INNER, K]: one load brings a column block's hidden and
        # gate tiles ([2, BLOCK_N, BLOCK_K]), one product per step
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(INNER, BLOCK_N)
        cols2 = tl.arange(0, 2 * BLOCK_N)
        gate = cols2 >= BLOCK_N
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, tl.num_programs(0), flatten=True):
            pm, pn = _tile_of(tile, tiles_m, tiles_n, GROUP=8)
            acc = tl.zeros((BLOCK_M, 2 * BLOCK_N), dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                a = x_desc.load([pm * BLOCK_M, k0])
                w = tl.reshape(w_desc.load([0, pn * BLOCK_N, k0]), (2 * BLOCK_N, BLOCK_K))
                acc = tl.dot(a, w.T, acc)
            rn2 = pn * BLOCK_N + tl.where(gate, cols2 - BLOCK_N, cols2)
            bias = tl.load(b_ptr + rn2 + tl.where(gate, INNER, 0), mask=rn2 < INNER, other=0.0)
            acc += bias.to(tl.float32)[None, :]
            h, g = tl.split(tl.permute(tl.reshape(acc, (BLOCK_M, 2, BLOCK_N)), (0, 2, 1)))
            out_desc.store([pm * BLOCK_M, pn * BLOCK_N], _gelu_gated(h, g).to(out_desc.dtype))


def linear_geglu_tma_paired(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, config: triton.Config | None = None
) -> torch.Tensor:
    """``geglu(F.linear(x, weight, bias))`` with the weight ``[2I, K]`` as it is, read through a
    3-d tensor descriptor ``[2, I, K]`` so that one load and one product per step cover the hidden and
    gate columns (Hopper GPU, fp16/bf16, ``K`` a multiple of 16, ``I`` a multiple of 8), else torch."""
    k = x.shape[-1]
    inner = weight.shape[0] // 2
    fits = (
        bias is not None and _fits(x, weight, bias, max_k=1 << 16) and weight.shape[0] % 2 == 0
        and inner % 8 == 0
        and _use_triton(x, weight, bias)
    )  # fmt: skip
    if fits:
        x2, w = x.reshape(-1, k).contiguous(), weight.contiguous()
        out = x2.new_empty(x2.shape[0], inner)
        fits = _tma_ok(x2, w, out)
    if not fits:
        return _gelu_gate(F.linear(x, weight, bias))
    m = x2.shape[0]

    def grid(meta):
        tiles = triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(inner, meta["BLOCK_N"])
        return (_programs(x.device, tiles, meta["PER_SM"]),)

    # block shapes are placeholders until the configuration's pre_hook sets them
    w_desc = TensorDescriptor(w, [2, inner, k], [inner * k, k, 1], [2, 16, 16])
    args = dict(
        x_desc=TensorDescriptor.from_tensor(x2, [16, 16]), w_desc=w_desc, b_ptr=bias.contiguous(),
        out_desc=TensorDescriptor.from_tensor(out, [16, 16]), M=m, INNER=inner, K=k,
    )  # fmt: skip
    _launch(_geglu_tma_paired_kernel, grid, args, config, _tma_geglu_paired_blocks)
    return out.view(*x.shape[:-1], inner)


# ----------------------------------------------------------------------------------------------
# Plain projection (+ bias, + residual in place), persistent, tensor descriptors
# ----------------------------------------------------------------------------------------------

if triton is not None:

    def _tma_linear_blocks(nargs):
        bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
        nargs["x_desc"].block_shape = [bm, bk]
        nargs["w_desc"].block_shape = [bn, bk]
        nargs["out_desc"].block_shape = [bm, bn]
        nargs["r_desc"].block_shape = [bm, bn]

    def _tma_linear_configs():
        # PER_SM 2 where two programs fit a multiprocessor's shared memory (228 KB); with a residual
        # (its tile is staged too) the 128 x 128 one does not, and its tuning drops it
        return [
            triton.Config(
                {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "PER_SM": p}, num_warps=w, num_stages=s,
                pre_hook=_tma_linear_blocks,
            )
            for m, n, k, w, s, p in (
                (128, 128, 64, 8, 3, 1),
                (128, 128, 64, 8, 2, 2),
                (128, 64, 64, 4, 3, 2),
                (64, 128, 64, 4, 3, 2),
            )
        ]  # fmt: skip

    @triton.autotune(configs=_tma_linear_configs(), key=["M", "N", "K", "HAS_BIAS", "HAS_RESIDUAL"])
    @triton.jit
    def _linear_tma_kernel(
        x_desc, w_desc, b_ptr, r_desc, out_desc, M, N,
        K: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_RESIDUAL: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PER_SM: tl.constexpr,
    ):  # fmt: skip
        # out = x @ W^T (+ bias) (+ r), W [N, K]; r and out may be one tensor (each tile is read
        # before it is written, by the same program)
        tiles_m = tl.cdiv(M, BLOCK_M)
        tiles_n = tl.cdiv(N, BLOCK_N)
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, tl.num_programs(0), flatten=True):
            pm, pn = _tile_of(tile, tiles_m, tiles_n, GROUP=8)
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                a = x_desc.load([pm * BLOCK_M, k0])
                w = w_desc.load([pn * BLOCK_N, k0])
                acc = tl.dot(a, w.T, acc)
            if HAS_BIAS:
                rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
                acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
            if HAS_RESIDUAL:
                acc += r_desc.load([pm * BLOCK_M, pn * BLOCK_N]).to(tl.float32)
            out_desc.store([pm * BLOCK_M, pn * BLOCK_N], acc.to(out_desc.dtype))


_TUNED_IN_PLACE: set[tuple] = set()


def _add_linear_torch(residual, x, weight, bias):
    n, k = weight.shape
    total = residual.reshape(-1, n) if bias is None else residual.reshape(-1, n) + bias
    residual.copy_(torch.addmm(total, x.reshape(-1, k), weight.t()).view(residual.shape))
    return residual


def linear_tma(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    residual: torch.Tensor | None = None,
    config: triton.Config | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for ``x [..., K]``, ``weight [N, K]``; with ``residual``
    (``[..., N]``) the product is added to it in place and it is returned (as
    ``residual.addmm_(x, weight.T)``: the sum is rounded once). A persistent Triton kernel with
    tensor-descriptor (TMA) loads and stores on a Hopper GPU (fp16/bf16, ``K`` a multiple of 16 up to
    :data:`MAX_K`, ``N`` a multiple of 8 up to :data:`MAX_N`, a contiguous residual), else torch."""
    k, n = x.shape[-1], weight.shape[0]
    fits = (
        _fits(x, weight, bias)
        and n % 8 == 0
        and n <= MAX_N
        and (residual is None or (residual.dtype == x.dtype and residual.shape == (*x.shape[:-1], n)))
        and (residual is None or residual.is_contiguous())
        and _use_triton(x, weight, *([] if residual is None else [residual]))
    )
    if fits:
        x2, w = x.reshape(-1, k).contiguous(), weight.contiguous()
        out = x2.new_empty(x2.shape[0], n) if residual is None else residual.view(-1, n)
        fits = _tma_ok(x2, w, out)
    if not fits:
        return F.linear(x, weight, bias) if residual is None else _add_linear_torch(residual, x, weight, bias)
    m = x2.shape[0]

    def grid(meta):
        tiles = triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"])
        return (_programs(x.device, tiles, meta["PER_SM"]),)

    # block shapes are placeholders until the configuration's pre_hook sets them
    out_desc = TensorDescriptor.from_tensor(out, [16, 16])
    args = dict(
        x_desc=TensorDescriptor.from_tensor(x2, [16, 16]), w_desc=TensorDescriptor.from_tensor(w, [16, 16]),
        b_ptr=x2 if bias is None else bias.contiguous(), r_desc=out_desc, out_desc=out_desc,
        M=m, N=n, K=k, HAS_BIAS=bias is not None, HAS_RESIDUAL=residual is not None,
    )  # fmt: skip
    key = (m, n, k, bias is not None, x.dtype, x.device)
    if residual is not None and config is None and key not in _TUNED_IN_PLACE:
        # autotuning repeats the call, which would add the product many times: tune on a copy
        scratch = TensorDescriptor.from_tensor(out.clone(), [16, 16])
        _launch(_linear_tma_kernel, grid, {**args, "r_desc": scratch, "out_desc": scratch}, None)
        _TUNED_IN_PLACE.add(key)
    _launch(_linear_tma_kernel, grid, args, config, _tma_linear_blocks)
    return out.view(*x.shape[:-1], n) if residual is None else residual


def _hopper(x: torch.Tensor) -> bool:
    return x.is_cuda and torch.cuda.get_device_capability(x.device)[0] >= 9


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through :func:`linear_tma` for the shapes where it beat cuBLAS on
    an H100 (``bench/small_k_bench.py``): many rows, ``K`` and ``N`` up to 320, with a bias."""
    k, n = x.shape[-1], weight.shape[0]
    if bias is not None and k <= 320 and n <= 320 and x.numel() >= 8192 * k and _hopper(x):
        return linear_tma(x, weight, bias)
    return F.linear(x, weight, bias)


def linear_geglu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """:func:`linear_geglu_tma_paired` where it beat :func:`~amg_model.model.fused.linear_geglu`'s
    one-tile-per-program kernel on an H100 (1.2x at ``K`` 320 and 640, ``bench/small_k_bench.py``);
    None elsewhere, for the caller's kernel."""
    if bias is None or x.shape[-1] > MAX_K or not _hopper(x) or not _use_triton(x, weight, bias):
        return None
    return linear_geglu_tma_paired(x, weight, bias)
