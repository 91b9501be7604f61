#!/usr/bin/env bash
# The main job on the embedded default config: the whole DAG on CPU (~15 min on 2 cores), then the table.
#   bash scripts/demo.sh [extra snakemake args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. "${EVOLCODER_VENV:-.venv}/bin/activate"
snakemake --cores "${EVOLCODER_CORES:-all}" "$@"
echo
cat results/scores.md
