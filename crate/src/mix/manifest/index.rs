//! Reading buckets' JSONL files: every line checked (a JSON object, or an error naming the file and the
//! line), assigned to a bucket by a field or by rules, and remembered as a byte span so a sample can
//! write it back exactly as it was. Plain files are memory-mapped; `.gz`/`.zst` ones are decompressed
//! into memory once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Manifest, Select};
use crate::error::{Error, Result};
use crate::sources::lines::{Bytes, at, read_bytes, scalar, scan};

/// How [`Manifest::analyze`] puts a file's rows into buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum By {
    /// One bucket per value of a field (a dotted path: `bucket`, `meta.task`); numbers and booleans are
    /// taken as their text, rows without the field (or with an array/object there) are unassigned.
    Field(String),
    /// Each row to the first rule that takes it; the rest to the bucket `rest`, or unassigned.
    Rules { rules: Vec<(String, Select)>, rest: Option<String> },
}

impl By {
    pub fn field(field: impl Into<String>) -> By {
        By::Field(field.into())
    }

    pub fn rules(rules: Vec<(String, Select)>, rest: Option<String>) -> By {
        By::Rules { rules, rest }
    }

    pub fn describe(&self) -> String {
        match self {
            By::Field(f) => format!("field {f}"),
            By::Rules { rules, rest } => {
                let mut parts: Vec<String> = rules.iter().map(|(b, s)| format!("{b}: {}", s.describe())).collect();
                if let Some(r) = rest {
                    parts.push(format!("{r}: the rest"));
                }
                format!("rules ({})", parts.join("; "))
            }
        }
    }
}

/// One bucket of an analysis (or of a manifest's file, recounted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketCount {
    pub name: String,
    pub examples: u64,
    /// Its share of the file's assigned rows.
    pub share: f64,
    /// Mean bytes per example (its JSON line).
    pub mean_bytes: f64,
    /// How the bucket takes its rows from the file.
    pub select: Option<Select>,
}

/// A JSONL file's rows by bucket: the distribution summary `saekit manifest analyze` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketAnalysis {
    pub path: PathBuf,
    pub by: String,
    /// Non-blank lines (examples) in the file.
    pub rows: u64,
    /// Largest first (ties by name) for a field; in rule order for rules.
    pub buckets: Vec<BucketCount>,
    pub unassigned: u64,
    /// The first few unassigned lines (1-based).
    pub unassigned_lines: Vec<u64>,
    pub bytes: u64,
    pub sha256: String,
}

/// A compiled [`Select`] (or every row, for a bucket without one).
struct Matcher {
    path: Vec<String>,
    kind: Kind,
}

enum Kind {
    All,
    Present,
    Equals(String),
    Matches(Regex),
}

impl Matcher {
    fn new(select: Option<&Select>) -> Result<Matcher> {
        let Some(s) = select else { return Ok(Matcher { path: Vec::new(), kind: Kind::All }) };
        let kind = match (&s.equals, &s.matches) {
            (Some(v), _) => Kind::Equals(v.clone()),
            (_, Some(r)) => Kind::Matches(
                Regex::new(r).map_err(|e| Error::InvalidArgument(format!("regex {r:?} does not compile: {e}")))?,
            ),
            _ => Kind::Present,
        };
        Ok(Matcher { path: s.field.split('.').map(str::to_string).collect(), kind })
    }

    fn takes(&self, row: &Value) -> bool {
        if let Kind::All = self.kind {
            return true;
        }
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        let Some(text) = at(row, &path).and_then(scalar) else { return false };
        match &self.kind {
            Kind::All | Kind::Present => true,
            Kind::Equals(v) => text == v.as_str(),
            Kind::Matches(r) => r.is_match(&text),
        }
    }
}

const SHOWN_UNASSIGNED: usize = 10;

