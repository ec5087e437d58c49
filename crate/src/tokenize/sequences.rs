//! From one document's tokens to training sequences: overlapping windows over long documents, or packing
//! documents end to end into fixed-size sequences with explicit boundaries.

/// The windows of `tokens`: one window if it fits in `max_length`, else windows starting every `stride`
/// tokens, the last one ending at the document's end.
pub fn windows(tokens: &[u32], max_length: usize, stride: usize) -> Vec<&[u32]> {
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + max_length).min(tokens.len());
        out.push(&tokens[start..end]);
        if end >= tokens.len() {
            return out;
        }
        start += stride;
    }
}

/// Packs documents into sequences of exactly `length` tokens: each document followed by the separator
/// (if any), each sequence starting with BOS (if set).
#[derive(Debug)]
pub struct Packer {
    length: usize,
    bos: Option<u32>,
    separator: Option<u32>,
    current: Vec<u32>,
}

impl Packer {
    pub fn new(length: usize, bos: Option<u32>, separator: Option<u32>) -> Packer {
        let mut packer = Packer { length, bos, separator, current: Vec::with_capacity(length) };
        packer.start_sequence();
        packer
    }

    fn start_sequence(&mut self) {
        self.current.clear();
        self.current.extend(self.bos);
    }

    /// Adds a document; `emit` gets every sequence it completes.
    pub fn push(&mut self, tokens: &[u32], mut emit: impl FnMut(&[u32])) {
        let separator = self.separator;
        for &token in tokens.iter().chain(separator.as_ref()) {
            self.current.push(token);
            if self.current.len() == self.length {
                emit(&self.current);
                self.start_sequence();
            }
        }
    }

    /// The last, incomplete sequence (without a lone BOS), if any.
    pub fn remainder(&self) -> Option<&[u32]> {
        let content = self.current.len() - usize::from(self.bos.is_some());
        (content > 0).then_some(&self.current[..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_documents_are_one_window() {
        assert_eq!(windows(&[1, 2, 3], 4, 2), vec![&[1, 2, 3][..]]);
        assert_eq!(windows(&[1, 2, 3, 4], 4, 2), vec![&[1, 2, 3, 4][..]]);
        let empty: &[u32] = &[];
        assert_eq!(windows(empty, 4, 2), vec![empty]);
    }

    #[test]
    fn long_documents_are_overlapping_windows_ending_at_the_end() {
        let doc: Vec<u32> = (0..10).collect();
        assert_eq!(windows(&doc, 4, 2), vec![&doc[0..4], &doc[2..6], &doc[4..8], &doc[6..10]]);
        assert_eq!(windows(&doc, 4, 4), vec![&doc[0..4], &doc[4..8], &doc[8..10]]);
        assert_eq!(windows(&doc, 4, 3), vec![&doc[0..4], &doc[3..7], &doc[6..10]]);
    }

    #[test]
    fn packing_separates_documents_and_starts_with_bos() {
        let mut out = Vec::new();
        let mut packer = Packer::new(5, Some(0), Some(9));
        packer.push(&[1, 2, 3], |s| out.push(s.to_vec()));
        packer.push(&[4, 5, 6, 7, 8], |s| out.push(s.to_vec()));
        assert_eq!(
            out,
            vec![vec![0, 1, 2, 3, 9], vec![0, 4, 5, 6, 7], vec![0, 8, 9]].into_iter().take(2).collect::<Vec<_>>()
        );
        assert_eq!(packer.remainder(), Some(&[0, 8, 9][..]));
    }

    #[test]
    fn packing_without_bos_fills_every_slot() {
        let mut out = Vec::new();
        let mut packer = Packer::new(3, None, Some(9));
        packer.push(&[1, 2], |s| out.push(s.to_vec()));
        packer.push(&[3], |s| out.push(s.to_vec()));
        assert_eq!(out, vec![vec![1, 2, 9]]);
        assert_eq!(packer.remainder(), Some(&[3, 9][..]));
        let empty = Packer::new(3, Some(0), None);
        assert_eq!(empty.remainder(), None);
    }
}
