//! Normalizers of HF `tokenizer.json` files, as plain string transforms (saekit's fast encoders need the
//! normalized text, never its alignments). Each reproduces the `tokenizers` crate's normalizer of the same
//! name exactly, with the same Unicode tables (`unicode-normalization-alignments`, `unicode_categories`,
//! the standard library's `char` methods); ASCII text skips the Unicode work wherever the result is the
//! same.

use serde_json::Value;
use unicode_normalization_alignments::UnicodeNormalization;

use super::bpe::decode_multibyte;
use super::charprops::{
    BERT_CONTROL, CHINESE, COMBINING, LOWER_SAME, MARK_NONSPACING, STABLE_NFC, STABLE_NFD, STABLE_NFKC, STABLE_NFKD,
    WHITESPACE, flags,
};

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

    /// Normalizing a text equals normalizing its chunks between ASCII spaces alone, as far as a
    /// pre-tokenizer that drops whitespace can tell: every step maps characters one by one (the normal
    /// forms compose and reorder only between stable characters, as ' ' is), leaves ' ' as it is, and
    /// `Strip` (which only removes whitespace from the ends) comes last.
    pub(crate) fn chunk_local(&self) -> bool {
        let n = self.steps.len();
        self.steps.iter().enumerate().all(|(k, step)| match step {
            Norm::Nfc | Norm::Nfd | Norm::Nfkc | Norm::Nfkd | Norm::Lowercase | Norm::StripAccents => true,
            Norm::Bert { .. } => true,
            Norm::Strip { .. } => k + 1 == n,
            Norm::Replace { .. } | Norm::Prepend(_) => false,
        })
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
            let stable = match step {
                Norm::Nfc => STABLE_NFC,
                Norm::Nfd => STABLE_NFD,
                Norm::Nfkc => STABLE_NFKC,
                _ => STABLE_NFKD,
            };
            let mut changed = false;
            by_stable(s, stable, |seg, dirty| {
                if !dirty {
                    scratch.push_str(seg);
                    return;
                }
                changed = true;
                match step {
                    Norm::Nfc => scratch.extend(seg.nfc().map(|(c, _)| c)),
                    Norm::Nfd => scratch.extend(seg.nfd().map(|(c, _)| c)),
                    Norm::Nfkc => scratch.extend(seg.nfkc().map(|(c, _)| c)),
                    _ => scratch.extend(seg.nfkd().map(|(c, _)| c)),
                }
            });
            changed
        }
        Norm::Lowercase => {
            if s.is_ascii() {
                s.make_ascii_lowercase();
                return false;
            }
            if s.chars().all(|c| if c.is_ascii() { !c.is_ascii_uppercase() } else { flags(c) & LOWER_SAME != 0 }) {
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
            scratch.extend(s.chars().filter(|&c| c.is_ascii() || flags(c) & COMBINING == 0));
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
        push_lowercase(c, out);
    }
}

#[inline]
fn push_lowercase(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
    } else if flags(c) & LOWER_SAME != 0 {
        out.push(c);
    } else {
        out.extend(c.to_lowercase());
    }
}

/// Calls `emit` with consecutive pieces of `s`, `dirty` or not: a clean piece is a run of characters
/// each stable for the normal form (`stable`, a flag of [`super::charprops`]), so already normalized; a
/// dirty one runs from the stable character before a character that is not (it may compose with what
/// follows) to the next stable one. Normalizing each piece alone equals normalizing `s` whole: nothing
/// reorders or composes across a stable character.
fn by_stable(s: &str, stable: u16, mut emit: impl FnMut(&str, bool)) {
    let b = s.as_bytes();
    let n = b.len();
    // `s[..done]` has been emitted; `cut` is the start of the last stable character seen (or `done`).
    let (mut done, mut cut, mut i) = (0, 0, 0);
    while i < n {
        if b[i] < 0x80 {
            cut = i;
            i += 1;
            continue;
        }
        let (cp, len) = decode_multibyte(b, i);
        let c = char::from_u32(cp).expect("valid UTF-8");
        if flags(c) & stable != 0 {
            cut = i;
            i += len;
            continue;
        }
        let mut end = i + len;
        while end < n {
            if b[end] < 0x80 {
                break;
            }
            let (cp, len) = decode_multibyte(b, end);
            if flags(char::from_u32(cp).expect("valid UTF-8")) & stable != 0 {
                break;
            }
            end += len;
        }
        if done < cut {
            emit(&s[done..cut], false);
        }
        emit(&s[cut..end], true);
        (done, cut, i) = (end, end, end);
    }
    if done < n {
        emit(&s[done..], false);
    }
}

