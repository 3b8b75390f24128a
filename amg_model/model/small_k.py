"""Persistent Triton kernels for matrix products with few input channels (``K`` of 320 or 640).

The UNet's token projections at the highest resolutions are ``[rows, K] x [K, N]`` products with
``K`` of 320 or 640: a few k-steps per output tile, so a kernel of one program per tile spends
much of its time in each tile's prologue (the first loads) and epilogue. The kernels here are
persistent (one program per multiprocessor, or two, looping over output tiles in a grouped order)
with tensor-descriptor (TMA) loads and stores: the software pipeliner issues the next tile's first
loads while the current tile finishes.

* :func:`linear`: what the UNet calls for its token projections: :func:`linear_tma` for the
  shapes where it beat cuBLAS on an H100 (``[32768, 320] x [320, 320] + bias``: 24 us against 33),
  else ``F.linear``.
* :func:`linear_tma`: ``x @ W^T + b`` for ``N <= 640``.
* :func:`linear_geglu_tma_paired`: a GEGLU projection ``geglu(x @ W^T + b)`` read through a
  ``[2, I, K]`` view of the weight as it is (one load and one product per step over the hidden and
  gate columns): 1.2x faster than the one-tile-per-program GEGLU kernel of
  :mod:`~amg_model.model.fused` on an H100 at ``K`` 320, 640 and 1280 (``bench/small_k_bench.py``).
  :func:`~amg_model.model.fused.linear_geglu` hands it the product through :func:`linear_geglu`.
  (A persistent variant with pointer loads, a packed copy of the weight and two products per step
  were measured too, see ``bench/RESULTS.md``: none beat it.)

Each equals its torch definition with fp32 accumulation; where its kernel does not run (CPU,
``torch.compile`` tracing, other dtypes or shapes, GPUs before Hopper) the torch version runs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from amg_model.model import cublaslt

try:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # CPU-only installs: the torch versions below are used
    triton = None

MAX_K = 640  # of :func:`linear_tma`
MAX_N = 640  # of :func:`linear_tma`
GEGLU_MAX_K = 1280  # of :func:`linear_geglu`: the UNet's largest, where the kernel still won


def _use_triton(*tensors: torch.Tensor) -> bool:
    if triton is None or torch.compiler.is_compiling():
        return False
    return all(t.is_cuda for t in tensors)


def _fits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, max_k: int | None = None) -> bool:
    """Whether a kernel takes these operands: fp16/bf16 alike, ``K`` a multiple of 16 (up to
    ``max_k``), CUDA tensors where Triton runs."""
    k = x.shape[-1]
    return (
        x.dtype in (torch.float16, torch.bfloat16)
        and weight.dtype == x.dtype
        and (bias is None or bias.dtype == x.dtype)
        and weight.dim() == 2
        and weight.shape[1] == k
        and (bias is None or bias.shape == weight.shape[:1])
        and k % 16 == 0
        and (max_k is None or k <= max_k)
        and x.numel() > 0
        and _use_triton(x, weight, *([] if bias is None else [bias]))
    )


def _tma_ok(*tensors: torch.Tensor) -> bool:
    """Tensor descriptors: a Hopper or newer GPU, 16-byte aligned bases and rows."""
    if tensors[0].is_cuda and torch.cuda.get_device_capability(tensors[0].device)[0] < 9:
        return False
    return all(t.data_ptr() % 16 == 0 and (t.stride(0) * t.element_size()) % 16 == 0 for t in tensors)


@functools.cache
def _multiprocessors(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def multiprocessors(device: torch.device) -> int:
    """The streaming multiprocessors of a CUDA device (1 elsewhere)."""
    return _multiprocessors(device.index or 0) if device.type == "cuda" else 1


def _persistent_grid(device: torch.device, rows: int, cols: int):
    """The launch grid of a persistent kernel over a ``[rows, cols]`` output: ``PER_SM`` programs per
    multiprocessor, at most one per tile (off CUDA, in Triton's interpreter, one multiprocessor: each
    program loops over several tiles)."""
    sms = multiprocessors(device)

    def grid(meta):
        tiles = triton.cdiv(rows, meta["BLOCK_M"]) * triton.cdiv(cols, meta["BLOCK_N"])
        return (max(1, min(tiles, meta["PER_SM"] * sms)),)

    return grid


def _launch(kernel, grid, args: dict, config: triton.Config | None, set_blocks) -> None:
    """``kernel`` (autotuned) on ``args``, or with the fixed ``config`` (tests, benchmarks);
    ``set_blocks`` gives the tensor descriptors the configuration's block shapes."""
    if config is None:
        kernel[grid](**args)
        return
    full = {**args, **config.kwargs}
    set_blocks(full)
    kernel.fn[grid](**full, num_warps=config.num_warps, num_stages=config.num_stages)


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
        # h * gelu(g) = h * g * Phi(g), the exact (erf) GELU to float32 rounding: with x = |g| / sqrt(2),
        # g * Phi(g) = g - g * erfc(x) / 2 for g >= 0 and g * erfc(x) / 2 below, erfc by Abramowitz &
        # Stegun 7.1.26 (|error| <= 1.5e-7) with one reciprocal square root and one exponential and no
        # branches (libdevice's erff picks its polynomial per element: about twice the instructions,
        # and the GEGLU kernels' epilogues run them for every element of their tiles)
        x = tl.abs(g) * 0.7071067811865476
        r = tl.rsqrt(1.0 + 0.3275911 * x)  # 1 / (1 + p x) as r * r: no range checks (it is >= 1)
        t = r * r
        p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
        half = 0.5 * g * (p * tl.exp2(x * x * -1.4426950408889634))
        return h * tl.where(g >= 0.0, g - half, half)


