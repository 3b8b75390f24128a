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
    hp, wp = hs + BLOCK_PAD, ws + BLOCK_PAD
    x0, x1, x2 = tx.unbind(1)
    y0, y1, y2 = ty.unbind(1)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    keep = (tz.amin(1) >= near) & (area2.abs() > 1e-10)
    if cull_backfaces:
        keep &= area2 < 0  # counter-clockwise in the y-up world is clockwise on the y-down screen
    idx, box = _boxes(tx, ty, keep, 0.0, hs, ws)
    tx, ty, tz, area2 = (t.index_select(0, idx) for t in (tx, ty, tz, area2))
    edges = _edge_planes(tx, ty, area2, box)  # [n, 3, 3]

    # Rows 0-2: the edge distances plus the tolerance, scaled far above any inverse depth: inside
    # the triangle (all >= 0) they exceed the inverse depth, outside one of them is negative.
    # Row 3: the inverse depth (affine in screen space).
    ox, oy = box[0] + 0.5, box[1] + 0.5
    inv_z = torch.zeros(idx.numel(), 3, device=device)
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        a = ty[:, j] - ty[:, k]
        b = tx[:, k] - tx[:, j]
        c = a * (ox - tx[:, j]) + b * (oy - ty[:, j])
        inv_z += torch.stack([a, b, c], 1) / (area2 * tz[:, i])[:, None]
    edges[:, :, 2] += _EDGE_EPS
    coef = torch.cat([edges * _EDGE_SCALE, inv_z[:, None]], 1)  # [n, 4, 3]

    n_px = n_frames * hp * wp
    if buffer is not None and buffer.numel() >= n_px:
        zbuf = buffer[:n_px].zero_()
    else:
        zbuf = torch.zeros(n_px, dtype=torch.long, device=device)
    base = tri_frame.index_select(0, idx) * (hp * wp) + box[1].long() * wp + box[0].long()
    face_word = idx + 1  # face index + 1, so that 0 is "nothing"
    for sel, values, pixel in _block_passes(coef, base, box[2], box[3], wp, n_px, max_fragments):
        # The smallest of (scaled edge distances, inverse depth): the inverse depth inside,
        # negative outside (plain float minimums: no masks).
        inv_depth = torch.minimum(
            torch.minimum(values[:, 0], values[:, 1]), torch.minimum(values[:, 2], values[:, 3])
        )
        # key = (inverse depth bits << 32) | face: the two 32-bit words side by side, read as
        # one int64 (little-endian). Inverse depth is positive inside, so its bits order like
        # the value; outside they read as a negative int64, which never beats the empty 0.
        key = (inv_depth.view(torch.int32).long() << 32).add_(face_word.index_select(0, sel)[:, None])
        zbuf.scatter_reduce_(0, pixel.reshape(-1), key.reshape(-1), "amax")
    return zbuf.view(n_frames, hp, wp)


def mark_near_edges(
    tx: torch.Tensor, ty: torch.Tensor, tri_frame: torch.Tensor, marked_edges: torch.Tensor, n_frames: int,
    hs: int, ws: int, radius: float, max_fragments: int = MAX_FRAGMENTS,
) -> torch.Tensor:  # fmt: skip
    """Pixels whose centre lies within ``radius`` of a marked edge of a triangle (and of the triangle).

    Args:
        tx, ty: [N, 3] screen corners (pixels) of triangles with at least one marked edge.
        tri_frame: [N] frame of each triangle.
        marked_edges: [N, 3] bool, the edge opposite each corner is marked.
        n_frames, hs, ws: the image size.
        radius: the distance in pixels.
        max_fragments: fragments evaluated per pass.

    Returns:
        [n_frames, hs + pad, ws + pad] bool (the top-left hs x ws part is the image).
    """
    device = tx.device
    hp, wp = hs + BLOCK_PAD, ws + BLOCK_PAD
    x0, x1, x2 = tx.unbind(1)
    y0, y1, y2 = ty.unbind(1)
    area2 = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    idx, box = _boxes(tx, ty, area2.abs() > 1e-10, radius, hs, ws)
    edges = _edge_planes(tx.index_select(0, idx), ty.index_select(0, idx), area2.index_select(0, idx), box)
    # Rows 0-2: distance + radius to each edge (all >= 0: within radius of the triangle); rows
    # 3-5: radius - distance to each marked edge (any >= 0: within radius of a marked edge).
    near_edge = radius - edges
    near_edge[:, :, 2] -= (~marked_edges.index_select(0, idx)).float() * 1e6
    edges[:, :, 2] += radius
    coef = torch.cat([edges, near_edge], 1)  # [n, 6, 3]
    n_px = n_frames * hp * wp
    score = torch.full((n_px,), -1.0, device=device)
    base = tri_frame.index_select(0, idx) * (hp * wp) + box[1].long() * wp + box[0].long()
    for _, values, pixel in _block_passes(coef, base, box[2], box[3], wp, n_px, max_fragments):
        inside = torch.minimum(torch.minimum(values[:, 0], values[:, 1]), values[:, 2])
        close = torch.maximum(torch.maximum(values[:, 3], values[:, 4]), values[:, 5])
        score.scatter_reduce_(0, pixel.reshape(-1), torch.minimum(inside, close).reshape(-1), "amax")
    return (score >= 0).view(n_frames, hp, wp)


