"""Stride-1 convolutions as implicit matrix products over tensor descriptors (Hopper GPUs).

A convolution with ``T1 x T2`` taps over the middle two dimensions of a channels-last array
``[N, D1, D2, C]`` is a matrix product with ``K = T1 * T2 * C``: for each tap, the input block
shifted by the tap's offset times that tap's ``[Cout, C]`` weight slice. A tensor descriptor (TMA)
loads the shifted block directly, and fills what falls outside the array with zeros, which is
the convolution's zero padding; no unfolded copy of the input is made. Two layers of the UNet
take this form:

* :func:`conv3x3`: the ResNet blocks' and upsamplers' 3x3 convolutions (taps over height and
  width, frames as ``N``);
* :func:`temporal_conv3`: the temporal layers' 3x1x1 convolutions (taps over frames, the video's
  pixels as ``D2``).

The ``_and_sums`` variants also return the output's channel sums per frame or video, summed per tile
in the kernel's epilogue, so that the GroupNorm that follows need not read the output for its
statistics (:class:`~amg_model.model.fused.ChannelSums`).

The UNet sends a convolution here only where the kernel made the guided call faster than cuDNN
(:func:`measured_config`, :data:`FASTER_THAN_CUDNN`); the others stay with torch.

One persistent program per multiprocessor (or two) loops over output tiles of 128 positions and
``BLOCK_N`` output channels. Both equal their torch convolution (the UNet adds most biases in
passes it already makes) with float32 accumulation; where the kernel does not run (CPU,
``torch.compile`` tracing, other dtypes, channels not a multiple of 64, GPUs before Hopper) the
torch convolution runs.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from amg_model.model import small_k
from amg_model.model.fused import ChannelSums

try:
    import triton
    import triton.language as tl
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # CPU-only installs: the torch versions below are used
    triton = None

BLOCK_M = 128  # output positions per tile


def _box(n0: int, d1: int, d2: int) -> tuple[int, int, int]:
    """The ``[BF, B1, B2]`` box of one tile's ``BLOCK_M`` positions (powers of two; a box may
    overhang the array: its loads read zeros there and its stores are clipped)."""
    b2 = min(triton.next_power_of_2(d2), BLOCK_M)
    b1 = min(triton.next_power_of_2(d1), BLOCK_M // b2)
    return BLOCK_M // (b1 * b2), b1, b2


if triton is not None:

    def _tap_conv_blocks(nargs):
        bf, b1, b2 = nargs["BF"], nargs["B1"], nargs["B2"]
        nargs["x_desc"].block_shape = [bf, b1, b2, nargs["BLOCK_K"]]
        nargs["w_desc"].block_shape = [nargs["BLOCK_N"], nargs["BLOCK_K"]]
        nargs["out_desc"].block_shape = [bf, b1, b2, nargs["BLOCK_N"]]

    def _tap_conv_configs():
        return [
            triton.Config(
                {"BLOCK_N": n, "BLOCK_K": 64, "PER_SM": p}, num_warps=w, num_stages=s,
                pre_hook=_tap_conv_blocks,
            )
            for n, w, s, p in ((128, 8, 3, 1), (128, 8, 4, 1), (64, 4, 3, 2), (256, 8, 3, 1))
        ]  # fmt: skip

    @triton.autotune(
        configs=_tap_conv_configs(), key=["N0", "D1", "D2", "CIN", "COUT", "T1", "T2", "HAS_BIAS", "SUMS"]
    )
    @triton.jit
    def _tap_conv_kernel(
        x_desc, w_desc, b_ptr, out_desc, sum_ptr, sq_ptr, N0, COUT,
        HAS_BIAS: tl.constexpr, SUMS: tl.constexpr,
        D1: tl.constexpr, D2: tl.constexpr, CIN: tl.constexpr, T1: tl.constexpr, T2: tl.constexpr,
        BF: tl.constexpr, B1: tl.constexpr, B2: tl.constexpr,
        BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PER_SM: tl.constexpr,
    ):  # fmt: skip
        # out[f, y, x, :] = sum over taps (i, j) of x[f, y + i - T1 // 2, x + j - T2 // 2, :] @ W_ij^T,
        # W [COUT, T1 * T2 * CIN] (tap-major, as channels-last convolution weights are stored)
        tiles_1 = tl.cdiv(D1, B1)
        tiles_2 = tl.cdiv(D2, B2)
        tiles_m = tl.cdiv(N0, BF) * tiles_1 * tiles_2
        tiles_n = tl.cdiv(COUT, BLOCK_N)
        for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, tl.num_programs(0), flatten=True):
            pm, pn = small_k._tile_of(tile, tiles_m, tiles_n, GROUP=8)
            f0 = (pm // (tiles_1 * tiles_2)) * BF
            y0 = ((pm // tiles_2) % tiles_1) * B1
            x0 = (pm % tiles_2) * B2
            # the transposed product (out^T = W x^T): as the second operand of the product the
            # [BF, B1, B2, BLOCK_K] block is reshaped in shared memory; as the first, Triton 3.6
            # copies it through registers and serialises the tensor-core instructions
            acc = tl.zeros((BLOCK_N, BF * B1 * B2), dtype=tl.float32)
            for kk in range(0, T1 * T2 * CIN, BLOCK_K):
                tap = kk // CIN
                a = x_desc.load([f0, y0 + tap // T2 - T1 // 2, x0 + tap % T2 - T2 // 2, kk % CIN])
                w = w_desc.load([pn * BLOCK_N, kk])
                acc = tl.dot(w, tl.reshape(a, (BF * B1 * B2, BLOCK_K)).T, acc)
            if HAS_BIAS:
                rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
                acc += tl.load(b_ptr + rn, mask=rn < COUT, other=0.0).to(tl.float32)[:, None]
            if SUMS:  # per output channel and first index (frame or video): sums over the tile
                pos = tl.arange(0, BF * B1 * B2)
                inside = (f0 + pos // (B1 * B2) < N0) & (y0 + (pos // B2) % B1 < D1) & (x0 + pos % B2 < D2)
                v = tl.reshape(tl.where(inside[None, :], acc, 0.0), (BLOCK_N, BF, B1 * B2))
                rn = pn * BLOCK_N + tl.arange(0, BLOCK_N)
                fi = f0 + tl.arange(0, BF)
                # [N0, chunks, COUT], a chunk per tile position within the first index
                offs = (fi[None, :] * (tiles_1 * tiles_2) + pm % (tiles_1 * tiles_2)) * COUT + rn[:, None]
                mask = (rn < COUT)[:, None] & (fi < N0)[None, :]
                tl.store(sum_ptr + offs, tl.sum(v, axis=2), mask=mask)
                tl.store(sq_ptr + offs, tl.sum(v * v, axis=2), mask=mask)
            out = tl.reshape(acc.T.to(out_desc.dtype), (BF, B1, B2, BLOCK_N))
            out_desc.store([f0, y0, x0, pn * BLOCK_N], out)


def tap_conv_applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether :func:`conv3x3` or :func:`temporal_conv3` can run the tap kernel for channels-last
    ``x [N, C, H, W]`` and ``weight [Cout, C, ...]`` (else they run torch's convolution)."""
    c, cout = x.shape[1], weight.shape[0]
    return (
        small_k._use_triton(x, weight, *([] if bias is None else [bias]))
        and x.dtype in (torch.float16, torch.bfloat16)
        and weight.dtype == x.dtype
        and (bias is None or (bias.dtype == x.dtype and bias.shape == (cout,)))
        and c % 64 == 0
        and cout % 8 == 0
        and x.numel() > 0
    )


