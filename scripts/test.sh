#!/usr/bin/env bash
# Runs every test: the Rust unit and integration tests, the optional polars interop (built and tested),
# and the end-to-end Python tests (tests/) that check saekit's outputs with the Python ecosystem.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$SAEKIT_ROOT"
bash scripts/setup.sh
# setup's install started a spare kernel. The tests run kernels with spares off (tests/conftest.py), and
# a spare would hold the build slot that install just built, sending them to another slot that may have
# to build saekit again; tests/test_spare.py starts the spares it needs. Leave none behind either.
"$SAEKIT_KERNEL_BIN" spare --stop
trap '"$SAEKIT_KERNEL_BIN" spare --stop >/dev/null 2>&1 || true' EXIT

echo "== cargo test (saekit)"
cargo test -p saekit --no-fail-fast

echo "== cargo test (saekit-kernel, with the kernel's optimised profile so nothing is built twice)"
CARGO_TARGET_DIR="$SAEKIT_KERNEL_TARGET" cargo test -p saekit-kernel --profile kernel --no-fail-fast

echo "== cargo test --features polars (the optional DataFrame interop still builds and converts)"
cargo test -p saekit --features polars --lib interop

echo "== pytest tests/"
.venv/bin/python -m pytest tests -q
