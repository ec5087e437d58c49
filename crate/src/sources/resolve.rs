//! From the paths, folders and globs a user gives to a source's files, with its format settled.

use std::path::{Path, PathBuf};

use super::Format;
use crate::error::{Error, Result};

/// Finds the files of a source and settles its format.
pub(super) fn resolve(patterns: &[String], format: Option<Format>) -> Result<(Vec<PathBuf>, Format)> {
    if patterns.is_empty() {
        return Err(Error::Source("a source needs at least one path".into()));
    }
    let mut files = Vec::new();
    for pattern in patterns {
        let path = Path::new(pattern);
        if pattern.contains(['*', '?', '[']) && !path.exists() {
            let matches =
                glob::glob(pattern).map_err(|e| Error::Source(format!("bad glob pattern `{pattern}`: {e}")))?;
            let mut found: Vec<PathBuf> = matches.filter_map(|m| m.ok()).filter(|p| p.is_file()).collect();
            if found.is_empty() {
                return Err(Error::Source(format!("`{pattern}` matched no files")));
            }
            found.sort();
            files.extend(found);
        } else if path.is_dir() {
            let mut found = Vec::new();
            walk(path, &mut found)?;
            found.retain(|f| format.is_some() || Format::from_path(f).is_some());
            if found.is_empty() {
                return Err(Error::Source(format!(
                    "folder {} holds no .jsonl, .csv, .parquet, .txt or .md files",
                    path.display()
                )));
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path.to_path_buf());
        } else {
            return Err(Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
    }
    let format = match format {
        Some(f) => f,
        None => {
            let mut formats: Vec<Format> = Vec::new();
            for f in &files {
                let fmt = Format::from_path(f).ok_or_else(|| {
                    Error::Source(format!(
                        "cannot tell the format of {} from its name; say it with .with_format(...)",
                        f.display()
                    ))
                })?;
                if !formats.contains(&fmt) {
                    formats.push(fmt);
                }
            }
            if formats.len() > 1 {
                let names: Vec<_> = formats.iter().map(|f| f.as_str()).collect();
                return Err(Error::Source(format!(
                    "a source holds files of one format, these are {}; make one source per format",
                    names.join(" and ")
                )));
            }
            formats[0]
        }
    };
    Ok((files, format))
}

/// All files under `dir`, recursively, sorted, skipping hidden ones.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            walk(&entry, out)?;
        } else {
            out.push(entry);
        }
    }
    Ok(())
}
