//! Which session (process: a kernel, a CLI command) read and made which artifacts: the record a report's
//! provenance is built from (see [`crate::report::Provenance`]). Every workspace a session opens gets its
//! `sessions` row; every artifact it reads, reuses or makes gets a `session_artifacts` row. Rows keep the
//! artifact's kind and name, so a report still names an artifact the session deleted.
//!
//! Recording never fails what is being recorded: a catalog that cannot be written (read-only, locked for
//! longer than a short wait) loses the record, not the read.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::time::Duration;

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Workspace;
use super::db::{AtPath, Catalog, json_column, now_rfc3339, open_connection};
use crate::error::Result;
use crate::session::{BuildInfo, Machine};

/// How an artifact was touched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Touch {
    /// Made by this session.
    Made,
    /// Asked for again and found already made (nothing was redone).
    Reused,
    /// Read: opened, or used as an input of something made.
    Read,
}

impl Touch {
    pub fn as_str(self) -> &'static str {
        match self {
            Touch::Made => "made",
            Touch::Reused => "reused",
            Touch::Read => "read",
        }
    }

    fn parse(s: &str) -> Touch {
        match s {
            "made" => Touch::Made,
            "reused" => Touch::Reused,
            _ => Touch::Read,
        }
    }
}

/// A session's row in one workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    pub id: String,
    pub kind: String,
    /// When the session first opened this workspace, and its last recorded touch (RFC 3339 UTC).
    pub started_at: String,
    pub last_seen_at: String,
    pub build: Option<BuildInfo>,
    pub machine: Option<Machine>,
}

/// One artifact a session touched, with what identifies its content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TouchedArtifact {
    pub id: i64,
    pub kind: String,
    pub name: String,
    /// Every way the session touched it, strongest first (made, reused, read).
    pub touches: Vec<Touch>,
    /// When the session first touched it.
    pub first_at: String,
    /// The artifact's status now, or `deleted`.
    pub status: String,
    pub params: serde_json::Value,
    /// `sha256:…` of its content (a dataset's files, an artifact's directory), a model's fingerprint, or
    /// why there is none.
    pub content: String,
    /// Its direct parents, as `kind name (#id)`.
    pub parents: Vec<String>,
    pub created_at: Option<String>,
    pub saekit_version: Option<String>,
}

/// Artifact directories larger than this are not hashed for a report (it would take too long).
const HASH_LIMIT_BYTES: u64 = 4 << 30;

impl Workspace {
    /// Records that this session touched artifact `id` (best effort; see the module documentation). The
    /// session's own row (with the build and the machine) is written with its first touch here, so only
    /// opening a workspace never writes to it.
    pub(crate) fn note(&self, id: i64, touch: Touch) {
        let catalog = self.catalog();
        let session = crate::session::session_id();
        let noted = catalog.with_conn(|conn| {
            let now = now_rfc3339();
            let seen = conn
                .execute("UPDATE sessions SET last_seen_at = ?2 WHERE id = ?1", params![session, now])
                .at(catalog.path())?;
            if seen == 0 {
                let facts = serde_json::json!({ "build": BuildInfo::current(), "machine": Machine::current() });
                conn.execute(
                    "INSERT INTO sessions (id, kind, started_at, last_seen_at, facts) VALUES (?1, ?2, ?3, ?3, ?4)
                     ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at",
                    params![session, crate::session::process_kind(), now, facts.to_string()],
                )
                .at(catalog.path())?;
            }
            conn.execute(
                "INSERT INTO session_artifacts (session, artifact_id, kind, name, touch, at)
                 SELECT ?1, id, kind, name, ?3, ?4 FROM artifacts WHERE id = ?2
                 ON CONFLICT (session, artifact_id, touch) DO NOTHING",
                params![session, id, touch.as_str(), now],
            )
            .at(catalog.path())?;
            Ok(seen == 0)
        });
        if noted.unwrap_or(false) {
            crate::session::note_workspace(self.root());
        }
    }

    /// Session `id`'s row here, if it opened this workspace.
    pub fn session(&self, id: &str) -> Result<Option<SessionRow>> {
        let catalog = self.catalog();
        catalog.with_conn(|conn| {
            conn.query_row("SELECT id, kind, started_at, last_seen_at, facts FROM sessions WHERE id = ?1", [id], |r| {
                let facts = json_column(r, 4)?;
                Ok(SessionRow {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    started_at: r.get(2)?,
                    last_seen_at: r.get(3)?,
                    build: serde_json::from_value(facts["build"].clone()).ok(),
                    machine: serde_json::from_value(facts["machine"].clone()).ok(),
                })
            })
            .optional()
            .at(catalog.path())
        })
    }

