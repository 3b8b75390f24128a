"""ComfyUI's stock KSampler on the native AMG MODEL vs the standalone sampler, on the same job.

Python packages needed besides torch and the pack's requirements (diffusers for the UNet): from
ComfyUI's requirements ``psutil``, ``numpy``, ``safetensors``, ``einops``, ``tqdm``, ``pyyaml``,
``Pillow`` and ``transformers`` (with ``tokenizers``), which ``comfy.model_management``,
``comfy.model_base`` and ``comfy.sample`` import. ``torchsde`` (SDE samplers), ``scipy`` (beta
scheduler, LMS), ``torchvision`` (Cosmos, Cascade, ACE models) and ``av`` (video files in
``comfy_api``) are imported by ComfyUI modules but unused by this job: when one is missing or fails to
import (e.g. a torchvision built for another torch), a placeholder module stands in for it and the
script prints a note. ``comfy_api.latest`` (the node base class of nodes/model.py) is stubbed the same
way if it cannot be imported.

One process builds the real-size AMG UNet with random weights (``unet_bench.build_unet``) and samples
one job both ways: 16 frames of 256x256 (latent 32x32), 20 DDIM steps, guidance 3.0, the same noise,
avatar latent and text embeddings.

- standalone: ``amg_model.model.runtime.prepare_unet`` + ``amg_model.sampling.sample.sample_video``, in
  the device's default mode (fp16 + CUDA graphs on CUDA, fp32 eager on the CPU) and, on CUDA, also fp16
  eager (the execution style ComfyUI uses);
- ComfyUI: the UNet wrapped by the pack's ``nodes.model.wrap_unet`` (the MODEL that AMG Load Model
  returns), sampled by ``comfy.sample.sample(..., "ddim", "ddim_uniform", ...)`` (what KSampler calls)
  with the conditionings AMG Avatar Conditioning builds: ``[[embedding, {"concat_latent_image":
  avatar}]]``, frames in the batch dimension ``[frames, 4, h, w]``, latents unscaled.

Prints a table: median seconds per clip over ``--clips`` clips after one warm-up clip, the warm-up
clip's time, peak GPU memory (CUDA), the relative L2 difference of each final latent to the ComfyUI
one (ComfyUI's DDIM starts from ``noise * sqrt(1 - alpha_bar)`` at t = 951 and its last step ends on
the clean prediction, so they agree closely but not exactly; the next column runs the standalone sampler
once more from ComfyUI's start to its end, which shows whether both compute the same thing), and the
ratio ComfyUI / that path.
``--write`` appends the table to bench/RESULTS.md with the card, torch and ComfyUI versions and date.

ComfyUI is imported in-process from ``--comfyui DIR`` (default: ``$COMFYUI_DIR``); no server starts.
Its command-line parser is left off (``comfy.cli_args`` then holds the defaults), so this script's
arguments never reach it; ``--device cpu`` sets its ``--cpu`` option.

    python bench/comfy_bench.py --comfyui /path/to/ComfyUI                  # CUDA, real size
    python bench/comfy_bench.py --comfyui /path/to/ComfyUI --clips 5 --write
    python bench/comfy_bench.py --comfyui /path/to/ComfyUI --profile   # where ComfyUI's step spends CPU time
    python bench/comfy_bench.py --comfyui /path/to/ComfyUI --tiny --device cpu --steps 2   # smoke test
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import importlib.abc
import importlib.machinery
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from unet_bench import build_unet  # noqa: E402

GIB = 2**30
# ComfyUI-side packages that ComfyUI modules import but this job never uses, and what needs them.
UNUSED_BY_THIS_JOB = {
    "torchsde": "SDE samplers",
    "scipy": "beta scheduler, LMS sampler",
    "torchvision": "Cosmos, Cascade and ACE models",
    "av": "video files in comfy_api",
}


class _Placeholders(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Stands in for the packages (and their submodules) of ``names``: any attribute is an empty class."""

    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in self.names:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []

        def getattr_(attr: str):
            if attr.startswith("__"):
                raise AttributeError(attr)
            return type(attr, (), {})

        module.__getattr__ = getattr_
        return module

    def exec_module(self, module) -> None:
        pass


