//! Versions and exports of collections and datasets.
//!
//! A *version* is an immutable snapshot: the records of a collection (or a dataset) at that moment, after
//! the preprocessing it names, written once as a catalog dataset `NAME/vN` whose lineage reaches what it
//! was made from and its parent version. The name `NAME` is a pointer: [`Workspace::dataset`] of `NAME`
//! reads the version it points to; making a version points it there, [`Workspace::switch_version`] moves
//! it back or forth, and every move is recorded ([`Workspace::version_history`]). Versions stay readable
//! while others are made.
//!
//! An incremental export appends to a JSONL file only the records added since the file's last record (its
//! `id`), after cutting a torn last line left by an interrupted append; so two incremental exports give
//! the same bytes as one full export. Each export leaves a checkpoint in the catalog.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::Collector;
use crate::catalog::{
    ArtifactPlan, DATASET_KIND, Dataset, DatasetRecord, DatasetStatus, IfReady, Request, Workspace, check_name,
};
use crate::curate::preprocess::{CurateStep, StepReport, preprocess};
use crate::curate::validate::Statistics;
use crate::curate::{ExportFormat, ExportSpec, ReadSpec, Records, ValidateSpec};
use crate::error::{Error, Result};
use crate::jobs::JobContext;
use crate::sources::{Format, SourceSpec, TextField};

/// What a version snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum VersionOf {
    Collection(String),
    Dataset(String),
}

/// A version to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionSpec {
    pub name: String,
    pub of: VersionOf,
    pub description: String,
    pub steps: Vec<CurateStep>,
}

impl VersionSpec {
    pub fn of_collection(name: impl Into<String>, collection: impl Into<String>) -> VersionSpec {
        VersionSpec {
            name: name.into(),
            of: VersionOf::Collection(collection.into()),
            description: String::new(),
            steps: Vec::new(),
        }
    }

    pub fn of_dataset(name: impl Into<String>, dataset: impl Into<String>) -> VersionSpec {
        VersionSpec { of: VersionOf::Dataset(dataset.into()), ..VersionSpec::of_collection(name, "") }
    }

    pub fn description(mut self, description: impl Into<String>) -> VersionSpec {
        self.description = description.into();
        self
    }

    pub fn step(mut self, step: CurateStep) -> VersionSpec {
        self.steps.push(step);
        self
    }
}

/// A version: its number, what it was made from, its parent, the preprocessing and its counts.
#[derive(Debug, Clone)]
pub struct Version {
    pub name: String,
    pub number: u64,
    pub dataset: Dataset,
    pub parent: Option<u64>,
    pub description: String,
    pub of: VersionOf,
    pub records: u64,
    pub steps: Vec<StepReport>,
    pub created_at: String,
    /// Whether the name points to it now.
    pub current: bool,
}

impl Version {
    fn from_dataset(dataset: Dataset, current: Option<i64>) -> Option<Version> {
        let m = dataset.row().metadata.get("version")?.clone();
        Some(Version {
            name: m["name"].as_str()?.to_string(),
            number: m["number"].as_u64()?,
            parent: m["parent"].as_u64(),
            description: m["description"].as_str().unwrap_or("").to_string(),
            of: serde_json::from_value(m["of"].clone()).ok()?,
            records: m["records"].as_u64().unwrap_or(0),
            steps: serde_json::from_value(m["steps"].clone()).unwrap_or_default(),
            created_at: dataset.row().created_at.clone(),
            current: current == Some(dataset.id()),
            dataset,
        })
    }

    /// The version's records.
    pub fn read(&self) -> Result<Records> {
        let source = self.dataset.source()?;
        let path =
            source.files().first().cloned().ok_or_else(|| Error::InvalidArgument("a version without files".into()))?;
        Records::read(path, &ReadSpec::new())
    }
}

/// What changed between two versions: records (by content) added and removed, and their statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDiff {
    pub name: String,
    pub from: u64,
    pub to: u64,
    pub added: Vec<Map<String, Value>>,
    pub removed: Vec<Map<String, Value>>,
    pub unchanged: u64,
    pub from_statistics: Statistics,
    pub to_statistics: Statistics,
}

/// Where the content of a record is, for diffs: its fields but the collection's own `id` and `at`, in
/// sorted order.
fn content_key(row: &Map<String, Value>) -> String {
    let sorted: std::collections::BTreeMap<&String, &Value> =
        row.iter().filter(|(k, _)| k.as_str() != "id" && k.as_str() != "at").collect();
    serde_json::to_string(&sorted).unwrap_or_default()
}

