//! The on-disk layout of an activation cache: `.npy` shards that numpy reads as they are (`numpy.load`,
//! `mmap_mode="r"`), one folder per hook plus `tokens/` (each row's sequence, position and token id),
//! described by `index.json`:
//!
//! ```text
//! index.json
//! blocks.2.hook_resid_post/shard-00000.npy   [rows, width]  float32 | float16 | bfloat16 (stored as <u2)
//! tokens/shard-00000.npy                     [rows, 3]      uint32: sequence, position, token
//! ```
//!
//! Row `r` of shard `k` is the same token in every folder. numpy has no bfloat16: those shards hold the
//! raw 16-bit patterns (`<u2`), and `(a.astype(np.uint32) << 16).view(np.float32)` widens them exactly.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

// Shards are written and read in the machine's byte order under little-endian headers.
#[cfg(not(target_endian = "little"))]
compile_error!("saekit's activation shards assume a little-endian machine");

/// `index.json`'s `format`.
pub const INDEX_FORMAT: &str = "saekit-activations";
/// The index file's name.
pub const INDEX_FILE: &str = "index.json";
/// The folder of each row's (sequence, position, token).
pub const TOKENS_DIR: &str = "tokens";
/// Every `.npy` header here is this long (magic and padding included), so it can be rewritten in place
/// once the row count is known.
const HEADER_LEN: usize = 128;

/// How activations are stored on disk (batches are always served as f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum CacheDtype {
    #[default]
    #[serde(rename = "float32", alias = "f32")]
    F32,
    #[serde(rename = "float16", alias = "f16")]
    F16,
    #[serde(rename = "bfloat16", alias = "bf16")]
    Bf16,
}

impl CacheDtype {
    pub fn width(self) -> usize {
        match self {
            CacheDtype::F32 => 4,
            CacheDtype::F16 | CacheDtype::Bf16 => 2,
        }
    }

    /// The name numpy and SAELens use.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheDtype::F32 => "float32",
            CacheDtype::F16 => "float16",
            CacheDtype::Bf16 => "bfloat16",
        }
    }

    /// The `.npy` type descriptor the shards are written with.
    pub fn npy_descr(self) -> &'static str {
        match self {
            CacheDtype::F32 => "<f4",
            CacheDtype::F16 => "<f2",
            CacheDtype::Bf16 => "<u2",
        }
    }
}

impl std::str::FromStr for CacheDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<CacheDtype> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(CacheDtype::F32),
            "f16" | "float16" => Ok(CacheDtype::F16),
            "bf16" | "bfloat16" => Ok(CacheDtype::Bf16),
            _ => Err(Error::InvalidArgument(format!("dtype `{s}`: expected f32, f16 or bf16"))),
        }
    }
}

impl std::fmt::Display for CacheDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One hook's folder in the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexHook {
    pub name: String,
    pub width: usize,
    pub dir: String,
}

/// One shard: its file name (the same in every folder) and row count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexShard {
    pub file: String,
    pub rows: u64,
}

/// `index.json`: what a reader (saekit, or numpy) needs to find every row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheIndex {
    pub format: String,
    pub version: u32,
    pub model: String,
    pub model_fingerprint: String,
    pub tokenization: String,
    /// `float32`, `float16` or `bfloat16`.
    pub dtype: CacheDtype,
    /// The `.npy` descriptor of the hook shards (`<u2` for bfloat16).
    pub stored_as: String,
    pub num_tokens: u64,
    pub hooks: Vec<IndexHook>,
    /// The folder of `[rows, 3]` uint32 (sequence, position, token) shards.
    pub tokens_dir: String,
    pub token_columns: Vec<String>,
    pub shards: Vec<IndexShard>,
}

