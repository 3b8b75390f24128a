"""Time of one call of a GPU operation as it runs under CUDA graphs: no CPU launch overhead.

Each call is queued behind a GPU sleep, so the GPU never waits for the CPU, and timed by CUDA
events around it; the median of ``reps`` calls after a warm-up (which includes Triton's
compilation). On the CPU, wall time per call.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

SLEEP_CYCLES = 2_000_000  # about 1 ms of GPU time: longer than queueing any benchmarked call


def call_time_us(fn: Callable[[], object], reps: int, cuda: bool, flush: torch.Tensor | None = None) -> float:
    """Median microseconds per ``fn()``; ``flush`` (a large buffer) is zeroed before each timed call
    to evict the inputs from L2."""
    for _ in range(5):
        fn()
    if not cuda:
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e6)
        return statistics.median(times)
    torch.cuda.synchronize()
    events = [[torch.cuda.Event(enable_timing=True) for _ in range(2)] for _ in range(reps)]
    for start, end in events:
        torch.cuda._sleep(SLEEP_CYCLES)
        if flush is not None:
            flush.zero_()  # before the start event: not timed
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(start.elapsed_time(end) for start, end in events) * 1000.0
