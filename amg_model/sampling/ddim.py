"""One DDIM update for an epsilon-predicting model; never calls the model."""

from __future__ import annotations

import math

import torch

from amg_model.errors import SamplingError


def ddim_sigma(alpha_bar_t: float, alpha_bar_prev: float, eta: float) -> float:
    """Standard deviation of the fresh noise a DDIM step adds (0 when ``eta`` is 0).

    ``eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))``; ``eta = 1`` is DDPM's posterior std.
    """
    if eta == 0.0:
        return 0.0
    ratio = (1.0 - alpha_bar_prev) / (1.0 - alpha_bar_t)
    return eta * math.sqrt(ratio * (1.0 - alpha_bar_t / alpha_bar_prev))


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar_t: float,
    alpha_bar_prev: float,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a noisy latent one DDIM step towards clean, given the model's noise prediction.

    ``x0 = (x_t - sqrt(1 - a_t) * eps) / sqrt(a_t)`` (no clipping), then
    ``x_prev = sqrt(a_prev) * x0 + sqrt(1 - a_prev - sigma^2) * eps + sigma * noise``.
    The scalar coefficients are computed in float64 and applied in the dtype of ``x_t``.

    Args:
        x_t: noisy latent, any shape (``[B, 4, F, h, w]`` here).
        eps: predicted noise, same shape as ``x_t``.
        alpha_bar_t: alpha-bar of the current timestep.
        alpha_bar_prev: alpha-bar of the timestep stepped to.
        eta: 0 for deterministic DDIM, 1 for DDPM-like stochasticity.
        noise: standard normal, same shape as ``x_t``; required when ``eta > 0``.

    Returns:
        ``(x_prev, x0_pred)``, both shaped like ``x_t``.
    """
    if eta < 0.0:
        raise SamplingError(f"eta={eta} is negative; use 0 (deterministic DDIM) up to 1.")
    eps = eps.to(x_t.dtype)
    x0 = (x_t - math.sqrt(1.0 - alpha_bar_t) * eps) * (1.0 / math.sqrt(alpha_bar_t))
    sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta)
    direction = math.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0))
    x_prev = math.sqrt(alpha_bar_prev) * x0 + direction * eps
    if sigma > 0.0:
        if noise is None:
            raise SamplingError("ddim_step: eta > 0 needs a noise tensor; pass noise shaped like x_t.")
        x_prev = x_prev + sigma * noise.to(x_t.dtype)
    return x_prev, x0
