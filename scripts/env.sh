# Source me: the stable, shared locations of the Python venv (torch wheel) and the cargo target dir.
# They live outside the clone so that repeated CI runs and fresh clones reuse them.
export NNUNET_RS_HOME="${NNUNET_RS_HOME:-$HOME/.cache/nnunet-rs}"
export VENV="$NNUNET_RS_HOME/venv"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NNUNET_RS_HOME/target}"
export LIBTORCH_USE_PYTORCH=1
export LIBTORCH_BYPASS_VERSION_CHECK="${LIBTORCH_BYPASS_VERSION_CHECK:-}"
export PATH="$VENV/bin:$PATH"
export PYTHON_SYS_EXECUTABLE="$VENV/bin/python"
