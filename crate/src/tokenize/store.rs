//! The token store: what tokenization writes and SAE training reads. A directory of three files:
//!
//! - `tokens.bin`: every sequence's token ids, concatenated, little-endian `u16` when the vocabulary has
//!   at most 65,536 tokens, else `u32`;
//! - `offsets.bin`: `num_sequences + 1` little-endian `u64`; sequence `i` is `offsets[i]..offsets[i + 1]`;
//! - `store.json`: the [`StoreMeta`], written last, so a store without it is one whose writer never finished.
//!
//! [`TokenStoreWriter`] writes a store (normally inside an artifact writer's work directory);
//! [`TokenStore`] memory-maps one for random access, and exports it to NumPy and Parquet.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{ArrayRef, Int32Array, ListArray, RecordBatch};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema};
use memmap2::Mmap;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::display::{Card, MimeBundle, Render, bytes};
use crate::error::{Error, Result, count};

/// The token ids, concatenated.
pub const TOKENS_FILE: &str = "tokens.bin";
/// The `num_sequences + 1` sequence boundaries.
pub const OFFSETS_FILE: &str = "offsets.bin";
/// The store's description, written last.
pub const META_FILE: &str = "store.json";
/// The `format` field of `store.json`.
pub const FORMAT: &str = "saekit-token-store";
/// The store format version this saekit writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Sequences per row group in [`TokenStore::to_parquet`].
pub const PARQUET_ROWS_PER_GROUP: usize = 10_000;

/// Tokens per Arrow batch handed to the Parquet writer, so long sequences do not balloon a batch.
const PARQUET_TOKENS_PER_BATCH: usize = 1 << 24;

/// How token ids are stored in `tokens.bin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    Uint16,
    Uint32,
}

impl TokenDtype {
    /// The narrowest type that holds every id of a vocabulary of `vocab_size` tokens.
    pub fn for_vocab(vocab_size: u64) -> TokenDtype {
        if vocab_size <= 1 << 16 { TokenDtype::Uint16 } else { TokenDtype::Uint32 }
    }

    /// Bytes per token.
    pub fn width(self) -> usize {
        match self {
            TokenDtype::Uint16 => 2,
            TokenDtype::Uint32 => 4,
        }
    }

    /// The name used in `store.json` (and by NumPy).
    pub fn as_str(self) -> &'static str {
        match self {
            TokenDtype::Uint16 => "uint16",
            TokenDtype::Uint32 => "uint32",
        }
    }

    /// The NumPy type descriptor: little-endian unsigned.
    pub fn npy_descr(self) -> &'static str {
        match self {
            TokenDtype::Uint16 => "<u2",
            TokenDtype::Uint32 => "<u4",
        }
    }
}