impl Manifest {
    /// Reads a JSONL file (plain, `.gz`, `.zst`) and counts its rows per bucket `by` a field or rules:
    /// the distribution a manifest starts from ([`Manifest::from_analysis`]).
    pub fn analyze(path: impl AsRef<Path>, by: By) -> Result<BucketAnalysis> {
        let path = path.as_ref();
        let (bytes, sha256) = read_bytes(path)?;
        let mut rows = 0u64;
        let mut unassigned = 0u64;
        let mut unassigned_lines = Vec::new();
        // (examples, bytes) per bucket, in first-seen order.
        let mut found: Vec<(String, Option<Select>, u64, u64)> = Vec::new();
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut miss = |line: u64, unassigned: &mut u64| {
            *unassigned += 1;
            if unassigned_lines.len() < SHOWN_UNASSIGNED {
                unassigned_lines.push(line);
            }
        };
        match &by {
            By::Field(field) => {
                let keys: Vec<&str> = field.split('.').collect();
                scan(path, &bytes, |line, (a, b), row| {
                    rows += 1;
                    match at(row, &keys).and_then(scalar) {
                        Some(value) => {
                            let i = match slot_of.get(value.as_ref()) {
                                Some(&i) => i,
                                None => {
                                    let select = Select::equals(field.clone(), value.to_string());
                                    found.push((value.to_string(), Some(select), 0, 0));
                                    slot_of.insert(value.into_owned(), found.len() - 1);
                                    found.len() - 1
                                }
                            };
                            found[i].2 += 1;
                            found[i].3 += (b - a) as u64;
                        }
                        None => miss(line, &mut unassigned),
                    }
                    Ok(())
                })?;
                found.sort_by(|x, y| y.2.cmp(&x.2).then_with(|| x.0.cmp(&y.0)));
            }
            By::Rules { rules, rest } => {
                let mut matchers = Vec::new();
                for (name, select) in rules {
                    matchers.push(Matcher::new(Some(select))?);
                    found.push((name.clone(), Some(select.clone()), 0, 0));
                }
                if let Some(rest) = rest {
                    matchers.push(Matcher::new(None)?);
                    found.push((rest.clone(), None, 0, 0));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = found.iter().find(|f| !seen.insert(f.0.clone())) {
                    return Err(Error::InvalidArgument(format!("bucket `{}` is named by two rules", dup.0)));
                }
                scan(path, &bytes, |line, (a, b), row| {
                    rows += 1;
                    match matchers.iter().position(|m| m.takes(row)) {
                        Some(i) => {
                            found[i].2 += 1;
                            found[i].3 += (b - a) as u64;
                        }
                        None => miss(line, &mut unassigned),
                    }
                    Ok(())
                })?;
            }
        }
        let assigned: u64 = found.iter().map(|f| f.2).sum();
        let buckets = found
            .into_iter()
            .map(|(name, select, n, b)| BucketCount {
                name,
                examples: n,
                share: n as f64 / assigned.max(1) as f64,
                mean_bytes: b as f64 / n.max(1) as f64,
                select,
            })
            .collect();
        Ok(BucketAnalysis {
            path: path.to_path_buf(),
            by: by.describe(),
            rows,
            buckets,
            unassigned,
            unassigned_lines,
            bytes: bytes.len() as u64,
            sha256,
        })
    }
}

/// One file of a manifest, read: the byte span of every example of each of its buckets.
pub(crate) struct Indexed {
    pub path: PathBuf,
    pub bytes: Bytes,
    pub sha256: String,
    /// (bucket index in the manifest, spans of its examples in file order).
    pub members: Vec<(usize, Vec<(usize, usize)>)>,
}

impl Indexed {
    pub fn counts(&self, manifest: &Manifest) -> Vec<BucketCount> {
        let assigned: u64 = self.members.iter().map(|m| m.1.len() as u64).sum();
        self.members
            .iter()
            .map(|(i, spans)| {
                let n = spans.len() as u64;
                let b: u64 = spans.iter().map(|(a, b)| (b - a) as u64).sum();
                BucketCount {
                    name: manifest.buckets[*i].name.clone(),
                    examples: n,
                    share: n as f64 / assigned.max(1) as f64,
                    mean_bytes: b as f64 / n.max(1) as f64,
                    select: manifest.buckets[*i].source.select.clone(),
                }
            })
            .collect()
    }

    pub fn line(&self, span: (usize, usize)) -> &[u8] {
        &self.bytes[span.0..span.1]
    }
}

/// Reads `path` and puts each row into the first bucket of that file (in manifest order) that takes it.
pub(crate) fn index_file(manifest: &Manifest, path: &Path) -> Result<Indexed> {
    let mut members = Vec::new();
    let mut matchers = Vec::new();
    for (i, b) in manifest.buckets.iter().enumerate() {
        if manifest.path_of(b) == path {
            matchers.push(Matcher::new(b.source.select.as_ref())?);
            members.push((i, Vec::new()));
        }
    }
    let (bytes, sha256) = read_bytes(path)?;
    scan(path, &bytes, |_, span, row| {
        if let Some(k) = matchers.iter().position(|m| m.takes(row)) {
            members[k].1.push(span);
        }
        Ok(())
    })?;
    Ok(Indexed { path: path.to_path_buf(), bytes, sha256, members })
}

/// Every file of the manifest, read once each, in first-use order.
pub(crate) fn index_all(manifest: &Manifest) -> Result<Vec<Indexed>> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for b in &manifest.buckets {
        let p = manifest.path_of(b);
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths.iter().map(|p| index_file(manifest, p)).collect()
}