# ----------------------------------------------------------------------------------------------
# GEGLU projection, persistent, tensor descriptors
# ----------------------------------------------------------------------------------------------

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
    out = _geglu_paired(x, weight, bias, config)
    if out is None:
        hidden, gate = F.linear(x, weight, bias).chunk(2, dim=-1)
        out = hidden * F.gelu(gate)
    return out


def _geglu_paired(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, config: triton.Config | None
) -> torch.Tensor | None:
    """The paired kernel's GEGLU projection, or None where it cannot take the operands."""
    k = x.shape[-1]
    inner = weight.shape[0] // 2
    if bias is None or not _fits(x, weight, bias) or weight.shape[0] % 2 or inner % 8:
        return None
    x2, w = x.reshape(-1, k).contiguous(), weight.contiguous()
    out = x2.new_empty(x2.shape[0], inner)
    if not _tma_ok(x2, w, out):
        return None
    m = x2.shape[0]
    # block shapes are placeholders until the configuration's pre_hook sets them
    w_desc = TensorDescriptor(w, [2, inner, k], [inner * k, k, 1], [2, 16, 16])
    args = dict(
        x_desc=TensorDescriptor.from_tensor(x2, [16, 16]), w_desc=w_desc, b_ptr=bias.contiguous(),
        out_desc=TensorDescriptor.from_tensor(out, [16, 16]), M=m, INNER=inner, K=k,
    )  # fmt: skip
    grid = _persistent_grid(x.device, m, inner)
    _launch(_geglu_tma_paired_kernel, grid, args, config, _tma_geglu_paired_blocks)
    return out.view(*x.shape[:-1], inner)


# ----------------------------------------------------------------------------------------------
# Plain projection (+ bias), persistent, tensor descriptors
# ----------------------------------------------------------------------------------------------

if triton is not None:

    def _tma_linear_blocks(nargs):
        bm, bn, bk = nargs["BLOCK_M"], nargs["BLOCK_N"], nargs["BLOCK_K"]
        nargs["x_desc"].block_shape = [bm, bk]
        nargs["w_desc"].block_shape = [bn, bk]
        nargs["out_desc"].block_shape = [bm, bn]

    def _tma_linear_configs():
        # PER_SM 2 where two programs fit a multiprocessor's shared memory (228 KB)
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

    @triton.autotune(configs=_tma_linear_configs(), key=["M", "N", "K", "HAS_BIAS"])
    @triton.jit
    def _linear_tma_kernel(
        x_desc, w_desc, b_ptr, out_desc, M, N,
        K: tl.constexpr, HAS_BIAS: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PER_SM: tl.constexpr,
    ):  # fmt: skip
        # out = x @ W^T (+ bias), W [N, K]
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
            out_desc.store([pm * BLOCK_M, pn * BLOCK_N], acc.to(out_desc.dtype))


def linear_tma(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    config: triton.Config | None = None,
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for ``x [..., K]``, ``weight [N, K]``: a persistent Triton kernel
    with tensor-descriptor (TMA) loads and stores on a Hopper GPU (fp16/bf16, ``K`` a multiple of 16 up
    to :data:`MAX_K`, ``N`` a multiple of 8 up to :data:`MAX_N`), else torch."""
    k, n = x.shape[-1], weight.shape[0]
    fits = _fits(x, weight, bias, MAX_K) and n % 8 == 0 and n <= MAX_N
    if fits:
        x2, w = x.reshape(-1, k).contiguous(), weight.contiguous()
        out = x2.new_empty(x2.shape[0], n)
        fits = _tma_ok(x2, w, out)
    if not fits:
        return F.linear(x, weight, bias)
    m = x2.shape[0]
    # block shapes are placeholders until the configuration's pre_hook sets them
    args = dict(
        x_desc=TensorDescriptor.from_tensor(x2, [16, 16]), w_desc=TensorDescriptor.from_tensor(w, [16, 16]),
        b_ptr=x2 if bias is None else bias.contiguous(), out_desc=TensorDescriptor.from_tensor(out, [16, 16]),
        M=m, N=n, K=k, HAS_BIAS=bias is not None,
    )  # fmt: skip
    _launch(_linear_tma_kernel, _persistent_grid(x.device, m, n), args, config, _tma_linear_blocks)
    return out.view(*x.shape[:-1], n)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through :func:`linear_tma` for the shapes where it beat cuBLAS on
    an H100 (``bench/small_k_bench.py``): many rows, ``K`` and ``N`` up to 320, with a bias (elsewhere,
    and where that kernel does not run, ``F.linear``)."""
    k, n = x.shape[-1], weight.shape[0]
    if bias is not None and k <= 320 and n <= 320 and x.numel() >= 8192 * k:
        return linear_tma(x, weight, bias)
    return cublaslt.linear(x, weight, bias)


def linear_geglu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor | None:
    """:func:`linear_geglu_tma_paired` where it beat :mod:`~amg_model.model.fused`'s
    one-tile-per-program GEGLU kernel on an H100 (1.2x at ``K`` 320, 640 and 1280,
    ``bench/small_k_bench.py``); None where it does not run, for the caller's kernel."""
    return _geglu_paired(x, weight, bias, None) if x.shape[-1] <= GEGLU_MAX_K else None