def _stand_in_for_unused_packages() -> list[str]:
    """Placeholders for the packages of UNUSED_BY_THIS_JOB that cannot be imported; returns notes."""
    broken = {}
    for name in UNUSED_BY_THIS_JOB:
        try:
            importlib.import_module(name)
        except Exception as exc:  # missing, or built for another torch (e.g. a CUDA torchvision on CPU torch)
            broken[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                del sys.modules[mod]
    if broken:
        # diffusers and transformers check whether a package is installed before they use it: for them the
        # unusable ones are absent (a None entry in sys.modules), and they cache that on import.
        for name in broken:
            sys.modules[name] = None
        from diffusers import UNet3DConditionModel  # noqa: F401

        for name in broken:
            del sys.modules[name]
        sys.meta_path.insert(0, _Placeholders(set(broken)))
    return [
        f"{n} unusable ({why}); placeholder used (needed only by {UNUSED_BY_THIS_JOB[n]})"
        for n, why in broken.items()
    ]


def import_comfy(comfy_dir: str, cpu: bool):
    """Import the ComfyUI modules of this job and the pack's ``nodes/model.py``; returns the modules."""
    if not comfy_dir or not os.path.isfile(os.path.join(comfy_dir, "comfy", "sample.py")):
        sys.exit(
            f"error: {comfy_dir or '(none)'} is no ComfyUI folder; pass --comfyui DIR or set COMFYUI_DIR."
        )
    sys.path.insert(0, os.path.abspath(comfy_dir))
    notes = _stand_in_for_unused_packages()
    import comfy.cli_args  # parses no command line unless comfy.options.enable_args_parsing() was called

    comfy.cli_args.args.cpu = cpu
    import comfy.model_management
    import comfy.sample

    try:
        import comfy_api.latest  # noqa: F401  (nodes/model.py imports its io for the loader node)
    except Exception as exc:  # only the node class needs it; wrap_unet does not
        stub = types.ModuleType("comfy_api.latest")
        stub.io = types.SimpleNamespace(ComfyNode=object)
        sys.modules["comfy_api.latest"] = stub
        notes.append(f"comfy_api.latest unusable ({type(exc).__name__}: {exc}); node base class stubbed")
    # The pack's nodes/ folder under its own package name: ComfyUI has a top-level module "nodes", and the
    # package's __init__ (every node of the pack) is not needed for model.py and edges.py.
    package = types.ModuleType("amg_pack_nodes")
    package.__path__ = [str(REPO / "nodes")]
    sys.modules["amg_pack_nodes"] = package
    model_mod = importlib.import_module("amg_pack_nodes.model")
    edges = importlib.import_module("amg_pack_nodes.edges")
    for note in notes:
        print(f"note: {note}")
    return comfy, model_mod, edges


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, clips: int, dev: torch.device, name: str):
    """Run ``fn`` once to warm up and ``clips`` times more; returns (times, last output, peak GiB)."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    times, out = [], None
    for i in range(clips + 1):
        sync(dev)
        t0 = time.perf_counter()
        out = fn()
        sync(dev)
        times.append(time.perf_counter() - t0)
        if i == 0:
            print(f"  {name}: warm-up clip {times[0]:.2f} s", flush=True)
    peak = torch.cuda.max_memory_allocated(dev) / GIB if dev.type == "cuda" else float("nan")
    return times, out, peak


def standalone_row(
    name, state, tiny, dev, job, clips, precision="auto", mode="auto", profile: bool = False
) -> dict:
    """The library path: prepare_unet + sample_video on the job."""
    from amg_model.model.runtime import prepare_unet
    from amg_model.sampling.sample import sample_video
    from amg_model.sampling.schedule import alphas_cumprod, ddim_timesteps

    unet = build_unet(tiny=tiny)
    unet.load_state_dict(state)
    fn = prepare_unet(unet, dev, precision, mode)
    avatar, cond, uncond = (job[k].to(dev) for k in ("avatar", "cond", "uncond"))

    def clip():
        return sample_video(
            fn, avatar, cond, uncond, steps=job["steps"], guidance=job["guidance"], noise=job["noise"]
        )

    times, out, peak = timed(clip, clips, dev, name)
    if profile and dev.type == "cuda":
        print_gpu_timeline(clip, name)
    # ComfyUI's start and end on this UNet: noise * sqrt(1 - alpha_bar(t0)) in, the last x0 prediction out
    t0 = ddim_timesteps(job["steps"])[0]
    x0 = []
    sample_video(
        fn, avatar, cond, uncond, steps=job["steps"], guidance=job["guidance"],
        noise=job["noise"] * float((1 - alphas_cumprod()[t0]).sqrt()), callback=lambda *a: x0.append(a[-1]),
    )  # fmt: skip
    return dict(
        name=name, s=statistics.median(times[1:]), first=times[0], peak=peak, out=out.float().cpu(),
        matched=x0[-1].float().cpu(),
    )  # fmt: skip


def print_python_profile(fn, what: str, rows: int = 25) -> None:
    """Run ``fn`` once under cProfile; print the functions with the most own time (Python-side overhead)."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    print(f"\nPython profile of one clip, {what} (own time, top {rows}):")
    pstats.Stats(prof).sort_stats("tottime").print_stats(rows)


