"""The small-K matrix-product kernels (``amg_model.model.small_k``) equal their torch definitions:
their torch fallbacks, the Triton kernels under Triton's CPU interpreter, and on CUDA."""

import textwrap

import pytest
import torch
import torch.nn.functional as F
from triton_interpreter import require_run_time_loop_bounds, run_interpreted

from amg_model.model import small_k


def _geglu_reference(x, w, b):
    p = x.float() @ w.float().T + (0 if b is None else b.float())
    inner = w.shape[0] // 2
    return p[..., :inner] * F.gelu(p[..., inner:])


def _rel_err(out, ref):
    return ((out.float() - ref).abs() / (1 + ref.abs())).max().item()


@pytest.mark.parametrize("bias", [True, False])
def test_torch_versions_are_the_definitions(bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 7, 32, generator=g)
    w = torch.randn(48, 32, generator=g)
    b = torch.randn(48, generator=g) if bias else None
    if bias:  # the GEGLU projection needs its bias
        torch.testing.assert_close(small_k.linear_geglu_tma_paired(x, w, b), _geglu_reference(x, w, b))
    w2, b2 = w[:24], (None if b is None else b[:24])
    torch.testing.assert_close(small_k.linear_tma(x, w2, b2), F.linear(x, w2, b2))
    torch.testing.assert_close(small_k.linear(x, w2, b2), F.linear(x, w2, b2))


def test_linear_geglu_declines_what_the_paired_kernel_cannot_take(monkeypatch):
    """None (the caller's own kernel runs), not a torch result, wherever the kernel cannot run."""
    monkeypatch.setattr(small_k, "_use_triton", lambda *tensors: True)
    x = torch.randn(4, 32).half()
    w, b = torch.randn(2 * 12, 32).half(), torch.randn(2 * 12).half()
    assert small_k.linear_geglu(x, w, b) is None  # 12 gated columns: not a multiple of 8
    assert small_k.linear_geglu(x, w[:16], None) is None  # no bias
    k = small_k.GEGLU_MAX_K + 16
    wide, wb = torch.randn(2 * 16, k).half(), torch.randn(2 * 16).half()
    assert small_k.linear_geglu(torch.randn(4, k).half(), wide, wb) is None  # K past the measured range


_INTERPRETED_GELU = textwrap.dedent(
    """
    import torch
    import triton
    import triton.language as tl
    from amg_model.model import small_k
    @triton.jit
    def gated(h_ptr, g_ptr, out_ptr, n, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        h, g = tl.load(h_ptr + i, mask=i < n), tl.load(g_ptr + i, mask=i < n)
        tl.store(out_ptr + i, small_k._gelu_gated(h, g), mask=i < n)
    g = torch.cat([torch.linspace(-12.0, 12.0, 20001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0])])
    h = torch.rand(g.shape, generator=torch.Generator().manual_seed(0)) + 0.5
    out = torch.empty_like(g)
    gated[(triton.cdiv(g.numel(), 1024),)](h, g, out, g.numel(), BLOCK=1024)
    exact = h.double() * torch.nn.functional.gelu(g.double())  # erf GELU in float64
    print(((out.double() - exact).abs() / (1 + exact.abs())).max().item())
    """
)


def test_gelu_of_the_geglu_kernels_is_the_exact_gelu():
    """The paired GEGLU kernel's gating (erfc by a branch-free approximation) is the exact erf GELU to
    float32 rounding over the whole range, signed zeros, tiny and saturated inputs included."""
    pytest.importorskip("triton")
    assert float(run_interpreted(_INTERPRETED_GELU)[-1]) < 5e-7  # libdevice erff: 1.1e-7, this 3.1e-7


