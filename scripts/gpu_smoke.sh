#!/usr/bin/env bash
# GPU smoke for the first GPU node, before the paper run: the whole DAG on this node's visible GPUs, offline, in a
# few minutes (tests/configs/gpu-smoke.yaml: the SmolLM2-135M export, the builtin seed, 16 HumanEval tasks).
#   bash scripts/gpu_smoke.sh [--sdm apptainer|conda] [--workdir DIR]
# Stages (each pass/fail/skip on the last screen):
#   1 model        evolcoder prepare-model smollm2-135m-instruct (the offline export)
#   2 evolver      vLLM's OpenAI-compatible server on the export, used by evolution (kind: openai); without vLLM
#                  here, the local backend (in-process transformers) evolves instead
#   3 evolution    seed, one round, merge (snakemake results/merged/train.jsonl)
#   4 train-zero2  DeepSpeed ZeRO-2, bf16 (fp16 where the GPU has no bf16), every visible GPU, evolcoder.launch
#   5 zero3+vllm   ZeRO-3 training, then generation with vLLM, scoring, table (snakemake all)
#   6 hf           generation again with the HF backend, scoring, table
# The last screen: GPU model and count, training tokens/s per GPU and an MFU estimate, generation tokens/s per
# backend, peak GPU memory, each stage's status (scripts/gpu_smoke_summary.py; also in DIR/summary.txt).
# Env: EVOLCODER_SHARED_DATA (HumanEval+ file: $EVOLCODER_SHARED_DATA/evalplus/HumanEvalPlus-v0.1.10.jsonl.gz;
# default ../shared/data), EVOLCODER_SMOKE_STAGE_TIMEOUT (seconds per stage, default 420), EVOLCODER_VLLM_IMAGE
# (with --sdm apptainer: the image that serves the evolver; default the config's containers.vllm).
# Exit status: 0 when every stage that ran passed, 1 otherwise; without a CUDA device, one line and status 1 at once.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SDM="" WORK=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sdm) SDM=$2; shift 2 ;;
    --workdir) WORK=$2; shift 2 ;;
    *) echo "gpu_smoke: unknown argument: $1 (usage: gpu_smoke.sh [--sdm apptainer|conda] [--workdir DIR])" >&2; exit 2 ;;
  esac
done

# -- a CUDA device, or one line and out (before anything slow is imported)
case "${CUDA_VISIBLE_DEVICES-unset}" in
  "" | -1 | NoDevFiles) echo "no CUDA device: CUDA_VISIBLE_DEVICES='${CUDA_VISIBLE_DEVICES}' hides every GPU"; exit 1 ;;
esac
command -v nvidia-smi >/dev/null 2>&1 || { echo "no CUDA device: nvidia-smi not found (run this on a GPU node)"; exit 1; }
nvidia-smi -L >/dev/null 2>&1 || { echo "no CUDA device: nvidia-smi -L fails ($(nvidia-smi -L 2>&1 | head -n 1))"; exit 1; }
PY=${PYTHON:-python3}
if [ -z "$SDM" ]; then
  probe=$("$PY" -c 'import torch; print(torch.cuda.device_count(), int(torch.cuda.is_bf16_supported()) if torch.cuda.is_available() else 0)' 2>&1 | tail -n 1)
  case "$probe" in
    [1-9]*) ;;
    *) echo "no CUDA device: torch sees none here ($probe); a CUDA build of torch is needed (envs/gpu.yaml), or --sdm apptainer"; exit 1 ;;
  esac
  NGPU=${probe%% *}
  BF16=${probe##* }
else
  NGPU=$(nvidia-smi -L | grep -c '^GPU ')
  cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1)
  BF16=$([ "${cc%%.*}" -ge 8 ] 2>/dev/null && echo 1 || echo 0)
fi
PREC=$([ "$BF16" = 1 ] && echo bf16 || echo fp16)

WORK=${WORK:-$REPO/.cache/gpu-smoke}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
for part in Snakefile rules config.yaml config envs src report profiles; do ln -sfn "$REPO/$part" "$WORK/$part"; done
mkdir -p "$WORK/tests" && ln -sfn "$REPO/tests/configs" "$WORK/tests/configs"
: > "$WORK/stages.tsv"
nvidia-smi -L > "$WORK/gpus.txt"
nvidia-smi --query-gpu=index,memory.used --format=csv,noheader,nounits -lms 500 > "$WORK/gpumem.csv" 2>/dev/null &
SAMPLER=$!
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
  kill "$SAMPLER" 2>/dev/null
}
trap cleanup EXIT
STAGE_TIMEOUT=${EVOLCODER_SMOKE_STAGE_TIMEOUT:-420}
DATA=${EVOLCODER_SHARED_DATA:-$REPO/../shared/data}
echo "gpu_smoke: $NGPU GPU(s), $PREC, work dir $WORK, logs $WORK/*.log" >&2

stage() {  # name log command...: runs it, records status and seconds
  local name=$1 logf=$WORK/$2.log; shift 2
  local t0=$SECONDS
  echo "gpu_smoke: [$name] ..." >&2
  if timeout "$STAGE_TIMEOUT" "$@" > "$logf" 2>&1; then
    printf '%s\tpass\t%s\t%s\n' "$name" $((SECONDS - t0)) "$logf" >> "$WORK/stages.tsv"; return 0
  fi
  printf '%s\tfail\t%s\t%s\n' "$name" $((SECONDS - t0)) "$logf" >> "$WORK/stages.tsv"
  tail -n 5 "$logf" >&2
  return 1
}
skip() { printf '%s\tskip\t0\t%s\n' "$1" "$2" >> "$WORK/stages.tsv"; }

