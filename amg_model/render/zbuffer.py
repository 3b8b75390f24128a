"""Coverage and depth test of many triangles at once: a packed int64 z-buffer.

Each triangle's pixel bounding box is cut into blocks of a few fixed sizes (1..8 pixels a side;
larger boxes are cut into tiles of up to 8 x 8 and tiles outside the triangle are dropped). For
all blocks of one size the three edge distances and the inverse depth are evaluated with one
matrix product; every covered pixel packs (inverse depth, face index + 1) into one int64 and
``scatter_reduce(amax)`` keeps the nearest. Pixel centres sit at integer + 0.5.
"""

from __future__ import annotations

import torch

# Block edge lengths for small bounding boxes; larger boxes are cut into _TILE x _TILE tiles.
_BLOCK_SIZES = (1, 2, 3, 4, 6, 8)
_BLOCK_MAX = _BLOCK_SIZES[-1]
# Rows and columns of padding the z-buffer needs beyond the image (blocks overhang its edge).
BLOCK_PAD = _BLOCK_MAX
# Tile size for larger boxes: small enough that tiles outside the triangle can be dropped.
_TILE = 8
# Coverage tolerance in (supersampled) pixels: pixel centres on a shared edge go to both
# triangles, so rounding never opens cracks; the z-buffer picks one.
_EDGE_EPS = 1e-4
# Scale of the edge distances in the coverage test (see rasterize_zbuffer); large enough that a
# distance of 1e-20 pixels still exceeds any inverse depth, small enough not to overflow float32.
_EDGE_SCALE = 1e30
# Fragments evaluated per pass; bounds the temporary memory of step 2 (about 40 bytes each).
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

    # Plane coefficients in the box's frame: value = A * gx + B * gy + C at the pixel centre
    # (bx0 + gx + 0.5, by0 + gy + 0.5). Rows 0-2: signed distance (pixels) to each edge, positive
    # inside whatever the winding; row 3: inverse depth (affine in screen space).
    sign = torch.sign(area2)
    ox, oy = bx0 + 0.5, by0 + 0.5
    rows = []
    inv_z = torch.zeros(idx.numel(), 3, device=device)
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        a = -(ty[:, k] - ty[:, j])
        b = tx[:, k] - tx[:, j]
        c = a * (ox - tx[:, j]) + b * (oy - ty[:, j])
        length = torch.sqrt(a * a + b * b).clamp(min=1e-12)
        rows.append(torch.stack([a, b, c], 1) * (sign / length)[:, None])
        inv_z += torch.stack([a, b, c], 1) / (area2 * tz[:, i])[:, None]
    coef = torch.stack(rows + [inv_z], 1)  # [n, 4, 3]

    bw = (bx1 - bx0 + 1).long()
    bh = (by1 - by0 + 1).long()
    base = tri_frame.index_select(0, idx) * (hp * wp) + by0.long() * wp + bx0.long()
    face_id = idx

    # Boxes larger than the largest block are cut into tiles of up to _TILE x _TILE pixels (the
    # last ones in a row or column are narrower); tiles wholly outside an edge are dropped.
    big = (bw > _BLOCK_MAX) | (bh > _BLOCK_MAX)
    if bool(big.any()):
        bi = big.nonzero()[:, 0]
        ntx = (bw[bi] + _TILE - 1) // _TILE
        nty = (bh[bi] + _TILE - 1) // _TILE
        counts = ntx * nty
        owner = bi.repeat_interleave(counts)
        first = (torch.cumsum(counts, 0) - counts).repeat_interleave(counts)
        local = torch.arange(owner.numel(), device=device) - first
        ntx_o = ntx.repeat_interleave(counts)
        dx = (local % ntx_o) * _TILE
        dy = (local // ntx_o) * _TILE
        tw = (bw.index_select(0, owner) - dx).clamp(max=_TILE)
        th = (bh.index_select(0, owner) - dy).clamp(max=_TILE)
        tile_coef = coef.index_select(0, owner)
        tile_coef[:, :, 2] += tile_coef[:, :, 0] * dx[:, None] + tile_coef[:, :, 1] * dy[:, None]
        # The largest value of an edge distance over a tile sits at one of its corners.
        edges = tile_coef[:, :3]
        reach = edges[..., 2] + edges[..., 0].clamp(min=0) * (tw - 1)[:, None]
        reach = reach + edges[..., 1].clamp(min=0) * (th - 1)[:, None]
        hit = (reach.amin(1) >= -_EDGE_EPS).nonzero()[:, 0]
        owner, dx, dy, tw, th, tile_coef = (
            t.index_select(0, hit) for t in (owner, dx, dy, tw, th, tile_coef)
        )
        small = (~big).nonzero()[:, 0]
        coef = torch.cat([coef.index_select(0, small), tile_coef])
        base = torch.cat([base.index_select(0, small), base.index_select(0, owner) + dy * wp + dx])
        face_id = torch.cat([face_id.index_select(0, small), face_id.index_select(0, owner)])
        bw = torch.cat([bw.index_select(0, small), tw])
        bh = torch.cat([bh.index_select(0, small), th])

    # Edge distances plus the tolerance, scaled far above any inverse depth: inside the triangle
    # (all >= 0) they exceed the inverse depth, outside one of them is negative.
    coef = coef.clone()
    coef[:, :3, 2] += _EDGE_EPS
    coef[:, :3] *= _EDGE_SCALE
    face_word = face_id + 1  # face index + 1, so that 0 is "nothing"
    # Group blocks by size class; evaluate each class with one matrix product.
    sizes = torch.tensor(_BLOCK_SIZES, device=device)
    n_sizes = len(_BLOCK_SIZES)
    cls = torch.searchsorted(sizes, bw) * n_sizes + torch.searchsorted(sizes, bh)
    order = torch.argsort(cls * (n_frames * hp * wp) + base)  # by size class, then in memory order
    coef, base, face_word = (t.index_select(0, order) for t in (coef, base, face_word))
    counts = torch.bincount(cls, minlength=n_sizes * n_sizes).tolist()
    n_px = n_frames * hp * wp
    if buffer is not None and buffer.numel() >= n_px:
        zbuf = buffer[:n_px].zero_()
    else:
        zbuf = torch.zeros(n_px, dtype=torch.long, device=device)
    start = 0
    for c, count in enumerate(counts):
        if count == 0:
            continue
        sw, sh = _BLOCK_SIZES[c // n_sizes], _BLOCK_SIZES[c % n_sizes]
        gy, gx = torch.meshgrid(
            torch.arange(sh, device=device), torch.arange(sw, device=device), indexing="ij"
        )
        gx, gy = gx.reshape(-1), gy.reshape(-1)
        grid = torch.stack([gx.float(), gy.float(), torch.ones_like(gx, dtype=torch.float32)])  # [3, K]
        offset = gy * wp + gx  # [K]
        step = max(1, max_fragments // gx.numel())
        for s0 in range(start, start + count, step):
            sel = slice(s0, min(start + count, s0 + step))
            values = (coef[sel].reshape(-1, 3) @ grid).view(-1, 4, gx.numel())  # [n, 4, K]
            # The smallest of (scaled edge distances, inverse depth): the inverse depth inside,
            # negative outside (plain float minimums: no masks).
            inv_depth = torch.minimum(
                torch.minimum(values[:, 0], values[:, 1]), torch.minimum(values[:, 2], values[:, 3])
            )
            # key = (inverse depth bits << 32) | face: the two 32-bit words side by side, read as
            # one int64 (little-endian). Inverse depth is positive inside, so its bits order like
            # the value; outside they read as a negative int64, which never beats the empty 0.
            key = (inv_depth.view(torch.int32).long() << 32).add_(face_word[sel, None])
            zbuf.scatter_reduce_(0, (base[sel, None] + offset).reshape(-1), key.reshape(-1), "amax")
        start += count
    return zbuf.view(n_frames, hp, wp)
