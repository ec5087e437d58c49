//! The per-character questions the normalizers and pre-tokenizers ask (is it whitespace, punctuation, a
//! BERT control character, a nonspacing mark, does lowercasing or normalization leave it alone), answered
//! from one table instead of a binary search per question. Each flag is computed from the very function
//! that answered before (the standard library's `char` methods, `unicode_categories`,
//! `unicode-normalization-alignments`), so the answers are the same; blocks of 256 code points are
//! computed the first time one of their characters is asked about.

use std::sync::{LazyLock, OnceLock};

use unicode_categories::UnicodeCategories;
use unicode_normalization_alignments::char::{canonical_combining_class, is_combining_mark};
use unicode_normalization_alignments::{IsNormalized, is_nfc_quick, is_nfd_quick, is_nfkc_quick, is_nfkd_quick};

/// `char::is_whitespace`.
pub(crate) const WHITESPACE: u16 = 1;
/// `BertNormalizer`'s control characters: `is_other()`, except `\t`, `\n`, `\r`.
pub(crate) const BERT_CONTROL: u16 = 1 << 1;
/// The `Punctuation` and `BertPreTokenizer` punctuation: ASCII punctuation or a Unicode `P*` category.
pub(crate) const PUNCTUATION: u16 = 1 << 2;
/// `is_mark_nonspacing` (`Mn`), what `BertNormalizer` strips after NFD.
pub(crate) const MARK_NONSPACING: u16 = 1 << 3;
/// `is_combining_mark`, what `StripAccents` strips.
pub(crate) const COMBINING: u16 = 1 << 4;
/// `char::is_numeric` (the `Digits` pre-tokenizer).
pub(crate) const NUMERIC: u16 = 1 << 5;
/// `char::to_lowercase` gives the character itself.
pub(crate) const LOWER_SAME: u16 = 1 << 6;
/// A CJK ideograph `BertNormalizer` pads with spaces.
pub(crate) const CHINESE: u16 = 1 << 7;
/// Normalization stable (combining class 0 and quick check "yes"): the character is its own normal form
/// and nothing before it interacts with anything after it, so a text may be normalized piecewise, cut
/// before such characters.
pub(crate) const STABLE_NFC: u16 = 1 << 8;
pub(crate) const STABLE_NFD: u16 = 1 << 9;
pub(crate) const STABLE_NFKC: u16 = 1 << 10;
pub(crate) const STABLE_NFKD: u16 = 1 << 11;

const BLOCKS: usize = 0x11_0000 >> 8;

static TABLE: LazyLock<Vec<OnceLock<Box<[u16; 256]>>>> =
    LazyLock::new(|| (0..BLOCKS).map(|_| OnceLock::new()).collect());

/// The flags of `c`.
#[inline]
pub(crate) fn flags(c: char) -> u16 {
    let cp = c as u32;
    TABLE[(cp >> 8) as usize].get_or_init(|| block(cp >> 8))[(cp & 0xFF) as usize]
}

fn block(b: u32) -> Box<[u16; 256]> {
    let mut out = Box::new([0u16; 256]);
    for (k, slot) in out.iter_mut().enumerate() {
        if let Some(c) = char::from_u32((b << 8) | k as u32) {
            *slot = compute(c);
        }
    }
    out
}

pub(crate) fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

fn compute(c: char) -> u16 {
    let mut f = 0;
    let mut set = |flag: u16, yes: bool| {
        if yes {
            f |= flag;
        }
    };
    set(WHITESPACE, c.is_whitespace());
    set(BERT_CONTROL, !matches!(c, '\t' | '\n' | '\r') && c.is_other());
    set(PUNCTUATION, c.is_ascii_punctuation() || c.is_punctuation());
    set(MARK_NONSPACING, c.is_mark_nonspacing());
    set(COMBINING, is_combining_mark(c));
    set(NUMERIC, c.is_numeric());
    let mut lower = c.to_lowercase();
    set(LOWER_SAME, lower.next() == Some(c) && lower.next().is_none());
    set(CHINESE, is_chinese_char(c));
    let starter = canonical_combining_class(c) == 0;
    let one = || std::iter::once(c);
    set(STABLE_NFC, starter && is_nfc_quick(one()) == IsNormalized::Yes);
    set(STABLE_NFD, starter && is_nfd_quick(one()) == IsNormalized::Yes);
    set(STABLE_NFKC, starter && is_nfkc_quick(one()) == IsNormalized::Yes);
    set(STABLE_NFKD, starter && is_nfkd_quick(one()) == IsNormalized::Yes);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_of_a_few_characters() {
        assert_eq!(flags('a') & (LOWER_SAME | STABLE_NFC | PUNCTUATION), LOWER_SAME | STABLE_NFC);
        assert_ne!(flags('\u{a0}') & WHITESPACE, 0);
        assert_eq!(flags('\u{a0}') & STABLE_NFKC, 0);
        assert_ne!(flags('«') & PUNCTUATION, 0);
        assert_eq!(flags('$') & PUNCTUATION, PUNCTUATION);
        assert_eq!(flags('\u{301}') & (MARK_NONSPACING | STABLE_NFC), MARK_NONSPACING);
        assert_eq!(flags('É') & LOWER_SAME, 0);
        assert_ne!(flags('\u{200b}') & BERT_CONTROL, 0);
        assert_eq!(flags('\t') & BERT_CONTROL, 0);
        assert_ne!(flags('日') & CHINESE, 0);
        assert_eq!(flags('ﬁ') & (STABLE_NFC | STABLE_NFKC), STABLE_NFC);
    }
}
