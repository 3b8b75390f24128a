"""sample_video against an independent float64 re-computation of the original DDIM sampler."""

import numpy as np
import pytest
import torch

from amg_model.errors import SamplingError
from amg_model.sampling.guidance import guided_eps
from amg_model.sampling.sample import sample_video

from .toys import FrameLocalToy, tiny_diffusers_unet


def reference_ddim(model, noise, avatar, cond, uncond, timesteps, guidance, eta=0.0, step_noises=()):
    """The original's loop in numpy float64: two separate model calls, x0 from eps, stride-based prev."""
    betas = np.linspace(np.sqrt(0.00085), np.sqrt(0.012), 1000, dtype=np.float64) ** 2
    ab = np.cumprod(1.0 - betas)
    stride = timesteps[0] - timesteps[1] if len(timesteps) > 1 else 1000
    x = noise.numpy().astype(np.float64)
    for i, t in enumerate(timesteps):
        inp = torch.from_numpy(np.concatenate([x, avatar.numpy()], axis=1))
        tt = torch.full((x.shape[0],), t, dtype=torch.long)
        e_c = model(inp, tt, cond).numpy()
        e_u = model(inp, tt, uncond).numpy()
        eps = e_u + guidance * (e_c - e_u)
        a, a_prev = ab[t], ab[max(t - stride, 0)]
        x0 = np.sqrt(1.0 / a) * x - np.sqrt(1.0 / a - 1.0) * eps
        sigma = eta * np.sqrt((1 - a_prev) / (1 - a) * (1 - a / a_prev))
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev - sigma**2) * eps
        if eta > 0:
            x = x + sigma * step_noises[i].numpy().astype(np.float64)
    return torch.from_numpy(x)


def _inputs(dtype=torch.float64, frames=4):
    gen = torch.Generator().manual_seed(1)
    avatar = torch.randn(2, 4, frames, 3, 3, generator=gen).to(dtype)
    cond = torch.randn(2, 7, 8, generator=gen).to(dtype)
    uncond = torch.randn(1, 7, 8, generator=gen).to(dtype).expand(2, -1, -1)
    return avatar, cond, uncond


def test_matches_float64_reference_twenty_steps():
    avatar, cond, uncond = _inputs()
    noise = torch.randn(2, 4, 4, 3, 3, dtype=torch.float64)
    out = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=20, guidance=3.0, noise=noise)
    ref = reference_ddim(FrameLocalToy(), noise, avatar, cond, uncond, list(range(951, 0, -50)), 3.0)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def test_float32_path_close_to_reference():
    avatar, cond, uncond = _inputs(torch.float32)
    noise = torch.randn(2, 4, 4, 3, 3)
    out = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=10, guidance=3.0, noise=noise)
    ref = reference_ddim(
        FrameLocalToy(),
        noise.double(),
        avatar.double(),
        cond.double(),
        uncond.double(),
        list(range(901, 0, -100)),
        3.0,
    )
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=1e-4)


def test_eta_path_uses_seeded_generator_in_order():
    avatar, cond, uncond = _inputs()
    out = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=5, guidance=2.0, eta=0.8, seed=11)
    gen = torch.Generator().manual_seed(11)
    noise = torch.randn(2, 4, 4, 3, 3, generator=gen)
    step_noises = [torch.randn(2, 4, 4, 3, 3, generator=gen) for _ in range(5)]
    ref = reference_ddim(
        FrameLocalToy(), noise, avatar, cond, uncond, [801, 601, 401, 201, 1], 2.0, 0.8, step_noises
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    again = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=5, guidance=2.0, eta=0.8, seed=11)
    torch.testing.assert_close(out, again, rtol=0, atol=0)


def test_seed_is_deterministic_and_matters():
    avatar, cond, uncond = _inputs(torch.float32)
    a = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=3, seed=5)
    b = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=3, seed=5)
    c = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=3, seed=6)
    noise = torch.randn(2, 4, 4, 3, 3, generator=torch.Generator().manual_seed(5))
    d = sample_video(FrameLocalToy(), avatar, cond, uncond, steps=3, noise=noise)
    assert torch.equal(a, b) and torch.equal(a, d)
    assert not torch.allclose(a, c)


def test_callback_reports_steps_and_can_cancel():
    avatar, cond, uncond = _inputs(torch.float32)
    seen = []
    sample_video(
        FrameLocalToy(),
        avatar,
        cond,
        uncond,
        steps=4,
        seed=0,
        callback=lambda i, n, t, x, x0: seen.append((i, n, t, x.shape, x0.shape)),
    )
    assert [s[:3] for s in seen] == [(0, 4, 751), (1, 4, 501), (2, 4, 251), (3, 4, 1)]
    assert all(s[3] == s[4] == (2, 4, 4, 3, 3) for s in seen)

    class Cancelled(Exception):
        pass

    def cancel(i, n, t, x, x0):
        if i == 2:
            raise Cancelled

    toy = FrameLocalToy()
    with pytest.raises(Cancelled):
        sample_video(toy, avatar, cond, uncond, steps=20, seed=0, callback=cancel)
    assert toy.calls == 3


def test_batched_guidance_equals_two_calls_on_tiny_diffusers_unet():
    unet = tiny_diffusers_unet(context_dim=8)
    avatar, cond, uncond = (v.float() for v in _inputs(frames=3))
    avatar = torch.nn.functional.interpolate(avatar, size=(3, 8, 8))
    x = torch.randn_like(avatar)
    with torch.no_grad():
        eps = guided_eps(unet, x, avatar, 501, cond, uncond, 3.0)
        inp = torch.cat([x, avatar], dim=1)
        t = torch.full((2,), 501, dtype=torch.long)
        e_c, e_u = unet(inp, t, cond), unet(inp, t, uncond)
    torch.testing.assert_close(eps, e_u + 3.0 * (e_c - e_u), rtol=1e-4, atol=1e-5)
    out = sample_video(unet, avatar, cond, uncond, steps=2, seed=0)
    assert out.shape == avatar.shape and torch.isfinite(out).all()


def test_bad_inputs_raise():
    avatar, cond, uncond = _inputs(torch.float32)
    with pytest.raises(SamplingError):
        sample_video(FrameLocalToy(), avatar[0], cond, uncond)
    with pytest.raises(SamplingError):
        sample_video(FrameLocalToy(), avatar, cond, uncond[:, :5])
    with pytest.raises(SamplingError):
        sample_video(FrameLocalToy(), avatar, cond, uncond, noise=torch.zeros(1, 4, 4, 3, 3))