def _boxes(tx, ty, keep, grow: float, hs: int, ws: int):
    """Indices of the kept triangles with a non-empty pixel box, and their boxes (x0, y0, w, h).

    A pixel j is in the box if its centre j + 0.5 lies within ``grow`` of the corners' range.
    """
    bx0 = torch.ceil(tx.amin(1) - 0.5 - grow).clamp(min=0)
    bx1 = torch.floor(tx.amax(1) - 0.5 + grow).clamp(max=ws - 1)
    by0 = torch.ceil(ty.amin(1) - 0.5 - grow).clamp(min=0)
    by1 = torch.floor(ty.amax(1) - 0.5 + grow).clamp(max=hs - 1)
    idx = (keep & (bx1 >= bx0) & (by1 >= by0)).nonzero()[:, 0]
    bx0, bx1, by0, by1 = (t.index_select(0, idx) for t in (bx0, bx1, by0, by1))
    return idx, (bx0, by0, (bx1 - bx0 + 1).long(), (by1 - by0 + 1).long())


def _edge_planes(tx, ty, area2, box) -> torch.Tensor:
    """[n, 3, 3] planes (A, B, C) of the signed distance (pixels, positive inside whatever the
    winding) to the edge opposite each corner: A * gx + B * gy + C at the pixel centre
    (x0 + gx + 0.5, y0 + gy + 0.5) of the box."""
    sign = torch.sign(area2)
    ox, oy = box[0] + 0.5, box[1] + 0.5
    rows = []
    for i in range(3):
        j, k = (i + 1) % 3, (i + 2) % 3
        a = ty[:, j] - ty[:, k]
        b = tx[:, k] - tx[:, j]
        c = a * (ox - tx[:, j]) + b * (oy - ty[:, j])
        length = torch.sqrt(a * a + b * b).clamp(min=1e-12)
        rows.append(torch.stack([a, b, c], 1) * (sign / length)[:, None])
    return torch.stack(rows, 1)


def _block_passes(coef, base, bw, bh, wp: int, n_px: int, max_fragments: int):
    """Evaluate planes over the pixels of many boxes, a pass of blocks of one size at a time.

    Boxes larger than the largest block are cut into tiles of up to _TILE x _TILE pixels (the
    last ones in a row or column are narrower); a tile where one of the first three planes (the
    edges) is negative at every pixel is dropped.

    Args:
        coef: [n, R, 3] planes per box (A, B, C at the box's pixel (gx, gy)).
        base: [n] flat pixel index of each box's top-left pixel; bw, bh: [n] box sizes.
        wp: the row length of the flat image; n_px: its size (sorts the blocks by memory order).
        max_fragments: pixels evaluated per pass.

    Yields:
        (box indices [m], values [m, R, K], flat pixel indices [m, K]) per pass; pixels of a block
        beyond its box (up to the block size) are included, so the image needs BLOCK_PAD spare
        rows and columns.
    """
    device = coef.device
    box_id = torch.arange(coef.shape[0], device=device)
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
        # The largest value of an edge plane over a tile sits at one of its corners.
        edges = tile_coef[:, :3]
        reach = edges[..., 2] + edges[..., 0].clamp(min=0) * (tw - 1)[:, None]
        reach = reach + edges[..., 1].clamp(min=0) * (th - 1)[:, None]
        hit = (reach.amin(1) >= 0).nonzero()[:, 0]
        owner, dx, dy, tw, th, tile_coef = (
            t.index_select(0, hit) for t in (owner, dx, dy, tw, th, tile_coef)
        )
        small = (~big).nonzero()[:, 0]
        coef = torch.cat([coef.index_select(0, small), tile_coef])
        base = torch.cat([base.index_select(0, small), base.index_select(0, owner) + dy * wp + dx])
        box_id = torch.cat([small, owner])
        bw = torch.cat([bw.index_select(0, small), tw])
        bh = torch.cat([bh.index_select(0, small), th])

    # Group blocks by size class; evaluate each class with one matrix product per pass.
    n_rows = coef.shape[1]
    sizes = torch.tensor(_BLOCK_SIZES, device=device)
    n_sizes = len(_BLOCK_SIZES)
    cls = torch.searchsorted(sizes, bw) * n_sizes + torch.searchsorted(sizes, bh)
    order = torch.argsort(cls * n_px + base)  # by size class, then in memory order (local writes)
    counts = torch.bincount(cls, minlength=n_sizes * n_sizes).tolist()
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
            sel = order[s0 : min(start + count, s0 + step)]
            values = (coef.index_select(0, sel).reshape(-1, 3) @ grid).view(sel.numel(), n_rows, -1)
            yield box_id.index_select(0, sel), values, base.index_select(0, sel)[:, None] + offset
        start += count
