#!/usr/bin/env bash
# Main job: sets up .venv, then runs the AMG pipeline headless on the embedded defaults.
# Extra arguments go to `python -m amg_model demo` (see --help), e.g. --unet/--vae for real weights.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "${AMG_VENV:-$ROOT/.venv}/bin/python" -m amg_model demo "$@"
