"""Batched z-buffer triangle rasteriser in plain PyTorch (the same code on CPU and CUDA).

All frames of a chunk and all persons share one z-buffer, so occlusion between persons is exact.
The pipeline per chunk of frames:

1. project every triangle of every frame into a supersampled image (s x the camera size);
2. (``zbuffer``) cut each triangle's pixel bounding box into blocks of a few fixed sizes (1..8 pixels a side;
   larger boxes are cut into tiles of up to 8 x 8, dropping tiles outside the triangle) and
   evaluate, for all blocks of one size at once, the three edge distances and the inverse depth
   with one matrix product;
3. pack (inverse depth, face index) into one int64 per covered pixel and keep the nearest with
   ``scatter_reduce(amax)``: the z-buffer;
4. shade the visible surfaces (perspective-correct barycentrics, colour, smooth normal, depth,
   person, lighting) like MSAA: once at the centre of an output pixel whose s x s samples all
   see one triangle, once per covered sample elsewhere (edges);
5. box-filter: every shaded sample adds its share of the pixel (1, or 1 / s^2 on edges) to its
   output pixel: soft edges, fractional coverage masks.

Conventions: pixel centres sit at integer + 0.5 (as ``Camera.project``); both sides of every
triangle are drawn. Triangles with a vertex closer than ``near`` to the camera plane (behind the
camera or crossing the near plane) are dropped, not clipped; degenerate triangles are dropped.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from amg_model.camera.camera import Camera
from amg_model.errors import RenderError
from amg_model.render.shading import DEFAULT_LIGHTING, Lighting, shade, vertex_normals
from amg_model.render.zbuffer import BLOCK_PAD, MAX_FRAGMENTS, rasterize_zbuffer

log = logging.getLogger(__name__)

MAX_SIZE = 4096


@dataclass
class RenderOutput:
    """The result of a render.

    Attributes:
        image: [F, H, W, 3] lit colours in 0..1 on pure black (anti-aliased edges).
        person_masks: [F, P, H, W] per-person visible coverage in 0..1 (occluded parts excluded).
        mask: [F, H, W] union coverage in 0..1.
        depth: [F, H, W] camera z in metres (coverage-weighted mean over the supersamples);
            0 where nothing is drawn.
        normals: [F, H, W, 3] unit normals in the camera frame (OpenCV: x right, y down,
            z forward), turned to face the camera (their z is <= 0); 0 where nothing is drawn.
    """

    image: torch.Tensor
    person_masks: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor
    normals: torch.Tensor


def render_meshes(
    vertices: Sequence[torch.Tensor],
    faces: Sequence[torch.Tensor],
    vertex_colors: Sequence[torch.Tensor],
    camera: Camera,
    supersample: int = 2,
    chunk_frames: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    uv: Sequence[torch.Tensor | None] | None = None,
    texture: Sequence[torch.Tensor | None] | None = None,
    lighting: Lighting | None = DEFAULT_LIGHTING,
    near: float = 0.01,
    cull_backfaces: bool = False,
    memory_budget_mb: int = 1024,
) -> RenderOutput:
    """Render P triangle meshes over F frames with one z-buffer.

    Args:
        vertices: P tensors [F, V_i, 3], world positions in metres (the device of the first one
            is the device of the render).
        faces: P tensors [T_i, 3] of vertex indices (long); either winding.
        vertex_colors: P tensors [V_i, 3] or [F, V_i, 3], albedo in 0..1.
        camera: F frames of intrinsics and extrinsics; its width and height are the output size.
        supersample: s, the render happens at s x the size and is averaged down (1 = no
            anti-aliasing).
        chunk_frames: frames per pass; None picks it from ``memory_budget_mb``.
        progress: called as progress(frames_done, frames_total) after every chunk.
        uv: optional P entries of [V_i, 2] texture coordinates (u right, v down, 0..1) or None.
        texture: optional P entries of [Ht, Wt, 3] images in 0..1 or None; a person with both uv
            and a texture takes its albedo from the texture instead of ``vertex_colors``.
        lighting: the light set-up, or None for unlit albedo.
        near: triangles with a vertex at camera z < near (metres) are dropped.
        cull_backfaces: skip triangles seen from behind (faces wound counter-clockwise seen from
            outside); only for closed meshes, where it halves the work without changing the image.
        memory_budget_mb: the working memory one chunk may use, about.

    Returns:
        RenderOutput with image, person_masks, mask, depth and normals at camera size.
    """
    if sys.byteorder != "little":
        raise RenderError(
            "The rasteriser packs its z-buffer for little-endian machines; this one is big-endian."
        )
    meshes = _prepare_meshes(vertices, faces, vertex_colors, camera, supersample, uv, texture)
    verts, tris, colors, face_person, uvs, textures = meshes
    device = verts.device
    n_frames, n_persons = verts.shape[0], len(vertices)
    width, height, s = camera.width, camera.height, supersample
    cam = _camera_to(camera, device)

    # Per frame: z-buffer and face map (24 bytes a supersample) + shading (about 400 bytes per
    # shaded sample, allowing for a third of the image covered); plus one pass of fragments.
    per_frame = (height * s + BLOCK_PAD) * (width * s + BLOCK_PAD) * 24 + height * width * s * s * 40
    per_frame += verts.shape[1] * 64 + tris.shape[0] * 96
    if chunk_frames is None:
        usable = memory_budget_mb * 2**20 - MAX_FRAGMENTS * 40
        chunk_frames = max(1, min(n_frames, usable // per_frame))
    if chunk_frames < 1:
        raise RenderError(f"chunk_frames is {chunk_frames}; it must be at least 1.")

    out = RenderOutput(
        image=torch.zeros(n_frames, height, width, 3, device=device),
        person_masks=torch.zeros(n_frames, n_persons, height, width, device=device),
        mask=torch.zeros(n_frames, height, width, device=device),
        depth=torch.zeros(n_frames, height, width, device=device),
        normals=torch.zeros(n_frames, height, width, 3, device=device),
    )
    # One z-buffer for all chunks: clearing it costs less than a fresh allocation (page faults).
    zbuf_buffer = torch.empty(
        min(chunk_frames, n_frames) * (height * s + BLOCK_PAD) * (width * s + BLOCK_PAD),
        dtype=torch.long,
        device=device,
    )
    for f0 in range(0, n_frames, chunk_frames):
        f1 = min(n_frames, f0 + chunk_frames)
        frames = slice(f0, f1)
        chunk_colors = colors[frames] if colors.shape[0] > 1 else colors
        _render_chunk(
            verts[frames], tris, chunk_colors, face_person, n_persons, uvs, textures,
            cam, frames, s, lighting, near, cull_backfaces, out, zbuf_buffer,
        )  # fmt: skip
        if progress is not None:
            progress(f1, n_frames)
    return out


def _prepare_meshes(vertices, faces, vertex_colors, camera, supersample, uv, texture):
    """Validate the inputs and concatenate the persons' meshes into one (face -> person id)."""
    if not isinstance(supersample, int) or not 1 <= supersample <= 8:
        raise RenderError(f"supersample is {supersample!r}; use an integer from 1 to 8.")
    if not 0 < camera.width <= MAX_SIZE or not 0 < camera.height <= MAX_SIZE:
        raise RenderError(
            f"Image size {camera.width}x{camera.height} is out of range; use 1 to {MAX_SIZE} pixels a side."
        )
    n = len(vertices)
    if n == 0:
        raise RenderError("Nothing to render: the list of meshes is empty.")
    if len(faces) != n or len(vertex_colors) != n:
        raise RenderError(
            f"Got {n} vertex sets, {len(faces)} face sets and {len(vertex_colors)} colour sets; "
            "give one of each per person."
        )
    uv = list(uv) if uv is not None else [None] * n
    texture = list(texture) if texture is not None else [None] * n
    if len(uv) != n or len(texture) != n:
        raise RenderError(f"uv and texture need one entry (or None) per person; there are {n} persons.")
    n_frames = camera.num_frames
    device = vertices[0].device
    all_v, all_f, all_c, all_p, all_uv, textures = [], [], [], [], [], []
    offset = 0
    for i, (v, f, c) in enumerate(zip(vertices, faces, vertex_colors, strict=True)):
        if v.ndim != 3 or v.shape[-1] != 3:
            raise RenderError(f"Mesh {i}: vertices have shape {tuple(v.shape)}; expected [F, V, 3].")
        if v.shape[0] != n_frames:
            raise RenderError(
                f"Mesh {i} has {v.shape[0]} frames but the camera has {n_frames}; give both the same count."
            )
        if not torch.isfinite(v).all():
            raise RenderError(f"Mesh {i}: vertices contain NaN or infinite values.")
        if f.ndim != 2 or f.shape[-1] != 3:
            raise RenderError(f"Mesh {i}: faces have shape {tuple(f.shape)}; expected [T, 3].")
        if f.numel() and (int(f.min()) < 0 or int(f.max()) >= v.shape[1]):
            raise RenderError(f"Mesh {i}: face indices fall outside its {v.shape[1]} vertices.")
        bad_frames = c.ndim == 3 and c.shape[0] != n_frames
        if c.ndim not in (2, 3) or c.shape[-2:] != (v.shape[1], 3) or bad_frames:
            raise RenderError(
                f"Mesh {i}: colours have shape {tuple(c.shape)}; expected [{v.shape[1]}, 3] "
                f"or [{n_frames}, {v.shape[1]}, 3]."
            )
        c = c.to(device=device, dtype=torch.float32)
        all_c.append(c if c.ndim == 3 else c[None])
        all_v.append(v.to(device=device, dtype=torch.float32))
        all_f.append(f.to(device=device, dtype=torch.long) + offset)
        all_p.append(torch.full((f.shape[0],), i, dtype=torch.long, device=device))
        if (uv[i] is None) != (texture[i] is None):
            raise RenderError(f"Mesh {i}: give both uv and texture, or neither.")
        if uv[i] is not None:
            if tuple(uv[i].shape) != (v.shape[1], 2):
                raise RenderError(f"Mesh {i}: uv has shape {tuple(uv[i].shape)}; expected [{v.shape[1]}, 2].")
            if texture[i].ndim != 3 or texture[i].shape[-1] != 3:
                shape = tuple(texture[i].shape)
                raise RenderError(f"Mesh {i}: texture has shape {shape}; expected [H, W, 3].")
            all_uv.append(uv[i].to(device=device, dtype=torch.float32))
            textures.append(texture[i].to(device=device, dtype=torch.float32).permute(2, 0, 1)[None])
        else:
            all_uv.append(torch.zeros(v.shape[1], 2, device=device))
            textures.append(None)
        offset += v.shape[1]
    # Colours: [F, V, 3] only if some person has per-frame colours, else [1, V, 3].
    if any(c.shape[0] > 1 for c in all_c) and n_frames > 1:
        all_c = [c.expand(n_frames, -1, -1) for c in all_c]
    colors = torch.cat(all_c, dim=1)
    uvs = torch.cat(all_uv) if any(t is not None for t in textures) else None
    return torch.cat(all_v, 1), torch.cat(all_f), colors, torch.cat(all_p), uvs, textures


