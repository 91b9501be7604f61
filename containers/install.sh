#!/bin/sh
# The one install step of every evolcoder image (containers/Containerfile): a venv in /opt/venv with exactly
# envs/lock/<family>.txt (every file checked against its sha256, no dependency resolution), then evolcoder
# itself from /opt/evolcoder without dependencies.
#   sh install.sh <cpu|sandbox|gpu|vllm> <lock dir> [wheelhouse]
# With a wheelhouse (a folder that scripts/build_containers.sh fills with `pip download` on the host) nothing
# is fetched; without one, pip uses the package index (and the PyTorch CPU index for the CPU builds of torch).
set -eu
family=$1
locks=$2
wheels=${3:-}
lock="$locks/$family.txt"
[ -f "$lock" ] || { echo "install.sh: $lock not found" >&2; exit 1; }
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "install.sh: the locks are for CPython 3.11; $PYTHON is not" >&2; exit 1; }
"$PYTHON" -m venv /opt/venv
set -- --disable-pip-version-check --no-cache-dir --no-input
if [ -n "$wheels" ] && [ -n "$(ls -A "$wheels" 2>/dev/null)" ]; then
  src="--no-index --find-links $wheels"
else
  src="--extra-index-url ${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
fi
# shellcheck disable=SC2086
/opt/venv/bin/python -m pip install "$@" $src --require-hashes --no-deps -r "$lock"
# evolcoder: built with the lock's setuptools (no build isolation: nothing else is fetched)
/opt/venv/bin/python -m pip install "$@" --no-index --no-deps --no-build-isolation /opt/evolcoder
/opt/venv/bin/python -m pip check
/opt/venv/bin/evolcoder --help >/dev/null
/opt/venv/bin/python -m pip freeze --all > /opt/evolcoder/pip-freeze.txt
echo "install.sh: $family: $(grep -c . /opt/evolcoder/pip-freeze.txt) packages in /opt/venv"
