//! The workspace: a folder holding a SQLite catalog of datasets and the artifacts made from them (imported
//! data, token stores; later mixes, activation caches, SAEs). Every artifact is made through one
//! lifecycle ([`lifecycle`]: claim, visible row with status and progress, work under `tmp/`, commit or
//! nothing) and recorded with its parents, so a crash at any moment leaves the old state or a clearly
//! marked partial, and several processes (notebook kernels) can share one workspace.
//!
//! Rooms: `db` (connection, migrations), `artifacts` (every artifact's row, tags, lineage), `datasets`
//! (the dataset table), `artifact` (files written atomically), `lifecycle` (the one way to make an
//! artifact), `lineage` (its display), `add` (the dataset stage: add and import), `dataset` (a dataset as a
//! value); this file holds the workspace.

mod add;
mod artifact;
mod artifacts;
mod dataset;
mod datasets;
mod db;
mod lifecycle;
mod lineage;
mod sessions;
mod usage;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use add::{AddDataset, AddParams};
pub(crate) use add::{dataset_metadata, scan};
pub use artifact::*;
pub use artifacts::*;
pub use dataset::{Dataset, DatasetList};
pub use datasets::*;
pub use db::{Catalog, SCHEMA_VERSION};
pub(crate) use db::{format_rfc3339, now_rfc3339};
pub(crate) use lifecycle::resumable_dir;
pub use lifecycle::{ArtifactPlan, IfReady, Produced, Request, StageRecord, WorkDir};
pub use lineage::Lineage;
pub use sessions::{SessionRow, Touch, TouchedArtifact};
pub use usage::{CleanUp, DiskUsage, KindUsage};

use crate::error::{Error, Result};
use crate::jobs::Job;
use crate::sources::Source;

/// The environment variable that overrides the default workspace folder (`~/.saekit`).
pub const WORKSPACE_ENV: &str = "SAEKIT_HOME";

/// A workspace folder and its catalog. Cheap to clone: clones share one catalog (a job started from a
/// workspace uses it too, without reopening it).
#[derive(Clone)]
pub struct Workspace {
    inner: Arc<WorkspaceInner>,
}

struct WorkspaceInner {
    root: PathBuf,
    catalog: Catalog,
}

impl std::fmt::Debug for Workspace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workspace({})", self.root().display())
    }
}

/// Anything in the catalog with an artifact id: what [`Workspace::lineage`] starts from.
pub trait Artifact {
    fn artifact_id(&self) -> i64;
}

impl Artifact for i64 {
    fn artifact_id(&self) -> i64 {
        *self
    }
}

impl Artifact for ArtifactRow {
    fn artifact_id(&self) -> i64 {
        self.id
    }
}

