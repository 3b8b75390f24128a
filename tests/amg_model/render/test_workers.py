"""run_chunks: every chunk once, per-thread scratch, errors and progress on the caller's thread."""

import threading

import pytest
import torch

from amg_model.render.workers import run_chunks


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_every_chunk_runs_once_with_its_own_scratch(workers):
    results, scratches, done = {}, set(), []

    def work(chunk: int, scratch: dict) -> None:
        scratch.setdefault("thread", threading.current_thread().name)
        assert scratch["thread"] == threading.current_thread().name  # never shared
        scratches.add(id(scratch))
        results[chunk] = torch.full((1000,), float(chunk)).cumsum(0)[-1].item()

    caller = threading.current_thread()
    run_chunks(list(range(10)), work, workers, lambda c: done.append((c, threading.current_thread())))
    assert results == {c: 1000.0 * c for c in range(10)}
    assert sorted(c for c, _ in done) == list(range(10))
    assert all(t is caller for _, t in done)
    assert len(scratches) <= workers
    if workers == 1:
        assert [c for c, _ in done] == list(range(10))  # in order, on the caller's thread


def test_first_error_stops_the_rest_and_keeps_the_thread_setting():
    before = torch.get_num_threads()
    ran = []

    def work(chunk: int, scratch: dict) -> None:
        ran.append(chunk)
        if chunk == 1:
            raise ValueError("chunk 1 is broken")

    with pytest.raises(ValueError, match="chunk 1 is broken"):
        run_chunks(list(range(50)), work, 2)
    assert len(ran) < 50
    assert torch.get_num_threads() == before


def test_workers_take_the_callers_autograd_mode():
    modes = set()
    with torch.inference_mode():
        out = torch.zeros(8)  # an inference tensor: written in place only in inference mode

        def work(chunk: int, scratch: dict) -> None:
            modes.add((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
            out[chunk] = chunk

        run_chunks(list(range(8)), work, 2)
    assert out.tolist() == list(range(8)) and modes == {(True, False)}
    modes.clear()
    with torch.no_grad():
        run_chunks(list(range(8)), lambda c, s: modes.add(torch.is_grad_enabled()), 2)
    assert modes == {False}
