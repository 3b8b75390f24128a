"""Restricted unpickler: arrays and containers load, code never runs."""

import builtins
import os
import pickle
import subprocess
from collections import OrderedDict

import numpy as np
import pytest

from amg_model.errors import BodyModelError, MotionError
from amg_model.smpl.unpickle import load_pickle
from tests.fixtures.smpl_files import ForeignObject, chumpy_array, dump_py2_pickle, sparse_csc


class _Evil:
    """Pickles to a call of ``func(*args)`` on load."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _write(path, obj, protocol=2):
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_arrays_containers_and_scalars_load(tmp_path, protocol):
    data = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "i": np.array([1, 2], dtype=np.int64),
        "set": {1, 2},
        "od": OrderedDict(x=1),
        "nested": [("s", 1.5, None, True), {"b": b"\x00\xff"}],
        "scalar": np.float64(2.5),
        "ints": np.int32(7),
    }
    out = load_pickle(_write(tmp_path / "d.pkl", data, protocol))
    np.testing.assert_array_equal(out["a"], data["a"])
    assert out["a"].dtype == np.float32 and out["i"].dtype == np.int64
    assert out["set"] == {1, 2} and out["od"] == {"x": 1}
    assert out["nested"] == [("s", 1.5, None, True), {"b": b"\x00\xff"}]
    assert out["scalar"] == 2.5 and out["ints"] == 7


@pytest.mark.parametrize(
    "payload",
    [
        lambda m: _Evil(os.system, f"touch {m}"),
        lambda m: _Evil(builtins.eval, f"open({str(m)!r}, 'w').close()"),
        lambda m: _Evil(builtins.exec, f"open({str(m)!r}, 'w').close()"),
        lambda m: _Evil(subprocess.Popen, ["touch", str(m)]),
        lambda m: {"v_template": np.zeros(3), "x": [_Evil(os.system, f"touch {m}")]},
        lambda m: _Evil(getattr, _Evil(builtins.__import__, "os"), "system"),
    ],
    ids=["os.system", "eval", "exec", "subprocess", "nested", "getattr"],
)
def test_malicious_pickles_are_refused_without_running(tmp_path, payload):
    marker = tmp_path / "marker"
    path = _write(tmp_path / "evil.pkl", payload(marker))
    with pytest.raises(BodyModelError, match="evil.pkl: refers to .*must contain only arrays"):
        load_pickle(path)
    assert not marker.exists()


def test_refused_name_is_reported_and_error_type_is_selectable(tmp_path):
    path = _write(tmp_path / "m.pkl", _Evil(os.system, "true"))
    with pytest.raises(MotionError, match=r"refers to (posix|nt|os)\.system"):
        load_pickle(path, error=MotionError)


def test_extra_classes_extend_the_allow_list(tmp_path):
    path = _write(tmp_path / "c.pkl", _Evil(complex, 1.0, 2.0), protocol=2)
    assert load_pickle(path) == complex(1, 2)  # builtins.complex is allowed
    path = _write(tmp_path / "r.pkl", _Evil(range, 3))
    with pytest.raises(BodyModelError):
        load_pickle(path)
    assert load_pickle(path, extra_classes={("builtins", "range"): range}) == range(3)


def test_truncated_missing_and_non_pickle_files(tmp_path):
    good = pickle.dumps({"a": np.zeros((10, 3))}, protocol=2)
    (tmp_path / "cut.pkl").write_bytes(good[: len(good) // 2])
    with pytest.raises(BodyModelError, match="cut.pkl: is truncated or not a pickle"):
        load_pickle(tmp_path / "cut.pkl")
    (tmp_path / "text.pkl").write_text("this is not a pickle")
    with pytest.raises(BodyModelError, match="text.pkl"):
        load_pickle(tmp_path / "text.pkl")
    with pytest.raises(BodyModelError, match="file not found"):
        load_pickle(tmp_path / "missing.pkl")


def test_python2_style_string_data_loads_with_latin1(tmp_path):
    """A Python 2 pickle stores array bytes as ``str`` (BINSTRING); latin1 maps them back."""
    arr = np.array([1.0, -2.0, 3.5])
    raw = arr.tobytes()
    # numpy's Python 2 reduce: _reconstruct(ndarray, (0,), 'b') then BUILD with the state tuple.
    p = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
    p += b"(K\x01K\x03\x85cnumpy\ndtype\nU\x02f8K\x00K\x01\x87R"
    p += b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    p += b"\x89T" + len(raw).to_bytes(4, "little") + raw + b"tb."
    (tmp_path / "py2.pkl").write_bytes(p)
    np.testing.assert_array_equal(load_pickle(tmp_path / "py2.pkl"), arr)


def test_chumpy_and_sparse_objects_become_arrays(tmp_path):
    dense = np.zeros((4, 6))
    dense[0, 1], dense[3, 5], dense[2, 0] = 0.5, 2.0, -1.0
    x = np.arange(24.0).reshape(2, 3, 4)
    obj = {
        "shapedirs": chumpy_array(x),
        "J_regressor": sparse_csc(dense),
        "new_scipy": sparse_csc(dense, "scipy.sparse._csc"),
        "transposed": ForeignObject(
            "chumpy.reordering", "transpose", {"a": chumpy_array(x), "axes": (2, 0, 1)}
        ),
        "shared": [chumpy_array(x)] * 2,
    }
    out = load_pickle(dump_py2_pickle(obj, tmp_path / "model.pkl"))
    np.testing.assert_array_equal(out["shapedirs"], x)
    np.testing.assert_array_equal(out["J_regressor"], dense)
    np.testing.assert_array_equal(out["new_scipy"], dense)
    np.testing.assert_array_equal(out["transposed"], x.transpose(2, 0, 1))
    assert out["shared"][0] is out["shared"][1]


def test_chumpy_expressions_that_need_chumpy_are_refused(tmp_path):
    obj = {"v": ForeignObject("chumpy.ch_ops", "add", {"a": chumpy_array(np.zeros(3)), "b": 1.0})}
    with pytest.raises(BodyModelError, match="chumpy expression chumpy.ch_ops.add"):
        load_pickle(dump_py2_pickle(obj, tmp_path / "expr.pkl"))
