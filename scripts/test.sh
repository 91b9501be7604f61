#!/usr/bin/env bash
# The test suite, set-up included: the venv, the local SLURM cluster (when run as root on Debian, for
# tests/test_slurm.py, with the two namespace nodes of tests/test_multinode.py), then pytest. Extra
# arguments go to pytest (e.g. -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."
# DS-1000's pinned execution environment (tests/test_score_ds1000.py), built in the background while
# the main venv and the cluster are set up; EVOLCODER_DS1000=0 skips it (and those tests)
ds_out=""
if [ "${EVOLCODER_DS1000:-1}" != "0" ] && [ -z "${EVOLCODER_DS1000_PYTHON:-}" ]; then
  ds_out=$(mktemp)
  bash scripts/setup_ds1000.sh > "$ds_out" &
  ds_pid=$!
fi
bash scripts/setup.sh
# container image tests (tests/test_container_images.py) are opt-in: EVOLCODER_CONTAINERS=1. On a Debian machine
# without an engine, as root, Debian's podman/buildah and mmdebstrap (the base root file system) are installed.
if [ "${EVOLCODER_CONTAINERS:-0}" = "1" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null \
   && ! { command -v buildah >/dev/null && command -v mmdebstrap >/dev/null; } \
   && ! { command -v docker >/dev/null && docker info >/dev/null 2>&1; }; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman buildah mmdebstrap >/dev/null \
    || echo "test: podman/buildah/mmdebstrap not installed; container tests will skip" >&2
fi
. "${EVOLCODER_VENV:-.venv}/bin/activate"
if [ "${EVOLCODER_SLURM:-auto}" != "0" ] && [ -f scripts/slurm/setup_cluster.sh ] \
   && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  # two-node mode (tests/test_multinode.py): two more slurmd in network namespaces; one node where none can be made
  if EVOLCODER_SLURM_NODES="${EVOLCODER_SLURM_NODES:-2}" bash scripts/slurm/setup_cluster.sh; then
    trap 'bash scripts/slurm/teardown_cluster.sh >/dev/null 2>&1 || true' EXIT
  else
    echo "test: local SLURM cluster did not start; SLURM tests will skip" >&2
  fi
fi
if [ -n "$ds_out" ]; then
  if wait "$ds_pid"; then
    EVOLCODER_DS1000_PYTHON=$(tail -n 1 "$ds_out")
    export EVOLCODER_DS1000_PYTHON
  elif [ "${CI:-}" = "true" ]; then
    echo "test: the DS-1000 environment failed to build (scripts/setup_ds1000.sh)" >&2
    exit 1
  else
    echo "test: DS-1000 environment not built; its full-dataset tests will skip" >&2
  fi
  rm -f "$ds_out"
fi
# two pytest workers, one test file each at a time (EVOLCODER_TEST_WORKERS=0: one process); the scores
# do not depend on machine load, so the files may share the cores
workers=${EVOLCODER_TEST_WORKERS:-2}
if [ "$workers" = "0" ]; then
  python -m pytest "$@"
else
  # one BLAS/OpenMP thread per process: two files' torch jobs each spinning a thread per core would
  # oversubscribe the cores (the tiny DAG took 5x longer beside the SLURM test with the default threads)
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
  python -m pytest -n "$workers" --dist loadfile "$@"
fi
