#!/usr/bin/env bash
# Build evolcoder's images from containers/Containerfile with whichever engine this machine has (docker, podman
# or buildah), print each image's digest and size, and optionally write Apptainer .sif files and a config
# overlay that names the images by digest.
#   bash scripts/build_containers.sh [--sif DIR] [--pin FILE] [--push REGISTRY] [cpu sandbox gpu vllm]  (default: cpu sandbox)
# --pin FILE  writes a config overlay (use with --configfile FILE) naming each image by digest: the pushed
#             reference (--push), else the .sif file (--sif), else the local image (this machine only).
# Env: EVOLCODER_ENGINE (docker|podman|buildah), EVOLCODER_BASE (base image of cpu/sandbox; default: a Debian
# bookworm root file system made with mmdebstrap, else docker.io/library/python:3.11-slim-bookworm),
# EVOLCODER_GPU_BASE, EVOLCODER_IMAGE_TAG (default 0.1.0), EVOLCODER_BUILD_DIR (default .cache/containers).
# Per image it writes $EVOLCODER_BUILD_DIR/<family>.json (reference, digest, size, build seconds) and
# <family>.freeze.txt (pip freeze inside the image).
set -euo pipefail
cd "$(dirname "$0")/.."
SIF="" PIN="" PUSH=""
families=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sif) SIF=$2; shift 2 ;;
    --pin) PIN=$2; shift 2 ;;
    --push) PUSH=${2%/}; shift 2 ;;
    cpu|sandbox|gpu|vllm) families+=("$1"); shift ;;
    *) echo "build_containers: unknown argument: $1 (families: cpu sandbox gpu vllm)" >&2; exit 2 ;;
  esac
done
[ ${#families[@]} -gt 0 ] || families=(cpu sandbox)
TAG=${EVOLCODER_IMAGE_TAG:-0.1.0}
OUT=${EVOLCODER_BUILD_DIR:-.cache/containers}
WHEELS=${EVOLCODER_WHEELHOUSE:-.cache/wheelhouse}
GPU_BASE=${EVOLCODER_GPU_BASE:-nvidia/cuda:12.8.1-cudnn-devel-ubuntu22.04@sha256:ad6d59a3bbf3e82c1c849c9ac09cfc2a3e0bbb8655042fd899be6681b3fe2a85}
mkdir -p "$OUT" "$WHEELS"

engine=${EVOLCODER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v podman >/dev/null; then engine=podman
  elif command -v buildah >/dev/null; then engine=buildah
  else echo "build_containers: no container engine (docker, podman or buildah) on this machine" >&2; exit 1; fi
fi
log() { echo "build_containers: $*" >&2; }
log "engine: $engine ($($engine --version 2>/dev/null | head -n 1))"

# the base of the CPU images: a plain Debian with Python 3.11, made here when no registry is needed
base=${EVOLCODER_BASE:-}
if [ -z "$base" ] && printf '%s\n' "${families[@]}" | grep -qvE '^(gpu|vllm)$'; then
  if command -v mmdebstrap >/dev/null; then
    base=localhost/evolcoder-base:bookworm
    if ! $engine image inspect "$base" >/dev/null 2>&1; then
      t0=$SECONDS
      mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        bookworm "$OUT/base-bookworm.tar"
      $engine import "$OUT/base-bookworm.tar" "$base" >/dev/null
      rm -f "$OUT/base-bookworm.tar"
      log "base $base made with mmdebstrap in $((SECONDS - t0)) s"
    fi
  else
    base=docker.io/library/python:3.11-slim-bookworm
  fi
fi

# the wheelhouse: every file of the locks, fetched and hash-checked on the host (the build itself fetches nothing)
for fam in "${families[@]}"; do
  t0=$SECONDS
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "envs/lock/$fam.txt" -d "$WHEELS" 2> >(grep -v "is ignored: it is neither" >&2)
  log "wheelhouse $WHEELS: envs/lock/$fam.txt complete ($((SECONDS - t0)) s)"
done

build() {  # family base ref
  local args=(-f containers/Containerfile --build-arg "FAMILY=$1" --build-arg "BASE=$2" --build-arg "IMAGE=$3" -t "$3")
  case "$engine" in
    docker) docker build "${args[@]}" . ;;  # no build-time volumes: installs from the index
    podman) podman build --isolation=chroot --network host -v /etc/ssl/certs:/etc/ssl/certs:ro \
              -v "$PWD/$WHEELS:/wheels:ro" "${args[@]}" . ;;
    buildah) buildah bud --isolation=chroot --network host -v /etc/ssl/certs:/etc/ssl/certs:ro \
              -v "$PWD/$WHEELS:/wheels:ro" "${args[@]}" . ;;
  esac
}
digest_of() {
  case "$engine" in
    docker) docker image inspect --format '{{.Id}}' "$1" ;;
    podman) podman image inspect --format '{{.Digest}}' "$1" ;;
    buildah) buildah inspect --type image --format '{{.FromImageDigest}}' "$1" ;;
  esac
}
size_of() {  # bytes
  case "$engine" in
    docker) docker image inspect --format '{{.Size}}' "$1" ;;
    *) podman image inspect --format '{{.Size}}' "$1" 2>/dev/null || echo 0 ;;
  esac
}
freeze_of() {
  case "$engine" in
    docker) docker run --rm --network none "$1" python -m pip freeze --all ;;
    *) ctr=$(buildah from --pull-never "$1")
       buildah run --isolation chroot "$ctr" -- /opt/venv/bin/python -m pip freeze --all
       buildah rm "$ctr" >/dev/null ;;
  esac
}

