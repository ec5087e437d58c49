# Sourced by the other scripts: where cargo builds, and the project root.
# A target dir kept outside the clone (CI and developers on the same machine) is reused when present.
SAEKIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SAEKIT_ROOT
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /var/tmp/saekit-target ]; then
  export CARGO_TARGET_DIR=/var/tmp/saekit-target
fi
