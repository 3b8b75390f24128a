"""Pose interpolation: rotation slerp and squad, cubic Hermite (Catmull-Rom) position splines.

Rotations are [..., 3, 3] matrices; interpolation follows the shortest arc on SO(3) (roma's
rotation-vector log/exp maps), so it never flips through the long way round.
"""

from __future__ import annotations

import roma
import torch


def slerp_rotmat(r0: torch.Tensor, r1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Element-wise spherical interpolation between rotations.

    Args:
        r0, r1: [..., 3, 3] rotation matrices (broadcastable against each other).
        t: [...] interpolation weights, 0 gives ``r0`` and 1 gives ``r1``.

    Returns:
        [..., 3, 3] rotations ``r0 @ exp(t * log(r0^T r1))``.
    """
    delta = roma.rotmat_to_rotvec(r0.transpose(-1, -2) @ r1)
    return r0 @ roma.rotvec_to_rotmat(delta * t[..., None])


def squad_controls(rotations: torch.Tensor) -> torch.Tensor:
    """Inner control rotations of a squad spline through key rotations.

    Args:
        rotations: [K, 3, 3] key rotations.

    Returns:
        [K, 3, 3] controls; the first and last equal their keys, so a two-key spline is a slerp.
    """
    controls = rotations.clone()
    for i in range(1, rotations.shape[0] - 1):
        r = rotations[i]
        to_next = roma.rotmat_to_rotvec(r.T @ rotations[i + 1])
        to_prev = roma.rotmat_to_rotvec(r.T @ rotations[i - 1])
        controls[i] = r @ roma.rotvec_to_rotmat(-(to_next + to_prev) / 4.0)
    return controls


def squad_rotmat(
    r0: torch.Tensor, r1: torch.Tensor, s0: torch.Tensor, s1: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Spherical quadrangle interpolation (smooth across keys) between ``r0`` and ``r1``.

    Args:
        r0, r1: [..., 3, 3] key rotations at t = 0 and t = 1.
        s0, s1: [..., 3, 3] their controls from ``squad_controls``.
        t: [...] weights in [0, 1].
    """
    outer = slerp_rotmat(r0, r1, t)
    inner = slerp_rotmat(s0, s1, t)
    return slerp_rotmat(outer, inner, 2.0 * t * (1.0 - t))


def hermite_tangents(times: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Catmull-Rom tangents (per unit time) for keys at non-uniform times.

    Args:
        times: [K] strictly increasing key times.
        points: [K, D] key values.

    Returns:
        [K, D] tangents: central differences inside, one-sided differences at both ends, so that
        two keys give a straight line travelled at constant speed.
    """
    k = points.shape[0]
    tangents = torch.zeros_like(points)
    if k < 2:
        return tangents
    dt = (times[1:] - times[:-1])[:, None]
    tangents[0] = (points[1] - points[0]) / dt[0]
    tangents[-1] = (points[-1] - points[-2]) / dt[-1]
    if k > 2:
        tangents[1:-1] = (points[2:] - points[:-2]) / (times[2:] - times[:-2])[:, None]
    return tangents


def hermite(
    p0: torch.Tensor, p1: torch.Tensor, m0: torch.Tensor, m1: torch.Tensor, dt: torch.Tensor, u: torch.Tensor
) -> torch.Tensor:
    """Cubic Hermite segment.

    Args:
        p0, p1: [..., D] end values; m0, m1: [..., D] tangents per unit time.
        dt: [...] segment duration (time units of the tangents); u: [...] position in [0, 1].

    Returns:
        [..., D] values; exactly ``p0`` at u = 0 and ``p1`` at u = 1.
    """
    u = u[..., None]
    dt = dt[..., None]
    u2, u3 = u * u, u * u * u
    h00 = 2 * u3 - 3 * u2 + 1
    h10 = u3 - 2 * u2 + u
    h01 = -2 * u3 + 3 * u2
    h11 = u3 - u2
    return h00 * p0 + h10 * dt * m0 + h01 * p1 + h11 * dt * m1
