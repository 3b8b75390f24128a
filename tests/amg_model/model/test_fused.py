"""Fused GroupNorm and frame/pixel transposes equal their definitions (torch and Triton versions)."""

import textwrap

import pytest
import torch
from triton_interpreter import run_interpreted

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


def test_geglu_is_gated_gelu():
    p = torch.randn(2, 5, 12)
    torch.testing.assert_close(fused.geglu(p), p[..., :6] * torch.nn.functional.gelu(p[..., 6:]))


def test_add_swapped_adds_the_transposed_rows():
    x, y = torch.randn(2, 3 * 5, 8), torch.randn(2, 5 * 3, 8)
    expected = x.view(2, 3, 5, 8) + y.view(2, 5, 3, 8).transpose(1, 2)
    torch.testing.assert_close(fused.add_swapped(x, y, 3), expected.reshape(2, 15, 8))


_INTERPRETED = textwrap.dedent(
    """
    import torch
    from amg_model.model import fused
    assert fused.triton is not None
    fused._use_triton = lambda *tensors: True  # run the kernels (interpreted) on CPU tensors
    torch.manual_seed(0)
    worst = 0.0
    for b, f, p, c, g in [(2, 3, 7, 40, 4), (1, 2, 5, 20, 2), (2, 4, 9, 200, 8)]:
        x = torch.randn(b, f * p, c) * 2 + 1
        w, bias = torch.randn(c), torch.randn(c)
        for silu in (False, True):
            for swap in (0, f):
                out = fused.group_norm_tokens(x, g, w, bias, 1e-6, silu, swap)
                ref = torch.nn.functional.group_norm(x.transpose(1, 2), g, w, bias, 1e-6).transpose(1, 2)
                ref = torch.nn.functional.silu(ref) if silu else ref
                if swap:
                    ref = ref.view(b, f, p, c).transpose(1, 2).reshape(b, f * p, c)
                worst = max(worst, (out - ref).abs().max().item())
        offset = torch.randn(b, c) * 3
        out = fused.group_norm_tokens(x, g, w, bias, 1e-6, True, 0, offset)
        ref = torch.nn.functional.group_norm((x + offset[:, None]).transpose(1, 2), g, w, bias, 1e-6)
        worst = max(worst, (out - torch.nn.functional.silu(ref.transpose(1, 2))).abs().max().item())
        y = torch.randn(b, p * f, c)
        expected = (x.view(b, f, p, c) + y.view(b, p, f, c).transpose(1, 2)).reshape(b, f * p, c)
        worst = max(worst, (fused.add_swapped(x, y, f) - expected).abs().max().item())
        proj = torch.randn(b, p, 2 * c)
        gated = proj[..., :c] * torch.nn.functional.gelu(proj[..., c:])
        worst = max(worst, (fused.geglu(proj) - gated).abs().max().item())
    print(worst)
    """
)


def test_triton_kernels_under_the_interpreter():
    """The Triton kernels themselves (run by Triton's CPU interpreter) give GroupNorm and the transposes."""
    pytest.importorskip("triton")
    assert float(run_interpreted(_INTERPRETED)) < 1e-5


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
