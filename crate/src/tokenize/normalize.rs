//! Normalizers of HF `tokenizer.json` files, as plain string transforms (saekit's fast encoders need the
//! normalized text, never its alignments). Each reproduces the `tokenizers` crate's normalizer of the same
//! name exactly, with the same Unicode tables (`unicode-normalization-alignments`, `unicode_categories`,
//! the standard library's `char` methods); ASCII text skips the Unicode work wherever the result is the
//! same.

use serde_json::Value;
use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::UnicodeNormalization;

/// One normalization step.
#[derive(Debug, Clone)]
pub(crate) enum Norm {
    Nfc,
    Nfd,
    Nfkc,
    Nfkd,
    Lowercase,
    /// `Replace` with a plain string pattern.
    Replace {
        pattern: String,
        content: String,
    },
    /// Prepends to a non-empty string.
    Prepend(String),
    Strip {
        left: bool,
        right: bool,
    },
    StripAccents,
    Bert {
        clean_text: bool,
        chinese_chars: bool,
        strip_accents: bool,
        lowercase: bool,
    },
}

/// A normalizer: its steps, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Normalizer {
    steps: Vec<Norm>,
}

impl Normalizer {
    /// The normalizer of a serialized `tokenizers` normalizer (`null`: none), or `None` when a step is not
    /// one saekit reproduces.
    pub(crate) fn from_json(value: &Value) -> Option<Normalizer> {
        let mut steps = Vec::new();
        if !value.is_null() {
            push_steps(value, &mut steps)?;
        }
        Some(Normalizer { steps })
    }

    pub(crate) fn is_identity(&self) -> bool {
        self.steps.is_empty()
    }

    /// Writes the normalized `s` into `out` (cleared first).
    pub(crate) fn normalize(&self, s: &str, out: &mut String) {
        out.clear();
        out.push_str(s);
        let mut scratch = String::new();
        for step in &self.steps {
            if apply(step, out, &mut scratch) {
                std::mem::swap(out, &mut scratch);
            }
        }
    }
}

fn push_steps(value: &Value, steps: &mut Vec<Norm>) -> Option<()> {
    let flag = |key: &str, default: bool| value.get(key).and_then(Value::as_bool).unwrap_or(default);
    let step = match value.get("type")?.as_str()? {
        "Sequence" => {
            for v in value.get("normalizers")?.as_array()? {
                push_steps(v, steps)?;
            }
            return Some(());
        }
        "NFC" => Norm::Nfc,
        "NFD" => Norm::Nfd,
        "NFKC" => Norm::Nfkc,
        "NFKD" => Norm::Nfkd,
        "Lowercase" => Norm::Lowercase,
        "Replace" => {
            let pattern = value.get("pattern")?.get("String")?.as_str()?.to_string();
            Norm::Replace { pattern, content: value.get("content")?.as_str()?.to_string() }
        }
        "Prepend" => Norm::Prepend(value.get("prepend")?.as_str()?.to_string()),
        "Strip" => Norm::Strip { left: flag("strip_left", true), right: flag("strip_right", true) },
        "StripAccents" => Norm::StripAccents,
        "BertNormalizer" => {
            let lowercase = flag("lowercase", true);
            Norm::Bert {
                clean_text: flag("clean_text", true),
                chinese_chars: flag("handle_chinese_chars", true),
                strip_accents: value.get("strip_accents").and_then(Value::as_bool).unwrap_or(lowercase),
                lowercase,
            }
        }
        _ => return None,
    };
    steps.push(step);
    Some(())
}

/// Applies one step to `s`: in place (returns false) or into `scratch` (returns true).
fn apply(step: &Norm, s: &mut String, scratch: &mut String) -> bool {
    scratch.clear();
    match step {
        Norm::Nfc | Norm::Nfd | Norm::Nfkc | Norm::Nfkd => {
            if s.is_ascii() {
                return false;
            }
            by_segments(s, scratch, |seg, out| match step {
                Norm::Nfc => out.extend(seg.nfc().map(|(c, _)| c)),
                Norm::Nfd => out.extend(seg.nfd().map(|(c, _)| c)),
                Norm::Nfkc => out.extend(seg.nfkc().map(|(c, _)| c)),
                _ => out.extend(seg.nfkd().map(|(c, _)| c)),
            });
            true
        }
        Norm::Lowercase => {
            if s.is_ascii() {
                s.make_ascii_lowercase();
                return false;
            }
            lowercase_into(s, scratch);
            true
        }
        Norm::Replace { pattern, content } => {
            if pattern.is_empty() || !s.contains(pattern.as_str()) {
                return false;
            }
            *scratch = s.replace(pattern.as_str(), content);
            true
        }
        Norm::Prepend(p) => {
            if s.is_empty() {
                return false;
            }
            s.insert_str(0, p);
            false
        }
        Norm::Strip { left, right } => {
            let mut t: &str = s;
            if *left {
                t = t.trim_start_matches(char::is_whitespace);
            }
            if *right {
                t = t.trim_end_matches(char::is_whitespace);
            }
            if t.len() == s.len() {
                return false;
            }
            scratch.push_str(t);
            true
        }
        Norm::StripAccents => {
            if s.is_ascii() {
                return false;
            }
            scratch.extend(s.chars().filter(|&c| !unicode_normalization_alignments::char::is_combining_mark(c)));
            true
        }
        Norm::Bert { clean_text, chinese_chars, strip_accents, lowercase } => {
            bert(s, scratch, *clean_text, *chinese_chars, *strip_accents, *lowercase);
            true
        }
    }
}

