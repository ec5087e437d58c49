//! Pre-tokenizers of HF `tokenizer.json` files as state machines over raw bytes: the regexes the GPT-2,
//! Llama-3 (cl100k-style) and Qwen2 tokenizers split with, `Metaspace`, `Digits`, `Whitespace`,
//! `WhitespaceSplit`, `BertPreTokenizer`, `Punctuation` and sequences of them. Each gives exactly the
//! words `tokenizers` gives; the regex patterns are recognised by their exact text (anything else falls
//! back to the `tokenizers` crate), and the character classes are those `fancy-regex` uses.

use super::bpe::{CHAR_CLASSES, CLS_LETTER, CLS_MASK, CLS_NUMBER, CLS_SPACE, WORD_FLAG, decode_multibyte};
use super::charprops::{NUMERIC, PUNCTUATION, WHITESPACE, flags};
use serde_json::Value;

/// GPT-2's pattern (also the `ByteLevel` pre-tokenizer's).
pub(crate) const GPT2_PATTERN: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama-3's (and cl100k's) pattern.
pub(crate) const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama-3's with single digits.
pub(crate) const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a split keeps what it matched (`SplitDelimiterBehavior`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behavior {
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

impl Behavior {
    fn from_json(v: &Value) -> Option<Behavior> {
        Some(match v.as_str()? {
            "Removed" => Behavior::Removed,
            "Isolated" => Behavior::Isolated,
            "MergedWithPrevious" => Behavior::MergedWithPrevious,
            "MergedWithNext" => Behavior::MergedWithNext,
            "Contiguous" => Behavior::Contiguous,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prepend {
    Always,
    First,
    Never,
}

/// One pre-tokenization step.
#[derive(Debug, Clone)]
pub(crate) enum Pre {
    /// `ByteLevel` (last in a sequence): an optional prefix space and GPT-2's pattern; the byte-to-char
    /// mapping is the model's business.
    ByteLevel {
        add_prefix_space: bool,
        use_regex: bool,
    },
    /// `Split` with one of the known patterns, `Isolated`, not inverted.
    Pattern(Known),
    Metaspace {
        replacement: char,
        prepend: Prepend,
        split: bool,
    },
    Digits {
        individual: bool,
    },
    Whitespace,
    WhitespaceSplit,
    Bert,
    Punctuation(Behavior),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Gpt2,
    Llama3,
    Qwen2,
}

/// A pre-tokenizer: its steps, in order (none: the whole piece is one word).
#[derive(Debug, Clone, Default)]
pub(crate) struct PreTokenizer {
    pub(crate) steps: Vec<Pre>,
}

impl PreTokenizer {
    /// The pre-tokenizer of a serialized `tokenizers` pre-tokenizer (`null`: none), or `None` when a step
    /// is not one saekit reproduces.
    pub(crate) fn from_json(value: &Value) -> Option<PreTokenizer> {
        let mut steps = Vec::new();
        if !value.is_null() {
            push_steps(value, &mut steps)?;
        }
        // ByteLevel maps bytes to other characters: later steps would see those; saekit maps in the model.
        if steps.iter().rev().skip(1).any(|s| matches!(s, Pre::ByteLevel { .. })) {
            return None;
        }
        Some(PreTokenizer { steps })
    }

    pub(crate) fn byte_level(&self) -> bool {
        matches!(self.steps.last(), Some(Pre::ByteLevel { .. }))
    }

    /// The first step drops all whitespace and splits there, so words never hold or span a space, and
    /// no step cares where the text starts (Metaspace's `first`).
    pub(crate) fn drops_whitespace_first(&self) -> bool {
        matches!(self.steps.first(), Some(Pre::WhitespaceSplit | Pre::Bert | Pre::Whitespace))
            && !self.steps.iter().any(|s| matches!(s, Pre::Metaspace { .. }))
    }

    /// Calls `emit` with each word of `piece`; `first`: the piece starts the text (Metaspace's
    /// `prepend_scheme: first`).
    pub(crate) fn run(&self, piece: &str, first: bool, emit: &mut dyn FnMut(&str)) {
        self.step(0, piece, first, emit);
    }

    fn step(&self, k: usize, s: &str, first: bool, emit: &mut dyn FnMut(&str)) {
        if s.is_empty() {
            return;
        }
        let Some(pre) = self.steps.get(k) else { return emit(s) };
        let k = k + 1;
        let base = s.as_ptr() as usize;
        // Sub-words are slices of `s`, except where a step rewrites the text.
        let next = |w: &str, emit: &mut dyn FnMut(&str)| self.step(k, w, first && w.as_ptr() as usize == base, emit);
        match pre {
            Pre::ByteLevel { add_prefix_space, use_regex } => {
                if *add_prefix_space && !s.starts_with(' ') {
                    let mut spaced = String::with_capacity(s.len() + 1);
                    spaced.push(' ');
                    spaced.push_str(s);
                    if *use_regex {
                        gpt2(spaced.as_bytes(), |w| self.step(k, as_str(w), first, emit));
                    } else {
                        self.step(k, &spaced, first, emit);
                    }
                } else if *use_regex {
                    gpt2(s.as_bytes(), |w| next(as_str(w), emit));
                } else {
                    next(s, emit);
                }
            }
            Pre::Pattern(Known::Gpt2) => gpt2(s.as_bytes(), |w| next(as_str(w), emit)),
            Pre::Pattern(Known::Llama3) => llama3(s.as_bytes(), 3, |w| next(as_str(w), emit)),
            Pre::Pattern(Known::Qwen2) => llama3(s.as_bytes(), 1, |w| next(as_str(w), emit)),
            Pre::Metaspace { replacement, prepend, split } => {
                let mut buf = [0u8; 4];
                let rep: &str = replacement.encode_utf8(&mut buf);
                let mut text = if s.contains(' ') { s.replace(' ', rep) } else { s.to_string() };
                let add = match prepend {
                    Prepend::Always => true,
                    Prepend::First => first,
                    Prepend::Never => false,
                };
                if add && !text.starts_with(*replacement) {
                    text.insert_str(0, rep);
                }
                if *split {
                    // `MergedWithNext` on the replacement: a word starts at each one.
                    let mut start = 0;
                    for (i, _) in text.match_indices(*replacement) {
                        if i > start {
                            self.step(k, &text[start..i], first && start == 0, emit);
                        }
                        start = i;
                    }
                    self.step(k, &text[start..], first && start == 0, emit);
                } else {
                    self.step(k, &text, first, emit);
                }
            }
            Pre::Digits { individual } => {
                let behavior = if *individual { Behavior::Isolated } else { Behavior::Contiguous };
                split_chars(s, is_numeric, behavior, &mut |w| next(w, emit));
            }
            Pre::Whitespace => whitespace(s.as_bytes(), |w| next(as_str(w), emit)),
            Pre::WhitespaceSplit => split_chars(s, is_whitespace, Behavior::Removed, &mut |w| next(w, emit)),
            Pre::Bert => split_chars(s, is_whitespace, Behavior::Removed, &mut |w| {
                split_chars(w, is_punctuation, Behavior::Isolated, &mut |x| next(x, emit))
            }),
            Pre::Punctuation(behavior) => split_chars(s, is_punctuation, *behavior, &mut |w| next(w, emit)),
        }
    }
}

#[inline(always)]
fn as_str(w: &[u8]) -> &str {
    // The state machines split only at character boundaries of valid UTF-8.
    std::str::from_utf8(w).expect("splits at character boundaries")
}

fn push_steps(value: &Value, steps: &mut Vec<Pre>) -> Option<()> {
    let flag = |key: &str, default: bool| value.get(key).and_then(Value::as_bool).unwrap_or(default);
    let step = match value.get("type")?.as_str()? {
        "Sequence" => {
            for v in value.get("pretokenizers")?.as_array()? {
                push_steps(v, steps)?;
            }
            return Some(());
        }
        "ByteLevel" => {
            Pre::ByteLevel { add_prefix_space: flag("add_prefix_space", true), use_regex: flag("use_regex", true) }
        }
        "Split" => {
            let pattern = value.get("pattern")?.get("Regex")?.as_str()?;
            if flag("invert", false) || Behavior::from_json(value.get("behavior")?)? != Behavior::Isolated {
                return None;
            }
            Pre::Pattern(match pattern {
                GPT2_PATTERN => Known::Gpt2,
                LLAMA3_PATTERN => Known::Llama3,
                QWEN2_PATTERN => Known::Qwen2,
                _ => return None,
            })
        }
        "Metaspace" => {
            let mut chars = value.get("replacement")?.as_str()?.chars();
            let replacement = chars.next()?;
            if chars.next().is_some() {
                return None;
            }
            let prepend = match value.get("prepend_scheme").and_then(Value::as_str) {
                Some("always") => Prepend::Always,
                Some("first") => Prepend::First,
                Some("never") => Prepend::Never,
                None if flag("add_prefix_space", true) => Prepend::Always,
                None => Prepend::Never,
                Some(_) => return None,
            };
            Pre::Metaspace { replacement, prepend, split: flag("split", true) }
        }
        "Digits" => Pre::Digits { individual: flag("individual_digits", false) },
        "Whitespace" => Pre::Whitespace,
        "WhitespaceSplit" => Pre::WhitespaceSplit,
        "BertPreTokenizer" => Pre::Bert,
        "Punctuation" => Pre::Punctuation(match value.get("behavior") {
            Some(b) => Behavior::from_json(b)?,
            None => Behavior::Isolated,
        }),
        _ => return None,
    };
    steps.push(step);
    Some(())
}

fn is_punctuation(c: char) -> bool {
    if c.is_ascii() { c.is_ascii_punctuation() } else { flags(c) & PUNCTUATION != 0 }
}

/// `char::is_whitespace`.
#[inline]
fn is_whitespace(c: char) -> bool {
    if c.is_ascii() { matches!(c, ' ' | '\t'..='\r') } else { flags(c) & WHITESPACE != 0 }
}

/// `char::is_numeric`.
#[inline]
fn is_numeric(c: char) -> bool {
    if c.is_ascii() { c.is_ascii_digit() } else { flags(c) & NUMERIC != 0 }
}

/// `NormalizedString::split` with a character predicate: each matching character is a match, the text
/// between matches a piece.
fn split_chars(s: &str, pred: impl Fn(char) -> bool, behavior: Behavior, emit: &mut dyn FnMut(&str)) {
    let mut start = 0;
    let mut prev_match = false;
    for (i, c) in s.char_indices() {
        let end = i + c.len_utf8();
        let m = pred(c);
        match behavior {
            Behavior::Removed | Behavior::Isolated => {
                if m {
                    if start < i {
                        emit(&s[start..i]);
                    }
                    if behavior == Behavior::Isolated {
                        emit(&s[i..end]);
                    }
                    start = end;
                }
            }
            // Maximal runs of matches and of the rest.
            Behavior::Contiguous => {
                if i > 0 && m != prev_match {
                    emit(&s[start..i]);
                    start = i;
                }
            }
            // A match ends a piece.
            Behavior::MergedWithPrevious => {
                if m {
                    emit(&s[start..end]);
                    start = end;
                }
            }
            // A match starts a piece.
            Behavior::MergedWithNext => {
                if m && start < i {
                    emit(&s[start..i]);
                    start = i;
                }
            }
        }
        prev_match = m;
    }
    if start < s.len() {
        emit(&s[start..]);
    }
}

/// The class (letter, number, space, other) of the character at `s[i..]` and its length.
#[inline(always)]
fn class_at(s: &[u8], i: usize) -> (u8, usize) {
    let b = s[i];
    if b < 0x80 {
        (ASCII_CLASSES[b as usize], 1)
    } else {
        let (cp, len) = decode_multibyte(s, i);
        (CHAR_CLASSES.get(cp) & CLS_MASK, len)
    }
}

/// The same with regex's `\w` flag.
#[inline(always)]
fn flags_at(s: &[u8], i: usize) -> (u8, usize) {
    let b = s[i];
    if b < 0x80 {
        (CHAR_CLASSES.get(b as u32), 1)
    } else {
        let (cp, len) = decode_multibyte(s, i);
        (CHAR_CLASSES.get(cp), len)
    }
}

static ASCII_CLASSES: std::sync::LazyLock<[u8; 128]> = std::sync::LazyLock::new(|| {
    let mut t = [0u8; 128];
    for (c, class) in t.iter_mut().enumerate() {
        *class = CHAR_CLASSES.get(c as u32) & CLS_MASK;
    }
    t
});

/// The end of the run of characters of class `class` from `j`.
#[inline(always)]
fn run_end(s: &[u8], mut j: usize, class: u8) -> usize {
    while j < s.len() {
        let (c, l) = class_at(s, j);
        if c != class {
            break;
        }
        j += l;
    }
    j
}

/// Splits `s` as GPT-2's pattern [`GPT2_PATTERN`] does (leftmost-first; every character is matched).
#[inline]
pub(crate) fn gpt2(s: &[u8], mut emit: impl FnMut(&[u8])) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        let b = s[i];
        if b == b'\'' && i + 1 < n {
            let len = match s[i + 1] {
                b's' | b't' | b'm' | b'd' => 2,
                b'r' | b'v' if i + 2 < n && s[i + 2] == b'e' => 3,
                b'l' if i + 2 < n && s[i + 2] == b'l' => 3,
                _ => 0,
            };
            if len != 0 {
                emit(&s[i..i + len]);
                i += len;
                continue;
            }
        }
        let (class, len) = class_at(s, i);
        let mut j = i + len;
        if b == b' ' && j < n {
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+` with the space.
            let (next, next_len) = class_at(s, j);
            if next != CLS_SPACE {
                j = run_end(s, j + next_len, next);
                emit(&s[i..j]);
                i = j;
                continue;
            }
        }
        if class == CLS_SPACE {
            j = space_run(s, i, j);
        } else {
            j = run_end(s, j, class);
        }
        emit(&s[i..j]);
        i = j;
    }
}

/// `\s+(?!\S)|\s+` from `i` (a space character ending at `j`): the run, less its last character when a
/// non-space follows and the run is longer than one.
#[inline(always)]
fn space_run(s: &[u8], i: usize, mut j: usize) -> usize {
    let n = s.len();
    let mut last = i;
    while j < n {
        let (c, l) = class_at(s, j);
        if c != CLS_SPACE {
            break;
        }
        last = j;
        j += l;
    }
    if j < n && last > i { last } else { j }
}

/// The length of a case-insensitive contraction (`'s|'t|'re|'ve|'m|'ll|'d` under `(?i)`, so `ſ` counts
/// as `s`) at `s[i..]` (`s[i]` is `'`), or 0.
#[inline]
fn contraction_ci(s: &[u8], i: usize) -> usize {
    let n = s.len();
    let at = |k: usize| if k < n { s[k].to_ascii_lowercase() } else { 0 };
    match at(i + 1) {
        b's' | b't' | b'm' | b'd' => 2,
        b'r' | b'v' if at(i + 2) == b'e' => 3,
        b'l' if at(i + 2) == b'l' => 3,
        // U+017F LATIN SMALL LETTER LONG S folds to `s`.
        0xC5 if i + 2 < n && s[i + 2] == 0xBF => 3,
        _ => 0,
    }
}

/// Splits `s` as Llama-3's pattern [`LLAMA3_PATTERN`] does (`max_digits` 3), or Qwen2's (1).
pub(crate) fn llama3(s: &[u8], max_digits: usize, mut emit: impl FnMut(&[u8])) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        let b = s[i];
        if b == b'\'' {
            let len = contraction_ci(s, i);
            if len != 0 {
                emit(&s[i..i + len]);
                i += len;
                continue;
            }
        }
        let (class, len) = class_at(s, i);
        let j0 = i + len;
        // `[^\r\n\p{L}\p{N}]?\p{L}+`
        if class == CLS_LETTER {
            let j = run_end(s, j0, CLS_LETTER);
            emit(&s[i..j]);
            i = j;
            continue;
        }
        if class != CLS_NUMBER && b != b'\r' && b != b'\n' && j0 < n {
            let (next, next_len) = class_at(s, j0);
            if next == CLS_LETTER {
                let j = run_end(s, j0 + next_len, CLS_LETTER);
                emit(&s[i..j]);
                i = j;
                continue;
            }
        }
        // `\p{N}{1,max}`
        if class == CLS_NUMBER {
            let mut j = j0;
            let mut count = 1;
            while count < max_digits && j < n {
                let (c, l) = class_at(s, j);
                if c != CLS_NUMBER {
                    break;
                }
                j += l;
                count += 1;
            }
            emit(&s[i..j]);
            i = j;
            continue;
        }
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        let other_from = if class != CLS_SPACE {
            Some(i)
        } else if b == b' ' && j0 < n && class_at(s, j0).0 == 0 {
            Some(j0)
        } else {
            None
        };
        if let Some(k) = other_from {
            let (_, l) = class_at(s, k);
            let mut j = run_end(s, k + l, 0);
            while j < n && (s[j] == b'\r' || s[j] == b'\n') {
                j += 1;
            }
            emit(&s[i..j]);
            i = j;
            continue;
        }
        // A space character: `\s*[\r\n]+`, else `\s+(?!\S)`, else `\s+`.
        let mut j = j0;
        let mut last_crlf = if b == b'\r' || b == b'\n' { Some(i) } else { None };
        while j < n {
            let (c, l) = class_at(s, j);
            if c != CLS_SPACE {
                break;
            }
            if s[j] == b'\r' || s[j] == b'\n' {
                last_crlf = Some(j);
            }
            j += l;
        }
        let end = match last_crlf {
            Some(k) => k + 1,
            None => space_run(s, i, j0),
        };
        emit(&s[i..end]);
        i = end;
    }
}

/// `Whitespace`: the matches of `\w+|[^\w\s]+` (whitespace dropped).
fn whitespace(s: &[u8], mut emit: impl FnMut(&[u8])) {
    let n = s.len();
    let mut i = 0;
    while i < n {
        let (f, len) = flags_at(s, i);
        if f & CLS_MASK == CLS_SPACE && f & WORD_FLAG == 0 {
            i += len;
            continue;
        }
        let word = f & WORD_FLAG != 0;
        let mut j = i + len;
        while j < n {
            let (g, l) = flags_at(s, j);
            let same = if word { g & WORD_FLAG != 0 } else { g & WORD_FLAG == 0 && g & CLS_MASK != CLS_SPACE };
            if !same {
                break;
            }
            j += l;
        }
        emit(&s[i..j]);
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use tokenizers::pre_tokenizers::PreTokenizerWrapper;
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _};

    use super::*;

    /// Adversarial strings: every class boundary the patterns care about, in many orders.
    fn strings() -> Vec<String> {
        let pieces = [
            " ",
            "  ",
            "\t",
            "\n",
            "\r\n",
            "\r",
            " \n",
            "\n ",
            "\u{a0}",
            "\u{3000}",
            "\u{2028}",
            "\u{b}",
            "'",
            "'s",
            "'S",
            "'Re",
            "'LL",
            "'ſ",
            "’s",
            "a",
            "Ab",
            "éé",
            "日本",
            "x",
            "1",
            "12",
            "1234567",
            "٣٤",
            "½",
            "!",
            "...",
            "?!\n",
            ".\r\n\r\n",
            "🙂",
            "👨\u{200d}👩",
            "\u{301}",
            "_",
            "▁",
            "▁▁",
            "ab1",
            "\u{0}",
            "\u{1b}",
        ];
        let mut out: Vec<String> = pieces.iter().map(|s| s.to_string()).collect();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..4000 {
            let mut s = String::new();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = 1 + (state % 12) as usize;
            for k in 0..len {
                let r = state.rotate_left(k as u32 * 5) as usize;
                s.push_str(pieces[r % pieces.len()]);
            }
            out.push(s);
        }
        out
    }

    fn reference(pre: &PreTokenizerWrapper, text: &str) -> Vec<String> {
        let mut p: PreTokenizedString = text.into();
        pre.pre_tokenize(&mut p).unwrap();
        p.get_splits(OffsetReferential::Normalized, OffsetType::Byte)
            .into_iter()
            .map(|(s, _, _)| s.to_string())
            .collect()
    }

    fn ours(pre: &PreTokenizer, text: &str) -> Vec<String> {
        let mut words = Vec::new();
        pre.run(text, true, &mut |w| words.push(w.to_string()));
        words
    }

    fn check(json: serde_json::Value) {
        let theirs: PreTokenizerWrapper = serde_json::from_value(json.clone()).unwrap();
        let mine = PreTokenizer::from_json(&json).unwrap_or_else(|| panic!("unsupported: {json}"));
        for text in strings() {
            assert_eq!(ours(&mine, &text), reference(&theirs, &text), "{json} on {text:?}");
        }
    }

    #[test]
    fn patterns_split_as_fancy_regex_does() {
        for pattern in [GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN] {
            check(serde_json::json!({"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
                                     "invert": false}));
        }
    }

    #[test]
    fn other_pre_tokenizers_split_as_tokenizers_does() {
        for behavior in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"] {
            check(serde_json::json!({"type": "Punctuation", "behavior": behavior}));
        }
        check(serde_json::json!({"type": "Whitespace"}));
        check(serde_json::json!({"type": "WhitespaceSplit"}));
        check(serde_json::json!({"type": "BertPreTokenizer"}));
        check(serde_json::json!({"type": "Digits", "individual_digits": true}));
        check(serde_json::json!({"type": "Digits", "individual_digits": false}));
        for scheme in ["always", "first", "never"] {
            for split in [true, false] {
                check(serde_json::json!({"type": "Metaspace", "replacement": "▁", "prepend_scheme": scheme,
                                         "split": split}));
            }
        }
    }
}
