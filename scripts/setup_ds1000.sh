#!/usr/bin/env bash
# DS-1000's execution environment (the official library pins, envs/ds1000.txt) in its own venv, once.
# Prints the interpreter to hand to the scorer:
#   export EVOLCODER_DS1000_PYTHON=$(bash scripts/setup_ds1000.sh)
# (or evaluation.benchmark_options.ds1000.python in the config). About 3 GB with TensorFlow and torch.
# Env: PYTHON (default python3; the pins need Python 3.9-3.11: pandas 1.5.3 has no newer wheel),
#      EVOLCODER_DS1000_VENV (default .venv-ds1000).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${EVOLCODER_DS1000_VENV:-.venv-ds1000}
stamp="$VENV/.evolcoder-setup"
want=$(sha256sum envs/ds1000.txt | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup_ds1000: $VENV is up to date" >&2
else
  ver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  case "$ver" in
    3.9|3.10|3.11) ;;
    *) echo "setup_ds1000: DS-1000's pins need Python 3.9-3.11 (pandas 1.5.3); $PYTHON is $ver (set PYTHON)" >&2
       exit 2 ;;
  esac
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r envs/ds1000.txt 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" >&2 || true
  "$VENV/bin/python" -c "import numpy, pandas, scipy, sklearn, matplotlib, torch" \
    || { echo "setup_ds1000: $VENV is broken (see above)" >&2; exit 1; }
  echo "$want" > "$stamp"
  echo "setup_ds1000: $VENV ready" >&2
fi
echo "$(cd "$VENV" && pwd)/bin/python"
