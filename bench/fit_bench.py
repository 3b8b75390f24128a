"""Keypoint and 3D-joint fitting accuracy and time on a synthetic walking clip (64 frames x 2 people).

Usage: python bench/fit_bench.py [--device cuda] [--threads 2] [--frames 64] [--iterations 300]
Prints one result line per fit. Uses the built-in mannequin body and the synthetic walking clip of
tests/amg_model/smpl/test_fit.py (2 px Gaussian keypoint noise, static camera pitched down ~10 deg).
"""

import argparse
import pathlib
import sys
import time

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "amg_model" / "smpl")]

from test_fit import look_at_camera, motion_joints, pa_mpjpe, posed, walking_motion  # noqa: E402

from amg_model.smpl.body import load_body_model  # noqa: E402
from amg_model.smpl.fit import fit_joints3d, fit_keypoints  # noqa: E402
from amg_model.smpl.keypoints import smpl_to_coco18  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--persons", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=300)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    body = load_body_model("mannequin", device=a.device)
    gt = [t.to(a.device) for t in walking_motion(a.frames, a.persons)]
    gt[0] = gt[0][:, : body.num_betas] * 0.0  # the mannequin's shape space differs from the test body's
    cam = look_at_camera(a.frames)
    joints, face = posed(body, *gt)
    coco = smpl_to_coco18(joints, face).cpu()
    uv = torch.stack([cam.project(coco[p])[0] for p in range(a.persons)])
    noisy = uv + 2.0 * torch.randn(uv.shape, generator=torch.Generator().manual_seed(1))
    kp = torch.cat([noisy, torch.ones(*uv.shape[:-1], 1)], -1).permute(1, 0, 2, 3).to(a.device)
    t0 = time.perf_counter()
    motion, camera = fit_keypoints(kp, body, image_size=(640, 480), iterations=a.iterations)
    if torch.device(a.device).type == "cuda":
        torch.cuda.synchronize()
    t2d = time.perf_counter() - t0
    camera = camera.to("cpu")
    fj, ff = motion_joints(body, motion)
    fuv = torch.stack([camera.project(smpl_to_coco18(fj, ff)[p].cpu())[0] for p in range(a.persons)])
    order = [int((fuv[p] - uv).norm(dim=-1).mean((1, 2)).argmin()) for p in range(a.persons)]
    reproj = float((fuv - uv[order]).norm(dim=-1).mean())
    pa = pa_mpjpe(fj.flatten(0, 1).cpu(), joints[order].flatten(0, 1).cpu())
    print(
        f"fit_keypoints {a.frames}x{a.persons} on {a.device}: reprojection {reproj:.2f} px, "
        f"PA-MPJPE {1000 * pa:.1f} mm, {t2d:.1f} s ({a.iterations} iterations)"
    )
    t0 = time.perf_counter()
    m3 = fit_joints3d(joints, body, iterations=150)
    t3d = time.perf_counter() - t0
    j3, _ = motion_joints(body, m3)
    mpjpe = float((j3 - joints).norm(dim=-1).mean())
    print(f"fit_joints3d {a.frames}x{a.persons} on {a.device}: MPJPE {1000 * mpjpe:.1f} mm, {t3d:.1f} s")


if __name__ == "__main__":
    main()
