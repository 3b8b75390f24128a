"""How fast does the avatar renderer run? 512 x 512, 64 frames, 2 walking mannequins.

Usage:
    python bench/render_bench.py [--device cpu|cuda] [--frames 64] [--size 512] [--supersample 2]
                                 [--threads 2] [--repeats 3]

Prints the time per frame of ``render_avatars`` (posing, colouring, rasterising, shading and
anti-aliasing; the best of ``--repeats`` runs after a warm-up) and the peak memory: CUDA's
allocator peak on a GPU, the process's peak resident set on the CPU. ``--threads`` sets torch's
threads; on the CPU the renderer runs that many chunks of frames at once, one per thread. Falls back to two
sphere-like meshes of similar triangle counts when the mannequin is not available.
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from amg_model.camera.camera import Camera  # noqa: E402
from amg_model.render.raster import render_meshes  # noqa: E402

log = logging.getLogger("render_bench")


def build_scene(frames: int, size: int, device: torch.device):
    """A render function for two persons walking side by side, filmed from the front."""
    eye, target = (0.0, 1.1, 4.2), (0.0, 0.9, 0.0)
    camera = Camera.static(eye=eye, target=target, width=size, height=size, frames=frames)
    try:
        from amg_model.render.avatars import render_avatars
        from amg_model.smpl.body import load_body_model
        from amg_model.smpl.motion import Motion
        from amg_model.smpl.procedural import procedural_motion
    except ImportError:
        render_avatars = None
    if render_avatars is not None:
        body = load_body_model("mannequin", device=device)
        a = procedural_motion("walk", frames, 24.0).persons[0]
        b = procedural_motion("walk", frames, 24.0, speed=1.3).persons[0]
        a.transl = a.transl + torch.tensor([-0.45, 0.0, 0.0], dtype=a.transl.dtype)
        b.transl = b.transl + torch.tensor([0.45, 0.0, -0.3], dtype=b.transl.dtype)
        motion = Motion([a, b], 24.0)
        name = f"2 mannequins walking ({body.faces.shape[0]} triangles each)"

        def run(supersample: int):
            return render_avatars(body, motion, camera, supersample=supersample, device=device)

        return name, run
    from amg_model.render.primitives import sphere_mesh

    v, f = sphere_mesh(1.0, 85, 84)
    v = v * torch.tensor([0.25, 0.85, 0.18]) + torch.tensor([0.0, 0.9, 0.0])
    sway = torch.sin(torch.linspace(0, 6.28, frames))[:, None, None] * torch.tensor([0.1, 0.0, 0.0])
    verts = [(v + torch.tensor([x, 0.0, 0.0]))[None] + sway for x in (-0.45, 0.45)]
    verts = [t.to(device) for t in verts]
    colors = [torch.rand(v.shape[0], 3, device=device) for _ in verts]
    cam = camera.to(device=device)

    def run(supersample: int):
        return render_meshes(verts, [f.to(device)] * 2, colors, cam, supersample=supersample)

    return f"2 ellipsoids ({f.shape[0]} triangles each)", run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--supersample", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name, run = build_scene(args.frames, args.size, device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run(args.supersample)  # warm-up: allocator, kernels, body-model caches
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    best, cpu_best = float("inf"), float("inf")
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = run(args.supersample)
        sync()
        best = min(best, time.perf_counter() - t0)
        cpu_best = min(cpu_best, time.process_time() - c0)
    if device.type == "cuda":
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB GPU (allocator peak)"
        machine = torch.cuda.get_device_name(device)
    else:
        peak = f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB resident (process peak)"
        machine = f"{platform.processor() or platform.machine()}, {args.threads} threads"
    ms = best / args.frames * 1000
    log.info("scene: %s", name)
    log.info("device: %s (%s)", device, machine)
    log.info(
        "%dx%d, %d frames, supersample %d: %.1f ms/frame (%.2f s total, %.2f s CPU time), peak %s",
        args.size, args.size, args.frames, args.supersample, ms, best, cpu_best, peak,
    )  # fmt: skip
    log.info("coverage: %.1f %% of the pixels", 100 * float(out.mask.mean()))


if __name__ == "__main__":
    main()
