"""An adversarial tokenization corpus, deterministic for a seed: Python source, multilingual prose
(Latin with accents, Greek, Cyrillic, Arabic and Hebrew (RTL), Devanagari, CJK, Hangul, Thai), emoji with
ZWJ sequences, skin tones and flags, combining marks (precomposed and decomposed), control characters,
odd whitespace (NBSP, ideographic space, tabs, CRLF, U+2028), contractions in mixed case ('S 'LL 'ſ),
long digit runs, compatibility characters that NFKC rewrites (ﬁ ① ｆｕｌｌ ½), and special tokens in
the text (`<|endoftext|>`, `<s>`, `[CLS]`, `<EOT>`, …).

    python3 bench/make_adversarial_corpus.py --out corpus.jsonl [--mb 48] [--seed 0]

writes JSONL, one {"text": ...} per line. `documents(seed, n)` gives the same documents to a test.
Only the standard library is used.
"""
import argparse
import json
import random
import sys

SPECIALS = ["<|endoftext|>", "<s>", "</s>", "[CLS]", "[SEP]", "[MASK]", "<EOT>", "<unk>", "<pad>", "<|im_start|>"]

PROSE = {
    "en": "It is a truth universally acknowledged that a single man in possession of a good fortune must be in want of a wife",
    "fr": "Le cœur a ses raisons que la raison ne connaît point; déjà vu, naïveté, façade, où êtes-vous",
    "de": "Größe Übermäßig Straße Fußgängerübergänge schließen Äpfel Öl überall",
    "tr": "İstanbul'da ılık bir akşam; IĞDIR ışık şoför",
    "el": "Η γλώσσα μου έδωσαν ελληνική· ΣΟΦΊΑ σοφός ς Σ",
    "ru": "Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЖИК ёжик",
    "ar": "مرحبا بالعالم، هذا نص عربي مع أرقام ١٢٣٤٥ وتشكيل: كَتَبَ",
    "he": "שלום עולם, זהו טקסט בעברית עם ניקוד: שָׁלוֹם",
    "hi": "हिन्दी में लिखा गया पाठ क्षत्रिय ज्ञान १२३ नमस्ते",
    "zh": "日本語のテキストと中文文本，我们在这里测试分词器。漢字、ひらがな、カタカナ",
    "ko": "한국어 텍스트 토크나이저 시험 가나다라 ㄱㄴㄷ",
    "th": "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ สวัสดีครับ",
    "vi": "Tiếng Việt có nhiều dấu: Nguyễn, người, được, phở",
}

EMOJI = ["🙂", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷", "🇯🇵", "🏳️‍🌈", "❤️", "✨", "🧑🏿‍💻", "😀😀😀", "🤷‍♀️", "1️⃣", "©️"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "\u0301", "x\u20dd", "Å", "Å", "ﬁ\u0301", "가\u11a8"]
COMPAT = ["ﬁ", "ﬀ", "①", "Ⅻ", "ｆｕｌｌ", "½", "x²", "㍿", "™", "…", "ℌ", "ﬆ", "Ǆ", "ǅ", "Ω"]
CONTROL = ["\x00", "\x01", "\x07", "\x1b[31m", "\x7f", "\x85", "\x9f", "\ufeff", "\u200b", "\u200d", "\u2028", "\u2029", "\ufffd"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", "\r", " \n ", "\u00a0", "\u3000", "\u2009", "\u1680", "\x0b", "\x0c"]
CONTRACTIONS = ["don't", "DON'T", "I'm", "I'M", "you're", "YOU'RE", "we've", "WE'VE", "they'll", "THEY'LL",
                "she'd", "SHE'D", "it's", "IT'S", "'s", "'S", "'ſ", "’s", "o'clock", "rock'n'roll", "''"]
PYTHON = '''import os, sys
from typing import Dict, List


class Tokenizer:
    """Splits text into tokens."""

    def __init__(self, vocab: Dict[str, int], unk: str = "<unk>") -> None:
        self.vocab = vocab
        self.unk = unk

    def encode(self, text: str) -> List[int]:
        # 	tabs, trailing spaces   
        return [self.vocab.get(w, self.vocab[self.unk]) for w in text.split()]


def main(argv=None) -> int:
    x = 0x1F600 + 1_000_000 * 3.14159e-10
    if x >= 10 ** 12 and not argv:
        print(f"{x!r:>20} {'é'!a}", file=sys.stderr)
    return 0 if __name__ != "__main__" else main(sys.argv[1:])
'''


def digits(rng: random.Random) -> str:
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40)))


def fragment(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.30:
        words = rng.choice(list(PROSE.values())).split(" ")
        start = rng.randrange(len(words))
        return " ".join(words[start:start + rng.randint(1, 8)])
    if kind < 0.38:
        lines = PYTHON.splitlines(keepends=True)
        start = rng.randrange(len(lines))
        return "".join(lines[start:start + rng.randint(1, 6)])
    if kind < 0.46:
        return rng.choice(EMOJI)
    if kind < 0.53:
        return rng.choice(COMBINING)
    if kind < 0.59:
        return rng.choice(COMPAT)
    if kind < 0.64:
        return rng.choice(CONTROL)
    if kind < 0.76:
        return rng.choice(SPACES)
    if kind < 0.84:
        return rng.choice(CONTRACTIONS)
    if kind < 0.89:
        return digits(rng)
    if kind < 0.93:
        return rng.choice(SPECIALS)
    if kind < 0.97:
        # Random code points from several planes (no surrogates).
        out = []
        for _ in range(rng.randint(1, 6)):
            lo, hi = rng.choice([(0x20, 0x7E), (0xA0, 0x24F), (0x300, 0x36F), (0x370, 0x6FF), (0x900, 0x97F),
                                 (0x2000, 0x206F), (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3),
                                 (0xFF00, 0xFFEF), (0x1F300, 0x1FAFF), (0x10000, 0x10FFF)])
            out.append(chr(rng.randint(lo, hi)))
        return "".join(out)
    return rng.choice(["!", "...", "?!", "—", "«»", "(", ")", "{}", "[]", "#", "@user", "https://example.com/a?b=1&c=2#d", "C++", "a_b", "__init__"])


def document(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 60)):
        parts.append(fragment(rng))
        r = rng.random()
        parts.append(" " if r < 0.6 else ("" if r < 0.8 else rng.choice(SPACES)))
    return "".join(parts)


def documents(seed: int = 0, n: int = 1000) -> list:
    rng = random.Random(seed)
    docs = [document(rng) for _ in range(n)]
    # A few long stretches: whitespace, digits, one letter, one emoji, a long word.
    docs += [" " * 3000 + "x", "\n" * 500, "a" * 2000, "9" * 700, "😀" * 200, "▁" * 50 + "a▁▁b", ""]
    return docs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mb", type=float, default=48.0, help="approximate size in megabytes of UTF-8 text")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    limit, written, n = args.mb * 1e6, 0, 0
    with open(args.out, "w", encoding="utf-8") as f:
        for d in documents(args.seed, 0):
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
        while written < limit:
            # Mostly documents of a few hundred bytes to a few kilobytes.
            d = "\n\n".join(document(rng) for _ in range(rng.randint(1, 8)))
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
            written += len(d.encode("utf-8"))
            n += 1
    print(f"wrote {n} documents, {written / 1e6:.1f} MB of text, to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