fn version_name(name: &str, n: u64) -> String {
    format!("{name}/v{n}")
}

#[derive(Debug, Clone)]
struct MakeVersion(VersionSpec);

impl Request for MakeVersion {
    type Output = Version;

    fn label(&self) -> String {
        format!("version {}", self.0.name)
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<Version> {
        let spec = &self.0;
        check_name(&spec.name)?;
        let (records, source_id) = match &spec.of {
            VersionOf::Collection(c) => {
                // Versioning a collection that was never made is a mistake, not an empty version.
                let known =
                    ws.catalog().with_conn(|conn| ws.catalog().artifact_id_in(conn, super::COLLECTION_KIND, c))?;
                if known.is_none() {
                    return Err(Error::InvalidArgument(format!("there is no collection `{c}` to version")));
                }
                let collector = ws.collection(c)?;
                (collector.records()?, collector.id)
            }
            VersionOf::Dataset(d) => {
                let dataset = ws.dataset(d)?;
                let mut all = Records::default();
                for p in dataset.source()?.files() {
                    let r = Records::read(p, &ReadSpec::new())?;
                    all.path = r.path;
                    all.format = r.format;
                    all.rows.extend(r.rows);
                    all.lines.extend(r.lines);
                }
                (all, dataset.id())
            }
        };
        let existing = ws.versions(&spec.name)?;
        let parent = existing.iter().map(|v| v.number).max();
        let number = parent.unwrap_or(0) + 1;
        let mut parents = vec![source_id];
        if let Some(p) = existing.iter().find(|v| Some(v.number) == parent) {
            parents.push(p.dataset.id());
        }
        let plan = ArtifactPlan {
            kind: DATASET_KIND,
            name: version_name(&spec.name, number),
            working: DatasetStatus::Importing,
            params: json!({"origin": "version", "spec": spec, "number": number}),
            parents,
            dir: Some("datasets"),
            if_ready: IfReady::Refuse,
            resumable: false,
        };
        let produced = ws.produce(plan, ctx, |dir, _| {
            let dir = dir.ok_or_else(|| Error::InvalidArgument("a version writes files".into()))?;
            let (kept, steps) = preprocess(&records, &spec.steps, "input", "output")?;
            let file = dir.path().join("data.parquet");
            kept.export(&file, &ExportSpec::new(ExportFormat::Parquet))?;
            let paths = dir.committed_paths(ws.root(), std::slice::from_ref(&file));
            let text = if kept.rows.iter().any(|r| r.contains_key("output")) {
                TextField::Template("{input}\n\n{output}".into())
            } else {
                TextField::Column("input".into())
            };
            let source = SourceSpec {
                paths: paths.clone(),
                format: Some(Format::Parquet),
                text,
                on_error: Default::default(),
                infer_rows: 1000,
                batch_rows: 4096,
            };
            Ok(DatasetRecord {
                source: "version".into(),
                repo_id: None,
                spec: serde_json::to_value(&source).unwrap_or_default(),
                paths,
                metadata: json!({
                    "format": "parquet",
                    "version": {
                        "name": spec.name, "number": number, "parent": parent, "description": spec.description,
                        "of": spec.of, "records": kept.len(), "steps": steps,
                    },
                    "saekit_version": crate::VERSION,
                }),
                num_rows: Some(kept.len() as u64),
                num_bytes: std::fs::metadata(&file).ok().map(|m| m.len()),
                fingerprint: None,
            })
        })?;
        let dataset = ws.dataset_by_id(produced.id())?;
        ws.point(&spec.name, dataset.id(), number)?;
        Version::from_dataset(dataset, Some(produced.id()))
            .ok_or_else(|| Error::InvalidArgument("a version's record lacks its metadata".into()))
    }
}

impl Workspace {
    /// Makes the next version of `spec.name` (`NAME/vN`, N one more than the last) and points the name to
    /// it.
    pub fn make_version(&self, spec: &VersionSpec) -> Result<Version> {
        self.make(MakeVersion(spec.clone()))
    }

