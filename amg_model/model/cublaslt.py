"""Token projections through cuBLASLt with no workspace, so a captured CUDA graph holds no memory sets.

torch hands cuBLAS a workspace for every matrix product; on Hopper, the kernels cuBLAS then picks for
many of the UNet's shapes are preceded by a 4-byte memory set, and in a CUDA graph the GPU idles about
5 us around each (``bench/RESULTS.md``). torch reads the workspace size once per process, from an
environment variable, so it cannot be changed for the UNet alone. Here the cuBLASLt library that torch
has loaded runs the same products on its own handle with a zero-byte workspace budget: the heuristic
picks kernels that need none. Plans (descriptors and the chosen algorithm) are made once per shape.

:func:`linear` and :func:`add_linear_` take CUDA fp16/bf16 tensors whose rows are contiguous; for any
other input, or where cuBLASLt is not found or declines the problem, they run torch's operators.
"""

from __future__ import annotations

import ctypes
import threading

import torch
import torch.nn.functional as F

# cublasLt.h (CUDA 12 and 13)
_COMPUTE_32F = 68
_DATA_TYPES = {torch.float16: 2, torch.bfloat16: 14}
_R_32F = 0
_DESC_TRANSA, _DESC_TRANSB, _DESC_EPILOGUE, _DESC_BIAS_POINTER = 3, 4, 7, 8
_OP_T = 1
_EPILOGUE_BIAS = 4
_PREF_MAX_WORKSPACE_BYTES = 1
_PREF_MIN_ALIGNMENT = (5, 6, 7, 8)  # A, B, C, D bytes

_LIBRARY_NAMES = ("libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so")


class _HeuristicResult(ctypes.Structure):
    _fields_ = [
        ("algo", ctypes.c_uint64 * 8),
        ("workspace_size", ctypes.c_size_t),
        ("state", ctypes.c_int),
        ("waves_count", ctypes.c_float),
        ("reserved", ctypes.c_int * 4),
    ]


_lock = threading.Lock()
_library: ctypes.CDLL | None | bool = False  # False: not looked for yet
_handles: dict[int, ctypes.c_void_p] = {}
_plans: dict[tuple, _Plan | None] = {}
_ONE, _ZERO = ctypes.c_float(1.0), ctypes.c_float(0.0)


def _load() -> ctypes.CDLL | None:
    global _library
    if _library is False:
        _library = None
        if torch.version.cuda is not None:
            for name in (*_LIBRARY_NAMES, *_loaded_paths()):
                try:  # torch's CUDA build has loaded it already: this finds that copy
                    _library = ctypes.CDLL(name)
                    break
                except OSError:
                    continue
    return _library


def _loaded_paths() -> list[str]:
    """Paths of the cuBLASLt libraries mapped into this process (Linux), for wheels outside the
    loader's search path."""
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "libcublasLt.so" in line})
    except OSError:
        return []


def available() -> bool:
    """Whether cuBLASLt was found (a CUDA build of torch); the products may still fall back per shape."""
    return _load() is not None


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what} returned cuBLAS status {status}")


def _handle(lib: ctypes.CDLL, device: torch.device) -> ctypes.c_void_p:
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _handles:
        handle = ctypes.c_void_p()
        with torch.cuda.device(index):
            _check(lib.cublasLtCreate(ctypes.byref(handle)), "cublasLtCreate")
        _handles[index] = handle
    return _handles[index]


def _alignment(t: torch.Tensor) -> int:
    ptr = t.data_ptr()
    return min(256, ptr & -ptr) if ptr else 256


