"""Analytic triangle meshes (sphere, box, plane) for tests, benchmarks and previews."""

from __future__ import annotations

import math

import torch


def sphere_mesh(
    radius: float = 1.0, rings: int = 16, segments: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """A UV sphere centred at the origin.

    Returns:
        vertices [V, 3] (float32) and faces [T, 3] (long, counter-clockwise seen from outside),
        V = (rings - 1) * segments + 2, T = 2 * (rings - 1) * segments.
    """
    theta = torch.arange(1, rings, dtype=torch.float64) * math.pi / rings
    phi = torch.arange(segments, dtype=torch.float64) * 2 * math.pi / segments
    st, ct = torch.sin(theta)[:, None], torch.cos(theta)[:, None]
    ring = torch.stack([st * torch.cos(phi), ct.expand(-1, segments), st * torch.sin(phi)], -1).reshape(-1, 3)
    poles = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    verts = torch.cat([poles[:1], ring, poles[1:]]) * radius
    seg = torch.arange(segments)
    nxt = (seg + 1) % segments
    faces = [torch.stack([torch.zeros_like(seg), 1 + nxt, 1 + seg], 1)]
    for r in range(rings - 2):
        a, b = 1 + r * segments + seg, 1 + r * segments + nxt
        faces.append(torch.stack([a, b, b + segments], 1))
        faces.append(torch.stack([a, b + segments, a + segments], 1))
    a, b = 1 + (rings - 2) * segments + seg, 1 + (rings - 2) * segments + nxt
    faces.append(torch.stack([a, b, torch.full_like(seg, verts.shape[0] - 1)], 1))
    return verts.float(), torch.cat(faces)


def box_mesh(size: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """An axis-aligned box centred at the origin.

    Returns:
        vertices [8, 3] and faces [12, 3] (long).
    """
    corners = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    faces = torch.tensor([
        [0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
        [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3],
    ])  # fmt: skip
    return corners * torch.tensor(size), faces


def plane_mesh(size: float = 1.0, segments: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A square in the z = 0 plane, centred at the origin, split into segments x segments quads.

    Returns:
        vertices [(segments + 1)^2, 3] and faces [2 * segments^2, 3] (long).
    """
    t = torch.linspace(-0.5 * size, 0.5 * size, segments + 1)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    verts = torch.stack([xx, yy, torch.zeros_like(xx)], -1).reshape(-1, 3)
    i = torch.arange(segments)
    r, c = torch.meshgrid(i, i, indexing="ij")
    a = (r * (segments + 1) + c).reshape(-1)
    b, d, e = a + 1, a + segments + 1, a + segments + 2
    return verts, torch.cat([torch.stack([a, b, e], 1), torch.stack([a, e, d], 1)])
