#!/usr/bin/env bash
# Installs everything twins-nas needs on a fresh Debian/Ubuntu machine (or in CI):
#   - Debian packages: Fashion-MNIST (the default proxy data set) and Chromium (PNG export
#     of plotly figures through kaleido). Skipped, with a note, where apt is not available.
#   - PyTorch + torchvision (pinned to the release this project is tested with), then
#     twins-nas itself in editable mode with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  if ! dpkg -s dataset-fashion-mnist chromium >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium >/dev/null
  fi
else
  echo "note: apt-get not available (or not root): install Fashion-MNIST and Chromium yourself," \
       "or pass --data-root; PNG export is skipped without a Chromium." >&2
fi

PIP="python3 -m pip"
$PIP install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
$PIP install -q --disable-pip-version-check -e ".[test]"