impl std::fmt::Display for TokenDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The contents of `store.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`FORMAT_VERSION`] for stores this saekit writes.
    pub version: u32,
    pub dtype: TokenDtype,
    pub vocab_size: u64,
    pub num_sequences: u64,
    pub num_tokens: u64,
    pub max_sequence_length: u64,
}

impl StoreMeta {
    /// Mean tokens per sequence (0 for an empty store).
    pub fn mean_sequence_length(&self) -> f64 {
        if self.num_sequences == 0 { 0.0 } else { self.num_tokens as f64 / self.num_sequences as f64 }
    }

    /// Whether there are sequences and all have the same length: then the store is a matrix.
    pub fn is_rectangular(&self) -> bool {
        self.num_sequences > 0 && self.max_sequence_length.checked_mul(self.num_sequences) == Some(self.num_tokens)
    }

    /// Checks the fields that do not depend on the other files.
    fn check(&self, path: &Path) -> Result<()> {
        if self.format != FORMAT {
            return Err(Error::format(path, format!("format is {:?}, expected {FORMAT:?}", self.format)));
        }
        if self.version != FORMAT_VERSION {
            let hint = if self.version > FORMAT_VERSION { "; upgrade saekit" } else { "" };
            return Err(Error::format(
                path,
                format!("token store version {}, but this saekit reads version {FORMAT_VERSION}{hint}", self.version),
            ));
        }
        if self.vocab_size == 0 || self.vocab_size > 1 << 32 {
            return Err(Error::format(path, format!("vocab_size {} is not between 1 and 2^32", self.vocab_size)));
        }
        if self.dtype == TokenDtype::Uint16 && self.vocab_size > 1 << 16 {
            return Err(Error::format(
                path,
                format!("dtype uint16 cannot hold the ids of a vocabulary of {} tokens", self.vocab_size),
            ));
        }
        Ok(())
    }
}

/// Writes a token store into a directory, one sequence at a time. Tokens stream to `tokens.bin` through
/// a buffer; only the offsets (8 bytes a sequence) are kept in memory until [`finish`](Self::finish).
/// Dropped without finishing, it leaves a directory without `store.json`, which [`TokenStore::open`]
/// refuses.
#[derive(Debug)]
pub struct TokenStoreWriter {
    dir: PathBuf,
    dtype: TokenDtype,
    vocab_size: u64,
    tokens: BufWriter<File>,
    offsets: Vec<u64>,
    max_len: u64,
    scratch: Vec<u8>,
}

impl TokenStoreWriter {
    /// Starts a store in `dir` (created if missing) for token ids below `vocab_size`. Fails if `dir`
    /// already holds a `tokens.bin`.
    pub fn create(dir: &Path, vocab_size: usize) -> Result<Self> {
        let vocab = vocab_size as u64;
        if vocab == 0 || vocab > 1 << 32 {
            return Err(Error::InvalidArgument(format!(
                "token store {}: vocab_size {vocab_size} is not between 1 and 2^32",
                dir.display()
            )));
        }
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(TOKENS_FILE);
        let file = OpenOptions::new().write(true).create_new(true).open(&path).map_err(|e| Error::io(&path, e))?;
        Ok(TokenStoreWriter {
            dir: dir.to_path_buf(),
            dtype: TokenDtype::for_vocab(vocab),
            vocab_size: vocab,
            tokens: BufWriter::with_capacity(1 << 20, file),
            offsets: vec![0],
            max_len: 0,
            scratch: Vec::new(),
        })
    }

    /// The directory being written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn dtype(&self) -> TokenDtype {
        self.dtype
    }

    /// Appends one sequence (empty ones included). A token id outside the vocabulary is an error naming
    /// the sequence and the id; nothing of that sequence is written, and the writer stays usable.
    pub fn push(&mut self, sequence: &[u32]) -> Result<()> {
        if let Some((position, &id)) = sequence.iter().enumerate().find(|&(_, &id)| u64::from(id) >= self.vocab_size) {
            return Err(Error::InvalidArgument(format!(
                "token store {}: sequence {} has token id {id} at position {position}, \
                 outside the vocabulary (vocab_size {})",
                self.dir.display(),
                self.num_sequences(),
                self.vocab_size
            )));
        }
        self.scratch.clear();
        match self.dtype {
            // Every id is below vocab_size <= 65,536 here, so the cast is exact.
            TokenDtype::Uint16 => sequence.iter().for_each(|&id| self.scratch.extend((id as u16).to_le_bytes())),
            TokenDtype::Uint32 => sequence.iter().for_each(|&id| self.scratch.extend(id.to_le_bytes())),
        }
        let path = self.dir.join(TOKENS_FILE);
        self.tokens.write_all(&self.scratch).map_err(|e| Error::io(&path, e))?;
        let len = sequence.len() as u64;
        self.offsets.push(self.num_tokens() + len);
        self.max_len = self.max_len.max(len);
        Ok(())
    }

    /// Sequences pushed so far.
    pub fn num_sequences(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Tokens pushed so far.
    pub fn num_tokens(&self) -> u64 {
        self.offsets.last().copied().unwrap_or(0)
    }

    /// Flushes and fsyncs `tokens.bin`, then writes and fsyncs `offsets.bin` and, last, `store.json`.
    pub fn finish(self) -> Result<StoreMeta> {
        let (num_sequences, num_tokens) = (self.num_sequences() as u64, self.num_tokens());
        let tokens_path = self.dir.join(TOKENS_FILE);
        let file = self.tokens.into_inner().map_err(|e| Error::io(&tokens_path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&tokens_path, e))?;

        let offsets_path = self.dir.join(OFFSETS_FILE);
        write_synced(&offsets_path, |w| self.offsets.iter().try_for_each(|o| w.write_all(&o.to_le_bytes())))?;

        let meta = StoreMeta {
            format: FORMAT.to_string(),
            version: FORMAT_VERSION,
            dtype: self.dtype,
            vocab_size: self.vocab_size,
            num_sequences,
            num_tokens,
            max_sequence_length: self.max_len,
        };
        let meta_path = self.dir.join(META_FILE);
        let mut json = serde_json::to_vec_pretty(&meta).map_err(|e| Error::format(&meta_path, e))?;
        json.push(b'\n');
        write_synced(&meta_path, |w| w.write_all(&json))?;
        Ok(meta)
    }
}

/// Creates `path`, writes it through a buffer and fsyncs it.
fn write_synced(path: &Path, write: impl FnOnce(&mut BufWriter<File>) -> io::Result<()>) -> Result<()> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    write(&mut w).map_err(|e| Error::io(path, e))?;
    let file = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// A finished token store, memory-mapped. Opening validates `store.json` against the sizes of the other
/// two files and checks every offset, so reads afterwards cannot go out of bounds.
///
/// The files are mapped, not read: a store must not be modified or truncated while it is open (stores
/// are immutable once committed, so this only matters to someone editing the files by hand).
#[derive(Debug)]
pub struct TokenStore {
    dir: PathBuf,
    meta: StoreMeta,
    tokens: Mmap,
    offsets: Mmap,
    meta_bytes: u64,
}

impl TokenStore {
    /// Opens the store in `dir`, checking that its three files agree.
    pub fn open(dir: &Path) -> Result<TokenStore> {
        let meta_path = dir.join(META_FILE);
        let text = match fs::read(&meta_path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound && dir.join(TOKENS_FILE).exists() => {
                return Err(Error::format(
                    &meta_path,
                    "missing: the token store's writer did not finish (store.json is written last)",
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(Error::format(&meta_path, "missing: this directory is not a token store"));
            }
            Err(e) => return Err(Error::io(&meta_path, e)),
        };
        let meta: StoreMeta = serde_json::from_slice(&text)
            .map_err(|e| Error::format(&meta_path, format!("not a valid token store description: {e}")))?;
        meta.check(&meta_path)?;

        let tokens_path = dir.join(TOKENS_FILE);
        let tokens = map(&tokens_path)?;
        let width = meta.dtype.width() as u64;
        let expected = meta.num_tokens.checked_mul(width);
        if expected != Some(tokens.len() as u64) {
            return Err(Error::format(
                &tokens_path,
                format!(
                    "{} bytes, but store.json describes {} {} tokens ({} bytes): the file is truncated \
                     or belongs to another store",
                    count(tokens.len() as u64),
                    count(meta.num_tokens),
                    meta.dtype,
                    expected.map_or_else(|| "too many".to_string(), count),
                ),
            ));
        }

        let offsets_path = dir.join(OFFSETS_FILE);
        let offsets = map(&offsets_path)?;
        let expected = meta.num_sequences.checked_add(1).and_then(|n| n.checked_mul(8));
        if expected != Some(offsets.len() as u64) {
            return Err(Error::format(
                &offsets_path,
                format!(
                    "{} bytes, but store.json describes {} sequences ({} bytes of u64 offsets): the file is \
                     truncated or belongs to another store",
                    count(offsets.len() as u64),
                    count(meta.num_sequences),
                    expected.map_or_else(|| "too many".to_string(), count),
                ),
            ));
        }
        let max_len = check_offsets(&offsets, &meta, &offsets_path)?;
        if max_len != meta.max_sequence_length {
            return Err(Error::format(
                &meta_path,
                format!(
                    "max_sequence_length is {}, but the longest sequence in {OFFSETS_FILE} has {max_len} tokens",
                    meta.max_sequence_length
                ),
            ));
        }
        Ok(TokenStore { dir: dir.to_path_buf(), meta, tokens, offsets, meta_bytes: text.len() as u64 })
    }

    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn dtype(&self) -> TokenDtype {
        self.meta.dtype
    }

    pub fn vocab_size(&self) -> u64 {
        self.meta.vocab_size
    }

    /// Number of sequences.
    pub fn len(&self) -> usize {
        self.offsets.len() / 8 - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn num_tokens(&self) -> u64 {
        self.meta.num_tokens
    }

    /// Bytes the store takes on disk (its three files).
    pub fn size_on_disk(&self) -> u64 {
        self.tokens.len() as u64 + self.offsets.len() as u64 + self.meta_bytes
    }

    /// The token range of sequence `i`; `i` must be below `len()`.
    fn bounds(&self, i: usize) -> (usize, usize) {
        // Offsets were checked at open to be non-decreasing and to end at num_tokens, which fits usize
        // because tokens.bin of that many tokens is mapped.
        (le_u64(&self.offsets, i) as usize, le_u64(&self.offsets, i + 1) as usize)
    }

    /// Number of tokens of sequence `i`.
    pub fn sequence_len(&self, i: usize) -> Option<usize> {
        (i < self.len()).then(|| {
            let (start, end) = self.bounds(i);
            end - start
        })
    }

    /// Sequence `i`'s token ids.
    pub fn get(&self, i: usize) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        self.get_into(i, &mut out).then_some(out)
    }

    /// Replaces `out` with sequence `i`'s token ids, reusing its allocation; false if there is no such
    /// sequence (then `out` is left empty).
    pub fn get_into(&self, i: usize, out: &mut Vec<u32>) -> bool {
        out.clear();
        if i >= self.len() {
            return false;
        }
        let (start, end) = self.bounds(i);
        self.decode(start, end, out);
        true
    }

    /// Appends the ids of tokens `start..end` (a checked range) to `out`.
    fn decode(&self, start: usize, end: usize, out: &mut Vec<u32>) {
        let width = self.meta.dtype.width();
        let bytes = &self.tokens[start * width..end * width];
        out.reserve(end - start);
        match self.meta.dtype {
            TokenDtype::Uint16 => {
                out.extend(bytes.chunks_exact(2).map(|b| u32::from(u16::from_le_bytes([b[0], b[1]]))))
            }
            TokenDtype::Uint32 => {
                out.extend(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
            }
        }
    }

    /// Every sequence, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Vec<u32>> + '_ {
        (0..self.len()).map(move |i| {
            let (start, end) = self.bounds(i);
            let mut out = Vec::with_capacity(end - start);
            self.decode(start, end, &mut out);
            out
        })
    }

    /// Checks that every token id is below the vocabulary size (a full scan of `tokens.bin`; `open` does
    /// not do it). The error names the first offending sequence and id.
    pub fn verify_tokens(&self) -> Result<()> {
        let mut ids = Vec::new();
        for i in 0..self.len() {
            self.get_into(i, &mut ids);
            if let Some((position, id)) = ids.iter().enumerate().find(|&(_, &id)| u64::from(id) >= self.meta.vocab_size)
            {
                return Err(Error::format(
                    self.dir.join(TOKENS_FILE),
                    format!(
                        "sequence {i} has token id {id} at position {position}, outside the vocabulary \
                         (vocab_size {})",
                        self.meta.vocab_size
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Writes the store as NumPy `.npy` (format 1.0, dtype `<u2` or `<u4` as stored). When every sequence
    /// has the same length `L` the array is 2-D, `[num_sequences, L]`; otherwise it is 1-D, all tokens
    /// concatenated, and `<stem>.offsets.npy` (`<u8`, `num_sequences + 1` entries) is written beside it.
    /// An empty store counts as ragged. Each file is written under a temporary name in the same
    /// directory and renamed when complete.
    pub fn to_npy(&self, path: &Path) -> Result<()> {
        let descr = self.meta.dtype.npy_descr();
        if self.meta.is_rectangular() {
            let shape = [self.meta.num_sequences, self.meta.max_sequence_length];
            return write_atomically(path, |w| write_npy(w, path, descr, &shape, &self.tokens));
        }
        let stem = path
            .file_stem()
            .ok_or_else(|| Error::InvalidArgument(format!("to_npy: {} has no file name", path.display())))?;
        let offsets_path = path.with_file_name(format!("{}.offsets.npy", stem.to_string_lossy()));
        let offsets_shape = [self.meta.num_sequences + 1];
        write_atomically(&offsets_path, |w| write_npy(w, &offsets_path, "<u8", &offsets_shape, &self.offsets))?;
        write_atomically(path, |w| write_npy(w, path, descr, &[self.meta.num_tokens], &self.tokens))
    }

    /// Writes the store as Parquet with one column, `input_ids: list<int32>` (the type HF datasets
    /// writes for tokenized text), zstd-compressed, in row groups of [`PARQUET_ROWS_PER_GROUP`]
    /// sequences. Written under a temporary name in the same directory and renamed when complete.
    pub fn to_parquet(&self, path: &Path) -> Result<()> {
        let item = Arc::new(Field::new_list_field(DataType::Int32, true));
        let schema = Arc::new(Schema::new(vec![Field::new("input_ids", DataType::List(item.clone()), true)]));
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| Error::format(path, e))?))
            .set_max_row_group_row_count(Some(PARQUET_ROWS_PER_GROUP))
            .build();
        write_atomically(path, |file| {
            let mut writer =
                ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(|e| Error::format(path, e))?;
            let mut ids: Vec<u32> = Vec::new();
            let mut start = 0;
            while start < self.len() {
                // A batch ends at the row group size or when it holds enough tokens, whichever is first.
                let mut end = start;
                let batch_start = self.bounds(start).0;
                while end < self.len()
                    && end - start < PARQUET_ROWS_PER_GROUP
                    && (end == start || self.bounds(end).1 - batch_start <= PARQUET_TOKENS_PER_BATCH)
                {
                    end += 1;
                }
                let batch_end = self.bounds(end - 1).1;
                let too_long = || {
                    Error::InvalidArgument(format!(
                        "to_parquet: sequence {start} of {} is too long for a list<int32> column",
                        self.dir.display()
                    ))
                };
                let offsets = (start..=end)
                    .map(|i| {
                        let offset = if i == end { batch_end } else { self.bounds(i).0 };
                        i32::try_from(offset - batch_start).map_err(|_| too_long())
                    })
                    .collect::<Result<Vec<i32>>>()?;
                ids.clear();
                self.decode(batch_start, batch_end, &mut ids);
                let values = ids
                    .iter()
                    .map(|&id| {
                        i32::try_from(id).map_err(|_| {
                            Error::InvalidArgument(format!(
                                "to_parquet: token id {id} in {} does not fit an int32 column",
                                self.dir.display()
                            ))
                        })
                    })
                    .collect::<Result<Vec<i32>>>()?;
                let list = ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(ScalarBuffer::from(offsets)),
                    Arc::new(Int32Array::from(values)),
                    None,
                )
                .map_err(|e| Error::format(path, e))?;
                let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(list) as ArrayRef])
                    .map_err(|e| Error::format(path, e))?;
                writer.write(&batch).map_err(|e| Error::format(path, e))?;
                start = end;
            }
            writer.close().map_err(|e| Error::format(path, e))?;
            Ok(())
        })
    }
}

/// Maps a whole file read-only.
fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: store files are never modified once `store.json` exists (writers finish them before
    // writing it, and committed artifacts are immutable); see the note on `TokenStore`. Every read goes
    // through `Mmap`'s slice with bounds checked at open.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

/// The `i`th little-endian u64 of `bytes`.
fn le_u64(bytes: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
    u64::from_le_bytes(b)
}

/// Checks that offsets start at 0, never decrease and end at `num_tokens`; returns the longest sequence.
fn check_offsets(offsets: &[u8], meta: &StoreMeta, path: &Path) -> Result<u64> {
    let first = le_u64(offsets, 0);
    if first != 0 {
        return Err(Error::format(path, format!("the first offset is {first}, expected 0")));
    }
    let mut prev = 0;
    let mut max_len = 0;
    for i in 1..offsets.len() / 8 {
        let offset = le_u64(offsets, i);
        if offset < prev {
            return Err(Error::format(
                path,
                format!(
                    "offsets decrease: offset {i} is {offset}, below offset {} ({prev}); the file is corrupt",
                    i - 1
                ),
            ));
        }
        max_len = max_len.max(offset - prev);
        prev = offset;
    }
    if prev != meta.num_tokens {
        return Err(Error::format(
            path,
            format!("the last offset is {prev}, but store.json says num_tokens is {}", meta.num_tokens),
        ));
    }
    Ok(max_len)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `path` by writing a hidden temporary file beside it, fsyncing it and renaming it over `path`.
/// On failure the temporary file is removed and `path` is untouched.
fn write_atomically(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidArgument(format!("{} has no file name", path.display())))?
        .to_string_lossy();
    let unique = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp-{}-{unique}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(|e| Error::io(path, e))?;
        write(&mut file)?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The header of an NPY 1.0 file: magic, version, header length, then the array description padded
/// with spaces to a multiple of 64 bytes in all, ending in a newline.
fn npy_header(descr: &str, shape: &[u64]) -> Vec<u8> {
    let shape = match shape {
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    dict.push('\n');
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    // The dictionary is a few dozen bytes, far below the u16 limit of format 1.0.
    header.extend((dict.len() as u16).to_le_bytes());
    header.extend(dict.as_bytes());
    header
}

/// Writes an NPY file whose data are `data`, already in the byte order `descr` names.
fn write_npy(file: &mut File, path: &Path, descr: &str, shape: &[u64], data: &[u8]) -> Result<()> {
    let header = npy_header(descr, shape);
    file.write_all(&header).and_then(|()| file.write_all(data)).map_err(|e| Error::io(path, e))
}

impl Render for TokenStore {
    fn bundle(&self) -> MimeBundle {
        let meta = &self.meta;
        Card::new("Token store")
            .badge(meta.dtype.as_str())
            .fact("dtype", meta.dtype.as_str())
            .fact("vocab size", count(meta.vocab_size))
            .fact("sequences", count(meta.num_sequences))
            .fact("tokens", count(meta.num_tokens))
            .fact("mean length", format!("{:.1}", meta.mean_sequence_length()))
            .fact("max length", count(meta.max_sequence_length))
            .fact("size on disk", bytes(self.size_on_disk()))
            .fact("path", self.dir.display().to_string())
            .bundle()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (Knuth's MMIX constants).
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    fn random_sequences(seed: u64, n: usize, max_len: u64, vocab: u64) -> Vec<Vec<u32>> {
        let mut rng = Lcg(seed);
        let mut seqs: Vec<Vec<u32>> =
            (0..n).map(|_| (0..rng.below(max_len + 1)).map(|_| rng.below(vocab) as u32).collect()).collect();
        // The extremes of the vocabulary, and an empty sequence, always appear.
        seqs.push(vec![0, (vocab - 1) as u32]);
        seqs.push(vec![]);
        seqs
    }

    fn write_store(dir: &Path, vocab: usize, seqs: &[Vec<u32>]) -> StoreMeta {
        let mut w = TokenStoreWriter::create(dir, vocab).unwrap();
        for s in seqs {
            w.push(s).unwrap();
        }
        assert_eq!(w.num_sequences(), seqs.len());
        assert_eq!(w.num_tokens(), seqs.iter().map(|s| s.len() as u64).sum::<u64>());
        w.finish().unwrap()
    }

    fn round_trip(vocab: usize, dtype: TokenDtype) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        let seqs = random_sequences(vocab as u64, 300, 40, vocab as u64);
        let meta = write_store(&dir, vocab, &seqs);
        let num_tokens: u64 = seqs.iter().map(|s| s.len() as u64).sum();
        let expected = StoreMeta {
            format: FORMAT.into(),
            version: 1,
            dtype,
            vocab_size: vocab as u64,
            num_sequences: seqs.len() as u64,
            num_tokens,
            max_sequence_length: seqs.iter().map(|s| s.len() as u64).max().unwrap(),
        };
        assert_eq!(meta, expected);
        assert_eq!(fs::metadata(dir.join(TOKENS_FILE)).unwrap().len(), num_tokens * dtype.width() as u64);
        let json: serde_json::Value = serde_json::from_slice(&fs::read(dir.join(META_FILE)).unwrap()).unwrap();
        assert_eq!(json["dtype"], dtype.as_str());
        assert_eq!(json["format"], "saekit-token-store");

        let store = TokenStore::open(&dir).unwrap();
        assert_eq!(store.meta(), &expected);
        assert_eq!(store.len(), seqs.len());
        assert!(!store.is_empty());
        assert_eq!(store.num_tokens(), num_tokens);
        assert_eq!(store.dir(), dir);
        for i in [0, 7, seqs.len() - 2, seqs.len() - 1, 150] {
            assert_eq!(store.get(i).as_ref(), Some(&seqs[i]), "sequence {i}");
            assert_eq!(store.sequence_len(i), Some(seqs[i].len()));
        }
        assert_eq!(store.get(seqs.len()), None);
        assert_eq!(store.sequence_len(seqs.len()), None);
        assert_eq!(store.iter().len(), seqs.len());
        assert_eq!(store.iter().collect::<Vec<_>>(), seqs);
        store.verify_tokens().unwrap();
    }

    #[test]
    fn round_trips_a_u16_store() {
        round_trip(50257, TokenDtype::Uint16);
    }

    #[test]
    fn round_trips_a_u32_store() {
        round_trip(70_000, TokenDtype::Uint32);
    }

    #[test]
    fn dtype_switches_above_65536() {
        round_trip(65536, TokenDtype::Uint16);
        round_trip(65537, TokenDtype::Uint32);
        assert_eq!(TokenDtype::for_vocab(1 << 32), TokenDtype::Uint32);
    }

    #[test]
    fn empty_sequences_and_empty_stores() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("empty");
        let meta = write_store(&dir, 100, &[]);
        assert_eq!((meta.num_sequences, meta.num_tokens, meta.max_sequence_length), (0, 0, 0));
        let store = TokenStore::open(&dir).unwrap();
        assert!(store.is_empty());
        assert_eq!(store.get(0), None);
        assert_eq!(store.iter().count(), 0);
        store.to_npy(&tmp.path().join("empty.npy")).unwrap();
        let offsets = fs::read(tmp.path().join("empty.offsets.npy")).unwrap();
        let (dict, data) = parse_npy(&offsets);
        assert!(dict.ends_with("'shape': (1,), }"), "{dict}");
        assert_eq!(data, &[0u8; 8]);
        store.to_parquet(&tmp.path().join("empty.parquet")).unwrap();
        assert!(read_parquet(&tmp.path().join("empty.parquet")).0.is_empty());

        let dir = tmp.path().join("blanks");
        write_store(&dir, 100, &[vec![], vec![], vec![5], vec![]]);
        let store = TokenStore::open(&dir).unwrap();
        assert_eq!(store.iter().collect::<Vec<_>>(), vec![vec![], vec![], vec![5], vec![]]);
    }

    #[test]
    fn token_outside_the_vocabulary_names_sequence_and_id() {
        let tmp = tempfile::tempdir().unwrap();
        let mut w = TokenStoreWriter::create(tmp.path(), 50257).unwrap();
        w.push(&[1, 2]).unwrap();
        let err = w.push(&[3, 50257, 4]).unwrap_err().to_string();
        assert!(err.contains("sequence 1 has token id 50257 at position 1"), "{err}");
        assert!(err.contains("vocab_size 50257"), "{err}");
        // The bad sequence was not written; the writer goes on.
        w.push(&[50256]).unwrap();
        assert_eq!(w.finish().unwrap().num_tokens, 3);
        let store = TokenStore::open(tmp.path()).unwrap();
        assert_eq!(store.iter().collect::<Vec<_>>(), vec![vec![1, 2], vec![50256]]);

        assert!(TokenStoreWriter::create(&tmp.path().join("z"), 0).is_err());
        // A store is never silently overwritten.
        assert!(TokenStoreWriter::create(tmp.path(), 10).is_err());
    }

    #[test]
    fn truncated_tokens_bin_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        write_store(tmp.path(), 50257, &[vec![1, 2, 3], vec![4]]);
        let path = tmp.path().join(TOKENS_FILE);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(7).unwrap();
        let err = TokenStore::open(tmp.path()).unwrap_err();
        assert!(matches!(&err, Error::Format { path: p, .. } if p == &path), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("tokens.bin: 7 bytes, but store.json describes 4 uint16 tokens (8 bytes)"), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
    }

    #[test]
    fn corrupt_offsets_bin_is_a_clear_error() {
        let tmp = tempfile::tempdir().unwrap();
        write_store(tmp.path(), 50257, &[vec![1, 2, 3], vec![4], vec![5, 6]]);
        let path = tmp.path().join(OFFSETS_FILE);
        let good = fs::read(&path).unwrap();
        let with_offset = |i: usize, value: u64| {
            let mut bytes = good.clone();
            bytes[i * 8..i * 8 + 8].copy_from_slice(&value.to_le_bytes());
            bytes
        };
        let error_for = |bytes: &[u8]| {
            fs::write(&path, bytes).unwrap();
            let err = TokenStore::open(tmp.path()).unwrap_err();
            assert!(matches!(&err, Error::Format { path: p, .. } if p == &path), "{err:?}");
            err.to_string()
        };
        let msg = error_for(&with_offset(2, 1));
        assert!(msg.contains("offsets.bin: offsets decrease: offset 2 is 1, below offset 1 (3)"), "{msg}");
        let msg = error_for(&with_offset(3, 5));
        assert!(msg.contains("the last offset is 5, but store.json says num_tokens is 6"), "{msg}");
        let msg = error_for(&with_offset(0, 1));
        assert!(msg.contains("the first offset is 1"), "{msg}");
        let msg = error_for(&good[..20]);
        assert!(msg.contains("offsets.bin: 20 bytes, but store.json describes 3 sequences (32 bytes"), "{msg}");
        // A wrong max_sequence_length is blamed on store.json.
        fs::write(&path, &good).unwrap();
        let meta_path = tmp.path().join(META_FILE);
        let json =
            fs::read_to_string(&meta_path).unwrap().replace("\"max_sequence_length\": 3", "\"max_sequence_length\": 4");
        fs::write(&meta_path, json).unwrap();
        let msg = TokenStore::open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("store.json: max_sequence_length is 4, but the longest sequence"), "{msg}");
    }

    #[test]
    fn unfinished_or_foreign_stores_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let msg = TokenStore::open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("store.json: missing: this directory is not a token store"), "{msg}");
        let mut w = TokenStoreWriter::create(tmp.path(), 10).unwrap();
        w.push(&[1]).unwrap();
        drop(w);
        let msg = TokenStore::open(tmp.path()).unwrap_err().to_string();
        assert!(msg.contains("did not finish"), "{msg}");

        let dir = tmp.path().join("v2");
        write_store(&dir, 10, &[vec![1]]);
        let meta_path = dir.join(META_FILE);
        let json = fs::read_to_string(&meta_path).unwrap();
        fs::write(&meta_path, json.replace("\"version\": 1", "\"version\": 2")).unwrap();
        let msg = TokenStore::open(&dir).unwrap_err().to_string();
        assert!(msg.contains("token store version 2") && msg.contains("upgrade saekit"), "{msg}");
        fs::write(&meta_path, json.replace("uint16", "int8")).unwrap();
        let msg = TokenStore::open(&dir).unwrap_err().to_string();
        assert!(msg.contains("store.json: not a valid token store description") && msg.contains("int8"), "{msg}");
        fs::write(&meta_path, json.replace("\"vocab_size\": 10", "\"vocab_size\": 70000")).unwrap();
        let msg = TokenStore::open(&dir).unwrap_err().to_string();
        assert!(msg.contains("dtype uint16 cannot hold"), "{msg}");
    }

    /// Splits an NPY file into its header dictionary and data, checking the framing.
    fn parse_npy(bytes: &[u8]) -> (String, &[u8]) {
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0, "header not aligned to 64 bytes");
        let dict = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(dict.ends_with('\n'));
        (dict.trim_end_matches(['\n', ' ']).to_string(), &bytes[10 + header_len..])
    }

    #[test]
    fn npy_header_is_aligned_and_parses() {
        for shape in [&[0u64][..], &[7], &[3, 4], &[123_456_789, 2048]] {
            let header = npy_header("<u2", shape);
            assert_eq!(header.len() % 64, 0);
            let (dict, data) = parse_npy(&header);
            assert!(data.is_empty());
            assert!(dict.starts_with("{'descr': '<u2', 'fortran_order': False, 'shape': ("), "{dict}");
        }
        assert_eq!(parse_npy(&npy_header("<u4", &[7])).0, "{'descr': '<u4', 'fortran_order': False, 'shape': (7,), }");
        // 10 bytes of preamble and a 60-byte dictionary need two 64-byte blocks, as NumPy writes them.
        let header = npy_header("<u2", &[3, 4]);
        assert_eq!(header.len(), 128);
        assert_eq!(u16::from_le_bytes([header[8], header[9]]), 118);
        assert_eq!(header[127], b'\n');
    }

    #[test]
    fn equal_length_store_exports_a_2d_npy() {
        let tmp = tempfile::tempdir().unwrap();
        let seqs: Vec<Vec<u32>> = (0..3).map(|i| (0..4).map(|j| 69_000 + i * 4 + j).collect()).collect();
        write_store(&tmp.path().join("s"), 70_000, &seqs);
        let store = TokenStore::open(&tmp.path().join("s")).unwrap();
        let path = tmp.path().join("fixed.npy");
        store.to_npy(&path).unwrap();
        let bytes = fs::read(&path).unwrap();
        let (dict, data) = parse_npy(&bytes);
        assert_eq!(dict, "{'descr': '<u4', 'fortran_order': False, 'shape': (3, 4), }");
        let values: Vec<u32> = data.chunks_exact(4).map(|b| u32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(values, seqs.concat());
        assert!(!tmp.path().join("fixed.offsets.npy").exists());
        // Only the exported file is left: no temporary files.
        let names: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn ragged_store_exports_a_1d_npy_with_offsets() {
        let tmp = tempfile::tempdir().unwrap();
        let seqs = vec![vec![1, 2, 3], vec![], vec![50256], vec![10, 20]];
        write_store(&tmp.path().join("s"), 50257, &seqs);
        let store = TokenStore::open(&tmp.path().join("s")).unwrap();
        store.to_npy(&tmp.path().join("ragged.npy")).unwrap();
        let bytes = fs::read(tmp.path().join("ragged.npy")).unwrap();
        let (dict, data) = parse_npy(&bytes);
        assert_eq!(dict, "{'descr': '<u2', 'fortran_order': False, 'shape': (6,), }");
        let values: Vec<u32> = data.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]]) as u32).collect();
        assert_eq!(values, seqs.concat());
        let bytes = fs::read(tmp.path().join("ragged.offsets.npy")).unwrap();
        let (dict, data) = parse_npy(&bytes);
        assert_eq!(dict, "{'descr': '<u8', 'fortran_order': False, 'shape': (5,), }");
        let offsets: Vec<u64> = data.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(offsets, vec![0, 3, 3, 4, 6]);
    }

    /// The sequences of a Parquet file's `input_ids` column, and its row group sizes.
    fn read_parquet(path: &Path) -> (Vec<Vec<u32>>, Vec<i64>) {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::Int32Type;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let groups = builder.metadata().row_groups().iter().map(|g| g.num_rows()).collect();
        let field = builder.schema().field_with_name("input_ids").unwrap().clone();
        assert_eq!(field.data_type(), &DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))));
        let mut seqs = Vec::new();
        for batch in builder.build().unwrap() {
            let batch = batch.unwrap();
            assert_eq!(batch.num_columns(), 1);
            let list = batch.column(0).as_list::<i32>();
            for i in 0..list.len() {
                let values = list.value(i);
                seqs.push(values.as_primitive::<Int32Type>().values().iter().map(|&v| v as u32).collect());
            }
        }
        (seqs, groups)
    }

    #[test]
    fn parquet_export_reads_back() {
        use parquet::file::reader::{FileReader, SerializedFileReader};

        let tmp = tempfile::tempdir().unwrap();
        let seqs = random_sequences(3, 200, 30, 70_000);
        write_store(&tmp.path().join("s"), 70_000, &seqs);
        let store = TokenStore::open(&tmp.path().join("s")).unwrap();
        let path = tmp.path().join("tokens.parquet");
        store.to_parquet(&path).unwrap();
        let (read, groups) = read_parquet(&path);
        assert_eq!(read, seqs);
        assert_eq!(groups, vec![seqs.len() as i64]);
        let reader = SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        let compression = reader.metadata().row_group(0).column(0).compression();
        assert!(matches!(compression, Compression::ZSTD(_)), "{compression:?}");
    }

    #[test]
    fn parquet_row_groups_hold_10000_sequences() {
        let tmp = tempfile::tempdir().unwrap();
        let seqs: Vec<Vec<u32>> = (0..20_001).map(|i| vec![i % 100; (i % 3) as usize]).collect();
        write_store(&tmp.path().join("s"), 100, &seqs);
        let store = TokenStore::open(&tmp.path().join("s")).unwrap();
        let path = tmp.path().join("t.parquet");
        store.to_parquet(&path).unwrap();
        let (read, groups) = read_parquet(&path);
        assert_eq!(groups, vec![10_000, 10_000, 1]);
        assert_eq!(read, seqs);
    }

    #[test]
    fn renders_a_card() {
        let tmp = tempfile::tempdir().unwrap();
        write_store(tmp.path(), 50257, &[vec![1, 2, 3], vec![50256], vec![10, 20, 30, 40]]);
        let store = TokenStore::open(tmp.path()).unwrap();
        let b = store.bundle();
        let plain = b.plain();
        assert!(plain.starts_with("Token store [uint16]"), "{plain}");
        for fact in
            ["sequences     3", "tokens        8", "mean length   2.7", "max length    4", "vocab size    50,257"]
        {
            assert!(plain.contains(fact), "{fact} in {plain}");
        }
        assert!(plain.contains("size on disk"), "{plain}");
        assert!(b.get("text/html").unwrap().contains("<th>dtype</th><td>uint16</td>"));
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<TokenStore>();
        check::<TokenStoreWriter>();
    }

    /// Writes the stores and exports `tests/test_token_store.py` checks with NumPy and pyarrow, into
    /// `$SAEKIT_STORE_FIXTURE_DIR`: `store/` (three sequences), `fixed-store/` (2×4), `fixed.npy`,
    /// `ragged.npy` + `ragged.offsets.npy` and `tokens.parquet`.
    #[test]
    #[ignore = "writes fixtures for tests/test_token_store.py"]
    fn write_fixture_store() {
        let Some(out) = std::env::var_os("SAEKIT_STORE_FIXTURE_DIR") else {
            eprintln!("SAEKIT_STORE_FIXTURE_DIR is not set; nothing written");
            return;
        };
        let out = PathBuf::from(out);
        write_store(&out.join("store"), 50257, &[vec![1, 2, 3], vec![50256], vec![10, 20, 30, 40]]);
        write_store(&out.join("fixed-store"), 50257, &[vec![1, 2, 3, 4], vec![5, 6, 7, 8]]);
        let ragged = TokenStore::open(&out.join("store")).unwrap();
        ragged.to_npy(&out.join("ragged.npy")).unwrap();
        ragged.to_parquet(&out.join("tokens.parquet")).unwrap();
        TokenStore::open(&out.join("fixed-store")).unwrap().to_npy(&out.join("fixed.npy")).unwrap();
    }
}
