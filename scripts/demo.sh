#!/usr/bin/env bash
# `make demo`: synthesise the built-in paired set, check it, and run the pipeline on it.
set -euo pipefail
out=${1:-demo}
hr=.venv/bin/hralign
mkdir -p "$out"
$hr pairs synth --out "$out/pairs.h5" --overwrite
$hr pairs validate "$out/pairs.h5"
$hr pairs info "$out/pairs.h5"
