"""The AMG sampling loop: DDIM with text guidance on an avatar-conditioned video UNet."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch

from amg_model.errors import SamplingError
from amg_model.sampling.ddim import ddim_step
from amg_model.sampling.guidance import UNetFn, guided_eps
from amg_model.sampling.schedule import ddim_alpha_pairs, ddim_timesteps
from amg_model.sampling.windows import blend_weights, temporal_windows

logger = logging.getLogger(__name__)

StepCallback = Callable[[int, int, int, torch.Tensor, torch.Tensor], None]
"""``(step_index, total_steps, t, x_t, x0_pred) -> None``; raise from it to cancel sampling."""


def _model_dtype(unet: UNetFn, fallback: torch.dtype) -> torch.dtype:
    if isinstance(unet, torch.nn.Module):
        for p in unet.parameters():
            if p.is_floating_point():
                return p.dtype
    return fallback


def _check_inputs(avatar_latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor) -> None:
    if avatar_latents.ndim != 5:
        raise SamplingError(
            f"avatar_latents has shape {tuple(avatar_latents.shape)}; expected [B, 4, F, h, w] "
            "(frames on dim 2)."
        )
    batch = avatar_latents.shape[0]
    for name, c in (("cond", cond), ("uncond", uncond)):
        if c.ndim != 3 or c.shape[0] not in (1, batch):
            raise SamplingError(
                f"{name} has shape {tuple(c.shape)}; expected [B, 77, D] or [1, 77, D] with B = {batch}."
            )
    if cond.shape[1:] != uncond.shape[1:]:
        raise SamplingError(
            f"cond {tuple(cond.shape)} and uncond {tuple(uncond.shape)} differ in tokens or width; "
            "encode both with the same text encoder."
        )


def sample_video(
    unet: UNetFn,
    avatar_latents: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    steps: int = 20,
    guidance: float = 3.0,
    eta: float = 0.0,
    seed: int | None = None,
    noise: torch.Tensor | None = None,
    callback: StepCallback | None = None,
    window: int = 16,
    overlap: int = 4,
    spacing: str = "original",
    model_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Generate video latents that follow an avatar render, as the original AMG demos do.

    DDIM on the linear_sd schedule with epsilon prediction, no clipping, the last step landing on
    ``alpha_bar[0]``; 20 steps visit timesteps ``[951, 901, ..., 1]``. Each step makes one UNet call of
    batch ``2B`` (negative and prompt) on ``[x_t | avatar]`` and combines
    ``eps_u + guidance * (eps_c - eps_u)``. Clips longer than ``window`` frames are denoised window by
    window at every step (overlapping by ``overlap`` frames, eps blended with smooth weights), so memory
    stays that of one window.

    Args:
        unet: ``(x [N, 8, F', h, w], t [N] long, context [N, 77, D]) -> eps [N, 4, F', h, w]``.
        avatar_latents: ``[B, 4, F, h, w]`` VAE latents of the avatar render (scaled by 0.18215). The
            result has its shape, device and (at least float32) dtype.
        cond: ``[B, 77, D]`` or ``[1, 77, D]`` prompt embedding.
        uncond: same shape, negative embedding (the empty prompt in the original).
        steps: DDIM steps (see :func:`~amg_model.sampling.schedule.ddim_timesteps` for ``spacing``).
        guidance: classifier-free guidance scale (3.0 in the original; 1.0 skips the negative branch).
        eta: 0 for deterministic DDIM; > 0 adds noise drawn from the seeded generator.
        seed: seeds a CPU ``torch.Generator`` for the initial noise and the eta noise, so a seed gives
            the same video on any device; None draws a fresh seed.
        noise: ``[B, 4, F, h, w]`` initial noise; overrides the seeded draw.
        callback: called after each step as ``callback(i, total, t, x_t, x0_pred)`` with the step index
            ``i`` (0-based), the number of steps, the timestep, the latent that was denoised and the
            predicted clean latent; an exception raised in it stops sampling and propagates.
        window: frames per UNet call (16, the model's training length).
        overlap: frames shared by neighbouring windows.
        spacing: ``"original"`` (as the original code and ComfyUI's ddim_uniform) or ``"leading"``.
        model_dtype: dtype of the UNet inputs; default: that of the UNet's parameters.

    Returns:
        ``[B, 4, F, h, w]`` clean latent (still scaled by 0.18215; divide before VAE decoding).
    """
    _check_inputs(avatar_latents, cond, uncond)
    if guidance < 0:
        raise SamplingError(f"guidance={guidance} is negative; use 1 (none) to about 10, 3 in the original.")
    timesteps = ddim_timesteps(steps, spacing=spacing)
    alpha_pairs = ddim_alpha_pairs(timesteps)
    shape = (avatar_latents.shape[0], 4, *avatar_latents.shape[2:])
    device = avatar_latents.device
    dtype = torch.promote_types(avatar_latents.dtype, torch.float32)
    model_dtype = model_dtype or _model_dtype(unet, dtype)

    generator = torch.Generator(device="cpu")
    if seed is None:
        seed = generator.seed()
        logger.debug("sample_video: no seed given, drew %d", seed)
    else:
        generator.manual_seed(seed)
    if noise is None:
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    elif tuple(noise.shape) != shape:
        raise SamplingError(f"noise has shape {tuple(noise.shape)}; it must match the latent shape {shape}.")
    x = noise.to(device=device, dtype=dtype)
    avatar = avatar_latents.to(dtype)

    windows = temporal_windows(shape[2], window, overlap)
    weights = [w.to(device, dtype).view(1, 1, -1, 1, 1) for w in blend_weights(windows, shape[2])]
    if len(windows) > 1:
        logger.info("sample_video: %d frames in %d windows of %d", shape[2], len(windows), window)

    def predict(t: int) -> torch.Tensor:
        if len(windows) == 1:
            return guided_eps(unet, x, avatar, t, cond, uncond, guidance, model_dtype)
        eps = torch.zeros_like(x)
        for (start, stop), w in zip(windows, weights, strict=True):
            eps_w = guided_eps(
                unet, x[:, :, start:stop], avatar[:, :, start:stop], t, cond, uncond, guidance, model_dtype
            )
            eps[:, :, start:stop] += w * eps_w
        return eps

    with torch.no_grad():
        for i, (t, (alpha_t, alpha_prev)) in enumerate(zip(timesteps, alpha_pairs, strict=True)):
            eps = predict(t)
            step_noise = None
            if eta > 0:
                step_noise = torch.randn(shape, generator=generator, dtype=torch.float32).to(device, dtype)
            x_prev, x0 = ddim_step(x, eps, alpha_t, alpha_prev, eta, step_noise)
            if callback is not None:
                callback(i, len(timesteps), t, x, x0)
            x = x_prev
    return x