# The UNet's convolutions where the tap kernel was faster than cuDNN on an H100 (one 16-frame 256x256
# clip with guidance; `bench/tap_conv_bench.py`, `bench/RESULTS.md`), with the configuration autotuning
# chose there: (T1, T2, N0, D1, D2, C, Cout) -> (BLOCK_N, num_warps, num_stages). One is slower alone but
# faster in the graph: cuDNN puts a memset node before each of its calls there, and the tap kernel
# writes the next GroupNorm's channel sums. At the UNet's other convolutions cuDNN was as fast or faster
# (by up to 2x at 4x4 pixels), so they stay with torch.
FASTER_THAN_CUDNN = {
    (3, 1, 2, 16, 256, 640, 640): (128, 8, 4),  # 1.06x, 20 per UNet call
    (3, 1, 2, 16, 64, 1280, 1280): (256, 8, 3),  # 1.12x, 20
    (3, 1, 2, 16, 1024, 320, 320): (128, 8, 4),  # 0.90x, 16: cuDNN's memset node before each
    (3, 1, 1, 16, 1024, 320, 320): (128, 8, 4),  # 1.16x, 4 (before guidance's branches split)
    (3, 3, 32, 16, 16, 640, 640): (128, 8, 4),  # 1.09x, 6
    (3, 3, 32, 16, 16, 1280, 1280): (128, 8, 4),  # 1.09x, 1
    (3, 3, 32, 32, 32, 640, 640): (128, 8, 4),  # 1.15x, 1
}