def _camera_to(camera: Camera, device: torch.device) -> Camera:
    """The camera's tensors as float32 on ``device``."""

    def conv(t):
        return t.to(device=device, dtype=torch.float32)

    return Camera(
        fx=conv(camera.fx), fy=conv(camera.fy), cx=conv(camera.cx), cy=conv(camera.cy),
        width=camera.width, height=camera.height, w2c=conv(camera.w2c),
    )  # fmt: skip


def _render_chunk(verts, tris, colors, face_person, n_persons, uvs, textures, cam, frames, s, lighting,
                  near, cull_backfaces, out, zbuf_buffer=None):  # fmt: skip
    """Render frames ``frames`` (a slice) of the concatenated mesh into ``out``."""
    fc, n_verts = verts.shape[0], verts.shape[1]
    n_tris = tris.shape[0]
    hs, ws = cam.height * s, cam.width * s
    rot = cam.w2c[frames, :3, :3]
    pc = verts @ rot.transpose(1, 2) + cam.w2c[frames, None, :3, 3]  # [Fc, V, 3] camera frame
    fx, fy = cam.fx[frames, None] * s, cam.fy[frames, None] * s
    cx, cy = cam.cx[frames, None] * s, cam.cy[frames, None] * s
    z = pc[..., 2]
    zs = torch.where(z > near, z, torch.ones_like(z))
    sx = fx * pc[..., 0] / zs + cx
    sy = fy * pc[..., 1] / zs + cy

    # Triangles of all frames: corner vertex indices into the flattened [Fc * V] vertex list.
    frame_of = torch.arange(fc, device=verts.device)
    tri_v = (tris[None] + frame_of[:, None, None] * n_verts).reshape(-1, 3)  # [N, 3]
    flat_v = tri_v.reshape(-1)
    tx, ty, tz = (t.reshape(-1).index_select(0, flat_v).view(-1, 3) for t in (sx, sy, z))
    zbuf = rasterize_zbuffer(
        tx, ty, tz, frame_of.repeat_interleave(n_tris), fc, hs, ws, near, cull_backfaces, zbuf_buffer
    )
    hp, wp = zbuf.shape[1:]

    # Where to shade (like MSAA): once at the centre of an output pixel whose samples all see one
    # face, once per covered sample elsewhere (edges). From here on every per-sample quantity is
    # a row of M values (channels first): contiguous, fast on the CPU.
    frame, px, py, opix, weight, f = _shading_samples(zbuf[:, :hs, :ws], s)
    del zbuf

    # Perspective-correct barycentrics: screen-space ones divided by depth, renormalised.
    corners = torch.cat([tx.T, ty.T, tz.T]).index_select(1, f)  # [9, M]: x0 x1 x2 y0 y1 y2 z0 z1 z2
    x0, x1, x2, y0, y1, y2, z0, z1, z2 = corners
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    l0 = (x2 - x1) * (py - y1) - (y2 - y1) * (px - x1)
    l1 = (x0 - x2) * (py - y2) - (y0 - y2) * (px - x2)
    w0, w1, w2 = l0 / z0, l1 / z1, (area2 - l0 - l1) / z2
    inv_sum = 1.0 / (w0 + w1 + w2)
    depth = area2 * inv_sum  # 1 / sum(l_i / (area2 z_i))
    b0, b1 = w0 * inv_sum, w1 * inv_sum
    b2 = 1.0 - b0 - b1

    # Per-vertex attributes (camera-frame normal, albedo, uv) interpolated channels-first.
    attrs = [vertex_normals(pc, tris), colors.expand(fc, -1, -1)]
    if uvs is not None:
        attrs.append(uvs.expand(fc, -1, -1))
    table = torch.cat(attrs, -1).reshape(fc * n_verts, -1).T.contiguous()  # [A, Fc * V]
    vid = tri_v.T.contiguous().index_select(1, f)  # [3, M]
    interp = table.index_select(1, vid[0]) * b0
    interp += table.index_select(1, vid[1]) * b1
    interp += table.index_select(1, vid[2]) * b2
    del table, vid, corners
    normal = interp[0:3] * torch.rsqrt((interp[0:3] ** 2).sum(0) + 1e-24)
    albedo = interp[3:6]
    view = torch.stack(
        [(px - cx[frame, 0]) / fx[frame, 0], (py - cy[frame, 0]) / fy[frame, 0], torch.ones_like(px)]
    )
    view *= torch.rsqrt((view**2).sum(0))
    normal *= torch.where((normal * view).sum(0) > 0, -1.0, 1.0)  # both sides: face the camera

    person = face_person.index_select(0, f % n_tris)
    if uvs is not None:
        for p, tex in enumerate(textures):
            if tex is not None:
                sel = (person == p).nonzero()[:, 0]
                grid = (interp[6:8, sel].T * 2 - 1).view(1, 1, -1, 2)
                sampled = F.grid_sample(tex, grid, padding_mode="border", align_corners=False)
                albedo[:, sel] = sampled[0, :, 0]
    color = shade(albedo, normal, view, lighting) if lighting is not None else albedo.clamp(0, 1)

    # Box filter: every sample adds its weight (its share of the output pixel) to the pixel.
    hw = cam.height * cam.width
    gpix = opix + frames.start * hw
    image, normals = out.image.view(-1), out.normals.view(-1)
    for c in range(3):
        image.index_add_(0, gpix * 3 + c, color[c] * weight)
        normals.index_add_(0, gpix * 3 + c, normal[c] * weight)
    out.depth.view(-1).index_add_(0, gpix, depth * weight)
    out.mask.view(-1).index_add_(0, gpix, weight)
    ppix = ((frame + frames.start) * n_persons + person) * hw + opix - frame * hw
    out.person_masks.view(-1).index_add_(0, ppix, weight)

    # Depth: coverage-weighted mean; normals: unit length (only where something was drawn).
    # Whole-chunk passes (no gathers): undrawn pixels hold 0 and stay 0 (0 * rsqrt(1e-24) = 0).
    cover = out.mask[frames]
    dep = out.depth[frames]
    dep.copy_(torch.where(cover > 0, dep / cover, dep))
    nrm = out.normals[frames]
    nrm.mul_(torch.rsqrt((nrm * nrm).sum(-1, keepdim=True) + 1e-24))


