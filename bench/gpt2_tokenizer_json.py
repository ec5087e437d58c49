"""Builds a GPT-2 `tokenizer.json` for the HuggingFace baseline from the vocab.json and merges.txt that
saekit embeds (crate/data/gpt2), with the `tokenizers` Python API, and checks a few known ids.

    bench/.venv/bin/python bench/gpt2_tokenizer_json.py [--out bench/data/gpt2-tokenizer.json]

The pipeline is GPT-2's: byte-level BPE, ByteLevel pre-tokenizer (add_prefix_space=False), ByteLevel
decoder, ByteLevel post-processor (trim_offsets=False), `<|endoftext|>` (50256) as a special token.
"""
import os
import sys

# This folder once held a tokenize.py that would shadow the standard library's `tokenize` module.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != HERE]

import argparse  # noqa: E402

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors  # noqa: E402

REPO = os.path.dirname(HERE)
GPT2 = os.path.join(REPO, "crate", "data", "gpt2")
CHECKS = {"Hello world": [15496, 995], " the": [262], "The": [464], "<|endoftext|>": [50256]}


def build(vocab: str, merges: str) -> Tokenizer:
    """The GPT-2 tokenizer from its vocab and merges files."""
    tok = Tokenizer(models.BPE.from_file(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    return tok


def check(tok: Tokenizer) -> None:
    """Known GPT-2 ids, and a UTF-8 round trip; raises on any difference."""
    assert tok.get_vocab_size() == 50257, tok.get_vocab_size()
    for text, ids in CHECKS.items():
        got = tok.encode(text).ids
        assert got == ids, f"{text!r} -> {got}, expected {ids}"
    sample = "naïve café — 東京 🙂 <|endoftext|> done"
    assert tok.decode(tok.encode(sample).ids, skip_special_tokens=False) == sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", default=os.path.join(GPT2, "vocab.json"))
    ap.add_argument("--merges", default=os.path.join(GPT2, "merges.txt"))
    ap.add_argument("--out", default=os.path.join(HERE, "data", "gpt2-tokenizer.json"))
    args = ap.parse_args()
    tok = build(args.vocab, args.merges)
    check(tok)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tok.save(args.out + ".tmp")
    check(Tokenizer.from_file(args.out + ".tmp"))
    os.replace(args.out + ".tmp", args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{t!r} -> {i}" for t, i in CHECKS.items()))


if __name__ == "__main__":
    main()
