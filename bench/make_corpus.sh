#!/usr/bin/env bash
# Builds the benchmark corpus: about 100 MB of real text from Debian packages, as JSONL lines
# {"text": ..., "source": ...}, shuffled with a fixed seed.
#
#   bash bench/make_corpus.sh [DIR]        (default DIR: bench/data, which git ignores)
#
# Writes DIR/corpus.jsonl and DIR/corpus.meta.json (package versions, deb hashes, per-source counts,
# the corpus sha256). The .deb files are kept in DIR/debs and reused, so the output is byte-for-byte
# the same as long as those package versions are; delete DIR/debs to pick up newer versions.
# Nothing is installed on the system: packages are fetched with `apt-get download` and unpacked
# with `dpkg-deb -x` into a temporary folder.
#
# Sources (text bytes are approximate, for the bookworm versions of late 2026):
#   gcide       dict-gcide          gcide.dict.dz (gzip), cut into ~4 KB chunks at line ends   ~40 MB
#   wordnet     wordnet-base        synset words + gloss, one per line, ~2 KB chunks           ~12 MB
#   linux-doc   linux-source-6.1    Documentation/**/*.rst, *.txt, one file per document        ~28 MB
#   python-doc  python3.11-doc      html/_sources/**/*.rst.txt, one file per document          ~12 MB
#   perl-pod    perl-doc            pod/*.pod, one file per document                            ~9 MB
#   linux-c     linux-source-6.1    .c/.h files of a few kernel folders, seeded sample that
#                                   fills the corpus up to TEXT_MB (default 102 MB of text), >= 5 MB
# Files that are not valid UTF-8 are skipped, and the few non-UTF-8 gcide lines are read as cp1252
# (both counted under "non_utf8" in the meta file).
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${1:-$BENCH/data}"
TEXT_MB="${TEXT_MB:-102}"
SEED="${SEED:-0}"
PACKAGES=(linux-source-6.1 python3.11-doc perl-doc dict-gcide wordnet-base)

mkdir -p "$OUT/debs"
OUT="$(cd "$OUT" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/saekit-corpus.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# 1. Fetch the packages (reusing any .deb already in DIR/debs).
need_update=0
for pkg in "${PACKAGES[@]}"; do
  if ! ls "$OUT/debs/${pkg}"_*.deb >/dev/null 2>&1; then
    cand="$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')"
    if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then need_update=1; fi
  fi
done
if [ "$need_update" = 1 ]; then
  echo "== apt-get update (a package had no candidate version)"
  apt-get update -qq
fi
for pkg in "${PACKAGES[@]}"; do
  if ! ls "$OUT/debs/${pkg}"_*.deb >/dev/null 2>&1; then
    echo "== downloading $pkg"
    (cd "$OUT/debs" && apt-get download -qq "$pkg" 2>&1 | grep -v 'unsandboxed' || true)
    ls "$OUT/debs/${pkg}"_*.deb >/dev/null 2>&1 || { echo "error: could not download $pkg" >&2; exit 1; }
  fi
done

# 2. Unpack them into the temporary folder (only the parts the corpus uses from the kernel tarball).
echo "== unpacking"
for pkg in "${PACKAGES[@]}"; do
  dpkg-deb -x "$(ls "$OUT/debs/${pkg}"_*.deb | head -1)" "$WORK/root"
done
LINUX_TAR="$(ls "$WORK"/root/usr/src/linux-source-6.1.tar.* | head -1)"
mkdir -p "$WORK/linux"
tar -xf "$LINUX_TAR" -C "$WORK/linux" --strip-components=1 --wildcards \
  'linux-source-6.1/Documentation/*' 'linux-source-6.1/kernel/*' 'linux-source-6.1/mm/*' \
  'linux-source-6.1/lib/*' 'linux-source-6.1/ipc/*' 'linux-source-6.1/block/*' \
  'linux-source-6.1/crypto/*' 'linux-source-6.1/net/ipv4/*' 'linux-source-6.1/fs/ext4/*'
rm -f "$LINUX_TAR"

# 3. Package versions and .deb hashes, for the meta file.
for pkg in "${PACKAGES[@]}"; do
  deb="$(ls "$OUT/debs/${pkg}"_*.deb | head -1)"
  printf '%s\t%s\t%s\t%s\n' "$pkg" "$(dpkg-deb -f "$deb" Version)" "$(sha256sum "$deb" | cut -d' ' -f1)" "$(basename "$deb")"
done > "$WORK/packages.tsv"

# 4. Cut the documents, shuffle, write JSONL and meta (Python standard library only).
echo "== writing $OUT/corpus.jsonl"
python3 - "$WORK" "$OUT" "$TEXT_MB" "$SEED" <<'PY'
import glob, gzip, hashlib, json, os, random, sys, platform

work, out, text_mb, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
root, linux = os.path.join(work, "root"), os.path.join(work, "linux")
skipped = {}


