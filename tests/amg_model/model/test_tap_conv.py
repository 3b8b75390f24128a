"""The tap-convolution kernel (``amg_model.model.tap_conv``) equals torch's convolutions: its torch
fallbacks, the Triton kernel under Triton's CPU interpreter, and on CUDA at the UNet's shapes."""

import collections
import textwrap

import pytest
import torch
import torch.nn.functional as F
from triton_interpreter import (
    ROUTE_EVERY_CONVOLUTION,
    require_run_time_loop_bounds,
    run_interpreted,
    tiny_unet_script,
)

from amg_model.model import tap_conv


def _temporal_reference(x, weight, frames):
    n, c, h, w = x.shape
    x5 = x.float().view(n // frames, frames, c, h, w).transpose(1, 2)
    y = F.conv3d(x5, weight.float(), padding=(1, 0, 0))  # [B, Cout, F, H, W]
    return y.transpose(1, 2).reshape(n, -1, h, w)


def test_torch_versions_are_the_convolutions():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 16, 5, 7, generator=g).contiguous(memory_format=torch.channels_last)
    w = torch.randn(8, 16, 3, 3, generator=g)
    b = torch.randn(8, generator=g)
    torch.testing.assert_close(tap_conv.conv3x3(x, w, b), F.conv2d(x, w, b, padding=1))
    wt = torch.randn(8, 16, 3, 1, 1, generator=g)
    out = tap_conv.temporal_conv3(x, wt, frames=3)
    torch.testing.assert_close(out, _temporal_reference(x, wt, 3))
    assert out.is_contiguous(memory_format=torch.channels_last)


def _unet_convolution_keys() -> collections.Counter:
    """The tap kernel's problem keys of every 3x3 and 3x1x1 convolution that the channels-last forward of
    the real-size UNet asks :func:`measured_config` about, for one guided 16-frame 256x256 call (meta
    tensors: shapes only)."""
    diffusers = pytest.importorskip("diffusers")
    from amg_model.model import channels_last

    with torch.device("meta"):
        unet = diffusers.UNet3DConditionModel(in_channels=8, out_channels=4).half()
    channels_last.to_channels_last(unet)
    keys = collections.Counter()

    def record(x, weight, bias=None, frames=None):
        keys[tap_conv.problem_key(tuple(x.shape), tuple(weight.shape), frames)] += 1
        return None

    sample = torch.empty(2, 8, 16, 32, 32, device="meta", dtype=torch.half)
    context = torch.empty(2, 77, 1024, device="meta", dtype=torch.half)
    saved, channels_last.measured_config = channels_last.measured_config, record
    try:
        channels_last.unet_forward(
            unet, sample.contiguous(memory_format=torch.channels_last_3d), torch.tensor([500, 500]),
            context, input_copies=2,
        )  # fmt: skip
    finally:
        channels_last.measured_config = saved
    return keys


def test_measured_table_holds_convolutions_of_the_unet():
    """Every shape of the table of convolutions measured faster than cuDNN is one the UNet's forward
    makes (with guidance's shared first layers), so a change of the forward's shapes cannot silently
    leave every convolution with cuDNN; 68 of its 3x3 and 3x1x1 convolutions take the kernel."""
    keys = _unet_convolution_keys()
    assert set(tap_conv.FASTER_THAN_CUDNN) <= set(keys)
    assert sum(keys[k] for k in tap_conv.FASTER_THAN_CUDNN) == 20 + 20 + 16 + 4 + 6 + 1 + 1
    assert sum(keys.values()) > 100  # the rest stay with cuDNN


def test_measured_config_only_for_the_table(monkeypatch):
    """A listed shape gets its configuration where the kernel runs; an unlisted shape, or a GPU where
    the kernel does not run, gets None (torch's convolution)."""
    pytest.importorskip("triton")
    x = torch.empty(32, 1280, 8, 8, device="meta", dtype=torch.half)
    temporal = torch.empty(1280, 1280, 3, 1, 1, device="meta", dtype=torch.half)
    spatial = torch.empty(1280, 1280, 3, 3, device="meta", dtype=torch.half)
    assert tap_conv.measured_config(x, temporal, frames=16) is None  # CPU: the kernel does not run
    monkeypatch.setattr(tap_conv, "tap_conv_applies", lambda *tensors: True)
    config = tap_conv.measured_config(x, temporal, frames=16)
    assert (config.kwargs["BLOCK_N"], config.num_warps, config.num_stages) == (256, 8, 3)
    assert tap_conv.measured_config(x, spatial) is None  # 3x3 at 8x8 pixels: cuDNN was faster
    assert tap_conv.measured_config(x, temporal, frames=8) is None  # another frame count


