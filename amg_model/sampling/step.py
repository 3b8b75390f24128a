"""One deterministic sampling step as a function of tensors only, replayable as one CUDA graph.

The sampler's step is a guided UNet call followed by the DDIM update. Run op by op, the input
concatenations, the guidance combination and the update are about 20 small GPU operations per step
around the UNet's graph; captured together with the UNet (``model.fast.FastUNet.graphed``), a step is
one graph launch. The timestep and the DDIM scalars come in as device tensors, so no host value is read.
"""

from __future__ import annotations

import torch

from amg_model.sampling.ddim import ddim_coefficients, ddim_update
from amg_model.sampling.guidance import UNetFn, guided_eps


def guided_ddim_step(
    unet: UNetFn,
    x_t: torch.Tensor,
    avatar_latents: torch.Tensor,
    timestep: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    coefficients: torch.Tensor,
    *,
    guidance: float,
    model_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_prev, x0)`` of one guided DDIM step with ``eta = 0``.

    Args:
        unet, x_t, avatar_latents, cond, uncond, guidance, model_dtype: as for
            :func:`~amg_model.sampling.guidance.guided_eps`.
        timestep: ``[1]`` long tensor on the device of ``x_t``.
        coefficients: ``[4]`` tensor (dtype of ``x_t``): the first four of
            :func:`~amg_model.sampling.ddim.ddim_coefficients`; rows of :func:`ddim_coefficient_table`.
    """
    eps = guided_eps(unet, x_t, avatar_latents, timestep, cond, uncond, guidance, model_dtype)
    return ddim_update(x_t, eps, coefficients)


def ddim_coefficient_table(
    alpha_pairs: list[tuple[float, float]], device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """``[steps, 4]``: each step's deterministic DDIM scalars (``eta = 0``) for :func:`guided_ddim_step`."""
    rows = [ddim_coefficients(a_t, a_prev)[:4] for a_t, a_prev in alpha_pairs]
    return torch.tensor(rows, dtype=torch.float64).to(device=device, dtype=dtype)
