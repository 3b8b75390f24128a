"""Rasteriser tests against analytic ground truth (tiny images, CPU)."""

import math

import pytest
import torch

from amg_model.camera.camera import Camera
from amg_model.errors import RenderError
from amg_model.render.primitives import box_mesh, plane_mesh, sphere_mesh
from amg_model.render.raster import render_meshes


def pinhole(frames: int = 1, size: int = 48, focal: float = 40.0) -> Camera:
    """A camera at the world origin looking along +z (identity extrinsics)."""
    full = torch.full((frames,), focal)
    centre = torch.full((frames,), size / 2.0)
    return Camera(full, full.clone(), centre, centre.clone(), size, size, torch.eye(4).repeat(frames, 1, 1))


def at(vertices: torch.Tensor, offset, frames: int = 1) -> torch.Tensor:
    return (vertices + torch.tensor(offset, dtype=torch.float32))[None].repeat(frames, 1, 1)


def flat(vertices: torch.Tensor, rgb) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.float32).expand(vertices.shape[0], 3)


def test_sphere_silhouette_area_matches_projection():
    radius, dist, focal = 0.5, 3.0, 40.0
    v, f = sphere_mesh(radius, 32, 64)
    out = render_meshes([at(v, (0, 0, dist))], [f], [flat(v, (1, 1, 1))], pinhole(focal=focal))
    # An on-axis sphere projects to a disc of radius f r / sqrt(d^2 - r^2); the tessellated
    # sphere is inscribed, so allow 1.5 %.
    expected = math.pi * focal**2 * radius**2 / (dist**2 - radius**2)
    assert out.mask.sum().item() == pytest.approx(expected, rel=0.015)
    assert out.mask.max() == 1.0 and out.mask.min() == 0.0


def test_cube_face_area_and_plane_depth():
    dist, focal = 4.0, 40.0
    v, f = box_mesh((1.0, 1.0, 1.0))
    cube = ([at(v, (0, 0, dist))], [f], [flat(v, (0.5, 0.5, 0.5))], pinhole(focal=focal))
    out = render_meshes(*cube, supersample=4)
    # Head-on, only the front face (side 1 m at distance 3.5 m) is visible; 4 x 4 samples a pixel
    # quantise the side to 1/4 pixel.
    side = focal / (dist - 0.5)
    assert out.mask.sum().item() == pytest.approx(side * side, abs=2 * side * 0.25)
    centre = out.depth[0, 20:28, 20:28]
    assert torch.allclose(centre, torch.full_like(centre, dist - 0.5), atol=1e-4)
    assert out.depth[0, 0, 0] == 0 and out.normals[0, 0, 0].abs().sum() == 0
    # Smooth normals point back at the camera (-z in the camera frame) mid-face.
    assert out.normals[0, 24, 24, 2] < -0.99


def test_tilted_plane_depth_is_perspective_correct():
    v, f = plane_mesh(4.0, 1)
    rot = torch.tensor([[1.0, 0, 0], [0, math.cos(1.0), -math.sin(1.0)], [0, math.sin(1.0), math.cos(1.0)]])
    verts = at(v @ rot.T, (0, 0, 3.0))
    cam = pinhole()
    out = render_meshes([verts], [f], [flat(v, (1, 1, 1))], cam, supersample=1)
    # Intersect the pixel-centre rays with the plane analytically: n . (t d - p0) = 0.
    normal, p0 = rot @ torch.tensor([0.0, 0, 1]), torch.tensor([0.0, 0, 3.0])
    ys, xs = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(48) + 0.5, indexing="ij")
    rays = torch.stack([(xs - 24) / 40.0, (ys - 24) / 40.0, torch.ones_like(xs)], -1)
    z = (normal @ p0) / (rays @ normal)
    inside = out.mask[0] == 1
    assert inside.sum() > 200
    assert torch.allclose(out.depth[0][inside], z[inside], rtol=1e-4)


