"""Coverage and depth test of many triangles at once: a packed int64 z-buffer.

Only covered pixels are generated: every row of a triangle's pixel bounding box gets its exact
span of covered pixels from the three edges (spans longer than 16 pixels are cut into pieces).
Spans are grouped by length and each length is evaluated with broadcasting: every covered pixel
packs (inverse depth, face index + 1) into one int64 and ``scatter_reduce(amax)`` keeps the
nearest. Pixel centres sit at integer + 0.5.
"""

from __future__ import annotations

import torch

# Rows and columns of padding the z-buffer has beyond the image (kept for its callers' layout).
BLOCK_PAD = 8
# Longest span evaluated at once; longer ones are cut into pieces of this length.
_SPAN = 16
# Coverage tolerance in (supersampled) pixels: pixel centres on a shared edge go to both
# triangles, so rounding never opens cracks; the z-buffer picks one.
_EDGE_EPS = 1e-4
# Fragments evaluated per pass; bounds the temporary memory of the last step.
MAX_FRAGMENTS = 1 << 22


def rasterize_zbuffer(
    tx: torch.Tensor, ty: torch.Tensor, tz: torch.Tensor, tri_frame: torch.Tensor, n_frames: int, hs: int,
    ws: int, near: float, cull_backfaces: bool, buffer: torch.Tensor | None = None,
    max_fragments: int = MAX_FRAGMENTS,
) -> torch.Tensor:  # fmt: skip
    """Z-buffer the triangles of several frames.

    Args:
        tx, ty: [N, 3] screen coordinates of the corners (pixels, centres at integer + 0.5).
        tz: [N, 3] camera depth of the corners.
        tri_frame: [N] frame of each triangle.
        n_frames, hs, ws: the size of the z-buffer.
        near: triangles with a corner at z < near are dropped.
        cull_backfaces: drop triangles whose corners run clockwise on screen (x right, y down).
        buffer: optional flat int64 tensor of at least n_frames * (hs + pad) * (ws + pad)
            elements to hold the z-buffer (reused between calls: a fresh large allocation costs
            more than clearing one on the CPU).
        max_fragments: fragments evaluated per pass (fewer: less temporary memory, more passes).

    Returns:
        [n_frames, hs + pad, ws + pad] int64 z-buffer: per pixel (inverse depth bits << 32) |
        (index (into N) of the nearest triangle + 1); the high word is 0 where nothing is drawn.
        Only the top-left hs x ws part is the image.
    """
    device = tx.device
    pad = BLOCK_PAD
    hp, wp = hs + pad, ws + pad
    # Bounding boxes in pixel indices (a pixel j is covered if its centre j + 0.5 is inside).
    bx0 = torch.ceil(tx.amin(1) - 0.5).clamp(min=0)
    bx1 = torch.floor(tx.amax(1) - 0.5).clamp(max=ws - 1)
    by0 = torch.ceil(ty.amin(1) - 0.5).clamp(min=0)
    by1 = torch.floor(ty.amax(1) - 0.5).clamp(max=hs - 1)
    x0, x1, x2 = tx.unbind(1)
    y0, y1, y2 = ty.unbind(1)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    keep = (tz.amin(1) >= near) & (area2.abs() > 1e-10) & (bx1 >= bx0) & (by1 >= by0)
    if cull_backfaces:
        keep &= area2 < 0  # counter-clockwise in the y-up world is clockwise on the y-down screen
    idx = keep.nonzero()[:, 0]
    tx, ty, tz, area2 = (t.index_select(0, idx) for t in (tx, ty, tz, area2))
    bx0, bx1, by0, by1 = (t.index_select(0, idx) for t in (bx0, bx1, by0, by1))

    # In the box's frame (pixel centre (bx0 + gx + 0.5, by0 + gy + 0.5)) edge i keeps the pixels
    # with a * gx + b * gy + c >= 0 (signed distance in pixels, positive inside whatever the
    # winding, plus the tolerance): in row gy, gx >= q (a > 0) or gx <= q (a < 0) with
    # q = u * gy + v, u = -b / a, v = -c / a. Edges with a == 0 are the box's top or bottom.
    # The inverse depth is affine in screen space: A * gx + B * gy + C.
    sign = torch.sign(area2)
    ox, oy = bx0 + 0.5, by0 + 0.5
    cols = []
    inv_z = torch.zeros(3, idx.numel(), device=device)
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        a = -(ty[:, k] - ty[:, j])
        b = tx[:, k] - tx[:, j]
        c = a * (ox - tx[:, j]) + b * (oy - ty[:, j])
        inv_z += torch.stack([a, b, c]) / (area2 * tz[:, i])
        norm = sign / torch.sqrt(a * a + b * b).clamp(min=1e-12)
        a, b, c = a * norm, b * norm, c * norm + _EDGE_EPS
        flat = a == 0
        neg_inv_a = torch.where(flat, 0.0, -1.0 / torch.where(flat, 1.0, a)).clamp(-1e30, 1e30)
        # Masks added to q: 0 where the edge bounds this side, -inf / +inf where it does not.
        cols += [b * neg_inv_a, c * neg_inv_a]
        cols += [torch.where(a > 0, 0.0, float("-inf")), torch.where(a < 0, 0.0, float("inf"))]
    cols += list(inv_z.unbind(0)) + [bx1 - bx0 + 1]
    bh = (by1 - by0 + 1).long()
    base = tri_frame.index_select(0, idx) * (hp * wp) + by0.long() * wp + bx0.long()

    # Every row of every box: its span of covered pixels [xs, xe].
    tri = torch.repeat_interleave(bh)
    n_rows = tri.numel()
    gy = (torch.arange(n_rows, device=device) - (torch.cumsum(bh, 0) - bh).index_select(0, tri)).float()
    t = [col.index_select(0, tri) for col in cols]
    lo = hi = None
    for i in range(3):
        q = torch.addcmul(t[4 * i + 1], t[4 * i], gy)
        lo = q + t[4 * i + 2] if lo is None else torch.maximum(lo, q + t[4 * i + 2])
        hi = q + t[4 * i + 3] if hi is None else torch.minimum(hi, q + t[4 * i + 3])
    xs = torch.ceil(lo).clamp_(min=0)
    xe = torch.minimum(torch.floor(hi), t[15] - 1)
    count = (xe - xs + 1).clamp_(min=0).long()
    inv0 = t[12] * xs + t[13] * gy + t[14]  # inverse depth at the span's first pixel
    slope = t[12]
    row_base = base.index_select(0, tri) + gy.long() * wp + xs.long()
    face_word = (idx + 1).int().index_select(0, tri)  # face index + 1, so that 0 is "nothing"

    # Spans longer than _SPAN pixels are cut into pieces of _SPAN (the last one shorter).
    wide = (count > _SPAN).nonzero()[:, 0]
    if wide.numel():
        n_seg = (count.index_select(0, wide) + _SPAN - 1) // _SPAN
        owner = wide.repeat_interleave(n_seg)
        first = (torch.cumsum(n_seg, 0) - n_seg).repeat_interleave(n_seg)
        dx = (torch.arange(owner.numel(), device=device) - first) * _SPAN
        seg_slope = slope.index_select(0, owner)
        inv0 = torch.cat([inv0, inv0.index_select(0, owner) + seg_slope * dx])
        slope = torch.cat([slope, seg_slope])
        row_base = torch.cat([row_base, row_base.index_select(0, owner) + dx])
        face_word = torch.cat([face_word, face_word.index_select(0, owner)])
        seg_count = (count.index_select(0, owner) - dx).clamp(max=_SPAN)
        count = torch.cat([count.index_fill(0, wide, 0), seg_count])
    # Group spans by length (a stable sort keeps the triangles' order: local writes); evaluate
    # each length with broadcasting.
    order = torch.sort(count.to(torch.uint8), stable=True)[1]
    inv0, slope, row_base, face_word = (t.index_select(0, order) for t in (inv0, slope, row_base, face_word))
    counts = torch.bincount(count, minlength=_SPAN + 1).tolist()
    n_px = n_frames * hp * wp
    if buffer is not None and buffer.numel() >= n_px:
        zbuf = buffer[:n_px].zero_()
    else:
        zbuf = torch.zeros(n_px, dtype=torch.long, device=device)
    start = counts[0]  # empty spans first
    for length in range(1, _SPAN + 1):
        count = counts[length]
        if count == 0:
            continue
        offset = torch.arange(length, device=device)
        offset_f = offset.float()
        step = max(1, max_fragments // length)
        for s0 in range(start, start + count, step):
            sel = slice(s0, min(start + count, s0 + step))
            # key = (inverse depth bits << 32) | face: the two 32-bit words written side by side
            # (the face is the low word, first in memory: little-endian, which render_meshes
            # checks), read as one int64. Inverse depth is positive, so its bits order like the value.
            words = torch.empty(sel.stop - sel.start, length, 2, dtype=torch.int32, device=device)
            torch.addcmul(inv0[sel, None], slope[sel, None], offset_f, out=words[..., 1].view(torch.float32))
            words[..., 0] = face_word[sel, None]
            key = words.view(torch.int64)
            zbuf.scatter_reduce_(0, (row_base[sel, None] + offset).reshape(-1), key.reshape(-1), "amax")
        start += count
    return zbuf.view(n_frames, hp, wp)