_INTERPRETED = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    import triton
    from amg_model.model import small_k, tap_conv
    small_k._use_triton = lambda *tensors: True  # run the kernel (interpreted) on CPU tensors
    tap_conv.BLOCK_M = 32  # tiles of 32 positions: several per frame, boxes overhanging the edges
    launches = []
    tap = tap_conv._tap_conv
    tap_conv._tap_conv = lambda *a, **k: launches.append(1) or tap(*a, **k)
    def worse(a, b):  # the larger error; a NaN is kept (max() would drop it)
        return b if b != b or b > a else a
    def rel(out, ref):
        return ((out.float() - ref).abs() / (1 + ref.abs())).max().item()
    fixed = triton.Config(dict(BLOCK_N=16, BLOCK_K=64, PER_SM=2), num_warps=4, num_stages=2,
                          pre_hook=tap_conv._tap_conv_blocks)
    torch.manual_seed(0)
    worst = 0.0
    cl = torch.channels_last
    # frames x channels x height x width -> output channels; heights and widths not powers of two
    # (the last: 8 frames per tile, the second tile overhanging the 10 frames)
    cases = [(3, 64, 4, 8, 24, True), (2, 128, 5, 3, 16, False), (1, 64, 8, 8, 40, True)]
    cases.append((10, 64, 2, 2, 16, False))
    for n, c, h, w, cout, bias in cases:
        x = torch.randn(n, c, h, w).half().contiguous(memory_format=cl)
        wt = (torch.randn(cout, c, 3, 3) / (9 * c) ** 0.5).half().contiguous(memory_format=cl)
        b = torch.randn(cout).half() if bias else None
        out = tap_conv.conv3x3(x, wt, b, config=fixed)
        ref = F.conv2d(x.float(), wt.float(), None if b is None else b.float(), padding=1)
        assert out.shape == ref.shape and out.is_contiguous(memory_format=cl)
        worst = worse(worst, rel(out, ref))
    for b, f, c, h, w, cout in [(2, 5, 64, 4, 4, 24), (1, 16, 64, 2, 3, 16)]:
        x = torch.randn(b * f, c, h, w).half().contiguous(memory_format=cl)
        wt = (torch.randn(cout, c, 3, 1, 1) / (3 * c) ** 0.5).half()
        wt = wt.contiguous(memory_format=torch.channels_last_3d)
        out = tap_conv.temporal_conv3(x, wt, f, config=fixed)
        x5 = x.float().view(b, f, c, h, w).transpose(1, 2)
        ref = F.conv3d(x5, wt.float(), padding=(1, 0, 0)).transpose(1, 2).reshape(b * f, cout, h, w)
        assert out.shape == ref.shape and out.is_contiguous(memory_format=cl)
        worst = worse(worst, rel(out, ref))
    # channel sums from the kernel's tiles: per frame (3x3) and per video (3x1x1), each equal to the
    # output's own sums, and the GroupNorm taking them equals the one computing them
    from amg_model.model import fused
    fused._use_triton = lambda *tensors: True
    worst_sums = worst_norm = 0.0
    def once(kernel_call, quantiles):  # autotuning: one call per configuration, the first is chosen
        kernel_call()
        return [1.0, 1.0, 1.0]
    tap_conv._tap_conv_kernel._do_bench = once
    for n, c, h, w, frames in [(10, 64, 2, 2, 0), (3, 64, 5, 3, 0), (10, 64, 4, 4, 5), (16, 64, 2, 3, 16)]:
        x = torch.randn(n, c, h, w).half().contiguous(memory_format=cl)
        if frames:
            wt = (torch.randn(24, c, 3, 1, 1) / (3 * c) ** 0.5).half()
            wt = wt.contiguous(memory_format=torch.channels_last_3d)
            out, sums = tap_conv.temporal_conv3_and_sums(x, wt, frames)
        else:
            wt = (torch.randn(24, c, 3, 3) / (9 * c) ** 0.5).half().contiguous(memory_format=cl)
            out, sums = tap_conv.conv3x3_and_sums(x, wt)
        videos = n // (frames or 1)
        tokens = out.permute(0, 2, 3, 1).reshape(videos, -1, 24)  # as the GroupNorm sees it
        if frames:  # the sums of the float32 convolution
            x5 = x.float().view(videos, frames, c, h, w).transpose(1, 2)
            exact = F.conv3d(x5, wt.float(), padding=(1, 0, 0))
            exact = exact.permute(0, 2, 3, 4, 1).reshape(videos, -1, 24)
        else:
            exact = F.conv2d(x.float(), wt.float(), padding=1).permute(0, 2, 3, 1).reshape(videos, -1, 24)
        ref = exact.sum(1), exact.square().sum(1)
        got = sums.sums.sum(1), sums.squares.sum(1)
        assert sums.sums.shape[0] == videos
        for a, b in zip(got, ref):
            worst_sums = worse(worst_sums, ((a - b).abs() / (1 + b.abs())).max().item())
        g_w, g_b = torch.randn(24), torch.randn(24)
        with_sums = fused.group_norm_tokens(tokens, 4, g_w, g_b, 1e-5, True, 0, None, sums)
        without = fused.group_norm_tokens(tokens, 4, g_w, g_b, 1e-5, True, 0, None)
        worst_norm = worse(worst_norm, (with_sums.float() - without.float()).abs().max().item())
    print(len(launches))
    print(worst, worst_sums, worst_norm)
    """
)


def test_tap_kernel_under_the_interpreter():
    """The Triton kernel (Triton's CPU interpreter, fp16): 3x3 and 3x1x1 convolutions with their
    zero padding from the tensor descriptors' out-of-bounds fill."""
    require_run_time_loop_bounds()
    launches, errors = run_interpreted(_INTERPRETED)[-2:]
    worst, worst_sums, worst_norm = map(float, errors.split())
    assert int(launches) == 10  # every case ran the kernel, none fell back to torch
    assert worst < 2e-3  # NaN fails too
    assert worst_sums < 1e-4
    assert worst_norm < 1e-2  # fp16 outputs of nearly the same statistics


_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available() or tap_conv.triton is None, reason="needs CUDA and Triton"
)