def test_occlusion_between_persons():
    v, f = sphere_mesh(0.5, 12, 24)
    near, far = at(v, (0.2, 0, 3.0)), at(v, (-0.2, 0, 4.0))
    cols = [flat(v, (0, 0, 1)), flat(v, (1, 0, 0))]  # far blue, near red
    out = render_meshes([far, near], [f, f], cols, pinhole(), lighting=None)
    both = (out.person_masks[0, 0] > 0) & (out.person_masks[0, 1] > 0)
    # Where both overlap on screen the near (red, person 1) one wins at full coverage.
    centre = out.image[0, 24, 26]
    assert centre[0] == pytest.approx(1.0) and centre[2] == 0
    assert out.person_masks[0, 1, 24, 26] == 1 and out.person_masks[0, 0, 24, 26] == 0
    assert torch.allclose(out.person_masks.sum(1), out.mask, atol=1e-6)
    assert both.sum() < 20  # only edge pixels are shared
    # Swapping the order of the persons changes nothing but the mask order.
    swapped = render_meshes([near, far], [f, f], cols[::-1], pinhole(), lighting=None)
    assert torch.allclose(swapped.image, out.image)
    assert torch.allclose(swapped.person_masks, out.person_masks.flip(1))


def test_supersampled_edges_are_fractional():
    v, f = sphere_mesh(0.5, 16, 32)
    verts, cols = [at(v, (0, 0, 3.0))], [flat(v, (1, 1, 1))]
    hard = render_meshes(verts, f[None].unbind(0), cols, pinhole(), supersample=1)
    soft = render_meshes(verts, [f], cols, pinhole(), supersample=4)
    assert set(hard.mask.unique().tolist()) == {0.0, 1.0}
    fractional = ((soft.mask > 0) & (soft.mask < 1)).sum()
    assert fractional > 20
    assert soft.mask.sum().item() == pytest.approx(hard.mask.sum().item(), rel=0.05)


def test_chunked_equals_unchunked_and_progress():
    v, f = sphere_mesh(0.5, 8, 16)
    frames = 5
    verts = at(v, (0, 0, 3.0), frames) + torch.linspace(-0.5, 0.5, frames)[:, None, None] * torch.tensor(
        [1.0, 0, 0]
    )
    calls = []
    one = render_meshes([verts], [f], [flat(v, (0.2, 0.8, 0.4))], pinhole(frames), chunk_frames=None)
    two = render_meshes(
        [verts], [f], [flat(v, (0.2, 0.8, 0.4))], pinhole(frames), chunk_frames=2,
        progress=lambda done, total: calls.append((done, total)),
    )  # fmt: skip
    for a, b in zip(vars(one).values(), vars(two).values(), strict=True):
        assert torch.equal(a, b)
    # Frames done so far after every chunk; with several worker threads (the tests run with 2)
    # the 1-frame chunk may finish before a 2-frame one.
    done = [d for d, total in calls if total == 5]
    assert len(done) == 3 and done[-1] == 5 and done in ([2, 4, 5], [2, 3, 5], [1, 3, 5])


def test_backface_culling_keeps_closed_mesh_image():
    v, f = sphere_mesh(0.5, 12, 24)
    args = ([at(v, (0, 0.1, 3.0))], [f], [flat(v, (0.9, 0.6, 0.3))], pinhole())
    assert torch.equal(render_meshes(*args).image, render_meshes(*args, cull_backfaces=True).image)


def test_large_triangles_behind_camera_and_degenerate():
    v, f = plane_mesh(40.0, 1)  # covers the whole view: large triangles are tiled
    wall = at(v, (0, 0, 5.0))
    behind = at(v * 0.1, (0, 0, -1.0))
    crossing = torch.tensor([[[0.0, 0, -1], [0.3, 0, 2], [0, 0.3, 2]]])
    degenerate = torch.tensor([[[0.0, 0, 2], [0.1, 0, 2], [0.2, 0, 2]]])
    tri = torch.tensor([[0, 1, 2]])
    out = render_meshes(
        [wall, behind, crossing, degenerate], [f, f, tri, tri],
        [flat(v, (1, 1, 1)), flat(v, (1, 0, 0)), flat(crossing[0], (1, 0, 0)),
         flat(degenerate[0], (1, 0, 0))], pinhole(), lighting=None,
    )  # fmt: skip
    assert out.mask.min() == 1.0
    assert torch.allclose(out.depth, torch.full_like(out.depth, 5.0), rtol=1e-5)
    assert out.person_masks[0, 0].min() == 1.0 and out.person_masks[0, 1:].max() == 0


