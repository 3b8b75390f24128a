"""Make the README's rendering images (docs/images/render_*.jpg) with the library itself.

Usage:
    python bench/make_readme_images.py [--out docs/images] [--size 128]

Writes: render_avatars.jpg (two mannequins, 256 x 256), render_preview.jpg (the scene preview of
an orbit) and render_preset_<name>.jpg (4 frames of every camera preset, side by side).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amg_model.camera.camera import Camera  # noqa: E402
from amg_model.camera.presets import PRESET_NAMES, camera_preset  # noqa: E402
from amg_model.render.avatars import render_avatars  # noqa: E402
from amg_model.render.preview import render_scene_preview  # noqa: E402
from amg_model.smpl.body import load_body_model  # noqa: E402
from amg_model.smpl.motion import Motion  # noqa: E402
from amg_model.smpl.procedural import procedural_motion  # noqa: E402

log = logging.getLogger("make_readme_images")


def duet(frames: int) -> Motion:
    """One person walking towards the camera, one waving beside them."""
    walker = procedural_motion("walk", frames, 24.0).persons[0]
    waver = procedural_motion("wave", frames, 24.0).persons[0]
    walker.transl = walker.transl + torch.tensor([-0.4, 0.0, -0.6], dtype=walker.transl.dtype)
    waver.transl = waver.transl + torch.tensor([0.45, 0.0, 0.0], dtype=waver.transl.dtype)
    return Motion([walker, waver], 24.0)


def save(path: Path, image: torch.Tensor) -> None:
    """Write an [H, W, 3] RGB image in 0..1 as JPEG."""
    bgr = (image.clamp(0, 1).numpy()[..., ::-1] * 255).round().astype(np.uint8)
    cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, 88])
    log.info("wrote %s (%.0f KB)", path, path.stat().st_size / 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images")
    parser.add_argument("--size", type=int, default=128, help="frame size of the preset strips")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    body = load_body_model("mannequin")
    frames = 16
    motion = duet(frames)
    picks = [0, 5, 10, 15]

    eye, target = (0.25, 1.2, 2.9), (0.0, 0.9, 0.0)
    cam = Camera.static(eye=eye, target=target, width=256, height=256, frames=frames)
    hero = render_avatars(body, motion, cam, supersample=3)
    save(out / "render_avatars.jpg", hero.image[8])

    orbit = camera_preset("orbit", frames, width=args.size, height_px=args.size)
    save(out / "render_preview.jpg", render_scene_preview(motion, orbit, body, size=512))

    short = Motion([p.map_frames(lambda t: t[picks]) for p in motion.persons], motion.fps)
    for name in PRESET_NAMES:
        cam = camera_preset(name, frames, width=args.size, height_px=args.size).slice(picks)
        strip = render_avatars(body, short, cam, supersample=2).image
        save(out / f"render_preset_{name}.jpg", torch.cat(list(strip), dim=1))


if __name__ == "__main__":
    main()
