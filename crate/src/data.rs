//! Data shipped inside saekit so the quickstart runs offline on a fresh machine: a small public-domain
//! corpus (Jane Austen's six novels and the King James Bible, one document per chapter) and the GPT-2
//! tokenizer's vocabulary and merges. Provenance and licences are in the repository's NOTICE file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Jane Austen's six novels, one JSON object per chapter (`text`, `source`, `title`, `chapter`), zstd.
pub const AUSTEN_JSONL_ZST: &[u8] = include_bytes!("../data/corpus/austen.jsonl.zst");
/// The King James Bible, one JSON object per chapter (`text`, `source`, `title`, `chapter`), gzip.
pub const KJV_JSONL_GZ: &[u8] = include_bytes!("../data/corpus/kjv.jsonl.gz");
/// GPT-2's byte-level BPE vocabulary (50,257 entries), MIT, from OpenAI.
pub const GPT2_VOCAB_JSON: &[u8] = include_bytes!("../data/gpt2/vocab.json");
/// GPT-2's 50,000 BPE merges, MIT, from OpenAI.
pub const GPT2_MERGES_TXT: &[u8] = include_bytes!("../data/gpt2/merges.txt");

/// The embedded corpus files: (file name, bytes).
pub const CORPUS: &[(&str, &[u8])] = &[("austen.jsonl.zst", AUSTEN_JSONL_ZST), ("kjv.jsonl.gz", KJV_JSONL_GZ)];

/// Writes the embedded corpus into `dir` (files already there with the right size are kept) and returns
/// their paths. Each file is written under a temporary name and renamed when complete.
pub fn write_corpus(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    CORPUS
        .iter()
        .map(|(name, bytes)| {
            let path = dir.join(name);
            if std::fs::metadata(&path).map(|m| m.len() == bytes.len() as u64).unwrap_or(false) {
                return Ok(path);
            }
            crate::files::write_atomically(&path, bytes)?;
            Ok(path)
        })
        .collect()
}
