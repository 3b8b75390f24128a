"""Batched z-buffer triangle rasteriser in plain PyTorch (the same code on CPU and CUDA).

All frames of a chunk and all persons share one z-buffer, so occlusion between persons is exact.
The pipeline per chunk of frames:

1. project every triangle of every frame into a supersampled image (s x the camera size);
2. (``zbuffer``) find, for every row of each triangle's pixel bounding box, the exact span of
   covered pixels from its three edges, and evaluate the inverse depth along all spans of one
   length at once;
3. pack (inverse depth, face index) into one int64 per covered pixel and keep the nearest with
   ``scatter_reduce(amax)``: the z-buffer;
4. shade the visible surfaces like MSAA: once at the centre of an output pixel whose s x s samples
   are all covered by one smooth surface (inverse depths within a small spread), once per covered
   sample elsewhere (silhouettes, depth steps). Lighting is per vertex (the triangles of an avatar
   are a few pixels large); every attribute is interpolated perspective-correctly from planes
   precomputed per triangle;
5. write whole pixels once; edge samples add their share (1 / s^2) of the pixel: soft edges,
   fractional coverage masks.

On the CPU, chunks of frames run on as many threads as ``torch.get_num_threads()`` (``workers``):
most operators here are single-threaded inside torch, so the threads, not the operators, use the
cores.

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
from amg_model.render.shading import DEFAULT_LIGHTING, Lighting, light_terms, vertex_normals
from amg_model.render.workers import run_chunks
from amg_model.render.zbuffer import BLOCK_PAD, MAX_FRAGMENTS, rasterize_zbuffer

log = logging.getLogger(__name__)

MAX_SIZE = 4096
# Work per pass on the CPU: fragments per z-buffer pass and supersamples per chunk. Small passes
# keep every temporary small enough to be reused from the allocator's cache instead of fresh
# (page-faulting) memory and the z-buffer writes in cache; on a GPU each pass costs kernel
# launches, so it takes large passes (MAX_FRAGMENTS, chunks from the memory budget).
_CPU_FRAGMENTS = 1 << 17
_CPU_CHUNK_SAMPLES = 1 << 21


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
        memory_budget_mb: the working memory of the chunks in flight, about (it sets the chunk
            size, and on the CPU bounds the number of worker threads).

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
    small_passes = device.type == "cpu"
    if chunk_frames is None:
        usable = memory_budget_mb * 2**20 - MAX_FRAGMENTS * 40
        chunk_frames = max(1, min(n_frames, usable // per_frame))
        if small_passes:
            chunk_frames = max(1, min(chunk_frames, _CPU_CHUNK_SAMPLES // (height * width * s * s)))
    if chunk_frames < 1:
        raise RenderError(f"chunk_frames is {chunk_frames}; it must be at least 1.")

    out = RenderOutput(
        image=_zeros(n_frames, height, width, 3, device=device),
        person_masks=_zeros(n_frames, n_persons, height, width, device=device),
        mask=_zeros(n_frames, height, width, device=device),
        depth=_zeros(n_frames, height, width, device=device),
        normals=_zeros(n_frames, height, width, 3, device=device),
    )
    # On the CPU, chunks run on as many threads as the caller's intra-op setting (most operators
    # here are single-threaded inside torch), as far as the memory budget holds their working sets.
    workers = 1
    if small_passes:
        usable = memory_budget_mb * 2**20 - _CPU_FRAGMENTS * 40
        workers = max(1, min(torch.get_num_threads(), usable // (chunk_frames * per_frame)))
    zbuf_size = min(chunk_frames, n_frames) * (height * s + BLOCK_PAD) * (width * s + BLOCK_PAD)

    def work(frames: slice, scratch: dict) -> None:
        if not scratch:
            # One z-buffer per thread for all its chunks: clearing it costs less than a fresh
            # allocation (page faults); the pixel tables are built once per chunk size.
            scratch["zbuf"] = torch.empty(zbuf_size, dtype=torch.long, device=device)
            scratch["tables"] = {}
        chunk_colors = colors[frames] if colors.shape[0] > 1 else colors
        _render_chunk(
            verts[frames], tris, chunk_colors, face_person, n_persons, uvs, textures,
            cam, frames, s, lighting, near, cull_backfaces, out, scratch["zbuf"],
            _CPU_FRAGMENTS if small_passes else MAX_FRAGMENTS, scratch["tables"],
        )  # fmt: skip

    frames_done = 0

    def done(frames: slice) -> None:
        nonlocal frames_done
        frames_done += frames.stop - frames.start
        if progress is not None:
            progress(frames_done, n_frames)

    # Every chunk writes its own frames of the outputs, whichever thread runs it.
    chunks = [slice(f0, min(n_frames, f0 + chunk_frames)) for f0 in range(0, n_frames, chunk_frames)]
    run_chunks(chunks, work, workers, done)
    return out


_HUGE_PAGE = 1 << 21
_madvise = None


def _zeros(*shape: int, device: torch.device) -> torch.Tensor:
    """torch.zeros, with large CPU tensors on transparent huge pages where Linux offers them.

    The outputs of a long render are hundreds of MB of fresh memory; faulting it in 4 KiB pages
    costs more than filling it (about 110 ms against 40 ms for 200 MB here). The tensor's
    2 MiB-aligned interior is advised MADV_HUGEPAGE before it is first touched; where that is not
    possible (other systems, THP off) it is an ordinary zeroed tensor.
    """
    global _madvise
    t = torch.empty(*shape, device=device)
    nbytes = t.numel() * t.element_size()
    linux_cpu = device.type == "cpu" and sys.platform.startswith("linux")
    if linux_cpu and _madvise is not False and nbytes >= 4 * _HUGE_PAGE:
        try:
            if _madvise is None:
                import ctypes

                libc = ctypes.CDLL(None, use_errno=True)
                libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                _madvise = libc.madvise
            start = (t.data_ptr() + _HUGE_PAGE - 1) & ~(_HUGE_PAGE - 1)
            end = (t.data_ptr() + nbytes) & ~(_HUGE_PAGE - 1)
            _madvise(start, end - start, 14)  # MADV_HUGEPAGE; a failure only loses the speed-up
        except (OSError, AttributeError):
            _madvise = False
    return t.zero_()


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
                  near, cull_backfaces, out, zbuf_buffer=None, max_fragments=MAX_FRAGMENTS,
                  pixel_tables=None):  # fmt: skip
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
    tri_frame = frame_of.repeat_interleave(n_tris)
    zbuf = rasterize_zbuffer(
        tx, ty, tz, tri_frame, fc, hs, ws, near, cull_backfaces, zbuf_buffer, max_fragments
    )
    pix, face, px, py, n_whole, edge_pix, slot = _shading_points(zbuf, s, cam.height, cam.width, pixel_tables)
    del zbuf

    # Per vertex: the smooth normal and the lit colour (lighting per vertex: the triangles are a
    # few pixels large, so per-pixel lighting looks the same and costs far more).
    normals = vertex_normals(pc, tris)  # [Fc, V, 3]
    view = pc * torch.rsqrt((pc * pc).sum(-1, keepdim=True) + 1e-24)
    facing = torch.where((normals * view).sum(-1, keepdim=True) > 0, -normals, normals)
    if lighting is not None:
        gain, offset = light_terms(facing, view, lighting)
    else:
        gain, offset = torch.ones_like(z), torch.zeros_like(z)
    attrs = [normals, (colors * gain[..., None] + offset[..., None]).clamp_(0.0, 1.0)]
    if uvs is not None:
        attrs += [uvs.expand(fc, -1, -1), gain[..., None], offset[..., None]]
    vattr = torch.cat(attrs, -1).reshape(fc * n_verts, -1)
    # Interpolation planes only for the triangles that some point sees (a third of them or less).
    used = torch.zeros(tx.shape[0], dtype=torch.bool, device=tx.device).index_fill_(0, face, True)
    used = used.nonzero()[:, 0]
    compact = torch.empty(tx.shape[0], dtype=torch.long, device=tx.device)
    compact[used] = torch.arange(used.numel(), device=tx.device)
    corner_attrs = vattr.index_select(0, tri_v.index_select(0, used).view(-1)).view(-1, 3, vattr.shape[1])
    planes = _face_planes(
        *(t.index_select(0, used) for t in (tx, ty, tz)), corner_attrs, used // n_tris, fx, fy, cx, cy
    )
    del vattr, attrs, corner_attrs

    # Every attribute of a point is an affine function of its pixel position divided by another
    # (perspective-correct interpolation): evaluate the planes of its face at (px, py).
    # The a, b and c of every plane are gathered as three contiguous [M, R] arrays (the
    # multiply-adds run vectorised on them: 30 % faster than on strided columns of [M, 3, R]).
    plane_of = compact.index_select(0, face)
    ca, cb, vals = (planes[i].index_select(0, plane_of) for i in range(3))
    vals.addcmul_(ca, px[:, None]).addcmul_(cb, py[:, None])  # [M, R]
    del ca, cb
    # A whole pixel's centre can lie outside the face of its first sample; far outside a sliver
    # seen edge-on, the extrapolation runs away: evaluate those at the first sample instead.
    b0, b1 = vals[:n_whole, 1] / vals[:n_whole, 0], vals[:n_whole, 2] / vals[:n_whole, 0]
    far = torch.minimum(torch.minimum(b0, b1), 1.0 - b0 - b1) < -_EXTRAPOLATION
    far = far.nonzero()[:, 0]
    if far.numel():
        back = (s - 1) / 2
        ra, rb, v = (planes[i].index_select(0, plane_of.index_select(0, far)) for i in range(3))
        v.addcmul_(ra, px.index_select(0, far)[:, None] - back)
        vals[far] = v.addcmul_(rb, py.index_select(0, far)[:, None] - back)
    depth = 1.0 / vals[:, 0]
    normal = vals[:, 3:6]
    n0, n1, n2 = normal.unbind(1)
    view_dot = (n0 * vals[:, -2]).addcmul_(n1, vals[:, -1]).add_(n2)
    # Unit length, turned to face the camera (the sign of the normal . view direction). The
    # squared length from the columns (a sum over 3 strided elements per row is slower).
    sq = (n0 * n0).add_(n1 * n1).add_(n2 * n2).add_(1e-24)
    normal = normal * torch.copysign(sq.rsqrt_(), view_dot.neg_())[:, None]
    color = vals[:, 6:9] * depth[:, None]
    if uvs is not None:
        person = face_person.index_select(0, face % n_tris)
        for p, tex in enumerate(textures):
            if tex is not None:
                sel = (person == p).nonzero()[:, 0]
                sv = vals.index_select(0, sel) * depth.index_select(0, sel)[:, None]
                grid = (sv[:, 9:11] * 2 - 1).view(1, 1, -1, 2)
                albedo = F.grid_sample(tex, grid, padding_mode="border", align_corners=False)[0, :, 0].T
                color[sel] = albedo * sv[:, 11:12] + sv[:, 12:13]
    color.clamp_(0.0, 1.0)
    del vals

    # Output pixels: whole ones are written once; an edge pixel gets the sum of its samples' shares
    # (1 / s^2): soft edges, fractional coverage.
    hw = cam.height * cam.width
    gpix = pix + frames.start * hw
    person_off = (frame_of[:, None] * (n_persons - 1) + face_person[None]).reshape(-1) * hw
    ppix = gpix + person_off.index_select(0, face) + frames.start * (n_persons - 1) * hw
    image, normals_out = out.image.view(-1, 3), out.normals.view(-1, 3)
    depth_out, mask_out, pmask_out = out.depth.view(-1), out.mask.view(-1), out.person_masks.view(-1)
    w_ = slice(0, n_whole)
    image.index_copy_(0, gpix[w_], color[w_])
    normals_out.index_copy_(0, gpix[w_], normal[w_])
    depth_out.index_copy_(0, gpix[w_], depth[w_])
    mask_out.index_fill_(0, gpix[w_], 1.0)
    pmask_out.index_fill_(0, ppix[w_], 1.0)
    if edge_pix.numel():
        # Edge pixels: sum their samples in a compact buffer, then write each pixel once.
        e_, n_edge, share = slice(n_whole, None), edge_pix.numel(), 1.0 / (s * s)
        sums = torch.cat([color[e_], normal[e_], depth[e_, None]], 1)  # [Me, 7]
        flat = (slot[:, None] * 7 + torch.arange(7, device=slot.device)).reshape(-1)
        sums = torch.zeros(n_edge * 7, device=slot.device).index_add_(0, flat, sums.reshape(-1)).view(-1, 7)
        count = torch.zeros(n_edge, device=slot.device).index_add_(0, slot, torch.ones_like(depth[e_]))
        ge = edge_pix + frames.start * hw
        image.index_copy_(0, ge, sums[:, :3] * share)
        n = sums[:, 3:6]
        normals_out.index_copy_(0, ge, n * torch.rsqrt((n * n).sum(1, keepdim=True) + 1e-24))
        depth_out.index_copy_(0, ge, sums[:, 6] / count)  # coverage-weighted mean
        mask_out.index_copy_(0, ge, count * share)
        pmask_out.index_add_(0, ppix[e_], torch.full_like(depth[e_], share))


def _face_planes(tx, ty, tz, corner_attrs, frame, fx, fy, cx, cy) -> torch.Tensor:
    """Per triangle, the planes (a, b, c) of a * px + b * py + c for perspective-correct interpolation.

    Args:
        tx, ty, tz: [N, 3] screen corners and camera depths of N triangles.
        corner_attrs: [N, 3, C] vertex attributes at the corners.
        frame: [N] the frame (within the chunk) of each triangle.
        fx, fy, cx, cy: [Fc, 1] (supersampled) intrinsics.

    Returns:
        [3, N, R = 3 + C + 2]: the a, b and c of R planes. Plane 0 is the inverse depth; planes
        1, 2 the first two barycentric coordinates times the inverse depth; planes 3..C + 2 each
        attribute times the inverse depth; the last two the view ray at z = 1: (px - cx) / fx, (py - cy) / fy.
    """
    x0, x1, x2 = tx.unbind(1)
    y0, y1, y2 = ty.unbind(1)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    # l_i = (x_k - x_j)(py - y_j) - (y_k - y_j)(px - x_j), the edge function opposite corner i;
    # l_i / (area2 z_i) summed over i is the inverse depth at (px, py).
    k = []
    for i in range(3):
        j, kk = (i + 1) % 3, (i + 2) % 3
        a = ty[:, j] - ty[:, kk]
        b = tx[:, kk] - tx[:, j]
        c = -a * tx[:, j] - b * ty[:, j]
        k.append(torch.stack([a, b, c], 1) / (area2 * tz[:, i])[:, None])  # [N, 3]
    attr = corner_attrs[:, 0, :, None] * k[0][:, None]
    attr.addcmul_(corner_attrs[:, 1, :, None], k[1][:, None])
    attr.addcmul_(corner_attrs[:, 2, :, None], k[2][:, None])  # [N, C, 3]
    ones, zeros = torch.ones_like(fx), torch.zeros_like(fx)
    ray = torch.stack(
        [torch.cat([ones / fx, zeros, -cx / fx], 1), torch.cat([zeros, ones / fy, -cy / fy], 1)], 1
    )  # [Fc, 2, 3]
    ray = ray.index_select(0, frame)
    planes = torch.cat([(k[0] + k[1] + k[2])[:, None], k[0][:, None], k[1][:, None], attr, ray], 1)
    return planes.permute(2, 0, 1).contiguous()


# Spread of the samples' inverse depths (as float bits: 2^23 is a factor of two) below which an
# output pixel whose samples are all covered counts as one smooth surface, shaded once at its
# centre: about 0.2-0.4 %, 1-2 cm at 4 m. Larger steps (silhouettes over other surfaces) are edges.
_SMOOTH_BITS = 1 << 15
# How far (in barycentric coordinates) a whole pixel's centre may lie outside its face.
_EXTRAPOLATION = 0.5


def _pixel_tables(fc: int, h: int, w: int, s: int, hp: int, wp: int, device: torch.device):
    """Per output pixel of a chunk: the z-buffer index of its first sample and that sample's centre.

    Looking these up is a gather; computing them from the pixel index takes divisions and int64
    multiplications, several times slower on the CPU. Built once per chunk size.
    """
    frame = torch.arange(fc, device=device)[:, None, None]
    y = torch.arange(h, device=device)[None, :, None]
    x = torch.arange(w, device=device)[None, None, :]
    first = (frame * (hp * wp) + y * (s * wp) + x * s).reshape(-1)
    fx = (x * s).float().add_(0.5).expand(fc, h, w).reshape(-1)
    fy = (y * s).float().add_(0.5).expand(fc, h, w).reshape(-1)
    return first, fx, fy


def _shading_points(zbuf: torch.Tensor, s: int, h: int, w: int, tables: dict | None = None):
    """The points to shade, from a supersampled z-buffer (like MSAA).

    An output pixel whose s x s samples are all covered, with inverse depths within
    ``_SMOOTH_BITS``, is shaded once at its centre with the face of its first sample (the
    attributes are continuous across the shared edges of a mesh); every covered sample of any
    other covered pixel (an edge: silhouette or depth step) is shaded on its own.

    Args:
        zbuf: [Fc, hp, wp] int64 z-buffer from ``rasterize_zbuffer`` (the image is its top-left
            h * s x w * s part).
        s: the supersampling factor; h, w: the output size.
        tables: optional dict that keeps the ``_pixel_tables`` of each chunk size between calls.

    Returns:
        pix [M] (output pixel index within the chunk), face [M], px [M], py [M] (supersampled
        coordinates of the point), n_whole (the first n_whole points are whole pixels, the rest
        edge samples), edge_pix [E] (the edge pixels), slot [M - n_whole] (each edge sample's
        pixel in edge_pix).
    """
    fc, hp, wp = zbuf.shape
    # Inverse depth bits of every sample (0 where nothing is drawn) as [Fc, h, s, w, s].
    # Rows first (their results are contiguous), then the columns: 30 % faster than s * s
    # strided passes.
    idepth = zbuf.view(torch.int32)[:, : h * s, 1 : 2 * w * s : 2].view(fc, h, s, w * s)
    lo = hi = idepth[:, :, 0]
    for dy in range(1, s):
        lo, hi = torch.minimum(lo, idepth[:, :, dy]), torch.maximum(hi, idepth[:, :, dy])
    lo, hi = lo.view(fc, h, w, s), hi.view(fc, h, w, s)
    lo_x, hi_x = lo[..., 0], hi[..., 0]
    for dx in range(1, s):
        lo_x, hi_x = torch.minimum(lo_x, lo[..., dx]), torch.maximum(hi_x, hi[..., dx])
    lo, hi = lo_x, hi_x.reshape(-1)
    pix = (hi > 0).nonzero()[:, 0]
    lo, hi = lo.reshape(-1).index_select(0, pix), hi.index_select(0, pix)
    smooth = (lo > 0) & (hi - lo <= _SMOOTH_BITS)
    whole = pix.index_select(0, smooth.nonzero()[:, 0])
    edge = pix.index_select(0, (~smooth).nonzero()[:, 0])

    key = (fc, h, w, s, hp, wp, zbuf.device)
    if tables is None or key not in tables:
        if tables is None:
            tables = {}
        tables[key] = _pixel_tables(*key)
    first, first_x, first_y = tables[key]

    keys = zbuf.view(-1)
    face_w = keys.index_select(0, first.index_select(0, whole))
    centre = (s - 1) / 2  # from the first sample's centre to the pixel's (exact in float)
    px_w = first_x.index_select(0, whole).add_(centre)
    py_w = first_y.index_select(0, whole).add_(centre)
    offs = torch.arange(s, device=zbuf.device)
    sub_off = (offs[:, None] * wp + offs[None, :]).reshape(-1)  # [s * s] (dy, dx) row-major
    face_e = keys.index_select(0, (first.index_select(0, edge)[:, None] + sub_off).reshape(-1))
    keep = (face_e >= 1 << 32).nonzero()[:, 0]  # covered: the inverse depth word is positive
    owner = keep // (s * s)
    sub = keep - owner * (s * s)
    dy = sub // s
    edge_owner = edge.index_select(0, owner)
    px_e = first_x.index_select(0, edge_owner).add_((sub - dy * s).float())
    py_e = first_y.index_select(0, edge_owner).add_(dy.float())
    face = torch.cat([face_w, face_e.index_select(0, keep)]).bitwise_and_(0xFFFFFFFF).sub_(1)
    pix = torch.cat([whole, edge_owner])
    return pix, face, torch.cat([px_w, px_e]), torch.cat([py_w, py_e]), whole.numel(), edge, owner
