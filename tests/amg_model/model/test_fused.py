"""Fused GroupNorm, LayerNorm and frame/pixel transposes equal their definitions (torch and Triton
versions)."""

import textwrap

import pytest
import torch
from triton_interpreter import require_run_time_loop_bounds, run_interpreted, tiny_unet_script

from amg_model.model import fused


def _reference(x, groups, weight, bias, eps, silu, frames):
    b, s, c = x.shape
    ref = torch.nn.functional.group_norm(x.transpose(1, 2), groups, weight, bias, eps).transpose(1, 2)
    if silu:
        ref = torch.nn.functional.silu(ref)
    if frames:  # rows [F, P] -> [P, F]
        ref = ref.view(b, frames, s // frames, c).transpose(1, 2).reshape(b, s, c)
    return ref


@pytest.mark.parametrize("silu", [False, True])
@pytest.mark.parametrize("frames", [0, 3])
def test_group_norm_tokens_is_group_norm(silu, frames):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3 * 7, 40, generator=g) * 2 + 1
    w, b = torch.randn(40, generator=g), torch.randn(40, generator=g)
    out = fused.group_norm_tokens(x, 4, w, b, 1e-6, silu=silu, swap_frames=frames)
    torch.testing.assert_close(out, _reference(x, 4, w, b, 1e-6, silu, frames), atol=1e-5, rtol=1e-5)


def test_group_norm_tokens_with_an_offset_normalises_the_sum():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 10, 16, generator=g)
    offset = torch.randn(3, 16, generator=g) * 3
    w, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    out = fused.group_norm_tokens(x, 4, w, b, 1e-5, silu=True, offset=offset)
    expected = _reference(x + offset[:, None], 4, w, b, 1e-5, True, 0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_a_group_norm_offset_row_is_shared_by_consecutive_videos():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 5, 16, generator=g)
    offset = torch.randn(2, 16, generator=g) * 3  # rows for videos 0-2 and 3-5
    w, b = torch.randn(16, generator=g), torch.randn(16, generator=g)
    out = fused.group_norm_tokens(x, 4, w, b, 1e-5, offset=offset)
    expected = _reference(x + offset.repeat_interleave(3, 0)[:, None], 4, w, b, 1e-5, False, 0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="does not fit 6 videos of 16 channels"):
        fused.group_norm_tokens(x, 4, w, b, 1e-5, offset=torch.zeros(4, 16))


def test_group_norm_of_a_concatenation_is_the_group_norm_of_the_concatenated_tokens():
    g = torch.Generator().manual_seed(5)
    x, skip = torch.randn(2, 12, 48, generator=g) * 2 + 1, torch.randn(2, 12, 16, generator=g)
    w, b = torch.randn(64, generator=g), torch.randn(64, generator=g)
    out = fused.group_norm_tokens(x, 8, w, b, 1e-5, silu=True, concat=skip)
    expected = _reference(torch.cat([x, skip], dim=2), 8, w, b, 1e-5, True, 0)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot concatenate"):
        fused.group_norm_tokens(x, 8, w, b, 1e-5, concat=skip[:, :6])


def test_add_bias_residual_adds_both_in_place():
    y = torch.randn(2, 6, 3, 5).contiguous(memory_format=torch.channels_last)
    r, bias = torch.randn(2, 6, 3, 5), torch.randn(6)
    expected = y + r + bias.view(1, 6, 1, 1)
    out = fused.add_bias_residual_(y, r, bias)
    assert out is y
    torch.testing.assert_close(y, expected)


def test_linear_geglu_is_the_gated_projection():
    x, w, b = torch.randn(2, 5, 16), torch.randn(24, 16), torch.randn(24)
    p = torch.nn.functional.linear(x, w, b)
    expected = p[..., :12] * torch.nn.functional.gelu(p[..., 12:])
    torch.testing.assert_close(fused.linear_geglu(x, w, b), expected)


