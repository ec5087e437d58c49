#!/usr/bin/env bash
# Creates bench/.venv with the HuggingFace baseline libraries pinned in bench/requirements.txt.
# Safe to run again: it only reinstalls when requirements.txt changed. bench/.venv is git-ignored.
set -euo pipefail
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$BENCH/.venv"
command -v python3 >/dev/null || { echo "error: python3 not found" >&2; exit 1; }

want=$(sha256sum "$BENCH/requirements.txt" | cut -d' ' -f1)
have=$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)
if [ "$want" != "$have" ] || [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV (datasets, tokenizers, pyarrow)"
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$BENCH/requirements.txt"
  echo "$want" > "$VENV/.requirements.sha256"
fi
