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


def ddim_coefficients(alpha_bar_t: float, alpha_bar_prev: float, eta: float = 0.0) -> tuple[float, ...]:
    """The scalars of one DDIM step, computed in float64: ``(sqrt(1 - a_t), 1 / sqrt(a_t), sqrt(a_prev),
    sqrt(1 - a_prev - sigma^2), sigma)`` (see :func:`ddim_step` and :func:`ddim_update`)."""
    sigma = ddim_sigma(alpha_bar_t, alpha_bar_prev, eta)
    direction = math.sqrt(max(1.0 - alpha_bar_prev - sigma**2, 0.0))
    return (
        math.sqrt(1.0 - alpha_bar_t),
        1.0 / math.sqrt(alpha_bar_t),
        math.sqrt(alpha_bar_prev),
        direction,
        sigma,
    )


def ddim_update(x_t: torch.Tensor, eps: torch.Tensor, coefficients) -> tuple[torch.Tensor, torch.Tensor]:
    """The deterministic part of a DDIM step: ``(x_prev, x0)`` from the first four of
    :func:`ddim_coefficients`, given as floats or as a tensor on the device of ``x_t`` (then no host
    value is read: the step can be captured in a CUDA graph)."""
    noise_scale, x0_scale, prev_scale, direction = (coefficients[i] for i in range(4))
    x0 = (x_t - noise_scale * eps) * x0_scale
    return prev_scale * x0 + direction * eps, x0


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
    coefficients = ddim_coefficients(alpha_bar_t, alpha_bar_prev, eta)
    x_prev, x0 = ddim_update(x_t, eps.to(x_t.dtype), coefficients)
    sigma = coefficients[4]
    if sigma > 0.0:
        if noise is None:
            raise SamplingError("ddim_step: eta > 0 needs a noise tensor; pass noise shaped like x_t.")
        x_prev = x_prev + sigma * noise.to(x_t.dtype)
    return x_prev, x0
