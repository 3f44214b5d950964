#!/usr/bin/env bash
# One-command setup: creates .venv in this checkout and installs everything the project needs.
#   ./setup.sh                 # CPU or the CUDA build that PyPI gives for torch 2.14.1
# Bring your own torch (another CUDA): create .venv yourself, install torch/torchvision there, then run
# ./setup.sh; an importable torch is left alone. An importable detectron2 (e.g. your own build with _C) is too.
# Safe to re-run: every step checks first and skips what is already done.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

if ! "$PY" -c "import torch, torchvision" 2>/dev/null; then
    echo "[setup] installing $TORCH_SPEC"
    # shellcheck disable=SC2086
    "${PIP[@]}" install $TORCH_SPEC
fi

if ! "$PY" -c "import detectron2" 2>/dev/null; then
    echo "[setup] installing upstream detectron2 (pure Python) from the sal-detectron2 wheel"
    "$PY" tools/install_detectron2.py
fi

echo "[setup] installing the project and its requirements"
"${PIP[@]}" install -r requirements.txt -e .
"$PY" -m pip check
"$PY" -c "import volumetric_attention, detectron2, torch; print('[setup] ok: detectron2', detectron2.__version__, '| torch', torch.__version__, '| CUDA', torch.cuda.is_available())"
