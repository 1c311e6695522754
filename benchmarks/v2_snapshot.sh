#!/bin/bash
# Copy the small, finished results of a `hralign bench metaworld-v2` run into the repository (a run that
# spans sessions commits its finished stages): task sets, stage times, spread + action probe, the
# pretraining curves, the LAM summary, every finished (protocol, row, seed) file, and the partial table.
#   benchmarks/v2_snapshot.sh RUN_DIR DEST_DIR
set -euo pipefail
run=$1; dest=$(realpath -m "$2")
mkdir -p "$dest"
for f in tasksets.json timings.json spread.json results.json results.md results_partial.json results_partial.md; do
  [ -f "$run/$f" ] && cp "$run/$f" "$dest/$f"
done
for p in pretrain pretrain_old lam; do
  [ -f "$run/$p/metrics.jsonl" ] && grep '"eval"' "$run/$p/metrics.jsonl" > "$dest/${p}_eval.jsonl" || true
done
if [ -d "$run/eval" ]; then
  (cd "$run" && find eval -name 'seed*.json' -print0 | xargs -0 -r -I{} cp --parents {} "$dest/")
fi
echo "snapshot of $run in $dest"
