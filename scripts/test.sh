#!/usr/bin/env bash
# Whole test suite: sets up .venv; when the ComfyUI test harness is available, installs the
# pack's requirements into its ComfyUI environment and runs the real-ComfyUI tests too.
# The harness folder comes from AMG_COMFYUI_HARNESS, else ../shared/comfyui-harness beside the repo;
# its ComfyUI tree must already be installed (see tests/nodes/README.md) or COMFYUI_GIT_DIR set.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
H=${AMG_COMFYUI_HARNESS:-$ROOT/../shared/comfyui-harness}
HOME_DIR=${AMG_COMFYUI_HOME:-$HOME/.cache/amg-comfyui-harness}
if [ -f "$H/setup.sh" ] && { [ -f "$HOME_DIR/ComfyUI/main.py" ] || [ -n "${COMFYUI_GIT_DIR:-}" ]; }; then
  if bash "$H/setup.sh" "${COMFYUI_GIT_DIR:-}" "$ROOT/requirements.txt" > "${TMPDIR:-/tmp}/amg_harness_setup.log" 2>&1; then
    export AMG_COMFYUI_HARNESS=$(cd "$H" && pwd)
  else
    echo "ComfyUI harness set-up failed (log: ${TMPDIR:-/tmp}/amg_harness_setup.log); real-ComfyUI tests will skip." >&2
    tail -5 "${TMPDIR:-/tmp}/amg_harness_setup.log" >&2 || true
  fi
fi
cd "$ROOT"
exec "${AMG_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
