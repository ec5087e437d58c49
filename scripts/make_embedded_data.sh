#!/usr/bin/env bash
# Rebuilds the small offline data that saekit ships under crate/data/:
#
#   crate/data/gpt2/{vocab.json,merges.txt,LICENSE}  GPT-2 byte-level BPE, byte-for-byte
#                                                      from the PyPI sdist openai-whisper
#   crate/data/corpus/austen.jsonl.zst               Jane Austen's six novels, one doc per chapter
#   crate/data/corpus/kjv.jsonl.gz                   King James Bible, one doc per chapter
#   crate/data/corpus/README.md                      counts, sizes and sha256s of the above
#
# Needs only the package registries: Debian apt (`apt-get download`, no root, no install)
# and PyPI (a throwaway venv under $TMPDIR). Nothing is installed system-wide.
# Run `apt-get update` first if apt cannot find the pinned versions.
#
# The output is deterministic: the same pinned package versions give the same bytes.
# Usage: scripts/make_embedded_data.sh [OUT_DIR]   (default: <repo>/crate/data)
set -euo pipefail

# ---- pinned inputs ------------------------------------------------------------------
WHISPER_VERSION=20230124            # PyPI sdist openai-whisper (MIT, OpenAI)
JANEAUSTENR_VERSION=1.0.0-1         # Debian bookworm r-cran-janeaustenr (MIT, Julia Silge)
BIBLE_KJV_VERSION=4.38              # Debian bookworm bible-kjv + bible-kjv-text
RDATA_VERSION=1.1.0                 # PyPI rdata, decodes R serialization
ZSTANDARD_VERSION=0.25.0            # PyPI zstandard (libzstd bundled in the wheel)
ZSTD_LEVEL=19
# sha256 of the GPT-2 files as shipped in openai-whisper==20230124
VOCAB_SHA256=3ba3c3109ff33976c4bd966589c11ee14fcaa1f4c9e5e154c2ed7f99d80709e7
MERGES_SHA256=fe36cab26d4f4421ed725e10a2e9ddb7f799449c603a96e7f29b5a3c82a95862

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$REPO_ROOT/crate/data}"
PYTHON="${PYTHON:-python3}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/saekit-embedded-data.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
chmod 755 "$WORK"   # so apt's _apt user can write downloads here
echo "work dir: $WORK"

# ---- fetch packages ------------------------------------------------------------------
mkdir -p "$WORK/deb"
( cd "$WORK/deb" && apt-get download -q \
    "r-cran-janeaustenr=$JANEAUSTENR_VERSION" \
    "bible-kjv=$BIBLE_KJV_VERSION" \
    "bible-kjv-text=$BIBLE_KJV_VERSION" ) 2>&1 | grep -v 'unsandboxed' || true
