#!/usr/bin/env bash
# Run a command inside a built evolcoder image, with the engine this machine has.
#   bash scripts/run_in_image.sh [--network none] [--read-only] [-v SRC:DST[:ro]]... [-e K=V]... [-w DIR] IMAGE CMD...
# docker/podman: `<engine> run`. Where `podman run` cannot start (an OCI runtime that may not set rlimits, as on
# machines without CAP_SYS_RESOURCE) and for buildah, as root: the image's root file system (buildah mount)
# in new mount and PID namespaces (and a new, empty network namespace for --network none), bind mounts,
# /proc, /dev, a tmpfs /tmp, the root remounted read-only for --read-only, then chroot with the image's env.
set -euo pipefail
net="" ro="" wd="/work"
vols=() envs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --network) net=$2; shift 2 ;;
    --read-only) ro=1; shift ;;
    -v) vols+=("$2"); shift 2 ;;
    -e) envs+=("$2"); shift 2 ;;
    -w) wd=$2; shift 2 ;;
    *) break ;;
  esac
done
image=$1; shift
engine=${EVOLCODER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v buildah >/dev/null; then engine=buildah
  else echo "run_in_image: no container engine (docker, podman or buildah)" >&2; exit 1; fi
fi
if [ "$engine" = docker ] || [ "$engine" = podman ]; then
  args=(--rm -w "$wd")
  [ "$net" = none ] && args+=(--network none)
  [ -n "$ro" ] && args+=(--read-only --tmpfs /tmp)
  for v in "${vols[@]}"; do args+=(-v "$v"); done
  for e in "${envs[@]}"; do args+=(-e "$e"); done
  exec "$engine" run "${args[@]}" "$image" "$@"
fi
[ "$(id -u)" = 0 ] || { echo "run_in_image: the buildah runner needs root" >&2; exit 1; }
ctr=$(buildah from --pull-never "$image")
trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
mapfile -t image_env < <(buildah inspect --type container --format '{{range .OCIv1.Config.Env}}{{println .}}{{end}}' "$ctr" | grep .)
unshare_args=(--mount --pid --fork --propagation private)
[ "$net" = none ] && unshare_args+=(--net)
setup=$(mktemp)
{
  echo 'set -eu'
  echo "m='$mnt'"
  echo 'mount --bind "$m" "$m"'
  for v in "${vols[@]}"; do
    IFS=: read -r src dst opt <<<"$v"
    src=$(readlink -f "$src")
    echo "mkdir -p \"\$m$dst\"; mount --rbind '$src' \"\$m$dst\""
    [ "$opt" = ro ] && echo "mount -o remount,bind,ro \"\$m$dst\""
  done
  echo 'mkdir -p "$m/proc" "$m/dev" "$m/tmp" "$m'"$wd"'"'
  echo 'mount -t proc proc "$m/proc"; mount --rbind /dev "$m/dev"; mount -t tmpfs -o mode=1777 tmpfs "$m/tmp"'
  [ -n "$ro" ] && echo 'mount -o remount,bind,ro "$m"'
} > "$setup"
set +e
unshare "${unshare_args[@]}" sh -c '. "$1"; shift; m=$1; wd=$2; shift 2; exec chroot "$m" /usr/bin/env -i HOME=/tmp "$@"' \
  sh "$setup" "$mnt" "$wd" "${image_env[@]}" "${envs[@]}" sh -c 'cd "$0" && exec "$@"' "$wd" "$@"
rc=$?
rm -f "$setup"
exit $rc