def problem_key(x_shape: tuple, weight_shape: tuple, frames: int | None = None) -> tuple:
    """``(T1, T2, N0, D1, D2, C, Cout)`` of the tap kernel for a convolution of ``x [N, C, H, W]`` by
    ``weight [Cout, C, 3, 3]`` or, with ``frames``, ``[Cout, C, 3, 1, 1]`` (over frames)."""
    n, c, h, w = x_shape
    if frames:
        return (3, 1, n // frames, frames, h * w, c, weight_shape[0])
    return (3, 3, n, h, w, c, weight_shape[0])


def measured_config(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, frames: int | None = None
) -> triton.Config | None:
    """The tap kernel's configuration where it runs and was measured faster than cuDNN for this
    convolution (:data:`FASTER_THAN_CUDNN`); None: use torch's convolution."""
    choice = FASTER_THAN_CUDNN.get(problem_key(tuple(x.shape), tuple(weight.shape), frames))
    if choice is None or not tap_conv_applies(x, weight, bias):
        return None
    return _config(*choice)


@functools.cache
def _config(block_n: int, warps: int, stages: int) -> triton.Config:
    return triton.Config(
        {"BLOCK_N": block_n, "BLOCK_K": 64, "PER_SM": 1}, num_warps=warps, num_stages=stages,
        pre_hook=_tap_conv_blocks,
    )  # fmt: skip


def _tap_conv(
    x4: torch.Tensor,
    w2: torch.Tensor,
    bias: torch.Tensor | None,
    taps: tuple[int, int],
    config: triton.Config | None,
    sums: bool = False,
) -> tuple[torch.Tensor, ChannelSums | None] | None:
    """``[N, D1, D2, C]`` (contiguous) and ``[Cout, T1 * T2 * C]`` (+ ``bias [Cout]``) ->
    ``[N, D1, D2, Cout]`` and, with ``sums``, its channel sums per ``N`` index in chunks; None where
    tensor descriptors cannot take the operands."""
    n0, d1, d2, c = x4.shape
    cout = w2.shape[0]
    out = x4.new_empty(n0, d1, d2, cout)
    if not small_k._tma_ok(x4.view(-1, c), w2, out.view(-1, cout)):
        return None
    bf, b1, b2 = _box(n0, d1, d2)
    chunks = triton.cdiv(d1, b1) * triton.cdiv(d2, b2) if sums else 1
    channel_sums = ChannelSums(*torch.empty(2, n0, chunks, cout, device=x4.device, dtype=torch.float32))
    # block shapes are placeholders until the configuration's pre_hook sets them
    args = dict(
        x_desc=TensorDescriptor.from_tensor(x4, [1, 1, 1, 16]),
        w_desc=TensorDescriptor.from_tensor(w2, [16, 16]), b_ptr=w2 if bias is None else bias.contiguous(),
        HAS_BIAS=bias is not None, sum_ptr=channel_sums.sums, sq_ptr=channel_sums.squares, SUMS=sums,
        out_desc=TensorDescriptor.from_tensor(out, [1, 1, 1, 16]), N0=n0, COUT=cout, D1=d1, D2=d2, CIN=c,
        T1=taps[0], T2=taps[1], BF=bf, B1=b1, B2=b2,
    )  # fmt: skip
    sms = small_k.multiprocessors(x4.device)
    tiles = triton.cdiv(n0, bf) * triton.cdiv(d1, b1) * triton.cdiv(d2, b2)

    def grid(meta):
        return (max(1, min(tiles * triton.cdiv(cout, meta["BLOCK_N"]), meta["PER_SM"] * sms)),)

    small_k._launch(_tap_conv_kernel, grid, args, config, _tap_conv_blocks)
    return out, (channel_sums if sums else None)


def conv3x3(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    config: triton.Config | None = None,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=1)`` for channels-last ``x [N, C, H, W]`` and ``weight
    [Cout, C, 3, 3]``, channels-last out. The tap kernel on a Hopper GPU (fp16/bf16, ``C`` a multiple
    of 64), else torch."""
    return conv3x3_and_sums(x, weight, bias, config, sums=False)[0]


def conv3x3_and_sums(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    config: triton.Config | None = None,
    sums: bool = True,
) -> tuple[torch.Tensor, ChannelSums | None]:
    """:func:`conv3x3`, and (with ``sums``) the output's channel sums per frame (``[N, chunks, Cout]``,
    for the GroupNorm that follows) from the kernel's tiles; None where the kernel does not run."""
    if tap_conv_applies(x, weight, bias) and weight.shape[2:] == (3, 3):
        n, c, h, w = x.shape
        x4 = x.permute(0, 2, 3, 1)  # [N, H, W, C], no copy when x is channels-last
        w2 = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], 9 * c)
        done = _tap_conv(x4.contiguous(), w2.contiguous(), bias, (3, 3), config, sums=sums)
        if done is not None:
            return done[0].permute(0, 3, 1, 2), done[1]
    return F.conv2d(x, weight, bias, padding=1), None


