//! What a workspace holds on disk, by kind of artifact, and the clean-up of artifacts nothing depends on.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::Workspace;
use super::artifact::{ARTIFACTS_DIR, TMP_DIR};
use crate::display::{BarChart, Card, MimeBundle, Render, Table};
use crate::error::Result;
use crate::units::{bytes, count};

/// How a kind of artifact is called in a disk report.
fn kind_label(kind: &str) -> &str {
    match kind {
        "dataset" => "datasets",
        "tokenization" => "tokens",
        "activations" => "activation caches",
        "sae" | "checkpoint" => "checkpoints",
        "model" => "models (weights stay where they were loaded from)",
        other => other,
    }
}

/// Bytes under `path` (a file or a folder).
fn size_of(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| size_of(&e.path())).sum()).unwrap_or(0)
        }
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

/// One line of a disk report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindUsage {
    pub kind: String,
    pub artifacts: u64,
    pub bytes: u64,
}

/// A workspace's files by kind: what each kind's artifacts own under `artifacts/`, partial work under
/// `tmp/`, and the catalog. Files registered by reference (datasets not imported) are not the workspace's
/// and are not counted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskUsage {
    /// Every kind, in a fixed order (datasets, tokens, activation caches, checkpoints), then any other.
    pub kinds: Vec<KindUsage>,
    pub partial_bytes: u64,
    pub catalog_bytes: u64,
    pub total_bytes: u64,
}

impl DiskUsage {
    /// The bytes of kind `label` (`datasets`, `tokens`, `activation caches`, `checkpoints`).
    pub fn bytes_of(&self, label: &str) -> u64 {
        self.kinds.iter().find(|k| k.kind == label).map_or(0, |k| k.bytes)
    }
}

/// What a clean-up removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CleanUp {
    /// (kind, name, bytes) of each artifact removed.
    pub removed: Vec<(String, String, u64)>,
    /// (kind, name) of each one kept because something was made from it (or it is being used).
    pub kept: Vec<(String, String)>,
    pub freed_bytes: u64,
}

impl Workspace {
    /// What the workspace holds on disk, by kind.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let rows = self.catalog().with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT kind, path FROM artifacts")
                .map_err(|source| crate::Error::Catalog { path: self.catalog().path().to_path_buf(), source })?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| crate::Error::Catalog { path: self.catalog().path().to_path_buf(), source })?;
            Ok(rows)
        })?;
        let owned = self.root().join(ARTIFACTS_DIR);
        let mut by_kind: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for label in ["datasets", "tokens", "activation caches", "checkpoints"] {
            by_kind.insert(label.to_string(), (0, 0));
        }
        for (kind, path) in rows {
            let entry = by_kind.entry(kind_label(&kind).to_string()).or_default();
            entry.0 += 1;
            if let Some(path) = path.map(|p| self.catalog().resolve_path(&p)).filter(|p| p.starts_with(&owned)) {
                entry.1 += size_of(&path);
            }
        }
        let order = |k: &str| ["datasets", "tokens", "activation caches", "checkpoints"].iter().position(|l| *l == k);
        let mut kinds: Vec<KindUsage> =
            by_kind.into_iter().map(|(kind, (artifacts, bytes))| KindUsage { kind, artifacts, bytes }).collect();
        kinds.sort_by_key(|k| (order(&k.kind).unwrap_or(usize::MAX), k.kind.clone()));
        let partial_bytes = size_of(&self.root().join(TMP_DIR));
        let catalog_bytes = ["catalog.sqlite", "catalog.sqlite-wal", "catalog.sqlite-shm"]
            .iter()
            .map(|f| size_of(&self.root().join(f)))
            .sum();
        let total_bytes = kinds.iter().map(|k| k.bytes).sum::<u64>() + partial_bytes + catalog_bytes;
        Ok(DiskUsage { kinds, partial_bytes, catalog_bytes, total_bytes })
    }

    /// Removes every ready artifact of `kind` that nothing was made from, with its files; one being made
    /// or deleted by another process right now is kept. `dry_run` only says what would go.
    pub fn remove_unused(&self, kind: &str, dry_run: bool) -> Result<CleanUp> {
        let catalog = self.catalog();
        let rows: Vec<(i64, String, Option<std::path::PathBuf>, bool)> = catalog.with_conn(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT a.id, a.name, a.path, EXISTS (SELECT 1 FROM lineage l WHERE l.parent = a.id) \
                     FROM artifacts a WHERE a.kind = ?1 AND a.status = 'ready' ORDER BY a.id",
                )
                .map_err(|source| crate::Error::Catalog { path: catalog.path().to_path_buf(), source })?;
            let rows = stmt
                .query_map([kind], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get::<_, Option<String>>(2)?.map(|p| catalog.resolve_path(&p)),
                        r.get(3)?,
                    ))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .map_err(|source| crate::Error::Catalog { path: catalog.path().to_path_buf(), source })?;
            Ok(rows)
        })?;
        let mut report = CleanUp::default();
        for (id, name, path, used) in rows {
            if used {
                report.kept.push((kind.to_string(), name));
                continue;
            }
            let size = path.as_deref().map_or(0, size_of);
            if !dry_run {
                match self.delete_artifact(&id, false) {
                    Ok(()) => {}
                    Err(crate::Error::Busy { .. } | crate::Error::InUse { .. }) => {
                        report.kept.push((kind.to_string(), name));
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            report.freed_bytes += size;
            report.removed.push((kind.to_string(), name, size));
        }
        Ok(report)
    }
}

impl Render for DiskUsage {
    fn bundle(&self) -> MimeBundle {
        let mut table =
            Table::new(format!("workspace disk usage: {}", bytes(self.total_bytes)), &["kind", "artifacts", "bytes"]);
        let mut chart = BarChart::new("workspace disk usage", "MiB");
        for k in &self.kinds {
            table.row(vec![k.kind.clone(), count(k.artifacts), bytes(k.bytes)]);
            chart = chart.bar(k.kind.clone(), k.bytes as f64 / (1 << 20) as f64);
        }
        table.row(vec!["partial work (tmp/)".into(), String::new(), bytes(self.partial_bytes)]);
        table.row(vec!["catalog".into(), String::new(), bytes(self.catalog_bytes)]);
        Card::new(format!("Workspace disk usage: {}", bytes(self.total_bytes)))
            .section(&table.bundle())
            .section(&chart.bundle())
            .bundle()
    }
}

impl Render for CleanUp {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new(
            format!(
                "clean-up: {} removed ({} freed), {} kept because something depends on them",
                count(self.removed.len() as u64),
                bytes(self.freed_bytes),
                count(self.kept.len() as u64)
            ),
            &["kind", "name", "bytes"],
        );
        for (kind, name, size) in &self.removed {
            table.row(vec![kind.clone(), name.clone(), bytes(*size)]);
        }
        table.bundle()
    }
}
