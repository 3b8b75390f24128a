"""Easing curves: map normalised time u in [0, 1] to progress in [0, 1].

Every curve starts at 0 and ends at 1; they differ in speed. ``ease_in_out`` is the cubic
smoothstep: zero velocity at both ends, so a move starts and stops gently.
"""

from __future__ import annotations

import torch

from amg_model.errors import CameraError

EASINGS = ("linear", "ease_in", "ease_out", "ease_in_out")


def ease(u: torch.Tensor, easing: str = "linear") -> torch.Tensor:
    """Apply an easing curve.

    Args:
        u: [...] normalised time; values are clamped to [0, 1].
        easing: one of EASINGS.

    Returns:
        [...] progress in [0, 1], same dtype and device as ``u``.
    """
    u = u.clamp(0.0, 1.0)
    if easing == "linear":
        return u
    if easing == "ease_in":
        return u * u
    if easing == "ease_out":
        return 1.0 - (1.0 - u) * (1.0 - u)
    if easing == "ease_in_out":
        return u * u * (3.0 - 2.0 * u)
    raise CameraError(f"easing {easing!r} is unknown; use one of {EASINGS}.")


def progress(frames: int, easing: str = "linear", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[frames] eased progress from 0 at the first frame to 1 at the last (0 for a single frame)."""
    if frames < 1:
        raise CameraError(f"frame count {frames} is too small; use at least 1.")
    if frames == 1:
        return torch.zeros(1, dtype=dtype)
    return ease(torch.linspace(0.0, 1.0, frames, dtype=dtype), easing)
