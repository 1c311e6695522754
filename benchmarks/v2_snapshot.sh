#!/bin/bash
# Copy the small, finished results of a `hralign bench metaworld-v2` run into the repository (a run that
# spans sessions commits its finished stages): task sets, stage times, spread + action probe, the
# pretraining curves, the LAM summary, every finished (protocol, row, seed) file and row config, and the
# partial table.
#   benchmarks/v2_snapshot.sh RUN_DIR DEST_DIR
set -euo pipefail
run=$1; dest=$(realpath -m "$2")
mkdir -p "$dest"
for f in tasksets.json timings.json spread.json results.json results.md results_partial.json results_partial.md \
         results_draws.json results_draws.md; do
  [ -f "$run/$f" ] && cp "$run/$f" "$dest/$f"
done
for p in pretrain pretrain_old lam; do
  [ -f "$run/$p/metrics.jsonl" ] && grep '"eval"' "$run/$p/metrics.jsonl" > "$dest/${p}_eval.jsonl" || true
done
if [ -d "$run/eval" ]; then
  (cd "$run" && find eval -name 'seed*.json' -print0 | xargs -0 -r -I{} cp --parents {} "$dest/")
  # a finished row's results.json carries its evaluation config (eval seed, limits): --compare checks it
  (cd "$run" && find eval -mindepth 3 -maxdepth 3 -name results.json -print0 | xargs -0 -r -I{} cp --parents {} "$dest/")
fi
# paths inside the run become run-relative: the snapshot must not point outside the repository
abs=$(realpath "$run")
find "$dest" \( -name '*.json' -o -name '*.jsonl' -o -name '*.md' \) -print0 | xargs -0 -r sed -i "s#${abs}/##g; s#${abs}##g"
echo "snapshot of $run in $dest"