class _Plan:
    """Descriptors and the heuristic's first algorithm for one problem (shapes, strides, alignments)."""

    def __init__(self, lib: ctypes.CDLL, handle, dtype: torch.dtype, problem: tuple, bias, aligns: tuple):
        # row-major D [m, n] = X [m, k] @ W[n, k]^T is column-major D^T [n, m] = op(W) [n, k] @ X^T [k, m]
        m, n, k, ldw, ldx, ldd = problem
        kind = _DATA_TYPES[dtype]
        self.lib = lib
        self.desc = ctypes.c_void_p()
        _check(
            lib.cublasLtMatmulDescCreate(ctypes.byref(self.desc), _COMPUTE_32F, _R_32F), "MatmulDescCreate"
        )
        self._set(_DESC_TRANSA, ctypes.c_int32(_OP_T))
        if bias is not None:
            self._set(_DESC_EPILOGUE, ctypes.c_uint32(_EPILOGUE_BIAS))
            self.set_bias(bias)
        self.a, self.b, self.d = (ctypes.c_void_p() for _ in range(3))
        for layout, rows, cols, ld in ((self.a, k, n, ldw), (self.b, k, m, ldx), (self.d, n, m, ldd)):
            status = lib.cublasLtMatrixLayoutCreate(
                ctypes.byref(layout), kind, ctypes.c_uint64(rows), ctypes.c_uint64(cols), ctypes.c_int64(ld)
            )
            _check(status, "MatrixLayoutCreate")
        pref = ctypes.c_void_p()
        _check(lib.cublasLtMatmulPreferenceCreate(ctypes.byref(pref)), "MatmulPreferenceCreate")
        try:
            zero = ctypes.c_uint64(0)
            lib.cublasLtMatmulPreferenceSetAttribute(
                pref, _PREF_MAX_WORKSPACE_BYTES, ctypes.byref(zero), ctypes.c_size_t(8)
            )
            for attr, align in zip(_PREF_MIN_ALIGNMENT, aligns, strict=True):
                value = ctypes.c_uint32(align)
                lib.cublasLtMatmulPreferenceSetAttribute(pref, attr, ctypes.byref(value), ctypes.c_size_t(4))
            result, count = _HeuristicResult(), ctypes.c_int(0)
            status = lib.cublasLtMatmulAlgoGetHeuristic(
                handle,
                self.desc,
                self.a,
                self.b,
                self.d,
                self.d,
                pref,
                1,
                ctypes.byref(result),
                ctypes.byref(count),
            )
            _check(status, "MatmulAlgoGetHeuristic")
            if count.value < 1 or result.workspace_size != 0:
                raise RuntimeError("no algorithm without workspace")
            self.algo = result.algo
        finally:
            lib.cublasLtMatmulPreferenceDestroy(pref)

    def _set(self, attr: int, value) -> None:
        status = self.lib.cublasLtMatmulDescSetAttribute(
            self.desc, attr, ctypes.byref(value), ctypes.c_size_t(ctypes.sizeof(value))
        )
        _check(status, "MatmulDescSetAttribute")

    def set_bias(self, bias: torch.Tensor) -> None:
        self._set(_DESC_BIAS_POINTER, ctypes.c_void_p(bias.data_ptr()))

    def run(self, handle, w, x, out, accumulate: bool, stream: int) -> int:
        d = ctypes.c_void_p(out.data_ptr())
        beta = _ONE if accumulate else _ZERO
        return self.lib.cublasLtMatmul(
            handle, self.desc, ctypes.byref(_ONE), ctypes.c_void_p(w.data_ptr()), self.a,
            ctypes.c_void_p(x.data_ptr()), self.b, ctypes.byref(beta), d, self.d, d, self.d,
            ctypes.byref(self.algo), None, ctypes.c_size_t(0), ctypes.c_void_p(stream),
        )  # fmt: skip


def _matmul(
    x2: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor, accumulate: bool
) -> bool:
    """``out (+)= x2 @ weight^T (+ bias)`` through cuBLASLt; False where it does not run (nothing written)."""
    lib = _load()
    tensors = (x2, weight, out) if bias is None else (x2, weight, out, bias)
    if (
        lib is None
        or torch.compiler.is_compiling()
        or not all(t.is_cuda and t.dtype == x2.dtype for t in tensors)
        or x2.dtype not in _DATA_TYPES
        or x2.device != weight.device
        or any(t.stride(-1) != 1 for t in (x2, weight, out))
        or (bias is not None and not bias.is_contiguous())
        or min(x2.shape[0], weight.shape[0], x2.shape[1]) == 0
    ):
        return False
    problem = (x2.shape[0], weight.shape[0], x2.shape[1], weight.stride(0), x2.stride(0), out.stride(0))
    aligns = (_alignment(weight), _alignment(x2), _alignment(out), _alignment(out))
    key = (x2.device, x2.dtype, problem, aligns, None if bias is None else _alignment(bias))
    with _lock:
        handle = _handle(lib, x2.device)
        if key not in _plans:
            try:
                _plans[key] = _Plan(lib, handle, x2.dtype, problem, bias, aligns)
            except RuntimeError:
                _plans[key] = None  # declined (or a library error): torch's operators run this shape
        plan = _plans[key]
        if plan is None:
            return False
        if bias is not None:
            plan.set_bias(bias)
        stream = torch.cuda.current_stream(x2.device).cuda_stream
        return plan.run(handle, weight, x2, out, accumulate, stream) == 0


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for ``x [..., K]``, ``weight [N, K]`` (rows contiguous), through
    cuBLASLt without workspace where it runs, else ``F.linear``."""
    k, n = x.shape[-1], weight.shape[0]
    if x.is_cuda and weight.dim() == 2 and weight.shape[1] == k and x.dtype in _DATA_TYPES:
        x2 = x.reshape(-1, k)
        out = x2.new_empty(x2.shape[0], n)
        if _matmul(x2, weight, bias, out, accumulate=False):
            return out.view(*x.shape[:-1], n)
    return F.linear(x, weight, bias)


def add_linear_(out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``out += x @ weight^T`` in place for ``out [M, N]``, ``x [M, K]``, ``weight [N, K]`` (each with
    contiguous rows), through cuBLASLt without workspace where it runs, else ``addmm_``."""
    if not (out.is_cuda and out.dim() == 2 and _matmul(x, weight, None, out, accumulate=True)):
        out.addmm_(x, weight.t())
    return out
