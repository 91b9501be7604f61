#!/usr/bin/env bash
# The test suite, set-up included: the venv, the local one-node SLURM cluster (when run as root on Debian,
# for tests/test_slurm.py), then pytest. Extra arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. "${EVOLCODER_VENV:-.venv}/bin/activate"
if [ "${EVOLCODER_SLURM:-auto}" != "0" ] && [ -f scripts/slurm/setup_cluster.sh ] \
   && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  if bash scripts/slurm/setup_cluster.sh; then
    trap 'bash scripts/slurm/teardown_cluster.sh >/dev/null 2>&1 || true' EXIT
  else
    echo "test: local SLURM cluster did not start; SLURM tests will skip" >&2
  fi
fi
python -m pytest "$@"