def _rel_err(out, ref):
    return ((out.float() - ref).abs() / (1 + ref.abs())).max().item()


@_CUDA
@pytest.mark.parametrize(
    "n, c, h, w, cout, bias",
    [(32, 320, 32, 32, 320, False), (32, 640, 16, 16, 640, False), (32, 1280, 8, 8, 1280, True),
     (32, 2560, 4, 4, 1280, False), (32, 960, 32, 32, 320, False)],
)  # fmt: skip
def test_conv3x3_on_cuda_at_the_unet_shapes(n, c, h, w, cout, bias):
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, device="cuda").half().contiguous(memory_format=torch.channels_last)
    wt = (torch.randn(cout, c, 3, 3, device="cuda") / (9 * c) ** 0.5).half()
    wt = wt.contiguous(memory_format=torch.channels_last)
    b = torch.randn(cout, device="cuda").half() if bias else None
    out = tap_conv.conv3x3(x, wt, b)
    ref = F.conv2d(x.float(), wt.float(), None if b is None else b.float(), padding=1)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert _rel_err(out, ref) < 1e-2


@_CUDA
@pytest.mark.parametrize("b, f, c, h, w", [(2, 16, 320, 32, 32), (2, 16, 640, 16, 16), (2, 16, 1280, 4, 4)])
def test_temporal_conv3_on_cuda_at_the_unet_shapes(b, f, c, h, w):
    torch.manual_seed(0)
    x = torch.randn(b * f, c, h, w, device="cuda").half().contiguous(memory_format=torch.channels_last)
    wt = (torch.randn(c, c, 3, 1, 1, device="cuda") / (3 * c) ** 0.5).half()
    wt = wt.contiguous(memory_format=torch.channels_last_3d)
    out = tap_conv.temporal_conv3(x, wt, f)
    assert _rel_err(out, _temporal_reference(x, wt, f)) < 1e-2


@_CUDA
@pytest.mark.parametrize(
    "n, c, h, w, frames", [(32, 320, 32, 32, 0), (32, 1280, 4, 4, 0), (32, 320, 32, 32, 16)]
)
def test_channel_sums_on_cuda_at_the_unet_shapes(n, c, h, w, frames):
    torch.manual_seed(0)
    x = torch.randn(n, c, h, w, device="cuda").half().contiguous(memory_format=torch.channels_last)
    if frames:
        wt = (torch.randn(c, c, 3, 1, 1, device="cuda") / (3 * c) ** 0.5).half()
        wt = wt.contiguous(memory_format=torch.channels_last_3d)
        out, sums = tap_conv.temporal_conv3_and_sums(x, wt, frames)
        exact = _temporal_reference(x, wt, frames)
    else:
        wt = (torch.randn(c, c, 3, 3, device="cuda") / (9 * c) ** 0.5).half()
        wt = wt.contiguous(memory_format=torch.channels_last)
        out, sums = tap_conv.conv3x3_and_sums(x, wt)
        exact = F.conv2d(x.float(), wt.float(), padding=1)
    videos = n // (frames or 1)
    exact = exact.permute(0, 2, 3, 1).reshape(videos, -1, c)
    for got, ref in ((sums.sums.sum(1), exact.sum(1)), (sums.squares.sum(1), exact.square().sum(1))):
        assert ((got - ref).abs() / (1 + ref.abs())).max() < 1e-3


