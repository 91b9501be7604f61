#!/usr/bin/env bash
# Install evolcoder's SLURM profile template as the global profile `slurm`, so that
# `snakemake --profile slurm` works literally (Snakemake looks for profiles by name in the working
# directory, ~/.config/snakemake/ and /etc/xdg/snakemake/).
#
#   bash scripts/install_slurm_profile.sh            # -> ${XDG_CONFIG_HOME:-~/.config}/snakemake/slurm
#   bash scripts/install_slurm_profile.sh --force    # replace an existing profile (a backup is kept)
#   bash scripts/install_slurm_profile.sh --dest DIR # anywhere else, e.g. /etc/xdg/snakemake/slurm
#
# An existing profile is never overwritten without --force: on many clusters the site's own
# `slurm` profile (executor, account, partitions) already lives there and should be kept.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
src="$here/profiles/slurm"
dest="${XDG_CONFIG_HOME:-$HOME/.config}/snakemake/slurm"
force=""
while (( $# )); do
  case "$1" in
    --force) force=1 ;;
    --dest) dest=$2; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install_slurm_profile: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ -e "$dest/config.yaml" ] || [ -e "$dest/profile.yaml" ]; then
  if [ -z "$force" ]; then
    echo "install_slurm_profile: a profile already exists in $dest (your site's?); kept it." >&2
    echo "  Use it as is (evolcoder's per-rule resources come from profiles/default), or rerun with --force." >&2
    exit 0
  fi
  backup="$dest.bak.$(date +%Y%m%d%H%M%S)"
  cp -a "$dest" "$backup"
  echo "install_slurm_profile: previous profile saved to $backup" >&2
fi
mkdir -p "$dest"
install -m 644 "$src/config.yaml" "$dest/config.yaml"
install -m 644 "$src/partitions.yaml" "$dest/partitions.yaml"
echo "installed $dest (edit account and partitions there); run: snakemake --profile slurm"