def test_geglu_is_gated_gelu():
    p = torch.randn(2, 5, 12)
    torch.testing.assert_close(fused.geglu(p), p[..., :6] * torch.nn.functional.gelu(p[..., 6:]))


def test_add_swapped_adds_the_transposed_rows():
    x, y = torch.randn(2, 3 * 5, 8), torch.randn(2, 5 * 3, 8)
    expected = x.view(2, 3, 5, 8) + y.view(2, 5, 3, 8).transpose(1, 2)
    torch.testing.assert_close(fused.add_swapped(x, y, 3), expected.reshape(2, 15, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_layer_norm_falls_back_to_torch(dtype):
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(2, 7, 40, generator=g) * 2 + 1).to(dtype)
    d = torch.randn(2, 7, 40, generator=g).to(dtype)
    w, b = torch.randn(40, generator=g).to(dtype), torch.randn(40, generator=g).to(dtype)
    ln = torch.nn.functional.layer_norm
    torch.testing.assert_close(fused.layer_norm(x, w, b, 1e-5), ln(x, (40,), w, b, 1e-5), atol=0, rtol=0)
    s, y = fused.add_layer_norm(x, d, w, b, 1e-5)
    torch.testing.assert_close(s, x + d, atol=0, rtol=0)
    torch.testing.assert_close(y, ln(x + d, (40,), w, b, 1e-5), atol=0, rtol=0)
    later = torch.randn(40, generator=g)  # a later layer's bias, carried by the stored residual
    s2, y2 = fused.add_layer_norm(x, d, w, b, 1e-5, stored_bias=later)
    torch.testing.assert_close(s2, x + d + later.to(dtype), atol=0, rtol=0)
    assert torch.equal(y2, y)
    with pytest.raises(ValueError, match="stored_bias of shape \\(41,\\) does not fit rows of 40"):
        fused.add_layer_norm(x, d, w, b, 1e-5, stored_bias=torch.zeros(41))


def test_transformer_block_with_fused_norms_is_the_same_function():
    """On a CPU the fused-norm block is the unfused one and diffusers' (its last residual add
    happens inside the output projection's matrix product: equal up to float rounding)."""
    from diffusers.models.attention import BasicTransformerBlock

    from amg_model.model.channels_last import _transformer_block, sdpa_attention

    torch.manual_seed(0)
    block = BasicTransformerBlock(40, 2, 20, cross_attention_dim=16, activation_fn="geglu").eval()
    with torch.no_grad():
        for norm in (block.norm1, block.norm2, block.norm3):
            norm.weight.normal_(1.0, 0.3)
            norm.bias.normal_(0.0, 0.3)
        x, ctx = torch.randn(3, 10, 40) * 2 + 1, torch.randn(3, 7, 16)
        fused_out = _transformer_block(block, x, ctx, sdpa_attention, 1, fused_norms=True)
        plain = _transformer_block(block, x, ctx, sdpa_attention, 1, fused_norms=False)
        expected = block(x, encoder_hidden_states=ctx)
    torch.testing.assert_close(fused_out, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_out, expected, atol=1e-5, rtol=1e-5)


_INTERPRETED = textwrap.dedent(
    """
    import torch
    from amg_model.model import fused
    assert fused.triton is not None
    fused._use_triton = lambda *tensors: True  # run the kernels (interpreted) on CPU tensors
    def worse(a, b):  # the larger error; a NaN is kept (max() would drop it)
        return b if b != b or b > a else a
    torch.manual_seed(0)
    worst, concats = 0.0, 0
    # the last: 70 chunks of 64 rows per video (more than one block of chunks, not a power of two)
    for b, f, p, c, g in [(2, 3, 7, 48, 4), (1, 2, 5, 20, 2), (2, 4, 9, 200, 8), (1, 70, 64, 8, 2)]:
        x = torch.randn(b, f * p, c) * 2 + 1
        w, bias = torch.randn(c), torch.randn(c)
        for silu in (False, True):
            for swap in (0, f):
                out = fused.group_norm_tokens(x, g, w, bias, 1e-6, silu, swap)
                ref = torch.nn.functional.group_norm(x.transpose(1, 2), g, w, bias, 1e-6).transpose(1, 2)
                ref = torch.nn.functional.silu(ref) if silu else ref
                if swap:
                    ref = ref.view(b, f, p, c).transpose(1, 2).reshape(b, f * p, c)
                worst = worse(worst, (out - ref).abs().max().item())
        if c % 16 == 0:  # the channel concatenation of x and a second part, never written
            for c2 in (16, 48):
                x2, w2, bias2 = torch.randn(b, f * p, c2) - 1, torch.randn(c + c2), torch.randn(c + c2)
                out = fused.group_norm_tokens(x, g, w2, bias2, 1e-6, True, 0, concat=x2)
                both = torch.cat([x, x2], 2).transpose(1, 2)
                ref = torch.nn.functional.group_norm(both, g, w2, bias2, 1e-6)
                worst = worse(worst, (out - torch.nn.functional.silu(ref.transpose(1, 2))).abs().max().item())
                concats += 1
        offset = torch.randn(b, c) * 3
        out = fused.group_norm_tokens(x, g, w, bias, 1e-6, True, 0, offset)
        ref = torch.nn.functional.group_norm((x + offset[:, None]).transpose(1, 2), g, w, bias, 1e-6)
        worst = worse(worst, (out - torch.nn.functional.silu(ref.transpose(1, 2))).abs().max().item())
        row = torch.randn(1, c) * 3  # one row for all videos, as a broadcast view (stride 0)
        out = fused.group_norm_tokens(x, g, w, bias, 1e-6, False, 0, row.expand(b, c))
        ref = torch.nn.functional.group_norm((x + row[:, None]).transpose(1, 2), g, w, bias, 1e-6)
        worst = worse(worst, (out - ref.transpose(1, 2)).abs().max().item())
        out = fused.group_norm_tokens(x, g, w, bias, 1e-6, False, 0, row)
        worst = worse(worst, (out - ref.transpose(1, 2)).abs().max().item())
        cl = torch.channels_last
        y4 = torch.randn(b, c, f, p).contiguous(memory_format=cl)
        r4, bias4 = torch.randn(b, c, f, p).contiguous(memory_format=cl), torch.randn(c)
        expected = y4 + r4 + bias4.view(1, c, 1, 1)
        worst = worse(worst, (fused.add_bias_residual_(y4, r4, bias4) - expected).abs().max().item())
        y = torch.randn(b, p * f, c)
        expected = (x.view(b, f, p, c) + y.view(b, p, f, c).transpose(1, 2)).reshape(b, f * p, c)
        worst = worse(worst, (fused.add_swapped(x, y, f) - expected).abs().max().item())
        proj = torch.randn(b, p, 2 * c)
        gated = proj[..., :c] * torch.nn.functional.gelu(proj[..., c:])
        worst = worse(worst, (fused.geglu(proj) - gated).abs().max().item())
    # the residual add's channel sums per frame (blocks of 32 or 16 rows within a frame), or None
    for n, c, h, w in [(3, 40, 4, 4), (2, 24, 8, 8), (2, 8, 3, 7)]:
        y4 = torch.randn(n, c, h, w).contiguous(memory_format=cl)
        r4, b4 = torch.randn(n, c, h, w).contiguous(memory_format=cl), torch.randn(c)
        expected = y4 + r4 + b4.view(1, c, 1, 1)
        out, sums = fused.add_bias_residual_and_sums_(y4, r4, b4)
        worst = worse(worst, (out - expected).abs().max().item())
        assert (sums is None) == ((h * w) % 16 != 0)
        if sums is not None:
            tokens = expected.permute(0, 2, 3, 1).reshape(n, h * w, c)
            pairs = (sums.sums.sum(1), tokens.sum(1)), (sums.squares.sum(1), tokens.square().sum(1))
            for got, ref in pairs:
                worst = worse(worst, ((got - ref).abs() / (1 + ref.abs())).max().item())
    print(worst, concats)
    worst_ln = {torch.float32: 0.0, torch.float16: 0.0}  # of |out - ref| / (1 + |ref|)
    for shape in [(3, 7, 40), (13, 320), (1, 320)]:  # rows not a multiple of the programs' rows
        c = shape[-1]
        for dtype in worst_ln:
            x = (torch.randn(shape) * 2 + 1).to(dtype)
            d = torch.randn(shape).to(dtype)
            w, bias = torch.randn(c) * 0.5 + 1, torch.randn(c)
            ref = torch.nn.functional.layer_norm(x.float(), (c,), w, bias, 1e-5)
            err = (fused.layer_norm(x, w, bias, 1e-5).float() - ref).abs() / (1 + ref.abs())
            worst_ln[dtype] = worse(worst_ln[dtype], err.max().item())
            s, y = fused.add_layer_norm(x, d, w, bias, 1e-5)
            assert s.dtype == dtype and y.dtype == dtype and y.shape == x.shape
            assert torch.equal(s, x + d), "the sum is rounded as torch rounds it"
            later = torch.randn(c)
            s2, y2 = fused.add_layer_norm(x, d, w, bias, 1e-5, stored_bias=later)
            assert torch.equal(y2, y), "the later bias is not normalised"
            assert torch.equal(s2, ((x + d).float() + later).to(dtype))
            ref = torch.nn.functional.layer_norm((x + d).float(), (c,), w, bias, 1e-5)
            err = (y.float() - ref).abs() / (1 + ref.abs())
            worst_ln[dtype] = worse(worst_ln[dtype], err.max().item())
    print(worst_ln[torch.float32], worst_ln[torch.float16])

    # a transformer block (stand-in modules) with the fused norms against the LayerNorm modules
    from types import SimpleNamespace as NS
    from amg_model.model.channels_last import _transformer_block, sdpa_attention
    def attn(dim, source):
        lin = lambda i, o: torch.nn.Linear(i, o, bias=False)
        return NS(to_q=lin(dim, dim), to_k=lin(source, dim), to_v=lin(source, dim),
                  to_out=[torch.nn.Linear(dim, dim)], heads=2)
    def norm(dim):
        n = torch.nn.LayerNorm(dim)
        torch.nn.init.normal_(n.weight, 1.0, 0.3)
        torch.nn.init.normal_(n.bias, 0.0, 0.3)
        return n
    block = NS(norm1=norm(40), norm2=norm(40), norm3=norm(40), attn1=attn(40, 40), attn2=attn(40, 16),
               ff=NS(net=[NS(proj=torch.nn.Linear(40, 160)), None, torch.nn.Linear(80, 40)]))
    with torch.no_grad():
        x, ctx = torch.randn(3, 10, 40) * 2 + 1, torch.randn(3, 7, 16)
        out = _transformer_block(block, x, ctx, sdpa_attention, 1, fused_norms=True)
        ref = _transformer_block(block, x, ctx, sdpa_attention, 1, fused_norms=False)
    print((out - ref).abs().max().item())
    """
)


def test_triton_kernels_under_the_interpreter():
    """The Triton kernels themselves (run by Triton's CPU interpreter) give GroupNorm, LayerNorm and the
    transposes."""
    pytest.importorskip("triton")
    lines = run_interpreted(_INTERPRETED)
    worst, concats = lines[-3].split()
    assert float(worst) < 1e-5
    assert int(concats) == 2  # GroupNorms of a concatenation through the kernels
    worst_fp32, worst_fp16 = map(float, lines[-2].split())
    assert worst_fp32 < 1e-5
    assert worst_fp16 < 2e-3
    assert float(lines[-1]) < 1e-4  # the transformer block with fused norms


_INTERPRETED_UNET = tiny_unet_script(
    "norm_num_groups=8",  # fewer interpreted programs
    """
    launches = {"group_norm": 0, "geglu": 0}
    group_norm_tokens, linear_geglu = fused.group_norm_tokens, small_k.linear_geglu
    def count(name, fn):
        def counted(*args, **kwargs):
            launches[name] += 1
            return fn(*args, **kwargs)
        return counted
    channels_last.group_norm_tokens = count("group_norm", group_norm_tokens)
    small_k.linear_geglu = count("geglu", linear_geglu)
    """,
    'launches["group_norm"], launches["geglu"]',
)


def test_unet_through_the_kernels_under_the_interpreter():
    """The tiny UNet through the channels-last forward with the Triton kernels (Triton's CPU
    interpreter, fp16: GroupNorm, LayerNorm, GEGLU, projections, residual adds) matches diffusers'
    float32 forward."""
    require_run_time_loop_bounds()  # the persistent projection kernels
    pytest.importorskip("diffusers")
    group_norms, geglus, err = run_interpreted(_INTERPRETED_UNET)[-1].split()
    assert int(group_norms) > 0 and int(geglus) > 0  # the kernels' paths were taken
    assert float(err) < 1e-2


_INTERPRETED_GEMM = textwrap.dedent(
    """
    import torch
    from amg_model.model import fused
    def worse(a, b):  # the larger error; a NaN is kept (max() would drop it)
        return b if b != b or b > a else a
    fused._use_triton = lambda *tensors: True
    kernel = fused._linear_geglu_kernel.fn  # small fixed tiles instead of the autotuned ones
    class Fixed:
        def __getitem__(self, grid):
            return lambda *a, **k: kernel[grid](*a, **k, BLOCK_M=16, BLOCK_N=16, BLOCK_K=16)
    fused._linear_geglu_kernel = Fixed()
    torch.manual_seed(0)
    worst = 0.0  # of |out - ref| / (1 + |ref|)
    for m, k, inner in [(37, 32, 24), (16, 48, 16), (5, 16, 40)]:  # partial tiles in every direction
        x = torch.randn(m, k).half()
        w = (torch.randn(2 * inner, k) / k**0.5).half()
        b = torch.randn(2 * inner).half()
        out = fused.linear_geglu(x, w, b)
        p = x.float() @ w.float().T + b.float()
        ref = p[:, :inner] * torch.nn.functional.gelu(p[:, inner:])
        assert out.shape == (m, inner) and out.dtype == torch.float16
        worst = worse(worst, ((out.float() - ref).abs() / (1 + ref.abs())).max().item())
    print(worst)
    """
)


def test_linear_geglu_kernel_under_the_interpreter():
    """The matrix-product kernel with the GEGLU epilogue (Triton's CPU interpreter, fp16 inputs)."""
    pytest.importorskip("triton")
    assert float(run_interpreted(_INTERPRETED_GEMM)[-1]) < 2e-3


@pytest.mark.skipif(not torch.cuda.is_available() or fused.triton is None, reason="needs CUDA and Triton")
@pytest.mark.parametrize(
    "m, k, inner", [(32768, 320, 1280), (8192, 640, 2560), (2048, 1280, 5120), (77, 320, 40)]
)
@pytest.mark.parametrize("kernel", ["linear_geglu", "_linear_geglu_one_tile"])
def test_linear_geglu_on_cuda_matches_torch(m, k, inner, kernel):
    # linear_geglu takes small_k's persistent kernel on Hopper; the one-tile kernel serves other GPUs
    torch.manual_seed(0)
    x = torch.randn(m, k, device="cuda").half()
    w = (torch.randn(2 * inner, k, device="cuda") / k**0.5).half()
    b = torch.randn(2 * inner, device="cuda").half()
    p = x.float() @ w.float().T + b.float()
    ref = p[:, :inner] * torch.nn.functional.gelu(p[:, inner:])
    out = getattr(fused, kernel)(x, w, b).float()
    assert ((out - ref).abs() / (1 + ref.abs())).max() < 1e-2


@pytest.mark.skipif(not torch.cuda.is_available() or fused.triton is None, reason="needs CUDA and Triton")
def test_triton_kernels_on_cuda_match_the_torch_versions():
    torch.manual_seed(0)
    x = (torch.randn(2, 16 * 64, 320, device="cuda") * 2 + 1).half()
    w, b = torch.randn(320, device="cuda"), torch.randn(320, device="cuda")
    for silu in (False, True):
        for frames in (0, 16):
            out = fused.group_norm_tokens(x, 32, w, b, 1e-6, silu, frames).float()
            ref = _reference(x.float(), 32, w, b, 1e-6, silu, frames)
            assert (out - ref).abs().max() < 1e-2 * ref.abs().max()
    y = torch.randn(2, 64 * 16, 320, device="cuda").half()
    expected = x.view(2, 16, 64, 320) + y.view(2, 64, 16, 320).transpose(1, 2)
    torch.testing.assert_close(fused.add_swapped(x, y, 16), expected.reshape(x.shape))
    proj = torch.randn(2, 1024, 2560, device="cuda").half()
    gated = proj[..., :1280].float() * torch.nn.functional.gelu(proj[..., 1280:].float())
    torch.testing.assert_close(fused.geglu(proj).float(), gated, atol=2e-3, rtol=2e-3)
    offset = torch.randn(2, 320, device="cuda")
    out = fused.group_norm_tokens(x, 32, w, b, 1e-6, True, 0, offset).float()
    ref = _reference(x.float() + offset[:, None], 32, w, b, 1e-6, True, 0)
    assert (out - ref).abs().max() < 1e-2 * ref.abs().max()
    skip = torch.randn(2, 16 * 64, 640, device="cuda").half()  # an up block's skip connection
    w3, b3 = torch.randn(960, device="cuda"), torch.randn(960, device="cuda")
    out = fused.group_norm_tokens(x, 32, w3, b3, 1e-6, True, concat=skip).float()
    ref = _reference(torch.cat([x, skip], 2).float(), 32, w3, b3, 1e-6, True, 0)
    assert (out - ref).abs().max() < 1e-2 * ref.abs().max()


@pytest.mark.skipif(not torch.cuda.is_available() or fused.triton is None, reason="needs CUDA and Triton")
@pytest.mark.parametrize("c", [320, 640, 1280, 40])
def test_layer_norm_kernels_on_cuda_match_torch(c):
    torch.manual_seed(0)
    x = (torch.randn(1000, c, device="cuda") * 2 + 1).half()
    d = torch.randn(1000, c, device="cuda").half()
    w = (torch.randn(c, device="cuda") * 0.5 + 1).half()
    b = torch.randn(c, device="cuda").half()
    ref = torch.nn.functional.layer_norm(x.float(), (c,), w.float(), b.float(), 1e-5)
    torch.testing.assert_close(fused.layer_norm(x, w, b, 1e-5).float(), ref, atol=2e-2, rtol=2e-3)
    s, y = fused.add_layer_norm(x, d, w, b, 1e-5)
    assert torch.equal(s, x + d)
    ref = torch.nn.functional.layer_norm((x + d).float(), (c,), w.float(), b.float(), 1e-5)
    torch.testing.assert_close(y.float(), ref, atol=2e-2, rtol=2e-3)
    later = torch.randn(c, device="cuda").half()
    s2, y2 = fused.add_layer_norm(x, d, w, b, 1e-5, stored_bias=later)
    assert torch.equal(y2, y) and torch.equal(s2, ((x + d).float() + later.float()).half())
    x32 = x.float().view(10, 100, c)
    ref = torch.nn.functional.layer_norm(x32, (c,), w.float(), b.float(), 1e-5)
    torch.testing.assert_close(fused.layer_norm(x32, w.float(), b.float(), 1e-5), ref, atol=1e-5, rtol=1e-5)
