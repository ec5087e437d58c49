#!/usr/bin/env bash
# The main job: install everything (including the saekit Jupyter kernel), then execute
# notebooks/quickstart.ipynb headless through that kernel with a real Jupyter client (nbclient) and export
# it as a self-contained HTML report: out/quickstart.html, with the executed notebook beside it; then the
# rest of the journey, notebooks/train_sae.ipynb (MiniLM's activations, SAEs trained with their live
# dashboard, evaluated, compared, their features): out/train_sae.html.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$SAEKIT_ROOT"
bash scripts/setup.sh
mkdir -p out
.venv/bin/python notebooks/run.py notebooks/quickstart.ipynb --out out/quickstart.html
.venv/bin/python notebooks/run.py notebooks/train_sae.ipynb --out out/train_sae.html