_INTERPRETED_LAYER = textwrap.dedent(
    """
    import torch
    from diffusers.models.resnet import TemporalConvLayer
    from amg_model.model import channels_last, fused, small_k, tap_conv
    small_k._use_triton = fused._use_triton = lambda *tensors: True  # the kernels, interpreted
    def once(kernel_call, quantiles):  # autotuning: one call per configuration
        kernel_call()
        return [1.0, 1.0, 1.0]
    tap_conv._tap_conv_kernel._do_bench = once
    {route}
    torch.manual_seed(0)
    videos, frames, c, h, w = 2, 3, 64, 4, 4
    layer = TemporalConvLayer(c, c, norm_num_groups=32).eval()
    for p in layer.parameters():  # diffusers zero-initialises the last convolution
        p.data.normal_(0.0, 0.2)
    cl = torch.channels_last
    y = torch.randn(videos * frames, c, h, w).contiguous(memory_format=cl)
    r, bias = torch.randn(videos * frames, c, h, w).contiguous(memory_format=cl), torch.randn(c)
    with torch.no_grad():
        ref = layer(y + r + bias.view(1, c, 1, 1), num_frames=frames)  # float32, diffusers
        channels_last.to_channels_last(layer.half())
        x, sums = fused.add_bias_residual_and_sums_(y.half(), r.half(), bias.half())
        with_sums = channels_last.temporal_conv_layer(layer, x.clone(), frames, sums)
        without = channels_last.temporal_conv_layer(layer, x.clone(), frames)
    scale = ref.abs().max().item()
    print(sums is not None, (with_sums.float() - ref).abs().max().item() / scale,
          (without.float() - ref).abs().max().item() / scale)
    """
).replace("{route}\n", ROUTE_EVERY_CONVOLUTION.lstrip("\n"))


def test_temporal_layer_with_the_kernels_channel_sums_under_the_interpreter():
    """diffusers' TemporalConvLayer through the tap kernel, the residual kernel's channel sums and the
    GroupNorms that take them (Triton's CPU interpreter, fp16) matches diffusers' float32 layer."""
    require_run_time_loop_bounds()
    pytest.importorskip("diffusers")
    had_sums, err_with, err_without = run_interpreted(_INTERPRETED_LAYER)[-1].split()
    assert had_sums == "True"
    assert float(err_with) < 1e-2
    assert float(err_without) < 1e-2


_INTERPRETED_UNET = tiny_unet_script(
    # 64 and 128 channels (the tap kernel's multiples of 64), 8 groups (fewer interpreted programs)
    "block_out_channels=(64, 128), attention_head_dim=32, norm_num_groups=8",
    ROUTE_EVERY_CONVOLUTION
    + textwrap.dedent(
        """
        norms = {True: 0, False: 0}  # GroupNorms given channel sums, and not
        group_norm_tokens = channels_last.group_norm_tokens
        def counted(*args, **kwargs):
            norms[kwargs.get("sums") is not None] += 1
            return group_norm_tokens(*args, **kwargs)
        channels_last.group_norm_tokens = counted
        """
    ),
    "norms[True], norms[False]",
)


def test_unet_through_the_kernels_under_the_interpreter():
    """A small UNet (64 and 128 channels) through the channels-last forward with the Triton kernels
    (Triton's CPU interpreter, fp16) matches diffusers' float32 forward, with the GroupNorms after
    the tap convolutions and the residual adds taking the kernels' channel sums."""
    require_run_time_loop_bounds()
    pytest.importorskip("diffusers")
    with_sums, without, err = run_interpreted(_INTERPRETED_UNET)[-1].split()
    # 8 ResNet blocks: norm2 after conv1; 8 temporal layers: norm1 after the residual, norms 2-4 after
    # their convolutions; 4 spatial transformers after a temporal layer's residual
    assert int(with_sums) == 8 + 8 * 4 + 4
    assert int(without) > 0  # the rest: after a concatenation, a transformer or a strided convolution
    assert float(err) < 1e-2
