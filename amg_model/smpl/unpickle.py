"""Restricted unpickling of model and motion ``.pkl`` files: arrays in, never code.

A pickle can name any importable callable and have the loader call it, so ``pickle.load`` on a
downloaded file runs whatever the file says. ``load_pickle`` resolves only an allow-list of
names and turns the foreign classes that SMPL-family and motion files use into plain numpy:

- numpy arrays, dtypes and scalars (``numpy.core`` and ``numpy._core`` spellings, protocols 2-5);
- plain containers (dict, list, tuple, set, frozenset, OrderedDict), bytes, str, numbers;
- ``chumpy`` objects (the official SMPL ``.pkl`` files store ``shapedirs`` as ``chumpy.ch.Ch``):
  a ``Ch`` becomes its array ``x``; a transpose/reshape of one is evaluated; other chumpy
  expressions are refused because evaluating them would need chumpy itself;
- ``scipy.sparse`` csc/csr/coo matrices (the official ``J_regressor``) become dense arrays, so
  neither chumpy nor scipy needs to be installed.

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, any other class) is
refused before it is called. Python 2 pickles are read with ``encoding="latin1"``.
"""

from __future__ import annotations

import _compat_pickle
import logging
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from amg_model.errors import AMGError, BodyModelError

logger = logging.getLogger(__name__)

# Callables numpy itself writes into pickles, taken from numpy's own reducers so that the
# numpy 1 (numpy.core) and numpy 2 (numpy._core) spellings both resolve to the running numpy.
_NP_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_NP_SCALAR = np.float64(0).__reduce__()[0]
_NP_FROMBUFFER = np.zeros(1).__reduce_ex__(5)[0]


class _StandIn:
    """Placeholder for an instance of a foreign class (chumpy, scipy.sparse); never executes code.

    It records the class name it stands for and the state the pickle gives it; ``_to_plain``
    later turns it into a numpy array.
    """

    qualname = "?"
    args: tuple = ()
    state: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _stand_in_class(module: str, name: str) -> type:
    return type(name, (_StandIn,), {"qualname": f"{module}.{name}"})


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Safe replacement of ``copy_reg._reconstructor`` (protocol 0/1 instances of new-style classes)."""
    if isinstance(cls, type) and issubclass(cls, _StandIn):
        obj = cls()
        if state is not None:
            obj.args = (state,)
        return obj
    if cls is OrderedDict or cls is dict:
        return cls() if state is None else cls(state)
    raise pickle.UnpicklingError(f"refers to copy_reg._reconstructor of {cls!r}")


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """``numpy._core.numeric._frombuffer`` restricted to plain (non-object) dtypes."""
    if np.dtype(dtype).hasobject:
        raise pickle.UnpicklingError("refers to an object array in a raw buffer")
    return _NP_FROMBUFFER(buf, dtype, shape, order)


def _allowed() -> dict[tuple[str, str], Any]:
    table: dict[tuple[str, str], Any] = {}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = _NP_RECONSTRUCT
        table[(f"{core}.multiarray", "scalar")] = _NP_SCALAR
        table[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    table[("numpy", "ndarray")] = np.ndarray
    table[("numpy", "dtype")] = np.dtype
    # numpy >= 1.25 pickles dtypes of scalar types by their class, e.g. numpy.dtypes.Float64DType.
    for dt in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
               np.uint16, np.uint32, np.uint64, np.bool_, np.complex64, np.complex128):  # fmt: skip
        table[("numpy", dt.__name__)] = dt
        table[("numpy.dtypes", type(np.dtype(dt)).__name__)] = type(np.dtype(dt))
    for builtins in ("builtins", "__builtin__"):
        for name, obj in (("set", set), ("frozenset", frozenset), ("bytearray", bytearray),
                          ("complex", complex), ("object", object), ("slice", slice)):  # fmt: skip
            table[(builtins, name)] = obj
    table[("collections", "OrderedDict")] = OrderedDict
    table[("_codecs", "encode")] = _codecs_encode
    for copyreg in ("copyreg", "copy_reg"):
        table[(copyreg, "_reconstructor")] = _reconstructor
    for mod in ("scipy.sparse._csc", "scipy.sparse.csc", "scipy.sparse._csr", "scipy.sparse.csr",
                "scipy.sparse._coo", "scipy.sparse.coo"):  # fmt: skip
        kind = mod.rsplit(".", 1)[1].lstrip("_")
        table[(mod, f"{kind}_matrix")] = _stand_in_class(mod, f"{kind}_matrix")
        table[(mod, f"{kind}_array")] = _stand_in_class(mod, f"{kind}_array")
    return table


def _codecs_encode(obj: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as Python 3 pickles bytes at protocol 2: text codecs only."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise pickle.UnpicklingError(f"refers to _codecs.encode with encoding {encoding!r}")
    return obj.encode(encoding)


_ALLOWED = _allowed()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, extra: Mapping[tuple[str, str], Any]) -> None:
        head = file.read(2)
        file.seek(0)
        # Protocols 0-1 have no PROTO opcode; like pickle's fix_imports, map Python 2 names below 3.
        self._py2_names = not (len(head) == 2 and head[0] == 0x80 and head[1] >= 3)
        super().__init__(file, encoding="latin1")
        self._extra = extra

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if self._py2_names:
            if key in _compat_pickle.NAME_MAPPING:
                key = _compat_pickle.NAME_MAPPING[key]
            elif module in _compat_pickle.IMPORT_MAPPING:
                key = (_compat_pickle.IMPORT_MAPPING[module], name)
        for k in ((module, name), key):
            if k in self._extra:
                return self._extra[k]
            if k in _ALLOWED:
                return _ALLOWED[k]
        if module == "chumpy" or module.startswith("chumpy."):
            return _stand_in_class(module, name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"persistent id {pid!r}")


class _Refused(pickle.UnpicklingError):
    """A name outside the allow-list; carries the refused name."""


def load_pickle(
    path: str | Path,
    extra_classes: Mapping[tuple[str, str], Callable[..., Any]] | None = None,
    error: type[AMGError] = BodyModelError,
) -> Any:
    """Load a pickle file without letting it run code.

    Args:
        path: the ``.pkl`` file.
        extra_classes: further ``(module, name) -> callable`` entries a caller trusts (e.g. a
            motion format's own plain record class); each must be safe to call with any arguments.
        error: the AMGError subclass to raise (BodyModelError for body models, MotionError for
            motion files).

    Returns:
        The unpickled object with chumpy objects and sparse matrices replaced by numpy arrays
        (float64 as stored); containers, strings and numbers as they are.

    Raises:
        ``error`` naming the file when it is missing, truncated, not a pickle, or refers to
        anything outside the allow-list.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            raw = _RestrictedUnpickler(f, extra_classes or {}).load()
    except FileNotFoundError:
        raise error(f"{path}: file not found; check the path.") from None
    except _Refused as e:
        raise error(
            f"{path.name}: refers to {e}; a model/motion file must contain only arrays, numbers, "
            "strings and containers, so it was not loaded (re-export it with numpy, or get the "
            "file from its official source)."
        ) from None
    except (EOFError, pickle.UnpicklingError) as e:
        raise error(f"{path.name}: is truncated or not a pickle ({e}); download the file again.") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder; give the path of a .pkl file.") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e}); check the file and its permissions.") from None
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError, RecursionError,
            OverflowError) as e:  # fmt: skip
        raise error(f"{path.name}: is damaged or not a supported pickle ({e}); download it again.") from None
    try:
        return _to_plain(raw, {})
    except _Refused as e:
        raise error(
            f"{path.name}: holds {e}, which cannot be turned into an array without running its "
            "library; re-export the file with plain numpy arrays."
        ) from None
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as e:
        raise error(
            f"{path.name}: holds a malformed chumpy or sparse object ({e}); download it again."
        ) from None


