#!/usr/bin/env bash
# Download throughput from a Hub-compatible server: saekit's download path (resolve → 302 → streamed to
# blobs/<etag>.part → snapshot link) next to `curl -L` fetching the same file from the same local server
# in the same run. The server is the tests' mock Hub (crate/tests/support/mock_hub.rs) serving a generated
# file from memory on 127.0.0.1, so the numbers measure the clients (and share the CPU with the server).
#
#   bash bench/hub_bench.sh [MB] [ROUNDS]     (defaults: 500 MB, 5 rounds)
#
# Each round runs, in turn: curl; saekit as users run it (SHA-256 verified against the Hub's ETag);
# saekit with `Hub::with_checksums(false)` (size checked only, as curl); curl followed by `sha256sum`
# (verified the way a shell script would). Prints every run, then the median and best MB/s of each, and
# saekit's medians as fractions of curl's. Medians are what to quote on a shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
MB="${1:-500}"
ROUNDS="${2:-5}"
TARGET="${CARGO_TARGET_DIR:-target}"
nice cargo build --release -q -p saekit --example hub_mock_server --example hub_fetch
BIN="$TARGET/release/examples"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/saekit-hub-bench.XXXXXX")"
trap 'exec 3>&-; rm -rf "$WORK"' EXIT

# The server runs until its stdin (fd 3 here) closes.
mkfifo "$WORK/in" "$WORK/out"
"$BIN/hub_mock_server" --mb "$MB" <"$WORK/in" >"$WORK/out" &
exec 3>"$WORK/in"
read -r _ URL REPO FILE SHA SIZE <"$WORK/out"
RESOLVE="$URL/datasets/$REPO/resolve/main/$FILE"
echo "server $URL serving $FILE: $SIZE bytes, sha256 $SHA; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

now() { date +%s.%N; }
record() { # name seconds
  echo "$1 $2" >>"$WORK/results"
  printf '  %-16s %6.3f s  %7.1f MB/s\n' "$1" "$2" "$(python3 -c "print($SIZE / 1e6 / $2)")"
}
saekit() { # extra args
  rm -rf "$WORK/cache"
  local t0 t1
  t0=$(now)
  HF_ENDPOINT="$URL" HF_HUB_CACHE="$WORK/cache" HF_TOKEN= HF_HUB_OFFLINE= "$BIN/hub_fetch" "$REPO" "$FILE" "$@" >/dev/null
  t1=$(now)
  test "$(sha256sum "$WORK"/cache/datasets--*/blobs/"$SHA" | cut -d' ' -f1)" = "$SHA"
  rm -rf "$WORK/cache"
  python3 -c "print($t1 - $t0)"
}
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round"
  rm -f "$WORK/curl.bin"
  record curl "$(curl -sS -L -o "$WORK/curl.bin" -w '%{time_total}' "$RESOLVE")"
  rm -f "$WORK/curl.bin"
  record saekit "$(saekit)"
  record saekit-no-sha "$(saekit --no-checksum)"
  t0=$(now)
  curl -sS -L -o "$WORK/curl.bin" "$RESOLVE"
  test "$(sha256sum "$WORK/curl.bin" | cut -d' ' -f1)" = "$SHA"
  t1=$(now)
  rm -f "$WORK/curl.bin"
  record curl+sha256sum "$(python3 -c "print($t1 - $t0)")"
done
python3 - "$WORK/results" "$SIZE" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, secs = line.split()
    runs.setdefault(name, []).append(float(secs))
size = int(sys.argv[2])
mbs = {name: [size / 1e6 / s for s in secs] for name, secs in runs.items()}
print(f"{size / 1e6:.0f} MB file, {len(runs['curl'])} rounds (wall time per process, MB/s):")
for name, values in mbs.items():
    print(f"  {name:<16} median {statistics.median(values):7.1f}  best {max(values):7.1f}")
med = {name: statistics.median(v) for name, v in mbs.items()}
print(f"saekit / curl = {med['saekit'] / med['curl']:.2f} (verified) · "
      f"{med['saekit-no-sha'] / med['curl']:.2f} (size-checked, as curl) · "
      f"saekit / (curl + sha256sum) = {med['saekit'] / med['curl+sha256sum']:.2f}")
PY