declare -A pinned
for fam in "${families[@]}"; do
  ref="localhost/evolcoder-$fam:$TAG"
  fam_base=$base
  case "$fam" in gpu|vllm) fam_base=$GPU_BASE ;; esac
  t0=$SECONDS
  build "$fam" "$fam_base" "$ref" > "$OUT/$fam.build.log" 2>&1 \
    || { tail -n 30 "$OUT/$fam.build.log" >&2; log "$fam: build failed (log: $OUT/$fam.build.log)"; exit 1; }
  secs=$((SECONDS - t0))
  digest=$(digest_of "$ref")
  size=$(size_of "$ref")
  freeze_of "$ref" > "$OUT/$fam.freeze.txt"
  pinned[$fam]="docker://localhost/evolcoder-$fam@$digest"
  if [ -n "$PUSH" ]; then
    $engine tag "$ref" "$PUSH/evolcoder-$fam:$TAG"
    $engine push --digestfile "$OUT/$fam.pushed" "$PUSH/evolcoder-$fam:$TAG" >&2
    pinned[$fam]="docker://$PUSH/evolcoder-$fam@$(cat "$OUT/$fam.pushed")"
  fi
  if [ -n "$SIF" ]; then
    if command -v apptainer >/dev/null; then
      mkdir -p "$SIF"
      if [ "$engine" = docker ]; then
        apptainer build --force "$SIF/evolcoder-$fam.sif" "docker-daemon://$ref"
      else
        podman save --format oci-archive -o "$OUT/$fam.oci.tar" "$ref"
        apptainer build --force "$SIF/evolcoder-$fam.sif" "oci-archive://$OUT/$fam.oci.tar"
        rm -f "$OUT/$fam.oci.tar"
      fi
      [ -n "$PUSH" ] || pinned[$fam]="$(cd "$SIF" && pwd)/evolcoder-$fam.sif"
    else
      log "$fam: apptainer not found, no .sif written"
    fi
  fi
  printf '{"family": "%s", "reference": "%s", "digest": "%s", "size_bytes": %s, "build_seconds": %s, "base": "%s", "engine": "%s", "pin": "%s"}\n' \
    "$fam" "$ref" "$digest" "$size" "$secs" "$fam_base" "$engine" "${pinned[$fam]}" > "$OUT/$fam.json"
  echo "$fam $ref@$digest $((size / 1000000)) MB ${secs} s"
done

if [ -n "$PIN" ]; then
  {
    echo "# Written by scripts/build_containers.sh on $(hostname) at $(date -u +%FT%TZ): images by digest."
    [ -n "$PUSH" ] || [ -n "$SIF" ] || echo "# docker://localhost/... references exist only on the machine that built them."
    echo "containers:"
    for fam in cpu gpu sandbox vllm; do
      if [ -n "${pinned[$fam]:-}" ]; then echo "  $fam: ${pinned[$fam]}"; fi
    done
  } > "$PIN"
  log "wrote $PIN (snakemake --configfile $PIN ...)"
fi
