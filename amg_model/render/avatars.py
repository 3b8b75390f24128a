"""Render a Motion as coloured, lit avatars: AMG's conditioning video."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch

from amg_model.camera.camera import Camera
from amg_model.errors import AMGError, RenderError
from amg_model.render.appearance import Appearance, appearance_preset, vertex_colors
from amg_model.render.raster import MAX_SIZE, RenderOutput, render_meshes
from amg_model.render.shading import DEFAULT_LIGHTING, Lighting
from amg_model.smpl.motion import Motion

log = logging.getLogger(__name__)

AppearanceSpec = Appearance | str | None


def render_avatars(
    body_model,
    motion: Motion,
    camera: Camera,
    appearance: AppearanceSpec | Sequence[AppearanceSpec] = None,
    size: tuple[int, int] | None = None,
    supersample: int = 2,
    device: torch.device | str | None = None,
    progress: Callable[[int, int], None] | None = None,
    lighting: Lighting | None = DEFAULT_LIGHTING,
    chunk_frames: int | None = None,
) -> RenderOutput:
    """Pose every person of ``motion`` and render them together through ``camera``.

    Args:
        body_model: a BodyModel (``amg_model.smpl.body``) for every person, or a list with one
            per person.
        motion: P persons over F frames.
        camera: F frames; its width and height are the output size unless ``size`` is given.
        appearance: one look for everybody or a list per person; each an Appearance, a preset
            name ("casual", "formal", "sport", "random"; every person gets different colours) or
            None (the "casual" preset).
        size: (width, height) override in pixels; the camera is resized (``Camera.resized``).
        supersample: anti-aliasing factor s (the render happens at s x the size).
        device: where to render; default the body model's device (bodies are posed on their own
            device, then moved).
        progress: called as progress(frames_done, frames_total).
        lighting: the light set-up, or None for unlit colours.
        chunk_frames: frames per rasteriser pass; None chooses from a memory budget.

    Returns:
        RenderOutput (image [F, H, W, 3], person_masks [F, P, H, W], mask, depth, normals).
    """
    persons = motion.persons
    if not persons:
        raise RenderError("The motion has no persons to render; add at least one person.")
    n_persons = len(persons)
    models = list(body_model) if isinstance(body_model, (list, tuple)) else [body_model] * n_persons
    if len(models) != n_persons:
        raise RenderError(
            f"Got {len(models)} body models for {n_persons} persons; give one, or one per person."
        )
    looks = _appearances(appearance, n_persons)
    if size is not None:
        width, height = (int(v) for v in size)
        if not (0 < width <= MAX_SIZE and 0 < height <= MAX_SIZE):
            raise RenderError(
                f"Render size {width}x{height} is out of range; use 1 to {MAX_SIZE} pixels a side."
            )
        camera = camera.resized(width, height)
    try:
        camera.validate("render camera")
    except AMGError as err:
        raise RenderError(str(err)) from err
    frames = camera.num_frames
    for i, person in enumerate(persons):
        name = person.name or str(i)
        if person.num_frames != frames:
            raise RenderError(
                f"Person {name} has {person.num_frames} frames but the camera has {frames}; "
                "build the camera with the motion's frame count, or trim or loop the motion."
            )
        for field, t in person.frame_tensors().items():
            if not torch.isfinite(t).all():
                raise RenderError(f"Person {name}: {field} contains NaN or infinite values; fix the motion.")
    device = torch.device(device) if device is not None else models[0].device

    vertices, faces, colors, uvs, textures = [], [], [], [], []
    regions_cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    for i, (person, model, look) in enumerate(zip(persons, models, looks, strict=True)):
        # Pose where the body model lives (the caller's model is never moved); render on device.
        with torch.no_grad():
            posed = model.pose_person(person).vertices.to(device=device, dtype=torch.float32)
        if id(model) not in regions_cache:
            regions_cache[id(model)] = (_vertex_regions(model), _rest_vertices(model))
        regions, rest = regions_cache[id(model)]
        vertices.append(posed)
        faces.append(model.faces.to(device))
        colors.append(vertex_colors(look, regions.to(device), rest))
        if look.uv is not None and tuple(look.uv.shape) != (posed.shape[1], 2):
            raise RenderError(
                f"Person {person.name or i}: uv has shape {tuple(look.uv.shape)}; "
                f"the body has {posed.shape[1]} vertices."
            )
        uvs.append(look.uv)
        textures.append(look.texture)
    has_texture = any(t is not None for t in textures)
    log.debug("rendering %d persons, %d frames at %dx%d", n_persons, frames, camera.width, camera.height)
    return render_meshes(
        vertices, faces, colors, camera.to(device=device, dtype=torch.float32), supersample=supersample,
        chunk_frames=chunk_frames, progress=progress, uv=uvs if has_texture else None,
        texture=textures if has_texture else None, lighting=lighting, cull_backfaces=True,
    )  # fmt: skip


def _appearances(spec, n_persons: int) -> list[Appearance]:
    """One Appearance per person from None, a preset name, an Appearance or a list of those."""
    if isinstance(spec, (list, tuple)):
        if len(spec) != n_persons:
            raise RenderError(
                f"Got {len(spec)} appearances for {n_persons} persons; give one, or one per person."
            )
        specs = list(spec)
    else:
        specs = [spec] * n_persons
    looks = []
    for i, s in enumerate(specs):
        if s is None:
            s = "casual"
        look = appearance_preset(s, index=i) if isinstance(s, str) else s
        if not isinstance(look, Appearance):
            raise RenderError(
                f"Appearance {i} is a {type(look).__name__}; give an Appearance or a preset name."
            )
        look.validate(f"appearance of person {i}")
        looks.append(look)
    return looks


def _vertex_regions(model) -> torch.Tensor:
    """[V] body-part region per vertex (amg_model.smpl.landmarks.REGION_* values)."""
    from amg_model.smpl.body import vertex_regions

    return vertex_regions(model).to(torch.long)


def _rest_vertices(model) -> torch.Tensor:
    """[V, 3] vertices of the unposed mean body (the domain of the colour variation)."""
    kw = {"device": model.device, "dtype": model.dtype}
    eye = torch.eye(3, **kw)
    with torch.no_grad():
        out = model(
            torch.zeros(1, model.num_betas, **kw), eye[None], eye.expand(1, model.num_body_joints, 3, 3),
            torch.zeros(1, 3, **kw),
        )  # fmt: skip
    return out.vertices[0].float()