    /// Every artifact session `id` touched here, in the order it first touched them, with its content
    /// hash (computed once per artifact and kept: a committed artifact never changes).
    pub fn session_artifacts(&self, id: &str) -> Result<Vec<TouchedArtifact>> {
        let catalog = self.catalog();
        let touched: Vec<(i64, String, String, String, String)> = catalog.with_conn(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT artifact_id, kind, name, touch, at FROM session_artifacts WHERE session = ?1
                     ORDER BY at, artifact_id",
                )
                .at(catalog.path())?;
            let rows = stmt
                .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
                .at(catalog.path())?;
            rows.collect::<rusqlite::Result<Vec<_>>>().at(catalog.path())
        })?;
        let mut order: Vec<i64> = Vec::new();
        let mut by_id: BTreeMap<i64, TouchedArtifact> = BTreeMap::new();
        for (artifact, kind, name, touch, at) in touched {
            let entry = by_id.entry(artifact).or_insert_with(|| {
                order.push(artifact);
                TouchedArtifact {
                    id: artifact,
                    kind,
                    name,
                    touches: Vec::new(),
                    first_at: at,
                    status: "deleted".into(),
                    params: serde_json::Value::Null,
                    content: String::new(),
                    parents: Vec::new(),
                    created_at: None,
                    saekit_version: None,
                }
            });
            let touch = Touch::parse(&touch);
            if !entry.touches.contains(&touch) {
                entry.touches.push(touch);
                entry.touches.sort();
            }
        }
        let mut out = Vec::with_capacity(order.len());
        for artifact in order {
            let mut entry = by_id.remove(&artifact).expect("listed");
            if let Ok(row) = catalog.artifact(artifact) {
                entry.status = row.status.as_str().to_string();
                entry.params = row.params.clone();
                entry.created_at = Some(row.created_at.clone());
                entry.saekit_version = Some(row.saekit_version.clone());
                entry.parents = catalog
                    .with_conn(|conn| catalog.parents_in(conn, artifact))
                    .unwrap_or_default()
                    .iter()
                    .map(|p| format!("{} {} (#{})", p.kind, p.name, p.id))
                    .collect();
                entry.content = content_hash(catalog, &row).unwrap_or_else(|e| format!("not hashed: {e}"));
            }
            out.push(entry);
        }
        Ok(out)
    }
}

/// What identifies an artifact's content: a dataset's sha256 over its files, a model's fingerprint, else
/// sha256 over the artifact's directory (relative path, size and bytes of every file, in path order).
fn content_hash(catalog: &Catalog, row: &super::ArtifactRow) -> Result<String> {
    let recorded: Option<String> = catalog.with_conn(|conn| {
        conn.query_row(
            "SELECT COALESCE(
                 (SELECT json_extract(fingerprint, '$.sha256') FROM datasets WHERE id = ?1),
                 (SELECT 'fingerprint:' || fingerprint FROM models WHERE id = ?1),
                 (SELECT sha256 FROM artifact_hashes WHERE artifact_id = ?1))",
            [row.id],
            |r| r.get::<_, Option<String>>(0),
        )
        .at(catalog.path())
    })?;
    if let Some(found) = recorded {
        return Ok(if found.contains(':') { found } else { format!("sha256:{found}") });
    }
    if row.status != super::ArtifactStatus::Ready {
        return Ok(format!("none ({})", row.status.as_str()));
    }
    let Some(dir) = &row.path else { return Ok("none (no files)".to_string()) };
    let (sha, bytes) = hash_tree(dir)?;
    // Kept on a connection of its own with a short wait: a busy catalog costs a re-hash next time, never a wait.
    if let Ok(conn) = open_connection(catalog.path(), Duration::from_millis(200)) {
        let _ = conn.execute(
            "INSERT OR REPLACE INTO artifact_hashes (artifact_id, sha256, bytes) VALUES (?1, ?2, ?3)",
            params![row.id, sha, bytes as i64],
        );
    }
    Ok(format!("sha256:{sha}"))
}

/// sha256 over every file under `dir` (or of `dir` itself when it is a file) and their total size.
fn hash_tree(dir: &Path) -> Result<(String, u64)> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    files.sort();
    let total: u64 = files.iter().map(|(_, len)| *len).sum();
    if total > HASH_LIMIT_BYTES {
        return Err(crate::Error::InvalidArgument(format!("{} in its files", crate::display::bytes(total))));
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for (rel, len) in &files {
        hasher.update(rel.as_bytes());
        hasher.update([0]);
        hasher.update(len.to_le_bytes());
        let path = if rel.is_empty() { dir.to_path_buf() } else { dir.join(rel) };
        let mut file = std::fs::File::open(&path).map_err(|e| crate::Error::io(&path, e))?;
        loop {
            let n = file.read(&mut buf).map_err(|e| crate::Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok((crate::session::hex(&hasher.finalize()), total))
}

fn collect_files(base: &Path, at: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
    let meta = std::fs::metadata(at).map_err(|e| crate::Error::io(at, e))?;
    if meta.is_file() {
        let rel = at.strip_prefix(base).unwrap_or(at).to_string_lossy().replace('\\', "/");
        out.push((rel, meta.len()));
        return Ok(());
    }
    for entry in std::fs::read_dir(at).map_err(|e| crate::Error::io(at, e))? {
        let entry = entry.map_err(|e| crate::Error::io(at, e))?;
        collect_files(base, &entry.path(), out)?;
    }
    Ok(())
}