_INTERPRETED = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F
    import triton
    from amg_model.model import small_k as sk
    sk._use_triton = lambda *tensors: True  # run the kernels (interpreted) on CPU tensors
    def once(kernel_call, quantiles):  # autotuning: one call per configuration, the first is chosen
        kernel_call()
        return [1.0, 1.0, 1.0]
    for kernel in (sk._geglu_tma_paired_kernel, sk._linear_tma_kernel):
        kernel._do_bench = once
    def worse(a, b):  # the larger error; a NaN is kept (max() would drop it)
        return b if b != b or b > a else a
    def rel(out, ref):
        return ((out.float() - ref).abs() / (1 + ref.abs())).max().item()
    # small fixed tiles: partial tiles in every direction (K 48 is 1.5 steps of 32), and 2 programs
    # (PER_SM 2 on the interpreter's one "multiprocessor"), each looping over several tiles
    fixed = triton.Config(dict(BLOCK_M=16, BLOCK_N=16, BLOCK_K=32, PER_SM=2), num_warps=4, num_stages=2)
    torch.manual_seed(0)
    errors = {}
    def record(name, out, ref, shape):
        assert out.shape == shape and out.dtype == torch.float16, (name, out.shape, out.dtype)
        errors[name] = worse(errors.get(name, 0.0), rel(out, ref))
    for m, k, inner in [(37, 32, 24), (70, 48, 40), (5, 16, 8)]:
        x = torch.randn(m, k).half()
        w = (torch.randn(2 * inner, k) / k**0.5).half()
        b = torch.randn(2 * inner).half()
        p = x.float() @ w.float().T + b.float()
        ref = p[:, :inner] * F.gelu(p[:, inner:])
        record("geglu_tma_paired", sk.linear_geglu_tma_paired(x, w, b, config=fixed), ref, (m, inner))
        n = inner
        wl = (torch.randn(n, k) / k**0.5).half()
        for b in (torch.randn(n).half(), None):
            ref = x.float() @ wl.float().T + (0 if b is None else b.float())
            record("linear_tma", sk.linear_tma(x, wl, b, config=fixed), ref, (m, n))
    # the autotuned launches (each configuration's block shapes, two programs or one): rows over
    # more than one tile of 128
    x = torch.randn(150, 64).half()
    w = (torch.randn(96, 64) / 8).half()
    b = torch.randn(96).half()
    p = x.float() @ w.float().T + b.float()
    ref = p[:, :48] * F.gelu(p[:, 48:])
    record("geglu_tma_paired autotuned", sk.linear_geglu_tma_paired(x, w, b), ref, (150, 48))
    record("linear_tma autotuned", sk.linear_tma(x, w, b), p, (150, 96))
    for name, err in errors.items():
        print(f"{name}: {err}")
    """
)


def test_small_k_kernels_under_the_interpreter():
    """The Triton kernels (Triton's CPU interpreter, fp16 inputs) with fixed small tiles and autotuned."""
    require_run_time_loop_bounds()
    errors = dict(line.rsplit(": ", 1) for line in run_interpreted(_INTERPRETED))
    assert len(errors) == 4
    for name, err in errors.items():
        assert float(err) < 2e-3, name  # NaN fails too


_CUDA = pytest.mark.skipif(
    not torch.cuda.is_available() or small_k.triton is None, reason="needs CUDA and Triton"
)


@_CUDA
@pytest.mark.parametrize("m, k", [(32768, 320), (8192, 640), (2048, 1280), (77, 320)])
def test_geglu_tma_paired_on_cuda_matches_torch(m, k):
    torch.manual_seed(0)
    inner = 4 * k
    x = torch.randn(m, k, device="cuda").half()
    w = (torch.randn(2 * inner, k, device="cuda") / k**0.5).half()
    b = torch.randn(2 * inner, device="cuda").half()
    assert _rel_err(small_k.linear_geglu_tma_paired(x, w, b), _geglu_reference(x, w, b)) < 1e-2


@_CUDA
@pytest.mark.parametrize(
    "m, k, n, bias",
    [(32768, 320, 320, True), (32768, 320, 960, False), (8192, 640, 640, True), (77, 320, 320, True)],
)
def test_linear_tma_on_cuda_matches_torch(m, k, n, bias):
    torch.manual_seed(0)
    x = torch.randn(m, k, device="cuda").half()
    w = (torch.randn(n, k, device="cuda") / k**0.5).half()
    b = torch.randn(n, device="cuda").half() if bias else None
    ref = x.float() @ w.float().T + (0 if b is None else b.float())
    assert _rel_err(small_k.linear_tma(x, w, b), ref) < 1e-2
    assert _rel_err(small_k.linear(x, w, b), ref) < 1e-2
