"""Run test code in a subprocess under Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""

from __future__ import annotations

import os
import subprocess
import sys

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
