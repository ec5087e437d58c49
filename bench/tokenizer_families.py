"""Small tokenizers of every BPE family saekit encodes itself, trained here with the Python `tokenizers`
library from the embedded corpus (the King James Bible's first chapters, line by line) and adversarial
text (bench/make_adversarial_corpus.py): byte-level BPE with the GPT-2, Llama-3 and Qwen2 regexes and
NFC/NFKC/NFD+lowercase normalizers, SentencePiece-style BPE with byte fallback (Metaspace with each
prepend scheme and split, Llama-2's `Prepend`+`Replace` normalizer), character BPE with unk and
Digits/Punctuation/Whitespace splits, and WordPiece; each with added special tokens. Used by
tests/test_tokenizer_families.py and bench/tokenizer_table.py.

    python3 bench/tokenizer_families.py --out DIR     # writes DIR/NAME.json for each configuration
"""
import argparse
import gzip
import importlib.util
import json
import os
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

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


def sentencepiece(pre, normalizer=None, fuse_unk=True, train_pre=None) -> Tokenizer:
    """SentencePiece-style BPE with byte fallback. Trained on `▁`-prefixed words (`train_pre`, as
    SentencePiece itself trains within whitespace-delimited pieces), then used with `normalizer` and `pre`
    (`None`: no pre-tokenizer, the whole text one word), as converted Gemma/Llama-2 files are."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=fuse_unk))
    tok.pre_tokenizer = train_pre or pre
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=SPECIALS + BYTES, show_progress=False,
                                  limit_alphabet=400)
    tok.train_from_iterator([t[:300] for t in training_texts()], trainer)
    spec = json.loads(tok.to_str())
    spec["normalizer"] = json.loads(Tokenizer(models.BPE()).to_str())["normalizer"]
    spec["pre_tokenizer"] = None
    tok = Tokenizer.from_str(json.dumps(spec))
    if normalizer is not None:
        tok.normalizer = normalizer
    if pre is not None:
        tok.pre_tokenizer = pre
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
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False),
        train_pre=pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)),
    "metaspace-always-split": lambda: sentencepiece(
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True), fuse_unk=False),
    "llama2-normalizer": lambda: sentencepiece(
        None, normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]),
        train_pre=pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for NAME.json files")
    ap.add_argument("--only", help="comma-separated configuration names")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    names = args.only.split(",") if args.only else list(CONFIGS)
    for name in names:
        CONFIGS[name]().save(os.path.join(args.out, f"{name}.json"))
        print(os.path.join(args.out, f"{name}.json"))


if __name__ == "__main__":
    main()
