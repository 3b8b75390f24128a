"""The original AMG noise schedule ("linear_sd") and the DDIM timesteps it samples at.

The tables are float64, as in the original code; callers cast the scalars they need.
"""

from __future__ import annotations

import torch

from amg_model.errors import SamplingError

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012


def linear_sd_betas(
    num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, beta_start: float = BETA_START, beta_end: float = BETA_END
) -> torch.Tensor:
    """Betas of the "linear_sd" schedule (Stable Diffusion's "scaled_linear").

    Returns:
        float64 ``[T]``: ``linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2``.
    """
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def alphas_cumprod(betas: torch.Tensor | None = None) -> torch.Tensor:
    """Cumulative product of ``1 - beta`` (alpha-bar), the signal fraction at each training timestep.

    Args:
        betas: float64 ``[T]``; default: :func:`linear_sd_betas`.

    Returns:
        float64 ``[T]``; index ``t`` is alpha-bar of timestep ``t`` (``alpha_bar[0] = 1 - beta[0]``).
    """
    if betas is None:
        betas = linear_sd_betas()
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def ddim_timesteps(
    steps: int, num_train_timesteps: int = NUM_TRAIN_TIMESTEPS, spacing: str = "original"
) -> list[int]:
    """Training timesteps that DDIM visits, from the noisiest to the cleanest.

    Both spacings use the stride ``T // steps`` and offset 1 (20 steps: ``[951, 901, ..., 51, 1]``).

    * ``"original"``: ``1, 1 + stride, ...`` while below ``T``, reversed, as the original AMG sampler
      and ComfyUI's ``ddim_uniform`` scheduler do. When ``steps`` does not divide ``T`` this visits more
      than ``steps`` timesteps (30 steps: stride 33, 31 timesteps).
    * ``"leading"``: exactly ``steps`` timesteps ``1 + stride * arange(steps)``, reversed (diffusers'
      DDIMScheduler with ``timestep_spacing="leading"``, ``steps_offset=1``).

    The two agree whenever ``steps`` divides ``T``.

    Returns:
        Timesteps as Python ints, strictly decreasing, all in ``[1, T - 1]``.
    """
    if not 1 <= steps < num_train_timesteps:
        raise SamplingError(f"steps={steps} is out of range; use 1 to {num_train_timesteps - 1} DDIM steps.")
    stride = num_train_timesteps // steps
    if spacing == "original":
        ts = list(range(1, num_train_timesteps, stride))
    elif spacing == "leading":
        ts = [1 + stride * i for i in range(steps)]
    else:
        raise SamplingError(f"spacing={spacing!r} is unknown; use 'original' or 'leading'.")
    return ts[::-1]


def ddim_alpha_pairs(
    timesteps: list[int], alpha_bar: torch.Tensor | None = None
) -> list[tuple[float, float]]:
    """Alpha-bar of each visited timestep and of the one the step moves to.

    The step from the last (cleanest) timestep moves to ``alpha_bar[0]`` (0.99915 for linear_sd), not to
    1: the original code clamps ``t - stride`` at 0 (diffusers: ``set_alpha_to_one=False``).

    Args:
        timesteps: decreasing training timesteps, e.g. from :func:`ddim_timesteps`.
        alpha_bar: float64 ``[T]``; default: :func:`alphas_cumprod`.

    Returns:
        ``(alpha_bar_t, alpha_bar_prev)`` per step, as Python floats (float64 precision).
    """
    if alpha_bar is None:
        alpha_bar = alphas_cumprod()
    prev = list(timesteps[1:]) + [0]
    return [(float(alpha_bar[t]), float(alpha_bar[p])) for t, p in zip(timesteps, prev, strict=True)]
