"""Shading for avatar renders: smooth vertex normals and a key + ambient + rim lighting model.

Lighting happens in the camera frame (OpenCV: x right, y down, z forward), so a light "near the
camera" stays near it while the camera moves, like the lights of AMG's training renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Lighting:
    """A key light near the camera, ambient light and a soft rim light.

    Attributes:
        ambient: light reaching every surface, whatever its orientation (0..1).
        key: strength of the Lambertian key light (0..1).
        key_direction: (x, y, z) direction from the surface towards the key light, in the camera
            frame; the default sits slightly above and to the left of the camera.
        rim: strength of the rim light, which brightens surfaces seen edge-on (0 turns it off).
        rim_power: how tightly the rim hugs the silhouette (larger is thinner).
    """

    ambient: float = 0.45
    key: float = 0.65
    key_direction: tuple[float, float, float] = (-0.35, -0.45, -1.0)
    rim: float = 0.2
    rim_power: float = 3.0


DEFAULT_LIGHTING = Lighting()


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Smooth (area-weighted) vertex normals of a triangle mesh.

    Args:
        vertices: [..., V, 3] vertex positions (any leading batch dimensions, e.g. frames).
        faces: [T, 3] vertex indices (long).

    Returns:
        [..., V, 3] unit normals, oriented by the faces' winding (counter-clockwise seen from the
        normal's side); zero for vertices that no face uses.
    """
    v0, v1, v2 = (vertices.index_select(-2, faces[:, i]) for i in range(3))
    face_n = torch.linalg.cross(v1 - v0, v2 - v0)  # length = twice the area: area weighting
    # Accumulate over flat rows (one index_add_ per corner, whatever the batch dimensions).
    n_verts = vertices.shape[-2]
    batch = face_n.shape[:-2].numel()
    offsets = torch.arange(batch, device=faces.device)[:, None] * n_verts
    normals = torch.zeros(vertices.shape, dtype=vertices.dtype, device=vertices.device)
    flat = normals.view(-1, 3)
    for i in range(3):
        flat.index_add_(0, (faces[:, i] + offsets).reshape(-1), face_n.reshape(-1, 3))
    return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12)


def light_terms(
    normals: torch.Tensor, view_dirs: torch.Tensor, lighting: Lighting
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gain and offset of the lighting model: lit colour = clamp(albedo * gain + offset, 0, 1).

    Args:
        normals: [..., 3] unit normals in the camera frame, facing the camera.
        view_dirs: [..., 3] unit directions from the camera to the surface points.
        lighting: the light set-up.

    Returns:
        gain [...] and offset [...].
    """
    light = torch.tensor(lighting.key_direction, dtype=normals.dtype, device=normals.device)
    lambert = (normals @ (light / light.norm())).clamp_(min=0.0)
    gain = lighting.ambient + lighting.key * lambert
    if lighting.rim > 0:
        facing = (-(normals * view_dirs).sum(-1)).clamp_(0.0, 1.0)
        rim = lighting.rim * (1.0 - facing) ** lighting.rim_power
        return gain + 0.5 * rim, 0.5 * rim
    return gain, torch.zeros_like(gain)


def shade(
    colors: torch.Tensor, normals: torch.Tensor, view_dirs: torch.Tensor, lighting: Lighting
) -> torch.Tensor:
    """Light surface colours (channels first, so that every operation runs on contiguous rows).

    Args:
        colors: [3, M] albedo in 0..1.
        normals: [3, M] unit normals in the camera frame, facing the camera.
        view_dirs: [3, M] unit directions from the camera to the surface points (camera frame).
        lighting: the light set-up.

    Returns:
        [3, M] lit colours in 0..1.
    """
    gain, offset = light_terms(normals.T, view_dirs.T, lighting)
    return (colors * gain + offset).clamp_(0.0, 1.0)
