#!/usr/bin/env bash
# The main job: install everything (including the saekit Jupyter kernel), then `saekit report`
# notebooks/quickstart.ipynb: executed headless through that kernel with a real Jupyter client (nbclient)
# and exported as a self-contained HTML report with its provenance footer: out/quickstart.html, with the
# executed notebook beside it; then the rest of the journey, notebooks/train_sae.ipynb (MiniLM's
# activations, SAEs trained with their live dashboard, evaluated, compared, their features):
# out/train_sae.html.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$SAEKIT_ROOT"
bash scripts/setup.sh
mkdir -p out
saekit="${CARGO_TARGET_DIR:-$SAEKIT_ROOT/target}/debug/saekit"
"$saekit" report notebooks/quickstart.ipynb --out out/quickstart.html
"$saekit" report notebooks/train_sae.ipynb --out out/train_sae.html
