#!/usr/bin/env bash
# Installs everything twins-nas needs on a fresh Debian/Ubuntu machine (or in CI):
#   - Debian packages (as root; skipped with a note otherwise): Fashion-MNIST (the default
#     proxy data set), Chromium (PNG export of plotly figures through kaleido) and the venv
#     module of Debian's python3.
#   - A Python environment, one rule everywhere: the active one when a virtualenv or conda
#     environment is active (`.venv` then links to it), otherwise the project's own `.venv`.
#     So it works on a stock Debian/Ubuntu python3 that refuses system-wide pip (PEP 668).
#   - In that environment: PyTorch + torchvision (pinned to the release this project is tested
#     with), then twins-nas in editable mode with its test, PostgreSQL and dashboard extras.
# Afterwards `.venv/bin/twins-nas` and `.venv/bin/python` are the commands (or activate it:
# `source .venv/bin/activate`).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(dataset-fashion-mnist chromium)
if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  PACKAGES+=(python3-venv)  # Debian splits the venv module (and its pip) out of python3
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
  fi
else
  echo "note: apt-get not available (or not root): install ${PACKAGES[*]} yourself," \
       "or pass --data-root; PNG export is skipped without a Chromium." >&2
fi

ACTIVE="${VIRTUAL_ENV:-${CONDA_PREFIX:-}}"
if [ -n "$ACTIVE" ]; then
  # An active environment is the user's choice: install there, and point .venv at it.
  if [ -L .venv ] || [ ! -e .venv ]; then
    ln -sfn "$ACTIVE" .venv
  elif [ "$(cd .venv && pwd -P)" != "$(cd "$ACTIVE" && pwd -P)" ]; then
    echo "note: installing into the active environment $ACTIVE; .venv is another environment," \
         "left as it is" >&2
  fi
  PY="$ACTIVE/bin/python"
else
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
  fi
  PY=.venv/bin/python
fi

PIP=("$PY" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" "torch==2.14.1" "torchvision==0.29.1"
"${PIP[@]}" -e ".[test,postgres,dashboard,onnx]"
echo "twins-nas installed in $("$PY" -c 'import sys; print(sys.prefix)'): run .venv/bin/twins-nas," \
     "or 'source .venv/bin/activate' first" >&2