/// `BertNormalizer`: clean text, pad CJK ideographs with spaces, strip accents (NFD, then drop `Mn`),
/// lowercase — in that order, as `tokenizers` applies them.
fn bert(s: &str, out: &mut String, clean: bool, chinese: bool, strip_accents: bool, lowercase: bool) {
    // Clean text and pad CJK ideographs: character by character.
    let cleaned = |c: char, f: u16, stage: &mut String| {
        if clean {
            if c == '\0' || c == '\u{fffd}' || f & BERT_CONTROL != 0 {
                return;
            }
            if matches!(c, '\t' | '\n' | '\r') || f & WHITESPACE != 0 {
                stage.push(' ');
                return;
            }
        }
        if chinese && f & CHINESE != 0 {
            stage.push(' ');
            stage.push(c);
            stage.push(' ');
        } else {
            stage.push(c);
        }
    };
    if s.is_ascii() {
        out.reserve(s.len());
        for c in s.chars() {
            let start = out.len();
            cleaned(c, flags(c), out);
            if lowercase {
                out[start..].make_ascii_lowercase();
            }
        }
        return;
    }
    let mut stage = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        cleaned(c, flags(c), &mut stage);
    }
    let push = |c: char, out: &mut String| if lowercase { push_lowercase(c, out) } else { out.push(c) };
    if !strip_accents {
        stage.chars().for_each(|c| push(c, out));
        return;
    }
    let kept = |c: &char| c.is_ascii() || flags(*c) & MARK_NONSPACING == 0;
    by_stable(&stage, STABLE_NFD, |seg, dirty| {
        if dirty {
            seg.nfd().map(|(c, _)| c).filter(kept).for_each(|c| push(c, out));
        } else {
            seg.chars().filter(kept).for_each(|c| push(c, out));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_equal_whole_normalization() {
        let texts = [
            "e\u{301}tude caf\u{e9} ﬁ\u{301} ① Ⅻ ｆｕｌｌ 가\u{11a8} a\u{323}\u{307}x",
            "x\u{307}\u{323} \u{1e0b}\u{323} Å Ω ﬀ ㍿ ½",
            "plain ascii",
            "\u{301}leading mark",
            "日本語\u{301}한국어\u{1100}\u{1161}\u{11a8}ଇ\u{b47}\u{b3e}\u{b57}é\u{a0}",
            "\u{fb01}\u{fb01}\u{300}\u{316}\u{301}\u{a0}\u{a0}",
        ];
        type Form = fn(&str) -> String;
        let forms: [(u16, Form); 4] = [
            (STABLE_NFC, |s| s.nfc().map(|(c, _)| c).collect()),
            (STABLE_NFD, |s| s.nfd().map(|(c, _)| c).collect()),
            (STABLE_NFKC, |s| s.nfkc().map(|(c, _)| c).collect()),
            (STABLE_NFKD, |s| s.nfkd().map(|(c, _)| c).collect()),
        ];
        for t in texts {
            for (stable, form) in forms {
                let mut out = String::new();
                by_stable(t, stable, |seg, dirty| out.push_str(&if dirty { form(seg) } else { seg.to_string() }));
                assert_eq!(out, form(t), "{t:?}");
            }
        }
    }
}
