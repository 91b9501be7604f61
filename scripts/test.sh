#!/usr/bin/env bash
# The test suite, set-up included: the venv, the local one-node SLURM cluster (when run as root on Debian,
# for tests/test_slurm.py), then pytest. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. "${EVOLCODER_VENV:-.venv}/bin/activate"
# DS-1000's pinned execution environment (tests/test_score_ds1000.py); EVOLCODER_DS1000=0 skips it
if [ "${EVOLCODER_DS1000:-1}" != "0" ] && [ -z "${EVOLCODER_DS1000_PYTHON:-}" ]; then
  if EVOLCODER_DS1000_PYTHON=$(bash scripts/setup_ds1000.sh); then
    export EVOLCODER_DS1000_PYTHON
  else
    echo "test: DS-1000 environment not built; its full-dataset tests will skip" >&2
  fi
fi
if [ "${EVOLCODER_SLURM:-auto}" != "0" ] && [ -f scripts/slurm/setup_cluster.sh ] \
   && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  if bash scripts/slurm/setup_cluster.sh; then
    trap 'bash scripts/slurm/teardown_cluster.sh >/dev/null 2>&1 || true' EXIT
  else
    echo "test: local SLURM cluster did not start; SLURM tests will skip" >&2
  fi
fi
python -m pytest "$@"
