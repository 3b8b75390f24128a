"""GPU time of one guided UNet call replayed from its CUDA graph, and what the graph is made of.

Runs the default CUDA forward (fp16, channels-last, fused projections, one CUDA graph) of the real-size
UNet on one guided call (batch 2, 16 frames, 32x32 latent), times ``--rounds`` rounds of ``--calls``
back-to-back calls with CUDA events (the graph's input copies and output clone included), then profiles
one replay: its GPU operations by kind (kernels, memory sets, copies), their busy time and the span from
the first to the last, the average idle time before and after each memory set, and the cuBLAS time.
Settings that act through the environment (cuBLAS's workspace) are set on the command line, one process
per setting, so compare settings by running this script once for each on one warm card:

    python bench/graph_bench.py
    python bench/graph_bench.py --blas cublaslt
    python bench/graph_bench.py --no-cudnn-benchmark
    CUBLAS_WORKSPACE_CONFIG=:0:0 CUBLASLT_WORKSPACE_SIZE=0 python bench/graph_bench.py
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from unet_bench import build_unet  # noqa: E402

from amg_model.model.fast import FastUNet  # noqa: E402


def graph_operations(model: FastUNet, args: tuple) -> list[dict]:
    """The GPU operations of one replay (chrome-trace events, in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        model(*args, input_copies=2)
        torch.cuda.synchronize()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as fh:
            events = json.load(fh)["traceEvents"]
    ops = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")]
    return sorted(ops, key=lambda e: e["ts"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--blas", default="", help="torch.backends.cuda.preferred_blas_library, e.g. cublaslt")
    ap.add_argument("--no-cudnn-benchmark", action="store_true")
    ap.add_argument("--top", type=int, default=0, help="list the N most frequent GPU operations by name")
    args = ap.parse_args()
    torch.set_num_threads(4)
    if args.blas:
        torch.backends.cuda.preferred_blas_library(args.blas)
    torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    dev = torch.device("cuda")
    model = FastUNet(
        build_unet().half().to(dev), mode="cuda_graph", channels_last=True, fused_projections=True
    )
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 16, 32, 32, generator=g).half().to(dev).repeat(2, 1, 1, 1, 1)
    t = torch.full((2,), 501, device=dev)
    ctx = torch.randn(2, 77, 1024, generator=g).half().to(dev)
    for _ in range(3):  # capture and warm-up
        model(x, t, ctx, input_copies=2)
    times = []
    for _ in range(args.rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(args.calls):
            model(x, t, ctx, input_copies=2)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / args.calls)

    ops = graph_operations(model, (x, t, ctx))
    kinds = collections.Counter(e["cat"] for e in ops)
    busy = sum(e["dur"] for e in ops)
    span = ops[-1]["ts"] + ops[-1]["dur"] - ops[0]["ts"]
    before, after = [], []
    for prev, op, nxt in zip(ops, ops[1:], ops[2:], strict=False):
        if op["cat"] == "gpu_memset":
            before.append(op["ts"] - prev["ts"] - prev["dur"])
            after.append(nxt["ts"] - op["ts"] - op["dur"])
    blas = sum(e["dur"] for e in ops if "nvjet" in e["name"] or "cublas" in e["name"].lower())
    env = " ".join(
        f"{k}={os.environ[k]}"
        for k in ("CUBLAS_WORKSPACE_CONFIG", "CUBLASLT_WORKSPACE_SIZE")
        if k in os.environ
    )
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}; {env} {' '.join(sys.argv[1:])}")
    print(
        f"  ms per graph call ({args.rounds} rounds of {args.calls}): {' '.join(f'{v:.3f}' for v in times)}"
    )
    print(
        f"  one replay: {len(ops)} GPU operations ({kinds['kernel']} kernels, {kinds['gpu_memset']} memory "
        f"sets, {kinds['gpu_memcpy']} copies), busy {busy / 1e3:.2f} ms of a {span / 1e3:.2f} ms span, "
        f"cuBLAS {blas / 1e3:.2f} ms"
    )
    if before:
        print(
            f"  idle GPU around a memory set: {sum(before) / len(before):.1f} us before, "
            f"{sum(after) / len(after):.1f} us after"
        )
    if args.top:
        print_top_operations(ops, args.top)


def print_top_operations(ops: list[dict], top: int) -> None:
    """The ``top`` most frequent operation names: count, GPU time, and the idle GPU time before them."""
    count, busy, idle = collections.Counter(), collections.Counter(), collections.Counter()
    for prev, op in zip([None, *ops], ops, strict=False):
        name = op["name"][:90]
        count[name] += 1
        busy[name] += op["dur"]
        if prev is not None:
            idle[name] += op["ts"] - prev["ts"] - prev["dur"]
    print("  | count | name | GPU us (sum) | us each | idle us before (sum) |")
    for name, n in count.most_common(top):
        print(f"  | {n} | {name} | {busy[name]:.0f} | {busy[name] / n:.1f} | {idle[name]:.0f} |")


if __name__ == "__main__":
    main()
