"""Display encodings of depth and normals."""

import torch

from amg_model.render.display import depth_to_rgb, normals_to_rgb


def test_depth_near_is_bright_empty_is_black_one_scale_per_clip():
    depth = torch.zeros(2, 4, 4)
    depth[0, 0, 0], depth[0, 1, 1] = 1.0, 2.0
    depth[1, 2, 2] = 4.0
    rgb = depth_to_rgb(depth)
    assert rgb.shape == (2, 4, 4, 3)
    assert torch.equal(rgb[..., 0], rgb[..., 2])  # grey
    assert abs(float(rgb[0, 0, 0, 0]) - 1.0) < 1e-6  # nearest pixel of the clip
    assert rgb[0, 0, 0, 0] > rgb[0, 1, 1, 0] > rgb[1, 2, 2, 0] >= 0.1 - 1e-6  # farther is darker
    assert rgb[0, 3, 3].abs().sum() == 0 and rgb[1, 0, 0].abs().sum() == 0  # empty stays black


def test_depth_of_an_empty_render_is_black():
    assert depth_to_rgb(torch.zeros(1, 3, 3)).abs().sum() == 0


def test_normals_map_to_half_plus_half_and_empty_black():
    n = torch.zeros(1, 2, 2, 3)
    n[0, 0, 0] = torch.tensor([0.0, 0.0, -1.0])  # facing the camera (OpenCV: -z towards it)
    n[0, 1, 1] = torch.tensor([1.0, 0.0, 0.0])
    rgb = normals_to_rgb(n)
    torch.testing.assert_close(rgb[0, 0, 0], torch.tensor([0.5, 0.5, 0.0]))
    torch.testing.assert_close(rgb[0, 1, 1], torch.tensor([1.0, 0.5, 0.5]))
    assert rgb[0, 0, 1].abs().sum() == 0