def test_per_frame_colours_and_texture():
    v, f = plane_mesh(1.0, 2)
    uv = v[:, :2] + 0.5
    texture = torch.zeros(4, 4, 3)
    texture[:, :2, 0] = 1.0  # left half red (u < 0.5), right half green
    texture[:, 2:, 1] = 1.0
    out = render_meshes(
        [at(v, (0, 0, 2.0))], [f], [flat(v, (0, 0, 1))], pinhole(), uv=[uv], texture=[texture], lighting=None
    )
    assert out.image[0, 24, 16, 0] > 0.9 and out.image[0, 24, 32, 1] > 0.9
    colours = torch.stack([flat(v, (1, 0, 0)), flat(v, (0, 1, 0))])
    out = render_meshes([at(v, (0, 0, 2.0), 2)], [f], [colours], pinhole(2), lighting=None)
    assert out.image[0, 24, 24].tolist() == [1, 0, 0] and out.image[1, 24, 24].tolist() == [0, 1, 0]


def test_empty_view_and_errors():
    v, f = sphere_mesh(0.5, 6, 8)
    out = render_meshes([at(v, (0, 0, -3.0))], [f], [flat(v, (1, 1, 1))], pinhole())
    assert out.mask.sum() == 0 and out.image.sum() == 0
    with pytest.raises(RenderError, match="frames"):
        render_meshes([at(v, (0, 0, 3.0), 2)], [f], [flat(v, (1, 1, 1))], pinhole(3))
    with pytest.raises(RenderError, match="NaN"):
        render_meshes([at(v, (0, 0, 3.0)) * float("nan")], [f], [flat(v, (1, 1, 1))], pinhole())
    with pytest.raises(RenderError, match="face indices"):
        render_meshes([at(v, (0, 0, 3.0))], [f + 100], [flat(v, (1, 1, 1))], pinhole())
    with pytest.raises(RenderError, match="supersample"):
        render_meshes([at(v, (0, 0, 3.0))], [f], [flat(v, (1, 1, 1))], pinhole(), supersample=0)
    with pytest.raises(RenderError, match="empty"):
        render_meshes([], [], [], pinhole())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu():
    v, f = sphere_mesh(0.5, 12, 24)
    meshes = [at(v, (0.2, 0, 3.0), 2), at(v, (-0.2, 0.1, 3.5), 2)]
    cols = [flat(v, (0.9, 0.4, 0.2)), flat(v, (0.2, 0.5, 0.9))]
    cpu = render_meshes(meshes, [f, f], cols, pinhole(2))
    gpu = render_meshes([m.cuda() for m in meshes], [f.cuda()] * 2, [c.cuda() for c in cols], pinhole(2))
    for a, b in zip(vars(cpu).values(), vars(gpu).values(), strict=True):
        assert torch.allclose(a, b.cpu(), atol=1e-4)


def test_large_triangle_area_with_tiles():
    # A triangle much larger than a tile (tiles outside it are dropped) at depth 2: its image is
    # the triangle scaled by focal / depth, shifted to the principal point.
    corners = torch.tensor([[-0.9, -0.8, 2.0], [1.0, -0.3, 2.0], [-0.2, 1.0, 2.0]])
    out = render_meshes(
        [corners[None]], [torch.tensor([[0, 1, 2]])], [flat(corners, (1, 1, 1))], pinhole(size=64),
        supersample=4, lighting=None,
    )  # fmt: skip
    pix = corners[:, :2] * 40.0 / 2.0
    (x0, y0), (x1, y1), (x2, y2) = pix.tolist()
    area = abs((x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)) / 2
    perimeter = sum(float((pix[i] - pix[(i + 1) % 3]).norm()) for i in range(3))
    assert out.mask.sum().item() == pytest.approx(area, abs=perimeter / 8)
    assert out.image[0, 32, 32].tolist() == [1.0, 1.0, 1.0]


def _random_triangles(count: int, size: int, frames: int, seed: int):
    """Screen-space triangles (x, y in pixels, depth 1-2) spread over ``frames`` frames."""
    g = torch.Generator().manual_seed(seed)
    tx, ty = torch.rand(count, 3, generator=g) * size, torch.rand(count, 3, generator=g) * size
    return tx, ty, 1 + torch.rand(count, 3, generator=g), torch.arange(count) % frames


