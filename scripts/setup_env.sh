#!/usr/bin/env bash
# Creates .venv (if missing) with torch and the pack's requirements. Idempotent.
# Where no torch is installed, it takes torch 2.14.1 + torchvision 0.29.1, a matching pair
# (open-clip-torch imports torchvision, which must load beside torch); users of the pack
# install into their ComfyUI environment instead and keep their own torch.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${AMG_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  "$VENV/bin/pip" install -q "torch==${AMG_TORCH_VERSION:-2.14.1}" "torchvision==${AMG_TORCHVISION_VERSION:-0.29.1}"
fi
STAMP="$VENV/.amg_requirements"
WANT=$(cat "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" | sha1sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  "$VENV/bin/pip" install -q -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt"
  echo "$WANT" > "$STAMP"
fi