    /// The versions of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<Version>> {
        let current = self.pointer(name)?;
        let prefix = format!("{name}/v");
        let ids: Vec<i64> = self.catalog().with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT id FROM artifacts WHERE kind = ?1 AND status = 'ready' AND substr(name, 1, ?2) = ?3")
                .map_err(|source| Error::Catalog { path: self.catalog().path().to_path_buf(), source })?;
            let rows = stmt
                .query_map(params![DATASET_KIND, prefix.len() as i64, prefix], |r| r.get(0))
                .map_err(|source| Error::Catalog { path: self.catalog().path().to_path_buf(), source })?;
            rows.collect::<rusqlite::Result<Vec<i64>>>()
                .map_err(|source| Error::Catalog { path: self.catalog().path().to_path_buf(), source })
        })?;
        let mut versions: Vec<Version> = ids
            .into_iter()
            .filter_map(|id| self.dataset_by_id(id).ok())
            .filter_map(|d| Version::from_dataset(d, current.map(|c| c.0)))
            .filter(|v| v.name == name)
            .collect();
        versions.sort_by_key(|v| v.number);
        Ok(versions)
    }

    /// Version `number` of `name`.
    pub fn version(&self, name: &str, number: u64) -> Result<Version> {
        let versions = self.versions(name)?;
        let known: Vec<String> = versions.iter().map(|v| format!("v{}", v.number)).collect();
        versions.into_iter().find(|v| v.number == number).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "`{name}` has no version {number} (versions: {})",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        })
    }

    /// The version `name` points to.
    pub fn current_version(&self, name: &str) -> Result<Version> {
        match self.pointer(name)? {
            Some((_, n)) => self.version(name, n),
            None => Err(Error::InvalidArgument(format!("`{name}` has no versions"))),
        }
    }

    /// Points `name` to its version `number` (recorded).
    pub fn switch_version(&self, name: &str, number: u64) -> Result<Version> {
        let v = self.version(name, number)?;
        self.point(name, v.dataset.id(), number)?;
        self.version(name, number)
    }

    /// Every move of the pointer `name`: (version, when), oldest first.
    pub fn version_history(&self, name: &str) -> Result<Vec<(u64, String)>> {
        let path = self.catalog().path().to_path_buf();
        self.catalog().with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT version, switched_at FROM version_pointers WHERE name = ?1 ORDER BY id")
                .map_err(|source| Error::Catalog { path: path.clone(), source })?;
            let rows = stmt
                .query_map(params![name], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))
                .map_err(|source| Error::Catalog { path: path.clone(), source })?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|source| Error::Catalog { path: path.clone(), source })
        })
    }

    /// (artifact id, version) `name` points to.
    pub(crate) fn pointer(&self, name: &str) -> Result<Option<(i64, u64)>> {
        let path = self.catalog().path().to_path_buf();
        self.catalog().with_conn(|conn| {
            conn.query_row(
                "SELECT artifact_id, version FROM version_pointers WHERE name = ?1 ORDER BY id DESC LIMIT 1",
                params![name],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)? as u64)),
            )
            .optional()
            .map_err(|source| Error::Catalog { path, source })
        })
    }

    fn point(&self, name: &str, artifact: i64, number: u64) -> Result<()> {
        let path = self.catalog().path().to_path_buf();
        self.catalog().with_write_tx(|tx| {
            tx.execute(
                "INSERT INTO version_pointers (name, artifact_id, version, switched_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, artifact, number as i64, crate::catalog::now_rfc3339()],
            )
            .map(|_| ())
            .map_err(|source| Error::Catalog { path, source })
        })
    }

    /// What changed from version `from` to version `to` of `name`.
    pub fn diff_versions(&self, name: &str, from: u64, to: u64) -> Result<VersionDiff> {
        let a = self.version(name, from)?.read()?;
        let b = self.version(name, to)?.read()?;
        let mut left: HashMap<String, usize> = HashMap::new();
        for row in &a.rows {
            *left.entry(content_key(row)).or_default() += 1;
        }
        let mut added = Vec::new();
        let mut unchanged = 0;
        for row in &b.rows {
            match left.get_mut(&content_key(row)) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    unchanged += 1;
                }
                _ => added.push(row.clone()),
            }
        }
        let mut right: HashMap<String, usize> = HashMap::new();
        for row in &b.rows {
            *right.entry(content_key(row)).or_default() += 1;
        }
        let mut removed = Vec::new();
        for row in &a.rows {
            match right.get_mut(&content_key(row)) {
                Some(n) if *n > 0 => *n -= 1,
                _ => removed.push(row.clone()),
            }
        }
        let spec = ValidateSpec { near_duplicates: false, ..Default::default() };
        Ok(VersionDiff {
            name: name.to_string(),
            from,
            to,
            added,
            removed,
            unchanged,
            from_statistics: a.validate(&spec)?.statistics,
            to_statistics: b.validate(&spec)?.statistics,
        })
    }
}