impl CacheIndex {
    pub fn read(dir: &Path) -> Result<CacheIndex> {
        let path = dir.join(INDEX_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let index: CacheIndex = serde_json::from_str(&text).map_err(|e| Error::format(&path, e))?;
        if index.format != INDEX_FORMAT || index.version != 1 {
            return Err(Error::format(
                &path,
                format!("format {:?} version {}: expected {INDEX_FORMAT:?} version 1", index.format, index.version),
            ));
        }
        Ok(index)
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let path = dir.join(INDEX_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::format(&path, e))?;
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }
}

pub fn shard_file(k: usize) -> String {
    format!("shard-{k:05}.npy")
}

fn npy_header(descr: &str, rows: u64, width: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {width}), }}");
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    header.extend_from_slice(&((HEADER_LEN - 10) as u16).to_le_bytes());
    header.extend_from_slice(dict.as_bytes());
    header.resize(HEADER_LEN - 1, b' ');
    header.push(b'\n');
    header
}

/// Writes a 2-D `.npy` file row by row; the row count goes into the header when it is finished.
pub struct NpyWriter {
    path: PathBuf,
    out: BufWriter<File>,
    descr: &'static str,
    width: usize,
    rows: u64,
}

impl NpyWriter {
    pub fn create(path: &Path, descr: &'static str, width: usize) -> Result<NpyWriter> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&npy_header(descr, 0, width)).map_err(|e| Error::io(path, e))?;
        Ok(NpyWriter { path: path.to_path_buf(), out, descr, width, rows: 0 })
    }

