"""Token ids from saekit equal HF tokenizers' ids for the same tokenizer and text (non-ASCII and emoji
included), read back from saekit's token store with numpy."""

import gzip
import json
import subprocess
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

ROOT = Path(__file__).resolve().parent.parent
GPT2 = ROOT / "crate" / "data" / "gpt2"

TEXTS = [
    "Hello world",
    "It is a truth universally acknowledged, that a single man in possession of a good fortune…",
    "Café naïve façade — déjà vu; Größe, Ærø, İstanbul",
    "日本語のテキストと中文文本，한국어 텍스트",
    "Emoji: 🙂👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✨",
    "Tabs\tand\nnewlines\r\n  and   runs of    spaces   ",
    "Numbers 1234567 3.14159 1e-9 ½ ² ٣",
    "don't won't I'm you're they've we'll she'd 'S 'T",
    "<|endoftext|>between<|endoftext|>",
    "   leading spaces and trailing   ",
    "",
]


def hf_gpt2() -> Tokenizer:
    vocab = json.loads((GPT2 / "vocab.json").read_text())
    merges = [tuple(line.split(" ")) for line in (GPT2 / "merges.txt").read_text().splitlines()[1:] if line]
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def read_store(path: Path):
    meta = json.loads((path / "store.json").read_text())
    tokens = np.fromfile(path / "tokens.bin", dtype="<" + ("u2" if meta["dtype"] == "uint16" else "u4"))
    offsets = np.fromfile(path / "offsets.bin", dtype="<u8")
    return [tokens[offsets[i] : offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]


def test_token_ids_match_hf_tokenizers(saekit, tmp_path):
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    # Also every chapter of the embedded Austen corpus, through the same path.
    store = tmp_path / "store"
    done = saekit("tokenize", "--out", store, "--json", "--max-length", 100000, "--stride", 100000, data)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    ours = read_store(store)
    expected = [e.ids for e in hf_gpt2().encode_batch(TEXTS, add_special_tokens=False)]
    # The empty document makes an empty sequence, which is dropped (shorter than min_length 1).
    assert expected[-1] == [] and len(ours) == len(TEXTS) - 1
    for text, a, b in zip(TEXTS, ours, expected):
        assert a == b, text
    assert summary["tokens"] == sum(len(x) for x in expected)
    assert expected[0] == [15496, 995]


def test_embedded_bible_matches_hf_tokenizers(saekit, tmp_path):
    corpus = ROOT / "crate" / "data" / "corpus" / "kjv.jsonl.gz"
    store = tmp_path / "store"
    done = saekit("tokenize", "--out", store, "--json", "--max-length", 100000, "--stride", 100000, corpus)
    assert done.returncode == 0, done.stderr
    ours = read_store(store)
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    expected = [e.ids for e in hf_gpt2().encode_batch(texts, add_special_tokens=False)]
    assert len(ours) == len(expected) == 1189
    mismatched = [i for i, (a, b) in enumerate(zip(ours, expected)) if a != b]
    assert mismatched == [], f"chapters whose ids differ: {mismatched[:10]}"


def test_both_merges_encodings_load_and_agree(saekit, tmp_path):
    """tokenizer.json files in the wild write merges as "Ġ t" strings (older) or ["Ġ", "t"] pairs."""
    as_pairs = json.loads(hf_gpt2().to_str())
    as_strings = json.loads(hf_gpt2().to_str())
    merges = as_pairs["model"]["merges"]
    pairs = [m if isinstance(m, list) else m.split(" ") for m in merges]
    as_pairs["model"]["merges"] = pairs
    as_strings["model"]["merges"] = [" ".join(m) for m in pairs]
    data = tmp_path / "texts.jsonl"
    data.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:-1]))
    results = []
    for name, spec in [("pairs", as_pairs), ("strings", as_strings)]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(spec))
        done = saekit("tokenize", "--tokenizer", path, "--out", tmp_path / name, "--json", data)
        assert done.returncode == 0, done.stderr
        results.append(read_store(tmp_path / name))
    assert results[0] == results[1]
    assert results[0][0] == [15496, 995]