overlay() {  # the smoke's overlay: precision, data, evolver, deepspeed stage, generation backend
  cat > "$WORK/overlay.yaml" <<EOF
data:
  humaneval_plus: $DATA/evalplus/HumanEvalPlus-v0.1.10.jsonl.gz
train: {precision: $PREC, deepspeed: $1}
evaluation: {backend: $2, dtype: $PREC}
$EVOLVER
EOF
}
smk() {  # targets... One GPU job at a time (gpu=1): a local run does not split the GPUs between jobs, so two vLLM
  # generate jobs side by side would share GPU 0; training still takes every visible GPU (evolcoder.launch counts them)
  (cd "$WORK" && "$PY" -m snakemake "$@" --cores "$(nproc)" --resources gpu=1 ${SDM:+--sdm $SDM} \
    --configfile tests/configs/gpu-smoke.yaml overlay.yaml)
}

# 1 the offline model
EXPORT=""
if stage model model "$PY" -m evolcoder.cli prepare-model smollm2-135m-instruct; then
  EXPORT=$(tail -n 1 "$WORK/model.log")
fi

# 2 the evolver: vLLM's OpenAI-compatible server when vLLM is here, else the local backend
EVOLVER=""
HAVE_VLLM=0
if [ -n "$SDM" ] || "$PY" -c 'import vllm' 2>/dev/null; then HAVE_VLLM=1; fi
if [ "$HAVE_VLLM" = 1 ] && [ -n "$EXPORT" ]; then
  PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  serve=("$PY" -m vllm.entrypoints.openai.api_server --model "$EXPORT" --served-model-name smollm2-135m-instruct
    --host 127.0.0.1 --port "$PORT" --gpu-memory-utilization 0.3 --max-model-len 2048 --dtype "$([ "$PREC" = bf16 ] && echo bfloat16 || echo float16)")
  if [ "$SDM" = apptainer ]; then
    image=${EVOLCODER_VLLM_IMAGE:-$("$PY" -c 'import yaml; print(yaml.safe_load(open("config.yaml"))["containers"]["vllm"])')}
    serve=(apptainer exec --nv "$image" python -m "${serve[@]:2}")
  fi
  t0=$SECONDS
  "${serve[@]}" > "$WORK/evolver-server.log" 2>&1 &
  SERVER=$!
  until curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER" 2>/dev/null || [ $((SECONDS - t0)) -gt 300 ]; then break; fi
    sleep 2
  done
  if curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null 2>&1; then
    printf 'evolver (vLLM server)\tpass\t%s\t%s\n' $((SECONDS - t0)) "$WORK/evolver-server.log" >> "$WORK/stages.tsv"
    export EVOLCODER_SMOKE_KEY=smoke
    EVOLVER="evolution: {backend: {kind: openai, model: smollm2-135m-instruct, base_url: 'http://127.0.0.1:$PORT/v1', api_key_env: EVOLCODER_SMOKE_KEY}}"
  else
    printf 'evolver (vLLM server)\tfail\t%s\t%s\n' $((SECONDS - t0)) "$WORK/evolver-server.log" >> "$WORK/stages.tsv"
    kill "$SERVER" 2>/dev/null; SERVER=""
  fi
else
  skip "evolver (vLLM server)" "vllm not importable here: the local backend evolves"
fi

# 3 evolution (with the server, if up); then the server gives its GPU memory back
BACKEND=$([ "$HAVE_VLLM" = 1 ] && echo vllm || echo hf)
overlay zero2 "$BACKEND"
stage evolution evolution smk results/merged/train.jsonl
[ -n "$SERVER" ] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; SERVER=""; }

# 4 ZeRO-2, 5 ZeRO-3 + vLLM generation + scoring + table, 6 HF generation + scoring + table
keep() { mkdir -p "$WORK/runs/$1" && cp -r "$WORK"/results/train/smoke-smollm2/model/training_manifest.json \
  "$WORK"/results/train/smoke-smollm2/log_history.json "$WORK/runs/$1/" 2>/dev/null; }
keep_gen() {
  mkdir -p "$WORK/runs/$1"
  for f in "$WORK"/results/predictions/*/*/*.shards/*.manifest.json; do
    [ -f "$f" ] && cp "$f" "$WORK/runs/$1/$(echo "${f#"$WORK"/results/predictions/}" | tr / _)"
  done
}
overlay zero2 "$BACKEND"
stage train-zero2 train-zero2 smk results/train/smoke-smollm2/model && keep zero2
overlay zero3 "$BACKEND"
if [ "$HAVE_VLLM" = 1 ]; then
  stage "train-zero3, generate vLLM, score, table" zero3-vllm smk all && { keep zero3; keep_gen vllm; }
else
  skip "generate vLLM" "vllm not importable here (--sdm apptainer runs it in the vllm image)"
fi
overlay zero3 hf
stage "generate HF, score, table" hf smk all && { keep zero3; keep_gen hf; }

cleanup; trap - EXIT
"$PY" "$REPO/scripts/gpu_smoke_summary.py" "$WORK" | tee "$WORK/summary.txt"
! grep -q $'\tfail\t' "$WORK/stages.tsv"
