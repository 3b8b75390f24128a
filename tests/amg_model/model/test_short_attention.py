"""Short-sequence attention equals scaled_dot_product_attention (torch fallback and Triton kernel)."""

import textwrap

import pytest
import torch
from triton_interpreter import run_interpreted

from amg_model.model import channels_last, short_attention
from amg_model.model.attention import sdpa_attention


def _reference(q, k, v, heads):
    """Per-head ``softmax(q k^T / sqrt(d)) v`` in float64, spelled out."""
    n, lq, c = q.shape
    d = c // heads
    q, k, v = (t.double().unflatten(-1, (heads, d)).transpose(1, 2) for t in (q, k, v))
    w = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, dim=-1)
    return (w @ v).transpose(1, 2).reshape(n, lq, c)


@pytest.mark.parametrize("frames, heads", [(8, 2), (16, 5), (24, 1)])
def test_torch_version_is_sdpa_on_strided_chunks(frames, heads):
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(frames)
    c = 16 * heads
    q, k, v = torch.randn(7, frames, 3 * c, generator=g).chunk(3, dim=-1)
    out = short_attention.short_attention(q, k, v, heads)
    assert out.shape == (7, frames, c) and out.is_contiguous()
    split = [t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v)]
    sdpa = torch.nn.functional.scaled_dot_product_attention(*split).transpose(1, 2).reshape(7, frames, c)
    torch.testing.assert_close(out, sdpa)
    torch.testing.assert_close(out.double(), _reference(q, k, v, heads), atol=1e-5, rtol=1e-5)


def test_temporal_attention_keeps_the_given_attention_on_the_cpu():
    torch.set_num_threads(1)
    q, k, v = torch.randn(4, 16, 3 * 64).chunk(3, dim=-1)
    calls = []

    def given(q, k, v, heads):
        calls.append(heads)
        return torch.zeros_like(q)

    out = channels_last.temporal_attention(given)(q, k, v, 4)
    assert calls == [4] and not out.any()


_INTERPRETED = textwrap.dedent(
    """
    import torch
    from amg_model.model import short_attention as sa
    from amg_model.model.attention import sdpa_attention
    torch.set_num_threads(1)
    assert sa.triton is not None
    sa._use_triton = lambda *tensors: True  # run the kernel (interpreted) on CPU tensors
    torch.manual_seed(0)
    worst = {torch.float32: 0.0, torch.float16: 0.0}
    cases = [(8, 3, 64), (16, 2, 64), (24, 1, 64), (16, 2, 8), (5, 2, 40)]  # frames, heads, head width
    for dtype in worst:
        for frames, heads, d in cases:
            c = heads * d
            q, k, v = torch.randn(6, frames, 3 * c).to(dtype).chunk(3, dim=-1)  # strided views
            assert sa.short_attention_applies(q, k, v, heads)
            out = sa.short_attention(q, k, v, heads)
            assert out.shape == q.shape and out.dtype == dtype and out.is_contiguous()
            ref = sdpa_attention(q.float(), k.float(), v.float(), heads)
            worst[dtype] = max(worst[dtype], (out.float() - ref).abs().max().item())
        # cross-attention shapes (Lq != Lk) and a non-unit channel stride
        q = torch.randn(3, 8, 2 * 64, 2).to(dtype)[..., 0]
        k, v = torch.randn(3, 13, 4 * 64).to(dtype).chunk(2, dim=-1)
        ref = sdpa_attention(q.float(), k.float(), v.float(), 2)
        worst[dtype] = max(worst[dtype], (sa.short_attention(q, k, v, 2).float() - ref).abs().max().item())
    # few keys, many queries in blocks (the last one partial): the cross-attention to text tokens
    for lq, lk in [(150, 13), (64, 77)]:
        q = torch.randn(2, lq, 2 * 32).half()
        k, v = torch.randn(2, lk, 4 * 32).half().chunk(2, dim=-1)
        assert sa.few_keys_attention_applies(q, k, v, 2)
        out = sa.few_keys_attention(q, k, v, 2)
        ref = sdpa_attention(q.float(), k.float(), v.float(), 2)
        assert out.shape == q.shape
        worst[torch.float16] = max(worst[torch.float16], (out.float() - ref).abs().max().item())
    print(worst[torch.float32], worst[torch.float16])
    """
)


