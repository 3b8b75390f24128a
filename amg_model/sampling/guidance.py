"""Classifier-free guidance on the text, with the avatar latent in both branches, in one UNet call."""

from __future__ import annotations

from collections.abc import Callable

import torch

UNetFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(x [N, 8, F, h, w], t [N] long, context [N, L, D]) -> eps [N, 4, F, h, w]``.

A UNet whose attribute ``takes_input_copies`` is true also takes the keyword ``input_copies``: ``x``
and ``t`` are that many copies of their first rows and only ``context`` differs (as under guidance),
so the layers before the first cross-attention may run once (``model.fast.FastUNet``)."""


def unet_input(x_t: torch.Tensor, avatar_latents: torch.Tensor) -> torch.Tensor:
    """Channel-concatenate the noisy latent and the clean avatar latent, as the AMG UNet expects.

    Args:
        x_t: ``[B, 4, F, h, w]``.
        avatar_latents: ``[B, 4, F, h, w]``, VAE latents of the avatar render (already scaled by 0.18215).

    Returns:
        ``[B, 8, F, h, w]``: ``[x_t | avatar]``.
    """
    return torch.cat([x_t, avatar_latents.to(x_t)], dim=1)


def guided_eps(
    unet: UNetFn,
    x_t: torch.Tensor,
    avatar_latents: torch.Tensor,
    timestep: int | torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guidance: float,
    model_dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Guided noise prediction ``eps_u + guidance * (eps_c - eps_u)``.

    Both branches see the same ``[x_t | avatar]`` input and differ only in the text context; they run
    as one UNet call of batch ``2B`` (the original makes two calls; the result is the same). With
    ``guidance == 1`` only the conditional branch runs.

    Args:
        unet: ``(x [N, 8, F, h, w], t [N] long, context [N, L, D]) -> eps [N, 4, F, h, w]``.
        x_t: ``[B, 4, F, h, w]`` noisy latent.
        avatar_latents: ``[B, 4, F, h, w]`` clean avatar latent.
        timestep: training timestep (0..999), shared by the batch; or a one-element long tensor on the
            device of ``x_t`` holding it (no host value is read: the call can be captured in a CUDA graph).
        cond: ``[B, L, D]`` (or ``[1, L, D]``, broadcast) text embedding of the prompt.
        uncond: same shape as ``cond``, embedding of the negative (the empty prompt in the original).
        guidance: classifier-free guidance scale (3.0 in the original).
        model_dtype: dtype the UNet inputs are cast to; default: the dtype of ``x_t``.

    Returns:
        ``[B, 4, F, h, w]`` guided epsilon, in the dtype of ``x_t``.
    """
    batch = x_t.shape[0]
    dtype = model_dtype or x_t.dtype
    x_in = unet_input(x_t, avatar_latents).to(dtype)
    cond = cond.to(device=x_t.device, dtype=dtype).expand(batch, -1, -1)
    if guidance == 1.0:
        return unet(x_in, _timesteps(timestep, batch, x_t.device), cond).to(x_t.dtype)
    uncond = uncond.to(device=x_t.device, dtype=dtype).expand(batch, -1, -1)
    t = _timesteps(timestep, 2 * batch, x_t.device)
    copies = {"input_copies": 2} if getattr(unet, "takes_input_copies", False) else {}
    eps = unet(torch.cat([x_in, x_in]), t, torch.cat([uncond, cond]), **copies).to(x_t.dtype)
    eps_uncond, eps_cond = eps.chunk(2)
    return eps_uncond + guidance * (eps_cond - eps_uncond)


def _timesteps(timestep: int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    if isinstance(timestep, torch.Tensor):
        return timestep.reshape(1).expand(n)
    return torch.full((n,), timestep, dtype=torch.long, device=device)
