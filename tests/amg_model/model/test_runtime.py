"""prepare_unet picks the precision and mode per device and gives a callable that sample_video takes."""

import pytest
import torch

from amg_model.errors import AMGError
from amg_model.model.runtime import prepare_unet, resolve_unet_settings
from amg_model.model.tiny import tiny_unet
from amg_model.sampling.sample import sample_video

torch.set_num_threads(1)


def test_auto_settings_per_device():
    assert resolve_unet_settings("cuda") == ("fp16", "cuda_graph")
    assert resolve_unet_settings("cpu") == ("fp32", "eager")
    assert resolve_unet_settings("cuda", "bf16", "compile") == ("bf16", "compile")


@pytest.mark.parametrize("dtype,mode", [("fp8", "auto"), ("auto", "fastest"), ("auto", "cuda_graph")])
def test_bad_settings_are_refused_with_a_sentence(dtype, mode):
    with pytest.raises(AMGError, match="use"):
        resolve_unet_settings("cpu", dtype, mode)


def test_prepared_unet_samples_like_the_module():
    g = torch.Generator().manual_seed(0)
    ref_model = tiny_unet(seed=4).eval()
    avatar = torch.randn(1, 4, 3, 8, 8, generator=g)
    cond = torch.randn(1, 5, ref_model.context_dim, generator=g)
    uncond = torch.zeros_like(cond)
    ref = sample_video(ref_model, avatar, cond, uncond, steps=2, seed=1)
    fast = prepare_unet(tiny_unet(seed=4), "cpu")
    assert fast.dtype == torch.float32 and fast.mode == "eager" and not fast.channels_last
    out = sample_video(fast, avatar, cond, uncond, steps=2, seed=1)
    assert torch.allclose(out, ref, atol=1e-5 * ref.abs().max().item())
    # the GPU default's forward (channels-last, fused q/k/v), asked for on the CPU
    fast_cl = prepare_unet(tiny_unet(seed=4), "cpu", channels_last=True)
    assert fast_cl.channels_last
    assert any(hasattr(m, "amg_fused_weight") for m in fast_cl.unet.modules())
    out_cl = sample_video(fast_cl, avatar, cond, uncond, steps=2, seed=1)
    assert torch.allclose(out_cl, ref, atol=1e-5 * ref.abs().max().item())


def test_bf16_on_cpu_runs_and_stays_close():
    g = torch.Generator().manual_seed(0)
    model = tiny_unet(seed=4).eval()
    avatar = torch.randn(1, 4, 2, 8, 8, generator=g)
    cond = torch.randn(1, 5, model.context_dim, generator=g)
    ref = sample_video(model, avatar, cond, cond, steps=1, seed=1)
    out = sample_video(prepare_unet(model, "cpu", dtype="bf16"), avatar, cond, cond, steps=1, seed=1)
    assert out.dtype == torch.float32
    assert (out - ref).norm() < 0.05 * ref.norm()
