"""Run test code in a subprocess under Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def run_interpreted(code: str) -> list[str]:
    """Run ``code`` under the Triton interpreter with the repository importable; returns its output lines.

    The interpreter must be switched on before Triton is imported, hence a fresh process.
    """
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def _release(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def require_run_time_loop_bounds() -> None:
    """Skip the test where Triton's interpreter cannot run the persistent kernels: Triton < 3.7's
    interpreter fails to convert their loops' run-time bounds with numpy 2.3 and later ("only
    0-dimensional arrays can be converted")."""
    triton = pytest.importorskip("triton")
    if _release(triton.__version__) < (3, 7) and _release(np.__version__) >= (2, 3):
        pytest.skip("Triton < 3.7's interpreter fails on run-time loop bounds with numpy >= 2.3")