def temporal_conv3(
    x: torch.Tensor, weight: torch.Tensor, frames: int, config: triton.Config | None = None
) -> torch.Tensor:
    """The ``(3, 1, 1)`` convolution over frames (zero padding 1, no bias) of channels-last frames
    ``x [B * frames, C, H, W]`` with ``weight [Cout, C, 3, 1, 1]``, as ``[B * frames, Cout, H, W]``
    channels-last. The tap kernel on a Hopper GPU (fp16/bf16, ``C`` a multiple of 64), else torch."""
    return temporal_conv3_and_sums(x, weight, frames, config, sums=False)[0]


def temporal_conv3_and_sums(
    x: torch.Tensor,
    weight: torch.Tensor,
    frames: int,
    config: triton.Config | None = None,
    sums: bool = True,
) -> tuple[torch.Tensor, ChannelSums | None]:
    """:func:`temporal_conv3`, and (with ``sums``) the output's channel sums per video
    (``[B, chunks, Cout]``, for the GroupNorm that follows) from the kernel's tiles; None where the
    kernel does not run."""
    n, c, h, w = x.shape
    cout = weight.shape[0]
    if tap_conv_applies(x, weight) and weight.shape[2:] == (3, 1, 1):
        x4 = x.permute(0, 2, 3, 1).reshape(n // frames, frames, h * w, c)
        w2 = weight.permute(0, 2, 3, 4, 1).reshape(cout, 3 * c)
        done = _tap_conv(x4.contiguous(), w2.contiguous(), None, (3, 1), config, sums=sums)
        if done is not None:
            return done[0].view(n, h, w, cout).permute(0, 3, 1, 2), done[1]
    x5 = x.permute(0, 2, 3, 1).reshape(n // frames, frames, h, w, c).permute(0, 4, 1, 2, 3)  # NDHWC
    y = F.conv3d(x5, weight, None, padding=(1, 0, 0))  # [B, Cout, F, H, W]
    y = y.contiguous(memory_format=torch.channels_last_3d).permute(0, 2, 1, 3, 4)  # [B, F, Cout, H, W]
    return y.reshape(n, cout, h, w), None
