#!/usr/bin/env bash
# The main job on the embedded default config: set-up, the whole DAG on CPU, then the short results table.
# Measured on 2 idle cores from a fresh clone (2026-12-03): 5 min 55 s in all, DAG 4 min 45 s, peak RSS 3.5 GiB
# (the main training); set-up 1 min 10 s with pip's cache warm, about 4 min on a bare machine. Target:
# <= 10 min with set-up, DAG <= 6 min. At the end it prints the total and each job's wall, CPU time and peak RSS.
#   bash scripts/demo.sh [extra snakemake args]
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/setup.sh
setup_s=$((SECONDS - start))
. "${EVOLCODER_VENV:-.venv}/bin/activate"
# one line per finished job comes from Snakemake; each long job logs items, tokens/s and ETA in logs/
snakemake --cores "${EVOLCODER_CORES:-all}" "$@"
total_s=$((SECONDS - start))
echo
# the short table (every line <= 120 columns); its footnotes, and every field in scores.csv / scores.json
sed '/^$/q' results/scores.md
echo "full table with method footnotes: results/scores.md (all fields: results/scores.csv, results/scores.json)"
# per job: wall, CPU and peak RSS from Snakemake's benchmark: files (benchmarks/ or logs/benchmarks/)
printf '%-56s %8s %8s %12s\n' "per job (Snakemake benchmark files)" "wall s" "CPU s" "peak RSS MB"
{ find benchmarks logs/benchmarks -name '*.tsv' 2>/dev/null || true; } | sort | while read -r f; do
  awk -F'\t' -v f="${f#*benchmarks/}" 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i }
    NR == 2 { printf "  %-54s %8.1f %8.1f %12.0f\n", substr(f, 1, length(f) - 4), $col["s"], $col["cpu_time"],
              $col["max_rss"] }' "$f"
done
printf 'demo: %d min %02d s in all (set-up %d min %02d s, DAG %d min %02d s)\n' \
  $((total_s / 60)) $((total_s % 60)) $((setup_s / 60)) $((setup_s % 60)) \
  $(((total_s - setup_s) / 60)) $(((total_s - setup_s) % 60))