def print_gpu_timeline(fn, what: str, rows: int = 12) -> None:
    """Profile one clip on CUDA: wall time against GPU busy time, the largest idle gaps of the GPU and
    the CPU work (op and innermost Python frame outside torch) that ran while the GPU waited."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], with_stack=True) as prof:
        fn()
        torch.cuda.synchronize()
    events = prof.events()
    kernels = sorted(
        (e.time_range.start, e.time_range.end, e.name) for e in events if e.device_type == DeviceType.CUDA
    )
    cpu = [e for e in events if e.device_type == DeviceType.CPU]
    if not kernels or not cpu:
        print(f"\nGPU timeline of one clip, {what}: no kernel events recorded")
        return
    start, end = min(e.time_range.start for e in cpu), max(e.time_range.end for e in cpu)
    busy, gaps, last = 0.0, [], start
    for k0, k1, _ in kernels:
        if k0 > last:
            gaps.append((last, k0))
        busy += max(0.0, k1 - max(k0, last))
        last = max(last, k1)
    wall = end - start
    big = [g for g in gaps if g[1] - g[0] > 200]

    def frame(e) -> str:
        for f in e.stack or ():
            if "/torch/" not in f and "profiler" not in f:
                return f.split("/")[-1]
        return "-"

    blame: dict[tuple[str, str], float] = {}
    for g0, g1 in big:
        for e in cpu:
            overlap = min(g1, e.time_range.end) - max(g0, e.time_range.start)
            if overlap > 0:
                key = (e.name, frame(e))
                blame[key] = blame.get(key, 0.0) + overlap
    per_kernel: dict[str, float] = {}
    for k0, k1, name in kernels:
        per_kernel[name] = per_kernel.get(name, 0.0) + k1 - k0
    print(f"\nGPU timeline of one clip, {what}:")
    idle_in_gaps = sum(b - a for a, b in big) / 1e3
    print(
        f"  wall {wall / 1e3:.1f} ms, GPU busy {busy / 1e3:.1f} ms ({len(kernels)} kernels), "
        f"idle {(wall - busy) / 1e3:.1f} ms; {len(big)} gaps over 0.2 ms totalling {idle_in_gaps:.1f} ms"
    )
    print("  largest gaps (ms from the clip's start: length ms):")
    for g0, g1 in sorted(big, key=lambda g: g[0] - g[1])[:rows]:
        print(f"    {(g0 - start) / 1e3:8.1f}: {(g1 - g0) / 1e3:.2f}")
    print("  CPU ops running during gaps over 0.2 ms (nested ops counted in each; ms, op, frame):")
    for (name, where), t in sorted(blame.items(), key=lambda kv: -kv[1])[: 4 * rows]:
        print(f"    {t / 1e3:8.2f}  {name[:60]}  {where}")
    print("  kernels with the most GPU time (ms):")
    for name, t in sorted(per_kernel.items(), key=lambda kv: -kv[1])[:rows]:
        print(f"    {t / 1e3:8.2f}  {name[:100]}")


def comfy_row(
    name, state, tiny, dev, job, clips, comfy, model_mod, edges, weight_dtype: str, profile: bool = False
) -> dict:
    """ComfyUI's path: wrap_unet (AMG Load Model's MODEL) + comfy.sample.sample (KSampler's call)."""
    from amg_model.model.config import infer_config_diffusers
    from amg_model.model.unet import AMGUNet

    mm = comfy.model_management
    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    dtype, manual_cast = edges.unet_dtypes(weight_dtype, "", load_device)
    unet = build_unet(tiny=tiny)
    unet.load_state_dict(state)
    unet = torch.nn.Module.to(unet, offload_device, dtype)  # torch's own: diffusers' warns about fp32 modules
    amg = AMGUNet(infer_config_diffusers(unet.state_dict(), "bench UNet"), unet)
    patcher = model_mod.wrap_unet(amg, dtype, manual_cast, load_device, offload_device)
    scale = patcher.model.latent_format.scale_factor
    frames_first = (1, 0, 2, 3)  # [1, 4, F, h, w][0] -> [F, 4, h, w]: ComfyUI's frames-in-batch layout
    avatar = (job["avatar"][0].permute(frames_first) / scale).contiguous()  # unscaled, as VAE Encode gives
    noise = job["noise"][0].permute(frames_first).contiguous()
    positive = [[job["cond"], {"concat_latent_image": avatar}]]
    negative = [[job["uncond"], {"concat_latent_image": avatar}]]
    empty = torch.zeros_like(avatar)

    def clip():
        return comfy.sample.sample(
            patcher, noise, job["steps"], job["guidance"], "ddim", "ddim_uniform", positive, negative, empty,
            denoise=1.0, disable_pbar=True, seed=0,
        )  # fmt: skip

    times, out, peak = timed(clip, clips, dev, name)
    if profile:
        print_python_profile(clip, name)
        if dev.type == "cuda":
            print_gpu_timeline(clip, name)
    mm.unload_all_models()
    mm.soft_empty_cache()
    latent = (out.float().cpu() * scale).permute(frames_first).unsqueeze(0)  # back to [1, 4, F, h, w], scaled
    label = f"{name}, {str(dtype).removeprefix('torch.')}" + (f" (cast {manual_cast})" if manual_cast else "")
    return dict(name=label, s=statistics.median(times[1:]), first=times[0], peak=peak, out=latent)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--comfyui", default=os.environ.get("COMFYUI_DIR"), help="ComfyUI folder ($COMFYUI_DIR)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true", help="tiny UNet, for a smoke test of this script")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--clips", type=int, default=3, help="timed clips per path after one warm-up clip")
    ap.add_argument(
        "--weight-dtype", default=None, choices=("fp16", "bf16", "fp32"),
        help="ComfyUI weight dtype (default fp16 on CUDA, fp32 on the CPU, as the standalone default)",
    )  # fmt: skip
    ap.add_argument("--eager", action="store_true", help="add the standalone fp16 eager path (CUDA)")
    ap.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="print a Python profile of one ComfyUI clip and, on CUDA, the GPU timeline of both paths",
    )
    args = ap.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no CUDA GPU; use --device cpu for the smoke test.")
    comfy, model_mod, edges = import_comfy(args.comfyui, cpu=not cuda)
    if cuda:
        torch.backends.cudnn.benchmark = True
    weight_dtype = args.weight_dtype or ("fp16" if cuda else "fp32")

    state = build_unet(tiny=args.tiny).state_dict()
    dim = build_unet(tiny=True).config.cross_attention_dim if args.tiny else 1024
    hw = 8 if args.tiny else 32
    g = torch.Generator().manual_seed(0)
    job = dict(
        avatar=torch.randn(1, 4, args.frames, hw, hw, generator=g),
        cond=torch.randn(1, 77, dim, generator=g),
        uncond=torch.randn(1, 77, dim, generator=g),
        noise=torch.randn(1, 4, args.frames, hw, hw, generator=g),
        steps=args.steps,
        guidance=args.guidance,
    )
    auto_mode = "fp16 + CUDA graphs" if cuda else "fp32 eager"
    paths = [
        (standalone_row, f"standalone: prepare_unet auto ({auto_mode})", dict(profile=args.profile)),
        *([(standalone_row, "standalone: fp16 eager", dict(precision="fp16", mode="eager"))]
          if args.eager else []),
        (comfy_row, "ComfyUI: wrap_unet + comfy.sample ddim/ddim_uniform",
         dict(comfy=comfy, model_mod=model_mod, edges=edges, weight_dtype=weight_dtype,
              profile=args.profile)),
    ]  # fmt: skip
    rows = []
    for row, name, kw in paths:
        rows.append(row(name, state=state, tiny=args.tiny, dev=dev, job=job, clips=args.clips, **kw))
        gc.collect()  # the path's UNet goes before the next one is built
        if cuda:
            torch.cuda.empty_cache()
    ref = rows[-1]
    card = torch.cuda.get_device_name(dev) if cuda else "CPU"
    try:
        from comfyui_version import __version__ as comfy_version
    except ImportError:
        comfy_version = "unknown"
    lines = [
        f"Machine: {card}, torch {torch.__version__}, ComfyUI {comfy_version}, {datetime.date.today()}; "
        f"{args.frames} frames {hw * 8}x{hw * 8}, {args.steps} DDIM steps, guidance {args.guidance}, "
        f"{'tiny' if args.tiny else 'real-size'} UNet (random weights), median of {args.clips} clips after a "
        f"warm-up clip. Command: `python bench/comfy_bench.py {' '.join(sys.argv[1:])}`"
        .replace(f"--comfyui {args.comfyui}", "--comfyui DIR"),
        "",
        "| path | median s/clip | warm-up clip s | peak GiB | rel. L2 diff to ComfyUI latent "
        "| same, ComfyUI's start and end | ComfyUI / this |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        diff = "-" if r is ref else f"{_rel(r['out'], ref['out']):.1e}"
        matched = "-" if r is ref else f"{_rel(r['matched'], ref['out']):.1e}"
        peak = "-" if r["peak"] != r["peak"] else f"{r['peak']:.2f}"  # NaN off CUDA
        lines.append(
            f"| {r['name']} | {r['s']:.3f} | {r['first']:.2f} | {peak} | {diff} | {matched} "
            f"| {ref['s'] / r['s']:.2f} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    if args.write:
        path = REPO / "bench" / "RESULTS.md"
        with open(path, "a") as f:
            f.write("\n## ComfyUI KSampler path vs the standalone sampler (`bench/comfy_bench.py`)\n\n")
            f.write(table + "\n")
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