impl Workspace {
    /// Opens (creating if needed) the workspace at `root`, and clears what crashed writers left behind
    /// (once, here: jobs share the opened workspace).
    pub fn open(root: impl AsRef<Path>) -> Result<Workspace> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let root = root.canonicalize().map_err(|e| Error::io(&root, e))?;
        let catalog = Catalog::open(&root.join("catalog.sqlite"))?;
        recover(&root, &catalog)?;
        Ok(Workspace { inner: Arc::new(WorkspaceInner { root, catalog }) })
    }

    /// Opens the workspace at `$SAEKIT_HOME`, or `~/.saekit`.
    pub fn open_default() -> Result<Workspace> {
        Workspace::open(default_root()?)
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The catalog, for lower-level access.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Registers files as a dataset without copying them: reads them once to check them and compute
    /// statistics, the schema and a fingerprint. A dataset of that name left failed or interrupted by
    /// an earlier attempt is taken over; a ready one is [`Error::AlreadyExists`] (see
    /// [`Workspace::ensure_dataset`] for a call that is safe to repeat).
    pub fn add_dataset(&self, name: &str, source: &Source) -> Result<Dataset> {
        self.make(AddDataset::by_reference(name, source))
    }

    /// [`Workspace::add_dataset`] as a background job: returns at once; progress in bytes read.
    pub fn add_dataset_job(&self, name: &str, source: &Source) -> Job<Dataset> {
        self.make_job(AddDataset::by_reference(name, source))
    }

    /// Copies a source into the workspace as Parquet (a `text` column then the metadata columns), so it
    /// survives the original files moving, and registers it. Statistics come from the same pass.
    pub fn import_dataset(&self, name: &str, source: &Source) -> Result<Dataset> {
        self.make(AddDataset::import(name, source))
    }

    /// [`Workspace::import_dataset`] as a background job: returns at once; progress in bytes read. A
    /// cancelled import leaves no file and no row behind (or the earlier failed row, if it took one over).
    pub fn import_dataset_job(&self, name: &str, source: &Source) -> Job<Dataset> {
        self.make_job(AddDataset::import(name, source))
    }

    /// The ready dataset `name` if it was registered from this source (same files, format and text
    /// mapping) and its files are unchanged (same sizes and modification times, or else the same
    /// content hash); otherwise (re)registers it by reference. Safe to run again and again from a
    /// notebook cell. A changed dataset that something was made from is [`Error::InUse`]: delete it
    /// (with its dependents) first.
    pub fn ensure_dataset(&self, name: &str, source: &Source) -> Result<Dataset> {
        match self.dataset(name) {
            Ok(dataset) if dataset.status() == DatasetStatus::Ready && dataset.name() == name => {
                if dataset.was_made_from(source)? {
                    return Ok(dataset);
                }
                let import = dataset.row.artifact_path.is_some();
                self.delete_dataset(name)?;
                if import { self.import_dataset(name, source) } else { self.add_dataset(name, source) }
            }
            _ => match self.add_dataset(name, source) {
                // Another kernel running the same cell made it first: the same question again.
                Err(Error::AlreadyExists { .. }) => {
                    let dataset = self.dataset(name)?;
                    if dataset.was_made_from(source)? {
                        Ok(dataset)
                    } else {
                        Err(Error::InvalidArgument(format!(
                            "dataset `{name}` was just registered by another process from other files; \
                             run this again to register it from these"
                        )))
                    }
                }
                other => other,
            },
        }
    }

    /// A dataset by name (or id), with its status as of now.
    /// The dataset `name_or_id`; a name with versions (and no dataset of its own) reads the version it
    /// points to (see [`crate::collect::version`]).
    pub fn dataset(&self, name_or_id: &str) -> Result<Dataset> {
        match self.catalog().dataset(name_or_id) {
            Ok(row) => {
                self.note(row.id, Touch::Read);
                Ok(Dataset { row, ws: self.clone() })
            }
            Err(e @ Error::NotFound { .. }) => match self.pointer(name_or_id)? {
                Some((id, _)) => self.dataset_by_id(id),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    pub(crate) fn dataset_by_id(&self, id: i64) -> Result<Dataset> {
        let row = self.catalog().with_conn(|conn| self.catalog().dataset_by_id(conn, id))?;
        self.note(row.id, Touch::Read);
        Ok(Dataset { row, ws: self.clone() })
    }

    /// Every dataset in the catalog.
    pub fn datasets(&self) -> Result<DatasetList> {
        self.find(&DatasetFilter::default())
    }

    /// The datasets matching a filter (by name, source, status, tag).
    pub fn find(&self, filter: &DatasetFilter) -> Result<DatasetList> {
        let rows = self.catalog().list_datasets(filter)?;
        Ok(DatasetList { datasets: rows.into_iter().map(|row| Dataset { row, ws: self.clone() }).collect() })
    }

    /// Sets a dataset's tags.
    pub fn tag(&self, name: &str, tags: &[&str]) -> Result<Dataset> {
        let row = self.catalog().dataset(name)?;
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        self.catalog().set_tags(row.id, &tags)?;
        self.dataset(name)
    }

    /// Deletes a dataset and every artifact file it owns. Files registered by reference (not imported)
    /// are left alone. A dataset that something was made from (a tokenization) is [`Error::InUse`],
    /// naming those; [`Workspace::delete_dataset_cascade`] deletes them too.
    pub fn delete_dataset(&self, name: &str) -> Result<()> {
        self.delete_artifact(&self.catalog().dataset(name)?.id, false)
    }

    /// Deletes a dataset and everything made from it (tokenizations, and what was made from those).
    pub fn delete_dataset_cascade(&self, name: &str) -> Result<()> {
        self.delete_artifact(&self.catalog().dataset(name)?.id, true)
    }

    /// Deletes any artifact (by id), refusing one that others were made from unless `cascade`. Nothing
    /// that a live process is making (or reading as it makes something from it) is deleted: each victim's
    /// claim is taken first, so that is [`Error::Busy`].
    pub fn delete_artifact(&self, artifact: &impl Artifact, cascade: bool) -> Result<()> {
        let catalog = self.catalog();
        let id = artifact.artifact_id();
        let (row, descendants) =
            catalog.with_conn(|conn| Ok((catalog.artifact_in(conn, id)?, catalog.descendants_in(conn, id)?)))?;
        let mut claims = vec![lifecycle::NameLock::acquire(self.root(), &row.kind, &row.name)?];
        if cascade {
            for d in &descendants {
                claims.push(lifecycle::NameLock::acquire(self.root(), &d.kind, &d.name)?);
            }
        }
        let owned = catalog.with_write_tx(|tx| catalog.delete_artifact_in(tx, id, cascade))?;
        drop(claims);
        self.remove_owned(owned)
    }

    fn remove_owned(&self, paths: Vec<PathBuf>) -> Result<()> {
        let owned = self.root().join(ARTIFACTS_DIR);
        let partials = self.root().join(TMP_DIR);
        for path in paths {
            // Only what saekit wrote is saekit's to delete: committed artifacts, and the partial a
            // resumable attempt left.
            if path.starts_with(&owned) || path.starts_with(&partials) {
                remove_artifact(&path)?;
            }
        }
        Ok(())
    }

    /// What `artifact` was made from and what was made from it, as a table and a small graph.
    pub fn lineage(&self, artifact: &impl Artifact) -> Result<Lineage> {
        Lineage::of(self.catalog(), artifact.artifact_id())
    }
}

fn default_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os(WORKSPACE_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| {
        Error::InvalidArgument(format!("neither ${WORKSPACE_ENV} nor $HOME is set; open a workspace by path"))
    })?;
    Ok(PathBuf::from(home).join(".saekit"))
}

/// Dataset names: letters, digits, `-_./`, not digits only (those are ids).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.chars().all(|c| c.is_ascii_digit())
        && name.chars().all(|c| c.is_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "dataset name {name:?}: use letters, digits, `-`, `_`, `.` and `/` (not digits only: those are ids)"
        )))
    }
}