def _to_plain(obj: Any, memo: dict[int, Any]) -> Any:
    """Replace stand-ins by numpy arrays, recursively through containers."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _StandIn):
        out: Any = _stand_in_to_array(obj, memo)
    elif isinstance(obj, dict):
        out = type(obj)()
        memo[key] = out
        for k, v in obj.items():
            out[k] = _to_plain(v, memo)
    elif isinstance(obj, list):
        out = []
        memo[key] = out
        out.extend(_to_plain(v, memo) for v in obj)
    elif isinstance(obj, tuple):
        out = tuple(_to_plain(v, memo) for v in obj)
    elif isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        out = np.empty(obj.shape, dtype=object)
        for i, v in enumerate(obj.flat):
            out.flat[i] = _to_plain(v, memo)
    else:
        out = obj
    memo[key] = out
    return out


def _stand_in_to_array(obj: _StandIn, memo: dict[int, Any]) -> np.ndarray:
    state = obj.state if isinstance(obj.state, dict) else {}
    module, _, name = obj.qualname.rpartition(".")
    if module.startswith("scipy.sparse"):
        return _sparse_to_dense(name, state)
    # chumpy: a plain Ch holds its value in x; reorderings wrap another Ch in a.
    if "x" in state and "a" not in state:
        return np.asarray(_to_plain(state["x"], memo))
    if name == "transpose" and "a" in state:
        return np.transpose(np.asarray(_to_plain(state["a"], memo)), state.get("axes"))
    if name == "reshape" and "a" in state and "newshape" in state:
        return np.reshape(np.asarray(_to_plain(state["a"], memo)), state["newshape"])
    raise _Refused(f"the chumpy expression {obj.qualname}")


def _sparse_to_dense(name: str, state: dict) -> np.ndarray:
    shape = tuple(int(s) for s in state.get("_shape", state.get("shape", ())))
    if len(shape) != 2:
        raise ValueError(f"sparse matrix without a 2-D shape ({shape})")
    data = np.asarray(state["data"])
    dense = np.zeros(shape, dtype=data.dtype)
    if name.startswith("coo"):
        rows, cols = np.asarray(state["row"]), np.asarray(state["col"])
        np.add.at(dense, (rows, cols), data)
        return dense
    indices, indptr = np.asarray(state["indices"]), np.asarray(state["indptr"])
    major = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    if name.startswith("csc"):  # indptr runs over columns
        np.add.at(dense, (indices, major), data)
    else:  # csr: indptr runs over rows
        np.add.at(dense, (major, indices), data)
    return dense
