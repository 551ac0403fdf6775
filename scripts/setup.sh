#!/usr/bin/env bash
# Installs everything the project needs on a fresh Debian machine that has Rust and Python:
# a venv with the pinned torch wheel (libtorch for tch) and a release build of `pipeline`.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/env.sh"
TORCH_VERSION=2.11.0
mkdir -p "$NNUNET_RS_HOME"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "setup: installing torch==$TORCH_VERSION into $VENV (one-off, ~5 GB)"
  "$VENV/bin/pip" install -q "torch==$TORCH_VERSION" numpy
fi
# zarr-python 3: the tests check that it reads the stores the project writes (tests/store.rs).
if ! "$VENV/bin/python" -c "import zarr,sys; sys.exit(0 if int(zarr.__version__.split('.')[0]) >= 3 else 1)" 2>/dev/null; then
  echo "setup: installing zarr>=3 into $VENV"
  "$VENV/bin/pip" install -q "zarr>=3"
fi
command -v chromium >/dev/null || { [ "$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } || echo "setup: chromium not installed (apt-get install chromium): the report's browser test will be skipped"
