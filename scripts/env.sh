# Sourced by the other scripts: where cargo builds, and the project root.
# A target dir kept outside the clone (CI and developers on the same machine) is reused when present.
SAEKIT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export SAEKIT_ROOT
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d /var/tmp/saekit-target ]; then
  export CARGO_TARGET_DIR=/var/tmp/saekit-target
fi
# The kernel is built optimised (`--profile kernel`: it embeds rust-analyzer), in its own target dir when one
# is kept outside the clone, else beside the library's.
if [ -z "${SAEKIT_KERNEL_TARGET:-}" ]; then
  if [ -d /var/tmp/saekit-kernel-target ]; then
    SAEKIT_KERNEL_TARGET=/var/tmp/saekit-kernel-target
  else
    SAEKIT_KERNEL_TARGET="${CARGO_TARGET_DIR:-$SAEKIT_ROOT/target}"
  fi
fi
export SAEKIT_KERNEL_TARGET
export SAEKIT_KERNEL_BIN="$SAEKIT_KERNEL_TARGET/kernel/saekit-kernel"
