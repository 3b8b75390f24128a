"""Independent chunks of work on several CPU threads, each with its own scratch state.

PyTorch releases the GIL inside every operator, so Python threads that each run a long sequence
of medium-size operators on their own data keep several cores busy where one sequence (mostly
single-threaded operators) keeps one. The caller's thread only waits, reports progress and
re-raises the first error.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

Chunk = TypeVar("Chunk")
_END = object()


def run_chunks(
    chunks: Sequence[Chunk],
    work: Callable[[Chunk, dict], None],
    workers: int = 1,
    done: Callable[[Chunk], None] | None = None,
) -> None:
    """Call ``work(chunk, scratch)`` for every chunk, on ``workers`` threads.

    Each thread has its own ``scratch`` dict (reusable buffers); chunks go to whichever thread is
    free, so ``work`` must not depend on which thread, or which other chunks, ran before.
    ``done(chunk)`` runs on the calling thread after each chunk, in completion order. With one
    worker (or one chunk) everything runs on the calling thread, in order. With several, the
    caller's intra-op threads (``torch.get_num_threads()``) are shared out among the workers and
    restored afterwards. The first exception, from a worker or from ``done``, stops the remaining
    chunks and is raised here once the workers have finished their current chunk.
    """
    workers = max(1, min(workers, len(chunks)))
    if workers == 1:
        scratch: dict = {}
        for chunk in chunks:
            work(chunk, scratch)
            if done is not None:
                done(chunk)
        return

    threads_before = torch.get_num_threads()
    # Autograd modes are per thread: the workers take the caller's (ComfyUI runs nodes in
    # inference mode, and its tensors cannot be written in place outside it).
    grad, inference = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    intra = max(1, threads_before // workers)
    todo = iter(chunks)
    todo_lock = threading.Lock()
    stop = threading.Event()
    # ("done", chunk), ("error", exception) or ("exit", None) from the workers.
    finished: queue.SimpleQueue = queue.SimpleQueue()

    def work_loop(scratch: dict) -> None:
        while not stop.is_set():
            with todo_lock:
                chunk = next(todo, _END)
            if chunk is _END:
                break
            work(chunk, scratch)
            finished.put(("done", chunk))

    def worker() -> None:
        # Thread-local in effect: the OpenMP setting is per thread (it also becomes the default
        # of threads started later, hence the restore below).
        torch.set_num_threads(intra)
        try:
            with torch.inference_mode(inference), torch.set_grad_enabled(grad):
                work_loop({})
        except BaseException as err:  # handed to the caller's thread
            stop.set()
            finished.put(("error", err))
        finally:
            finished.put(("exit", None))

    pool = [threading.Thread(target=worker, name=f"render-worker-{i}", daemon=True) for i in range(workers)]
    error: BaseException | None = None
    try:
        for t in pool:
            t.start()
        running = workers
        while running:
            kind, item = finished.get()
            if kind == "exit":
                running -= 1
            elif kind == "error":
                error = error or item
            elif error is None and done is not None:
                done(item)
    except BaseException:
        stop.set()
        raise
    finally:
        for t in pool:
            t.join()
        torch.set_num_threads(threads_before)
    if error is not None:
        raise error
