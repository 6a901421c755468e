# Sourced by the other scripts: make (once) a virtual environment in .venv with the project in it.
# torch==2.13.0 goes first so that the project's "torch>=2.4" is already satisfied by the CPU build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import medseg_dfl, torch, monai" >/dev/null 2>&1 || [ "${MEDSEG_REINSTALL:-0}" = 1 ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet "torch==2.13.0"
  .venv/bin/python -m pip install --quiet -e ".[dev]"
fi
export PATH="$PWD/.venv/bin:$PATH"