def _shading_samples(key: torch.Tensor, s: int):
    """The samples to shade, from a supersampled z-buffer.

    Args:
        key: [Fc, H * s, W * s] int64 z-buffer keys (face index + 1 in the low 32 bits, inverse
            depth bits in the high ones, 0 where nothing is drawn).
        s: the supersampling factor.

    Returns:
        frame [M], px [M], py [M] (supersampled pixel coordinates of the sample), opix [M] (output
        pixel index within the chunk), weight [M] (share of the output pixel: 1 for a pixel
        whose s x s samples all see one face, shaded once at its centre; 1 / s^2 for each
        covered sample of any other pixel), face [M] (index into the chunk's triangles).
    """
    fc, hs, ws = key.shape
    h, w = hs // s, ws // s
    words = key.view(torch.int32)  # [Fc, hs, 2 ws]: (face + 1, inverse depth bits) per sample
    # Face + 1 where covered, 0 elsewhere (the face word of an uncovered sample means nothing),
    # as [Fc * h, s, w, s]: the samples of an output pixel share a row-block and a column-block.
    face = torch.where(words[..., 1::2] > 0, words[..., 0::2], 0).view(fc * h, s, w, s)
    fmin = fmax = face[:, 0, :, 0]
    for dy in range(s):
        for dx in range(s):
            if dy or dx:
                sub = face[:, dy, :, dx]
                fmin, fmax = torch.minimum(fmin, sub), torch.maximum(fmax, sub)
    fmin = fmin.reshape(-1)
    whole_mask = (fmin > 0) & (fmin == fmax.reshape(-1))
    whole = whole_mask.nonzero()[:, 0]
    mixed = ((fmax.reshape(-1) > 0) & ~whole_mask).nonzero()[:, 0]
    # Pixels of one face: their centre, weight 1.
    rem = whole % (h * w)
    y_u = rem // w
    frame_u = whole // (h * w)
    px_u = ((rem - y_u * w).float() + 0.5) * s
    py_u = (y_u.float() + 0.5) * s
    # Mixed pixels: each covered sample, weight 1 / s^2. Flat sample index of (pixel, dy, dx):
    # ((row * s + dy) * w + x) * s + dx with row = pixel // w (frames stacked by rows).
    row = mixed // w
    offs = torch.arange(s, device=key.device)
    sub_off = (offs[:, None] * (w * s) + offs[None, :]).reshape(-1)  # [s * s]
    sample = ((row * (s * w * s) + (mixed - row * w) * s)[:, None] + sub_off).reshape(-1)
    f_m = face.reshape(-1).index_select(0, sample)  # [Mm * s * s]
    keep = (f_m > 0).nonzero()[:, 0]
    owner = keep // (s * s)
    sample = sample.index_select(0, keep)
    srow = sample // ws  # row of the sample in the stacked frames
    mixed_k = mixed.index_select(0, owner)
    frame = torch.cat([frame_u, mixed_k // (h * w)])
    px = torch.cat([px_u, (sample - srow * ws).float() + 0.5])
    py = torch.cat([py_u, (srow % hs).float() + 0.5])
    opix = torch.cat([whole, mixed_k])
    weight = torch.cat([torch.ones_like(px_u), torch.full_like(px[px_u.numel() :], 1.0 / (s * s))])
    face_index = torch.cat([fmin.index_select(0, whole), f_m.index_select(0, keep)]).long() - 1
    return frame, px, py, opix, weight, face_index