/// What an incremental export did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncrementalExport {
    pub path: PathBuf,
    /// Records appended now.
    pub appended: u64,
    /// Records in the file now.
    pub total: u64,
    /// The id of its last record.
    pub last_id: u64,
    /// Bytes of a torn last line cut before appending (an interrupted earlier export).
    pub repaired_bytes: u64,
}

impl Collector {
    /// Appends to the JSONL at `path` the records added since its last one (all of them for a new file),
    /// and records the checkpoint in `ws`'s catalog.
    pub fn export_incremental(&self, ws: &Workspace, path: impl AsRef<Path>) -> Result<IncrementalExport> {
        let path = path.as_ref();
        if crate::sources::Compression::from_path(path) != crate::sources::Compression::None {
            return Err(Error::InvalidArgument(format!(
                "{}: incremental exports are plain JSONL (a compressed stream cannot be appended to safely)",
                path.display()
            )));
        }
        let mut repaired_bytes = 0;
        let (mut total, mut last_id) = (0u64, 0u64);
        if path.exists() {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            let keep = match bytes.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                None => 0,
            };
            if keep < bytes.len() {
                let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
                file.set_len(keep as u64).map_err(|e| Error::io(path, e))?;
                file.sync_all().map_err(|e| Error::io(path, e))?;
                repaired_bytes = (bytes.len() - keep) as u64;
            }
            let text = &bytes[..keep];
            total = text.iter().filter(|&&b| b == b'\n').count() as u64;
            if let Some(line) = text[..keep.saturating_sub(1)].rsplit(|&b| b == b'\n').next().filter(|l| !l.is_empty())
            {
                let v: Value = serde_json::from_slice(line).map_err(|e| Error::Json {
                    path: path.to_path_buf(),
                    line: total,
                    message: format!("the export's last line is not a record: {e}"),
                })?;
                last_id = v["id"].as_u64().ok_or_else(|| Error::Json {
                    path: path.to_path_buf(),
                    line: total,
                    message: "the export's last record has no `id`: was it written by an incremental export?".into(),
                })?;
            }
        }
        let new = self.records_after(last_id)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::new(&file);
        for row in &new.rows {
            serde_json::to_writer(&mut w, row).map_err(|e| Error::format(path, e))?;
            w.write_all(b"\n").map_err(|e| Error::io(path, e))?;
        }
        w.flush().map_err(|e| Error::io(path, e))?;
        drop(w);
        file.sync_all().map_err(|e| Error::io(path, e))?;
        let appended = new.len() as u64;
        let last_id = new.rows.last().and_then(|r| r["id"].as_u64()).unwrap_or(last_id);
        let total = total + appended;
        let catalog_path = ws.catalog().path().to_path_buf();
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        ws.catalog().with_write_tx(|tx| {
            tx.execute(
                "INSERT INTO export_checkpoints (collection_id, path, records, last_id, exported_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    self.id,
                    absolute.to_string_lossy(),
                    total as i64,
                    last_id as i64,
                    crate::catalog::now_rfc3339()
                ],
            )
            .map(|_| ())
            .map_err(|source| Error::Catalog { path: catalog_path, source })
        })?;
        Ok(IncrementalExport { path: path.to_path_buf(), appended, total, last_id, repaired_bytes })
    }

    /// Every record as JSONL at `path` (what incremental exports add up to).
    pub fn export_all(&self, path: impl AsRef<Path>) -> Result<crate::curate::ExportReport> {
        self.records()?.export(path, &ExportSpec::new(ExportFormat::Jsonl))
    }
}

/// Collections' checkpoints, for displays: (path, records, last id, when), newest last.
pub fn checkpoints(ws: &Workspace, collection: &Collector) -> Result<Vec<(String, u64, u64, String)>> {
    let path = ws.catalog().path().to_path_buf();
    ws.catalog().with_conn(|conn| {
        let mut stmt = conn
            .prepare("SELECT path, records, last_id, exported_at FROM export_checkpoints WHERE collection_id = ?1 ORDER BY id")
            .map_err(|source| Error::Catalog { path: path.clone(), source })?;
        let rows = stmt
            .query_map(params![collection.id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64, r.get::<_, i64>(2)? as u64, r.get::<_, String>(3)?))
            })
            .map_err(|source| Error::Catalog { path: path.clone(), source })?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|source| Error::Catalog { path: path.clone(), source })
    })
}