for deb in "$WORK"/deb/*.deb; do dpkg-deb -x "$deb" "$WORK/root"; done
[ -f "$WORK/root/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb" ] \
    || { echo "r-cran-janeaustenr=$JANEAUSTENR_VERSION not fetched; run apt-get update" >&2; exit 1; }
[ -x "$WORK/root/usr/bin/bible" ] \
    || { echo "bible-kjv=$BIBLE_KJV_VERSION not fetched; run apt-get update" >&2; exit 1; }

"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
# openai-whisper's old setup.py imports pkg_resources, hence setuptools<70 and no isolation.
"$VPY" -m pip install -q --disable-pip-version-check \
    'setuptools<70' wheel "rdata==$RDATA_VERSION" "zstandard==$ZSTANDARD_VERSION"
"$VPY" -m pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    --no-build-isolation -d "$WORK/sdist" "openai-whisper==$WHISPER_VERSION"
tar -xzf "$WORK/sdist/openai-whisper-$WHISPER_VERSION.tar.gz" -C "$WORK" \
    "openai-whisper-$WHISPER_VERSION/whisper/assets/gpt2" \
    "openai-whisper-$WHISPER_VERSION/LICENSE"

# ---- KJV: dump with the packaged `bible` program, reading its data from the extracted deb
# -l0 = no line wrapping: "Book N" headings, then one "  V text" line per verse.
"$WORK/root/usr/bin/bible" -p "$WORK/root/usr/lib" -l0 'gen1:1-rev22:21' > "$WORK/kjv.txt"

# ---- GPT-2 files: copy byte-for-byte, then check --------------------------------------
mkdir -p "$OUT/gpt2" "$OUT/corpus"
GPT2_SRC="$WORK/openai-whisper-$WHISPER_VERSION/whisper/assets/gpt2"
cp "$GPT2_SRC/vocab.json" "$GPT2_SRC/merges.txt" "$OUT/gpt2/"
cp "$WORK/openai-whisper-$WHISPER_VERSION/LICENSE" "$OUT/gpt2/LICENSE"
echo "$VOCAB_SHA256  $OUT/gpt2/vocab.json" | sha256sum -c --quiet
echo "$MERGES_SHA256  $OUT/gpt2/merges.txt" | sha256sum -c --quiet

# ---- convert -----------------------------------------------------------------------
export OUT WORK WHISPER_VERSION JANEAUSTENR_VERSION BIBLE_KJV_VERSION RDATA_VERSION \
    ZSTANDARD_VERSION ZSTD_LEVEL
"$VPY" - <<'PY'
"""Austen (R lazy-load DB) and KJV (bible dump) -> one JSON document per chapter."""
import gzip, hashlib, io, json, os, re, struct, warnings, zlib

import rdata
import zstandard

OUT, WORK = os.environ["OUT"], os.environ["WORK"]
env = os.environ

# ---- GPT-2 checks ----
vocab = json.load(open(f"{OUT}/gpt2/vocab.json", encoding="utf-8"))
assert len(vocab) == 50257, len(vocab)
assert vocab["<|endoftext|>"] == 50256
assert sorted(vocab.values()) == list(range(50257))
merges = open(f"{OUT}/gpt2/merges.txt", encoding="utf-8").read().split("\n")
assert merges[0].startswith("#version"), merges[0]
body = [m for m in merges[1:] if m]
assert len(body) == 50000 and all(len(m.split(" ")) == 2 for m in body), len(body)


def paragraphs(lines):
    """Blank lines separate paragraphs ("\\n\\n"); hard-wrapped lines are joined with a space.
    Verse and a letter's heading or sign-off keep their line breaks ("\\n"): an indented
    paragraph whose indentation varies, or whose every line starts with a capital."""
    groups, cur = [], []
    for line in lines + [""]:
        if line.strip():
            cur.append(line.rstrip())
        elif cur:
            groups.append(cur)
            cur = []
    paras = []
    for g in groups:
        words = [" ".join(line.split()) for line in g]
        joined = " ".join(words)
        # Editors' notes such as "[At this point in the first and second editions, ...]".
        if joined.startswith("[") and joined.endswith("]") and "edition" in joined:
            continue
        indents = {len(line) - len(line.lstrip()) for line in g}
        capitals = all(re.match(r"[\"']?[A-Z]", w) for w in words[1:])
        verse = len(g) > 1 and g[0][:1].isspace() and (len(indents) > 1 or capitals)
        paras.append("\n".join(words) if verse else joined)
    return "\n\n".join(paras)


def check_text(t):
    t.encode("utf-8")
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f\r]", t), repr(t[:80])
    assert t == t.strip() and t, repr(t[:80])


# ---- Jane Austen ----
ddir = f"{WORK}/root/usr/lib/R/site-library/janeaustenr/data"
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # rdata: "Unknown file type: assumed RDS"
    index = rdata.read_rds(f"{ddir}/Rdata.rdx")
    rdb = open(f"{ddir}/Rdata.rdb", "rb").read()

    def load(name):
        off, length = (int(x) for x in index["variables"][name])
        blob = rdb[off:off + length]
        size = struct.unpack(">I", blob[:4])[0]
        raw = zlib.decompress(blob[4:])
        assert len(raw) == size
        return [str(s) for s in rdata.conversion.convert(rdata.parser.parse_data(raw))]

    # Publication order, as janeaustenr::austen_books() has it.
    NOVELS = [("sensesensibility", "Sense and Sensibility"),
              ("prideprejudice", "Pride and Prejudice"),
              ("mansfieldpark", "Mansfield Park"),
              ("emma", "Emma"),
              ("northangerabbey", "Northanger Abbey"),
              ("persuasion", "Persuasion")]
    books = {var: load(var) for var, _ in NOVELS}

HEADING = re.compile(r"(?:CHAPTER|Chapter) (?:[0-9]+|[IVXLC]+)\.?")
VOLUME = re.compile(r"VOLUME [IVX]+")
END = re.compile(r"(?:THE END|FINIS|Finis)")

austen = []
for var, title in NOVELS:
    lines = books[var]
    # The janeaustenr text of Northanger Abbey ends with a modern editor's note: not Austen's.
    if "A NOTE ON THE TEXT" in lines:
        lines = lines[:lines.index("A NOTE ON THE TEXT")]
    chapters, cur = [], None
    for line in lines:
        s = line.strip()
        if HEADING.fullmatch(s):
            cur = []
            chapters.append(cur)
        elif cur is None or VOLUME.fullmatch(s) or END.fullmatch(s):
            continue  # front matter (title page, Northanger's advertisement), volume/end markers
        else:
            cur.append(line)
    # Chapters are numbered 1..N through the novel (Emma's numbering restarts per volume).
    for n, ch in enumerate(chapters, 1):
        austen.append({"text": paragraphs(ch), "source": "janeaustenr", "title": title,
                       "chapter": n})

# ---- KJV ----
kjv = []
book_re = re.compile(r"(.+) ([0-9]+)")
verse_re = re.compile(r"  ([0-9]+) (.+)")
cur = None
for line in open(f"{WORK}/kjv.txt", encoding="utf-8").read().split("\n"):
    if not line:
        continue
    m = verse_re.fullmatch(line)
    if m:
        assert int(m.group(1)) == len(cur["verses"]) + 1, line
        cur["verses"].append(" ".join(m.group(2).split()))
        continue
    m = book_re.fullmatch(line)
    assert m, repr(line)
    cur = {"title": m.group(1), "chapter": int(m.group(2)), "verses": []}
    kjv.append(cur)
# One verse per line, verse numbers dropped.
kjv = [{"text": "\n".join(c["verses"]), "source": "bible-kjv", "title": c["title"],
        "chapter": c["chapter"]} for c in kjv]
assert len(kjv) == 1189 and len({d["title"] for d in kjv}) == 66
assert sum(d["text"].count("\n") + 1 for d in kjv) == 31102


def jsonl(docs):
    for d in docs:
        check_text(d["text"])
    return "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode("utf-8")


# ---- write (no timestamps, no file names in the headers) ----
austen_raw = jsonl(austen)
cctx = zstandard.ZstdCompressor(level=int(env["ZSTD_LEVEL"]), write_checksum=True,
                                write_content_size=True, threads=0)
open(f"{OUT}/corpus/austen.jsonl.zst", "wb").write(cctx.compress(austen_raw))

kjv_raw = jsonl(kjv)
buf = io.BytesIO()
with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
    gz.write(kjv_raw)
open(f"{OUT}/corpus/kjv.jsonl.gz", "wb").write(buf.getvalue())

# Round-trip check.
assert zstandard.ZstdDecompressor().decompress(
    open(f"{OUT}/corpus/austen.jsonl.zst", "rb").read()) == austen_raw
assert gzip.decompress(open(f"{OUT}/corpus/kjv.jsonl.gz", "rb").read()) == kjv_raw


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def stats(docs):
    return len(docs), sum(len(d["text"].encode("utf-8")) for d in docs)


rows = []
for name, docs, raw, what in [
        ("austen.jsonl.zst", austen, austen_raw,
         "Jane Austen's six novels, one document per chapter (zstd level %s)" % env["ZSTD_LEVEL"]),
        ("kjv.jsonl.gz", kjv, kjv_raw,
         "King James Bible, 66 books, one document per chapter (gzip -9)")]:
    n, tb = stats(docs)
    size = os.path.getsize(f"{OUT}/corpus/{name}")
    rows.append((name, what, n, tb, len(raw), size, sha(f"{OUT}/corpus/{name}")))
    print(f"{name}: {n} docs, {tb} bytes of text, {len(raw)} bytes JSONL, {size} bytes")

by_title = {}
for d in austen:
    by_title[d["title"]] = by_title.get(d["title"], 0) + 1

readme = f"""# Embedded corpus

Small public-domain text shipped with saekit for tests, examples and offline demos.
Each line of each file is one JSON object:
`{{"text": str, "source": str, "title": str, "chapter": int}}` (UTF-8, one document per chapter).
Generated by `scripts/make_embedded_data.sh`; do not edit by hand.

| file | contents | docs | text bytes | JSONL bytes | file bytes |
|---|---|---|---|---|---|
""" + "".join(f"| `{r[0]}` | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} |\n" for r in rows) + f"""
sha256:

```
""" + "".join(f"{r[6]}  {r[0]}\n" for r in rows) + f"""```

## austen.jsonl.zst

- `source`: `"janeaustenr"`; `title`: the novel; `chapter`: 1..N through the novel
  (Emma's three volumes are numbered on, 1..55, not restarted per volume).
- Chapters per novel: {", ".join(f"{t} {c}" for t, c in by_title.items())}.
- Taken from the R data of Debian `r-cran-janeaustenr` {env["JANEAUSTENR_VERSION"]}
  (CRAN janeaustenr 1.0.0, Project Gutenberg texts). Dropped: title pages and other text before
  the first chapter (including Northanger Abbey's "Advertisement"), chapter and volume headings,
  "THE END"/"FINIS" lines, bracketed notes about editions (e.g. "[At this point in the first and
  second editions, Volume 1 ends.]", a printer's note in Mansfield Park) and the modern
  "A NOTE ON THE TEXT" after Northanger Abbey.
- Paragraphs are separated by `"\\n\\n"`; hard-wrapped lines are joined with a space (runs of
  spaces collapsed). Verse and the headings/sign-offs of letters keep their line breaks (`"\\n"`).
  Gutenberg's `_italics_` and `* * *` section breaks are kept as they are.

## kjv.jsonl.gz

- `source`: `"bible-kjv"`; `title`: the book as the `bible` program names it (`"Genesis"`,
  `"1 Samuel"`, `"Song of Solomon"`, ...); `chapter`: the chapter number. Canonical book order.
- Text is one verse per line (`"\\n"` between verses), verse numbers dropped. 31,102 verses.
- Dumped with `bible -l0 'gen1:1-rev22:21'` from Debian `bible-kjv`/`bible-kjv-text`
  {env["BIBLE_KJV_VERSION"]}.

## Rebuilding

```
apt-get update            # if apt does not know the pinned versions yet
scripts/make_embedded_data.sh
```

Needs `apt-get download` (no root, nothing installed), `dpkg-deb`, `python3` with `venv`, and
PyPI (rdata {env["RDATA_VERSION"]}, zstandard {env["ZSTANDARD_VERSION"]}, openai-whisper
{env["WHISPER_VERSION"]} sdist for `../gpt2/`). Same package versions give the same bytes.
Read with e.g. `zstd -dc austen.jsonl.zst | head -c 500` or `zcat kjv.jsonl.gz | head -c 500`.
"""
open(f"{OUT}/corpus/README.md", "w", encoding="utf-8").write(readme)
PY

echo
( cd "$OUT" && find . -type f | LC_ALL=C sort | while read -r f; do
    printf '%9d  %s  %s\n' "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)" "$f"
  done )
echo "total: $(du -cb "$OUT"/gpt2/* "$OUT"/corpus/* | tail -1 | cut -f1) bytes"