/// Per-character lowercasing as `NormalizedString::lowercase` does it (`char::to_lowercase`, so no
/// final-sigma rule, unlike `str::to_lowercase`).
fn lowercase_into(s: &str, out: &mut String) {
    for c in s.chars() {
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

/// Normalizes `s` segment by segment: ASCII characters are copied, and each run of non-ASCII characters,
/// with the ASCII character just before it (it may compose with a following mark), goes through `f`.
/// Composition and canonical reordering never cross a boundary before an ASCII character (a starter
/// that is never the second of a composition pair), so this equals normalizing `s` whole.
fn by_segments(s: &str, out: &mut String, mut f: impl FnMut(&str, &mut String)) {
    let b = s.as_bytes();
    let n = b.len();
    let mut i = 0;
    while i < n {
        // ASCII up to the byte before the next non-ASCII one.
        let mut j = i;
        while j < n && b[j] < 0x80 {
            j += 1;
        }
        if j == n {
            out.push_str(&s[i..]);
            return;
        }
        let seg_start = if j > i { j - 1 } else { j };
        out.push_str(&s[i..seg_start]);
        let mut k = j;
        while k < n && b[k] >= 0x80 {
            k += 1;
        }
        f(&s[seg_start..k], out);
        i = k;
    }
}

fn bert_is_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn bert_is_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && c.is_other()
}

pub(crate) fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// `BertNormalizer`: clean text, pad CJK ideographs with spaces, strip accents (NFD, then drop `Mn`),
/// lowercase — in that order, as `tokenizers` applies them.
fn bert(s: &str, out: &mut String, clean: bool, chinese: bool, strip_accents: bool, lowercase: bool) {
    if s.is_ascii() {
        out.reserve(s.len());
        for &b in s.as_bytes() {
            let c = b as char;
            if clean {
                if b == 0 || bert_is_control(c) {
                    continue;
                }
                if bert_is_whitespace(c) {
                    out.push(' ');
                    continue;
                }
            }
            out.push(if lowercase { c.to_ascii_lowercase() } else { c });
        }
        return;
    }
    let mut stage = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if clean {
            if c == '\0' || c == '\u{fffd}' || bert_is_control(c) {
                continue;
            }
            if bert_is_whitespace(c) {
                stage.push(' ');
                continue;
            }
        }
        if chinese && is_chinese_char(c) {
            stage.push(' ');
            stage.push(c);
            stage.push(' ');
        } else {
            stage.push(c);
        }
    }
    let stripped;
    let text: &str = if strip_accents {
        let mut t = String::with_capacity(stage.len());
        by_segments(&stage, &mut t, |seg, out| {
            out.extend(seg.nfd().map(|(c, _)| c).filter(|c| !c.is_mark_nonspacing()))
        });
        stripped = t;
        &stripped
    } else {
        &stage
    };
    if lowercase {
        lowercase_into(text, out);
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_equal_whole_normalization() {
        let texts = [
            "e\u{301}tude caf\u{e9} ﬁ\u{301} ① Ⅻ ｆｕｌｌ 가\u{11a8} a\u{323}\u{307}x",
            "x\u{307}\u{323} \u{1e0b}\u{323} Å Ω ﬀ ㍿ ½",
            "plain ascii",
            "\u{301}leading mark",
        ];
        for t in texts {
            let mut out = String::new();
            by_segments(t, &mut out, |seg, o| o.extend(seg.nfkc().map(|(c, _)| c)));
            assert_eq!(out, t.nfkc().map(|(c, _)| c).collect::<String>(), "{t:?}");
            out.clear();
            by_segments(t, &mut out, |seg, o| o.extend(seg.nfd().map(|(c, _)| c)));
            assert_eq!(out, t.nfd().map(|(c, _)| c).collect::<String>(), "{t:?}");
        }
    }
}