def test_zbuffer_reuses_a_dirty_buffer():
    """A reused z-buffer buffer (garbage from an earlier chunk) gives the same keys as a fresh one."""
    from amg_model.render.zbuffer import BLOCK_PAD, rasterize_zbuffer

    tx, ty, tz, tri_frame = _random_triangles(40, 30, 2, seed=0)
    fresh = rasterize_zbuffer(tx, ty, tz, tri_frame, 2, 30, 30, 0.01, False)
    buffer = torch.full((3 * (30 + BLOCK_PAD) ** 2,), 12345, dtype=torch.long)
    reused = rasterize_zbuffer(tx, ty, tz, tri_frame, 2, 30, 30, 0.01, False, buffer)
    assert torch.equal(fresh, reused)
    assert (fresh[:, :30, :30].view(torch.int32)[..., 1::2] > 0).any()


def _full_supersampling(meshes, faces, colors, cam: Camera, s: int):
    """Reference: render every sample (s x the size, supersample 1) and box-filter it down."""
    big = Camera(cam.fx * s, cam.fy * s, cam.cx * s, cam.cy * s, cam.width * s, cam.height * s, cam.w2c)
    out = render_meshes(meshes, faces, colors, big, supersample=1)
    h, w = cam.height, cam.width

    def pool(t):  # [F, H s, W s, C] -> sum over each pixel's s x s samples
        return t.view(t.shape[0], h, s, w, s, -1).sum((2, 4))

    mask = pool(out.mask[..., None])[..., 0]
    depth = pool((out.depth * out.mask)[..., None])[..., 0] / mask.clamp(min=1e-12)
    normals = torch.nn.functional.normalize(pool(out.normals), dim=-1)
    persons = pool(out.person_masks.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) / (s * s)
    return pool(out.image) / (s * s), mask / (s * s), depth, normals, persons


def test_edge_supersampling_matches_full_supersampling():
    """Shading once per pixel of one smooth surface, per sample only on edges, gives the image of
    shading every sample (within the size of the interpolation differences)."""
    v, f = sphere_mesh(0.5, 24, 48)
    meshes = [at(v, (0.25, 0.05, 3.0)), at(v, (-0.2, -0.1, 3.6))]
    colors = [flat(v, (0.9, 0.4, 0.2)), flat(v, (0.2, 0.5, 0.9))]
    cam = pinhole(size=48)
    out = render_meshes(meshes, [f, f], colors, cam, supersample=4)
    image, mask, depth, normals, persons = _full_supersampling(meshes, [f, f], colors, cam, 4)
    assert torch.allclose(out.mask, mask, atol=1e-6)
    assert torch.allclose(out.person_masks, persons, atol=1e-6)
    covered = mask > 0
    assert ((mask > 0) & (mask < 1)).sum() > 30  # silhouettes
    assert ((persons[0, 0] > 0) & (persons[0, 1] > 0)).sum() > 5  # the near sphere's edge on the far one
    assert (out.image - image).abs().amax() < 2e-3
    assert (out.depth - depth).abs()[covered].amax() < 2e-3
    assert (out.normals - normals).norm(dim=-1)[covered].amax() < 2e-3


def test_per_vertex_lighting_of_a_plane_facing_the_camera():
    from amg_model.render.shading import Lighting, light_terms, shade

    lighting = Lighting(ambient=0.3, key=0.5, key_direction=(0.0, 0.0, -1.0), rim=0.0)
    v, f = plane_mesh(2.0, 4)
    out = render_meshes([at(v, (0, 0, 3.0))], [f], [flat(v, (0.8, 0.6, 0.4))], pinhole(), lighting=lighting)
    expected = torch.tensor([0.8, 0.6, 0.4]) * (0.3 + 0.5)
    assert torch.allclose(out.image[0, 20:28, 20:28], expected.expand(8, 8, 3), atol=1e-5)
    # shade() is the same model per point: albedo * gain + offset, clamped.
    normals = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    view = torch.nn.functional.normalize(torch.randn(5, 3), dim=-1)
    albedo = torch.rand(5, 3)
    gain, offset = light_terms(normals, view, Lighting())
    lit = shade(albedo.T, normals.T, view.T, Lighting()).T
    assert torch.allclose(lit, (albedo * gain[:, None] + offset[:, None]).clamp(0, 1))


def test_zbuffer_pass_size_does_not_change_coverage():
    from amg_model.render.zbuffer import rasterize_zbuffer

    tx, ty, tz, tri_frame = _random_triangles(300, 60, 3, seed=1)
    big = rasterize_zbuffer(tx, ty, tz, tri_frame, 3, 60, 60, 0.01, False)
    small = rasterize_zbuffer(tx, ty, tz, tri_frame, 3, 60, 60, 0.01, False, max_fragments=64)
    assert torch.equal(big, small)
