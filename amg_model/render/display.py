"""Display encodings of the renderer's depth and normal outputs as RGB videos.

These are the conventions of depth and normal ControlNets, so the videos can condition other
models as well as be looked at.
"""

from __future__ import annotations

import torch


def depth_to_rgb(depth: torch.Tensor) -> torch.Tensor:
    """Inverse depth as grey RGB in 0..1: near is bright, empty pixels are black.

    Args:
        depth: [F, H, W] camera z in metres, 0 where nothing was drawn.

    Returns:
        [F, H, W, 3]; one scale for the whole clip (covered pixels map to 0.1..1), so the video
        does not flicker as the subject moves.
    """
    depth = depth.detach().float()
    covered = depth > 0
    inv = torch.where(covered, 1.0 / depth.clamp(min=1e-6), torch.zeros_like(depth))
    if covered.any():
        lo, hi = inv[covered].min(), inv[covered].max()
        inv = torch.where(covered, 0.1 + 0.9 * (inv - lo) / (hi - lo).clamp(min=1e-6), inv)
    return inv[..., None].expand(*inv.shape, 3).clamp(0.0, 1.0)


def normals_to_rgb(normals: torch.Tensor) -> torch.Tensor:
    """Unit normals [F, H, W, 3] (0 where empty) as RGB ``n / 2 + 1/2`` in 0..1, empty pixels black."""
    normals = normals.detach().float()
    covered = normals.abs().sum(-1, keepdim=True) > 0
    return torch.where(covered, normals * 0.5 + 0.5, torch.zeros_like(normals)).clamp(0.0, 1.0)
