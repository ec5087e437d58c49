//! A JSONL file's examples as byte spans: the file memory-mapped (or decompressed into memory once for
//! `.gz`/`.zst`), every non-blank line checked to be a JSON object (or an error naming the file and the
//! line), so a line can be written back exactly as it was. Shared by bucket manifests and curation.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::open::{Compression, open_text_stream};
use crate::error::{Error, Result};

/// A file's bytes: memory-mapped, or decompressed into memory.
pub enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// The bytes of `path`, and the sha256 of the file as stored (compressed or not).
pub fn read_bytes(path: &Path) -> Result<(Bytes, String)> {
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    match Compression::from_path(path) {
        Compression::None => {
            let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
            let bytes = if len == 0 {
                Bytes::Owned(Vec::new())
            } else {
                // SAFETY: the map is read-only and lives while the file is indexed and sampled; a file
                // changed under it meanwhile is the user's race, as with any reader.
                Bytes::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
            };
            let sha = hex(&Sha256::digest(&bytes[..]));
            Ok((bytes, sha))
        }
        _ => {
            let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let sha = hex(&Sha256::digest(&raw));
            let mut reader = open_text_stream(path, Arc::new(AtomicU64::new(0)))?;
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut out).map_err(|e| Error::Format {
                path: path.to_path_buf(),
                message: format!("cannot decompress (corrupt or truncated?): {e}"),
            })?;
            Ok((Bytes::Owned(out), sha))
        }
    }
}

/// Calls `f(line number, byte span, object)` for every non-blank line of `bytes`; a line that is not a
/// JSON object is an error naming the file and the line.
pub fn scan(path: &Path, bytes: &[u8], mut f: impl FnMut(u64, (usize, usize), &Value) -> Result<()>) -> Result<()> {
    let mut start = 0usize;
    let mut line = 0u64;
    while start < bytes.len() {
        let end = memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        line += 1;
        let mut stop = end;
        while stop > start && matches!(bytes[stop - 1], b'\r' | b' ' | b'\t') {
            stop -= 1;
        }
        let mut first = start;
        while first < stop && matches!(bytes[first], b' ' | b'\t') {
            first += 1;
        }
        if first < stop {
            let text = &bytes[first..stop];
            let value: Value = serde_json::from_slice(text).map_err(|e| Error::Json {
                path: path.to_path_buf(),
                line,
                message: format!("column {}: {e}", e.column()),
            })?;
            if !value.is_object() {
                return Err(Error::Json {
                    path: path.to_path_buf(),
                    line,
                    message: format!("expected a JSON object (one example per line), found {}", kind(&value)),
                });
            }
            f(line, (first, stop), &value)?;
        }
        start = end + 1;
    }
    Ok(())
}

fn memchr(byte: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == byte)
}

pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value at a dotted path of objects.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, key| v.as_object()?.get(*key))
}

/// A field's value as text: strings as they are, numbers and booleans written out; else none.
pub fn scalar(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}