def read_utf8(path, source):
    """The file's text, or None (counted) when it is not valid UTF-8."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        skipped[source] = skipped.get(source, 0) + 1
        return None


def files(pattern, source):
    """One document per file, in sorted path order; empty files are left out."""
    docs = []
    for path in sorted(glob.glob(pattern, recursive=True)):
        if os.path.isfile(path):
            text = read_utf8(path, source)
            if text and text.strip():
                docs.append(text)
    return docs


def chunks(lines, size):
    """Whole lines joined into documents of at least `size` bytes (the last may be shorter)."""
    docs, cur, n = [], [], 0
    for line in lines:
        cur.append(line)
        n += len(line.encode("utf-8"))
        if n >= size:
            docs.append("".join(cur))
            cur, n = [], 0
    if cur:
        docs.append("".join(cur))
    return docs


def wordnet_lines():
    """`word, word: gloss` for every synset of WordNet (the licence header lines start with spaces)."""
    for part in ("noun", "verb", "adj", "adv"):
        with open(os.path.join(root, "usr/share/wordnet", "data." + part), encoding="utf-8") as f:
            for line in f:
                if line.startswith("  ") or " | " not in line:
                    continue
                head, gloss = line.rstrip("\n").split(" | ", 1)
                fields = head.split()
                count = int(fields[3], 16)
                words = [w.replace("_", " ") for w in fields[4:4 + 2 * count:2]]
                yield ", ".join(words) + ": " + gloss.strip() + "\n"


def gcide_lines():
    """The dictionary's lines; the 3 lines that are not UTF-8 (stray cp1252 bytes) are read as cp1252."""
    with gzip.open(os.path.join(root, "usr/share/dictd/gcide.dict.dz"), "rb") as f:
        for raw in f:
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped["gcide-cp1252-lines"] = skipped.get("gcide-cp1252-lines", 0) + 1
                yield raw.decode("cp1252", errors="replace")


sources = {}
sources["gcide"] = chunks(gcide_lines(), 4096)
sources["wordnet"] = chunks(wordnet_lines(), 2048)
sources["linux-doc"] = files(f"{linux}/Documentation/**/*.rst", "linux-doc") + \
    files(f"{linux}/Documentation/**/*.txt", "linux-doc")
sources["python-doc"] = files(f"{root}/usr/share/doc/python3.11/html/_sources/**/*.rst.txt", "python-doc")
sources["perl-pod"] = files(f"{root}/usr/share/perl/*/pod/*.pod", "perl-pod")

# Kernel C source fills the corpus up to the target: a seeded sample of whole files.
nbytes = lambda docs: sum(len(d.encode("utf-8")) for d in docs)
have = sum(nbytes(d) for d in sources.values())
room = max(5e6, text_mb * 1e6 - have)
c_files = sorted(p for d in ("kernel", "mm", "lib", "ipc", "block", "crypto", "net/ipv4", "fs/ext4")
                 for p in glob.glob(f"{linux}/{d}/**/*.[ch]", recursive=True))
random.Random(seed).shuffle(c_files)
sources["linux-c"], taken = [], 0
for path in c_files:
    if taken >= room:
        break
    text = read_utf8(path, "linux-c")
    if text and text.strip():
        sources["linux-c"].append(text)
        taken += len(text.encode("utf-8"))

docs = [(name, text) for name in sources for text in sources[name]]
random.Random(seed).shuffle(docs)
path = os.path.join(out, "corpus.jsonl")
sha = hashlib.sha256()
with open(path + ".tmp", "w", encoding="utf-8", newline="\n") as f:
    for name, text in docs:
        line = json.dumps({"text": text, "source": name}, ensure_ascii=False) + "\n"
        f.write(line)
        sha.update(line.encode("utf-8"))
os.replace(path + ".tmp", path)

packages = {}
with open(os.path.join(work, "packages.tsv")) as f:
    for line in f:
        pkg, version, deb_sha, deb = line.rstrip("\n").split("\t")
        packages[pkg] = {"version": version, "deb": deb, "deb_sha256": deb_sha}
meta = {
    "file": "corpus.jsonl",
    "sha256": sha.hexdigest(),
    "file_bytes": os.path.getsize(path),
    "documents": len(docs),
    "text_bytes": sum(nbytes(v) for v in sources.values()),
    "sources": {k: {"documents": len(v), "text_bytes": nbytes(v)} for k, v in sources.items()},
    "non_utf8": skipped,  # files skipped per source; gcide lines read as cp1252
    "seed": seed,
    "text_mb_target": text_mb,
    "python": platform.python_version(),
    "packages": packages,
}
with open(os.path.join(out, "corpus.meta.json"), "w") as f:
    json.dump(meta, f, indent=2)
    f.write("\n")
print(f"{meta['documents']} documents, {meta['text_bytes'] / 1e6:.2f} MB of text, "
      f"{meta['file_bytes'] / 1e6:.2f} MB of JSONL, sha256 {meta['sha256']}")
for k, v in meta["sources"].items():
    print(f"  {k:<11} {v['documents']:>7} docs {v['text_bytes'] / 1e6:8.2f} MB")
PY
