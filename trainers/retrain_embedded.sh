#!/usr/bin/env bash
# Retrain the adapters shipped for the embedded model (SmolLM2-135M-Instruct), reproducibly:
# Pref-FT (served by the `preft` baseline), FSPO and FSPO + RAT on the built-in data of each
# domain, with the `embedded` preset and seed 0. Each lands in the folder its method plugin ships
# (baselines/adapters/embedded/preft/DOMAIN, trainers/adapters/embedded/{fspo,fspo-rat}/DOMAIN)
# with its fspo_card.json (data hash, hyper-parameters, steps, wall time, metrics) and
# metrics.jsonl; resumable checkpoints and cached reference log-probs are deleted once a
# training run is complete. Run from the repository root:  bash trainers/retrain_embedded.sh
# Optional arguments restrict it, e.g.  bash trainers/retrain_embedded.sh fspo elix
# On 2 cores, two single-threaded runs at once beat one two-threaded run, e.g.
#   OMP_NUM_THREADS=1 bash trainers/retrain_embedded.sh "fspo preft" &
#   OMP_NUM_THREADS=1 bash trainers/retrain_embedded.sh fspo-rat
set -euo pipefail
cd "$(dirname "$0")/.."
methods=${1:-"fspo preft fspo-rat"}
domains=${2:-"elix reviews roleplay"}
for method in $methods; do
  plugin=$([ "$method" = preft ] && echo baselines || echo trainers)
  for domain in $domains; do
    out="$plugin/adapters/embedded/$method/$domain"
    fspo-bench train --preset embedded --method "$method" --domain "$domain" --seed 0 \
      --out "$out" --no-progress
    rm -rf "$out"/checkpoint-* "$out"/reference_logps.safetensors
  done
done
