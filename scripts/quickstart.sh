#!/usr/bin/env bash
# The main job: install everything, then run the quickstart pipeline on the embedded corpus
# (read → catalog → statistics) and write a self-contained HTML report to out/quickstart-report.html.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$SAEKIT_ROOT"
bash scripts/setup.sh
mkdir -p out
cargo run --quiet --bin saekit -- --workspace out/workspace quickstart --out out/quickstart-report.html
