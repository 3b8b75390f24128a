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
LOG=${TMPDIR:-/tmp}/amg_harness_setup.log
unset AMG_COMFYUI_HARNESS  # exported below only once the harness is ready
if [ ! -f "$H/setup.sh" ]; then
  echo "No ComfyUI test harness at $H; real-ComfyUI tests will skip." >&2
elif [ ! -f "$HOME_DIR/ComfyUI/main.py" ] && [ -z "${COMFYUI_GIT_DIR:-}" ]; then
  echo "The harness has no ComfyUI tree yet and COMFYUI_GIT_DIR is unset; real-ComfyUI tests will skip." >&2
elif bash "$H/setup.sh" "${COMFYUI_GIT_DIR:-}" "$ROOT/requirements.txt" > "$LOG" 2>&1; then
  export AMG_COMFYUI_HARNESS=$(cd "$H" && pwd)
else
  echo "ComfyUI harness set-up failed (log: $LOG); real-ComfyUI tests will skip." >&2
  tail -5 "$LOG" >&2 || true
fi
cd "$ROOT"
exec "${AMG_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