    /// Appends one row of f32 values, converted to the file's type.
    pub fn push_f32(&mut self, row: &[f32], dtype: CacheDtype) -> Result<()> {
        debug_assert_eq!(row.len(), self.width);
        let result = match dtype {
            CacheDtype::F32 => self.out.write_all(bytes_of_f32(row)),
            CacheDtype::F16 => {
                let v: Vec<u16> = row.iter().map(|&x| f16::from_f32(x).to_bits()).collect();
                self.out.write_all(bytes_of_u16(&v))
            }
            CacheDtype::Bf16 => {
                let v: Vec<u16> = row.iter().map(|&x| bf16::from_f32(x).to_bits()).collect();
                self.out.write_all(bytes_of_u16(&v))
            }
        };
        result.map_err(|e| Error::io(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    /// Appends one row of u32 values.
    pub fn push_u32(&mut self, row: &[u32]) -> Result<()> {
        let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.out.write_all(&bytes).map_err(|e| Error::io(&self.path, e))?;
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the final header and flushes to disk.
    pub fn finish(self) -> Result<u64> {
        let path = self.path;
        let mut file = self.out.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(&path, e))?;
        file.write_all(&npy_header(self.descr, self.rows, self.width)).map_err(|e| Error::io(&path, e))?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        Ok(self.rows)
    }
}

fn bytes_of_f32(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns; the bytes are native (little-endian here).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

fn bytes_of_u16(v: &[u16]) -> &[u8] {
    // SAFETY: as above.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// A memory-mapped 2-D `.npy` shard written by [`NpyWriter`].
pub struct NpyShard {
    map: Mmap,
    pub rows: u64,
    pub width: usize,
    item: usize,
}

impl NpyShard {
    pub fn open(path: &Path, descr: &str, width: usize, item: usize) -> Result<NpyShard> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: committed shards are never written again (a new cache is a new directory).
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        let bad = |what: String| Error::format(path, what);
        if map.len() < HEADER_LEN || &map[..6] != b"\x93NUMPY" {
            return Err(bad("not a .npy file written by saekit".into()));
        }
        let header = String::from_utf8_lossy(&map[10..HEADER_LEN]);
        if !header.contains(&format!("'descr': '{descr}'")) {
            return Err(bad(format!("expected dtype {descr}: header {}", header.trim())));
        }
        let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).unwrap_or_default();
        let dims: Vec<u64> = shape.split(',').filter_map(|d| d.trim().parse().ok()).collect();
        if dims.len() != 2 || dims[1] as usize != width {
            return Err(bad(format!("expected shape (rows, {width}): header {}", header.trim())));
        }
        let rows = dims[0];
        let want = HEADER_LEN as u64 + rows * (width * item) as u64;
        if map.len() as u64 != want {
            return Err(bad(format!("{} bytes, expected {want} for {rows} rows of {width}", map.len())));
        }
        #[cfg(unix)]
        let _ = map.advise(memmap2::Advice::Sequential);
        Ok(NpyShard { map, rows, width, item })
    }

    /// The raw bytes of row `r`.
    pub fn row_bytes(&self, r: u64) -> &[u8] {
        let len = self.width * self.item;
        let start = HEADER_LEN + r as usize * len;
        &self.map[start..start + len]
    }

    /// Row `r` widened to f32 into `out` (`width` long).
    pub fn row_f32(&self, r: u64, dtype: CacheDtype, out: &mut [f32]) {
        let bytes = self.row_bytes(r);
        match dtype {
            CacheDtype::F32 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            CacheDtype::F16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
            CacheDtype::Bf16 => {
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
                }
            }
        }
    }

    /// Row `r` as u32 values.
    pub fn row_u32(&self, r: u64) -> Vec<u32> {
        self.row_bytes(r).chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }
}

/// Every shard of a cache, opened: rows are numbered across shards, in order.
pub struct CacheReader {
    pub dir: PathBuf,
    pub index: CacheIndex,
    /// `[hook][shard]`.
    hooks: Vec<Vec<NpyShard>>,
    tokens: Vec<NpyShard>,
    /// The first row of each shard, and the total at the end.
    starts: Vec<u64>,
}

impl CacheReader {
    pub fn open(dir: &Path) -> Result<CacheReader> {
        let index = CacheIndex::read(dir)?;
        let item = index.dtype.width();
        let mut hooks = Vec::new();
        for hook in &index.hooks {
            let shards = index
                .shards
                .iter()
                .map(|s| NpyShard::open(&dir.join(&hook.dir).join(&s.file), &index.stored_as, hook.width, item))
                .collect::<Result<Vec<_>>>()?;
            hooks.push(shards);
        }
        let tokens = index
            .shards
            .iter()
            .map(|s| NpyShard::open(&dir.join(&index.tokens_dir).join(&s.file), "<u4", 3, 4))
            .collect::<Result<Vec<_>>>()?;
        let mut starts = vec![0u64];
        for (k, s) in index.shards.iter().enumerate() {
            for shards in hooks.iter().chain([&tokens]) {
                if shards[k].rows != s.rows {
                    return Err(Error::format(
                        dir.join(INDEX_FILE),
                        format!(
                            "shard {} has {} rows in one folder and {} in the index",
                            s.file, shards[k].rows, s.rows
                        ),
                    ));
                }
            }
            starts.push(starts.last().copied().unwrap_or(0) + s.rows);
        }
        if starts.last().copied() != Some(index.num_tokens) {
            return Err(Error::format(
                dir.join(INDEX_FILE),
                format!("the shards hold {} rows, the index says {}", starts.last().unwrap_or(&0), index.num_tokens),
            ));
        }
        Ok(CacheReader { dir: dir.to_path_buf(), index, hooks, tokens, starts })
    }

    pub fn num_rows(&self) -> u64 {
        self.index.num_tokens
    }

    /// The widths of the hooks, in order.
    pub fn widths(&self) -> Vec<usize> {
        self.index.hooks.iter().map(|h| h.width).collect()
    }

    fn locate(&self, row: u64) -> (usize, u64) {
        let k = self.starts.partition_point(|&s| s <= row) - 1;
        (k, row - self.starts[k])
    }

    /// Row `row` of every hook, one after another, as f32 into `out` (the hooks' widths summed).
    pub fn row_into(&self, row: u64, out: &mut [f32]) {
        let (k, r) = self.locate(row);
        let mut at = 0;
        for shards in &self.hooks {
            let w = shards[k].width;
            shards[k].row_f32(r, self.index.dtype, &mut out[at..at + w]);
            at += w;
        }
    }

    /// (sequence, position, token) of row `row`.
    pub fn token_of(&self, row: u64) -> [u32; 3] {
        let (k, r) = self.locate(row);
        let v = self.tokens[k].row_u32(r);
        [v[0], v[1], v[2]]
    }
}
