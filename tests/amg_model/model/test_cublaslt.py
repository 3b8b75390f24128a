"""Token projections through cuBLASLt without workspace (``amg_model.model.cublaslt``): torch's results
where the library does not run, the same products on CUDA, and CUDA graphs without memory sets."""

import pytest
import torch
import torch.nn.functional as F

from amg_model.model import cublaslt

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available() or not cublaslt.available(), reason="needs CUDA and cuBLASLt"
)


@pytest.mark.parametrize("bias", [True, False])
def test_cpu_tensors_get_torchs_products(bias):
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(2, 5, 16, generator=g), torch.randn(24, 16, generator=g)
    b = torch.randn(24, generator=g) if bias else None
    torch.testing.assert_close(cublaslt.linear(x, w, b), F.linear(x, w, b))
    out = torch.randn(10, 24, generator=g)
    expected = out + x.reshape(10, 16) @ w.T
    assert cublaslt.add_linear_(out, x.reshape(10, 16), w) is out
    torch.testing.assert_close(out, expected)


def _plan_ran(before: int) -> bool:
    return sum(p is not None for p in cublaslt._plans.values()) > before


def _plans_made() -> int:
    return sum(p is not None for p in cublaslt._plans.values())


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    ("m", "k", "n", "bias"), [(4096, 320, 960, False), (77, 1024, 640, True), (3, 64, 40, True)]
)
def test_linear_on_cuda_matches_torch(m, k, n, bias, dtype):
    g = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(2, m, k, device="cuda", generator=g).to(dtype)
    w = (torch.randn(n, k, device="cuda", generator=g) / k**0.5).to(dtype)
    b = torch.randn(n, device="cuda", generator=g).to(dtype) if bias else None
    before = _plans_made()
    out = cublaslt.linear(x, w, b)
    ref = x.float() @ w.float().T + (0 if b is None else b.float())
    assert out.shape == (2, m, n) and out.dtype == dtype
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    assert _plan_ran(before)  # a plan for this shape: cuBLASLt ran it, not the fallback


@needs_cuda
def test_strided_operands_and_accumulation_on_cuda():
    """Rows of a wider matrix (a chunk of a fused projection, columns of a weight) are read in place,
    and ``add_linear_`` adds into its output: the concatenated-skip shortcut of the up blocks."""
    g = torch.Generator(device="cuda").manual_seed(2)
    fused = torch.randn(512, 3 * 320, device="cuda", generator=g).half()
    x = fused[:, 320:640]  # row stride 960
    weight = (torch.randn(640, 320 + 160, device="cuda", generator=g) / 20).half()
    skip = torch.randn(512, 160, device="cuda", generator=g).half()
    out = cublaslt.linear(x, weight[:, :320])
    before = _plans_made()
    cublaslt.add_linear_(out, skip, weight[:, 320:])
    assert _plan_ran(before)
    ref = torch.cat([x, skip], 1).float() @ weight.float().T
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=2e-2)


@needs_cuda
def test_captured_projections_replay_without_memory_sets():
    from torch.profiler import ProfilerActivity, profile

    g = torch.Generator(device="cuda").manual_seed(3)
    x = torch.randn(32768, 320, device="cuda", generator=g).half()
    w = (torch.randn(960, 320, device="cuda", generator=g) / 18).half()
    w2 = (torch.randn(320, 960, device="cuda", generator=g) / 31).half()
    b = torch.randn(320, device="cuda", generator=g).half()

    def step():
        h = cublaslt.linear(x, w)
        out = cublaslt.linear(h, w2, b)
        return cublaslt.add_linear_(out, h[:, :320].contiguous(), w2[:, :320].contiguous())

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    x.copy_(torch.randn(32768, 320, device="cuda", generator=g))
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        graph.replay()
        torch.cuda.synchronize()
    h = (x.float() @ w.float().T).half().float()
    ref = h @ w2.float().T + b.float() + h[:, :320] @ w2[:, :320].float().T
    torch.testing.assert_close(out.float(), ref, atol=0.1, rtol=3e-2)
    names = [e.name.lower() for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    assert names and not any("memset" in n for n in names), names
