//! Opening a file for streaming: transparent gzip/zstd decompression by extension, and a shared counter of
//! the on-disk bytes consumed so progress can be reported against file sizes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// How a file's bytes are compressed, judged by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// `.gz` → gzip, `.zst`/`.zstd` → zstd, anything else → none.
    pub fn from_path(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("gz") | Some("gzip") => Compression::Gzip,
            Some("zst") | Some("zstd") => Compression::Zstd,
            _ => Compression::None,
        }
    }
}

/// A reader that adds the bytes it passes through to a shared counter.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens `path` for buffered reading, decompressing by extension. Compressed bytes read from disk are added
/// to `counter` as they are consumed.
pub fn open_text_stream(path: &Path, counter: Arc<AtomicU64>) -> Result<Box<dyn BufRead + Send>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let raw = Counting { inner: file, counter };
    const BUF: usize = 1 << 20;
    Ok(match Compression::from_path(path) {
        Compression::None => Box::new(BufReader::with_capacity(BUF, raw)),
        Compression::Gzip => Box::new(BufReader::with_capacity(
            BUF,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(BUF, raw)),
        )),
        Compression::Zstd => {
            let dec = zstd::stream::read::Decoder::new(raw).map_err(|e| Error::io(path, e))?;
            Box::new(BufReader::with_capacity(BUF, dec))
        }
    })
}

/// Reads one line (up to and including `\n`) into `buf`, which is cleared first. Returns false at the end
/// of the stream. Decompression errors name the file.
pub fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>, path: &Path) -> Result<bool> {
    buf.clear();
    match reader.read_until(b'\n', buf) {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(e) => Err(Error::Format {
            path: path.to_path_buf(),
            message: format!("cannot read (corrupt or truncated {:?} stream?): {e}", Compression::from_path(path)),
        }),
    }
}

/// Checks `bytes` are UTF-8; if not, builds an error naming where, `base_offset` being the offset of
/// `bytes[0]` in the (decompressed) file.
pub fn check_utf8<'a>(
    bytes: &'a [u8],
    path: &Path,
    location: impl FnOnce() -> String,
    base_offset: u64,
) -> Result<&'a str> {
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        Error::InvalidUtf8 {
            path: path.to_path_buf(),
            location: location(),
            offset: base_offset + at as u64,
            byte: bytes[at],
        }
    })
}