def test_triton_kernel_under_the_interpreter():
    """The Triton kernel itself (run by Triton's CPU interpreter) gives SDPA's result in fp32 and fp16.

    bfloat16 is not checked here: the interpreter's ``tl.dot`` gives wrong results for bfloat16.
    """
    pytest.importorskip("triton")
    fp32, fp16 = map(float, run_interpreted(_INTERPRETED)[-1].split())
    assert fp32 < 1e-5 and fp16 < 2e-3


@pytest.mark.skipif(
    not torch.cuda.is_available() or short_attention.triton is None, reason="needs CUDA and Triton"
)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_triton_kernel_on_cuda_matches_sdpa(dtype):
    torch.manual_seed(0)
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float32: 2e-5}[dtype]
    for n, frames, c in [(2 * 1024, 16, 320), (2 * 64, 16, 1280), (300, 8, 640), (50, 24, 320), (9, 64, 128)]:
        q, k, v = torch.randn(n, frames, 3 * c, device="cuda", dtype=dtype).chunk(3, dim=-1)
        heads = c // 64
        assert short_attention.short_attention_applies(q, k, v, heads)
        out = short_attention.short_attention(q, k, v, heads)
        assert out.shape == q.shape and out.dtype == dtype and out.is_contiguous()
        assert (out.double() - _reference(q, k, v, heads)).abs().max().item() < tol
        if dtype != torch.float32:  # both round to half precision: twice the tolerance
            sdpa = sdpa_attention(q, k, v, heads)
            assert (out.float() - sdpa.float()).abs().max().item() < 2 * tol


@pytest.mark.skipif(
    not torch.cuda.is_available() or short_attention.triton is None, reason="needs CUDA and Triton"
)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_few_keys_kernel_on_cuda_matches_sdpa(dtype):
    """Cross-attention shapes: a video's 16 frames of queries at each UNet level, 77 text keys."""
    torch.manual_seed(1)
    tol = {torch.float16: 2e-3, torch.bfloat16: 2e-2}[dtype]
    for n, lq, c in [(2, 16 * 1024, 320), (2, 16 * 256, 640), (2, 16 * 64, 1280), (2, 16 * 16 + 5, 1280)]:
        q = torch.randn(n, lq, c, device="cuda", dtype=dtype)
        k, v = torch.randn(n, 77, 2 * c, device="cuda", dtype=dtype).chunk(2, dim=-1)
        heads = c // 64
        assert short_attention.few_keys_attention_applies(q, k, v, heads)
        out = short_attention.few_keys_attention(q, k, v, heads)
        assert out.shape == q.shape and out.dtype == dtype
        assert (out.double() - _reference(q, k, v, heads)).abs().max().item() < tol


def test_the_short_key_kernel_replaces_only_the_default_spatial_attention(monkeypatch):
    """With the library's default attention, the cross-attention (77 keys) and the self-attention of
    small frames go to the short-key kernel; a caller's own attention function (ComfyUI's) gets every
    spatial and cross attention."""
    from amg_model.model.tiny import tiny_unet

    torch.set_num_threads(1)
    unet = tiny_unet(seed=1).unet.eval()
    g = torch.Generator().manual_seed(0)
    x, ctx = (
        torch.randn(1, 8, 2, 16, 16, generator=g),
        torch.randn(1, 7, unet.config.cross_attention_dim, generator=g),
    )
    t = torch.tensor([10])
    kernel_calls, own_calls = [], []

    def kernel(q, k, v, heads):
        kernel_calls.append(k.shape[1])
        return sdpa_attention(q, k, v, heads)

    def own(q, k, v, heads):
        own_calls.append(k.shape[1])
        return sdpa_attention(q, k, v, heads)

    monkeypatch.setattr(channels_last, "few_keys_attention_applies", lambda q, k, v, heads: k.shape[1] <= 64)
    monkeypatch.setattr(channels_last, "few_keys_attention", kernel)
    with torch.no_grad():
        default = channels_last.unet_forward(unet, x, t, ctx)
        assert 7 in kernel_calls and not own_calls
        kernel_calls.clear()
        given = channels_last.unet_forward(unet, x, t, ctx, attention=own)
    assert not kernel_calls and 7 in own_calls
    torch.testing.assert_close(given, default)
