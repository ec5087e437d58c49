//! A dataset as a value: its row read from the catalog with the workspace it is in, how it reads, and how it
//! renders (a card, and a listing as a table).

use super::add::{AddParams, file_stamps, fingerprint};
use super::{Artifact, DatasetRow, DatasetStatus, Lineage, Workspace};
use crate::display::{Card, MimeBundle, Render, Table};
use crate::error::{Error, Result, count};
use crate::jobs::JobContext;
use crate::sources::{Sample, Source, SourceSpec};
use crate::stats::DatasetStats;

/// A dataset in the catalog, as it was when read (see [`Dataset::refresh`]), with the workspace it is in.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub(super) row: DatasetRow,
    pub(super) ws: Workspace,
}

impl Artifact for Dataset {
    fn artifact_id(&self) -> i64 {
        self.row.id
    }
}

impl Dataset {
    /// The workspace it is in.
    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }

    /// The dataset as the catalog has it now (status, progress, tags).
    pub fn refresh(&self) -> Result<Dataset> {
        self.ws.dataset_by_id(self.row.id)
    }

    /// What it was made from and what was made from it.
    pub fn lineage(&self) -> Result<Lineage> {
        self.ws.lineage(self)
    }

    /// Whether it was registered from `source` (same files, format and text mapping) whose files have
    /// not changed since: same sizes and modification times, or else the same content hash.
    pub fn was_made_from(&self, source: &Source) -> Result<bool> {
        if self.row.params.get("mode").and_then(|m| m.as_str()) == Some("import") && self.row.fingerprint.is_none() {
            // Imported by saekit before fingerprints (catalog v1), which kept only the files it came from.
            let files: Vec<String> = source.files().iter().map(|f| f.to_string_lossy().into_owned()).collect();
            return Ok(self.row.metadata.get("imported_from") == Some(&serde_json::json!(files)));
        }
        let asked: Option<AddParams> = serde_json::from_value(self.row.params.clone()).ok();
        let Some(asked) = asked else { return Ok(false) };
        if &asked.source != source.spec() {
            return Ok(false);
        }
        let stamps = file_stamps(source)?;
        let Some(recorded) = &self.row.fingerprint else {
            // Registered by saekit before fingerprints (catalog v1): the same files at the same total size.
            return Ok(self.row.num_bytes == Some(stamps.iter().map(|f| f.1).sum()));
        };
        if stamps == recorded.files {
            return Ok(true);
        }
        let sizes = |files: &[(String, u64, i128)]| files.iter().map(|f| (f.0.clone(), f.1)).collect::<Vec<_>>();
        if sizes(&stamps) != sizes(&recorded.files) {
            return Ok(false);
        }
        Ok(fingerprint(source, &JobContext::detached("fingerprint"))?.sha256 == recorded.sha256)
    }

    pub fn name(&self) -> &str {
        &self.row.name
    }

    pub fn id(&self) -> i64 {
        self.row.id
    }

    pub fn status(&self) -> DatasetStatus {
        self.row.status
    }

    /// The catalog row, with every stored field.
    pub fn row(&self) -> &DatasetRow {
        &self.row
    }

    /// Opens the dataset's data for reading.
    pub fn source(&self) -> Result<Source> {
        let mut spec: SourceSpec = serde_json::from_value(self.row.spec.clone()).map_err(|e| {
            Error::InvalidArgument(format!("dataset `{}` has an unreadable source spec: {e}", self.row.name))
        })?;
        // Imported data lives in the workspace (its stored paths are relative to the workspace root):
        // read it from wherever the workspace is now.
        // Its files by name when they are named relative to the root (a mix's folder also holds what its
        // preprocessing dropped, which is not its data), else the whole folder.
        if let Some(dir) = &self.row.artifact_path {
            let relative = !spec.paths.is_empty() && spec.paths.iter().all(|p| std::path::Path::new(p).is_relative());
            spec.paths = if relative {
                spec.paths.iter().map(|p| self.ws.root().join(p).to_string_lossy().into_owned()).collect()
            } else {
                vec![dir.to_string_lossy().into_owned()]
            };
        }
        Source::from_spec(spec)
    }

    /// Page `page` (from 0) of the dataset's documents, `per_page` to a page.
    pub fn page(&self, page: usize, per_page: usize) -> Result<Sample> {
        let mut sample = self.source()?.page(page, per_page)?;
        sample.total_rows = self.row.num_rows;
        Ok(sample)
    }

    /// The statistics computed when the dataset was added.
    pub fn stats(&self) -> Option<DatasetStats> {
        serde_json::from_value(self.row.metadata.get("stats")?.clone()).ok()
    }

    /// The schema seen when the dataset was added, as (column, type) pairs.
    pub fn columns(&self) -> Vec<(String, String)> {
        let columns =
            self.row.metadata.pointer("/schema/columns").and_then(|c| c.as_array()).cloned().unwrap_or_default();
        columns
            .iter()
            .map(|c| {
                let get = |k: &str| c.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
                (get("name"), get("data_type"))
            })
            .collect()
    }
}

impl Render for Dataset {
    fn bundle(&self) -> MimeBundle {
        let r = &self.row;
        let mut card = Card::new(format!("Dataset {}", r.name))
            .badge(r.status.to_string())
            .fact("id", r.id.to_string())
            .fact(
                "source",
                match &r.repo_id {
                    Some(repo) => format!("{} ({repo})", r.source),
                    None => r.source.clone(),
                },
            )
            .fact("files", files_summary(&r.paths))
            .fact("rows", r.num_rows.map(count).unwrap_or_else(|| "–".into()))
            .fact("size on disk", r.num_bytes.map(crate::display::bytes).unwrap_or_else(|| "–".into()));
        if let Some(format) = r.metadata.get("format").and_then(|f| f.as_str()) {
            let stored =
                if r.artifact_path.is_some() { format!("parquet (imported from {format})") } else { format.into() };
            card = card.fact("format", stored);
        }
        let columns = self.columns();
        if !columns.is_empty() {
            let shown: Vec<String> = columns.iter().map(|(n, t)| format!("{n}: {t}")).collect();
            card = card.fact("columns", shown.join(", "));
        }
        if !r.tags.is_empty() {
            card = card.fact("tags", r.tags.join(", "));
        }
        if let Some(error) = &r.error {
            card = card.fact("error", error.clone());
        }
        if let Some(progress) = &r.progress
            && r.status.is_working()
        {
            card = card.fact("progress", progress.summary());
        }
        card = card.fact("updated", r.updated_at.clone());
        if r.params.as_object().is_some_and(|p| !p.is_empty()) {
            card = card.section(&Table::fields("asked for", &r.params).bundle());
        }
        if let Some(stats) = self.stats() {
            card = card.section(&stats.bundle());
        }
        card.bundle()
    }
}

fn files_summary(paths: &[String]) -> String {
    match paths {
        [] => "none".into(),
        [one] => one.clone(),
        [first, ..] => format!("{} files ({first}, …)", paths.len()),
    }
}

/// A listing of datasets: iterate it (`for d in &ws.datasets()?`), index it by position or name
/// (`list[0]`, `list["austen"]`), or display it as a table.
#[derive(Debug, Clone)]
pub struct DatasetList {
    pub datasets: Vec<Dataset>,
}

impl DatasetList {
    pub fn iter(&self) -> std::slice::Iter<'_, Dataset> {
        self.datasets.iter()
    }

    /// The dataset of that name, if listed.
    pub fn get(&self, name: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| d.name() == name)
    }

    pub fn len(&self) -> usize {
        self.datasets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datasets.is_empty()
    }

    pub fn names(&self) -> Vec<&str> {
        self.datasets.iter().map(|d| d.name()).collect()
    }
}

impl<'a> IntoIterator for &'a DatasetList {
    type Item = &'a Dataset;
    type IntoIter = std::slice::Iter<'a, Dataset>;
    fn into_iter(self) -> Self::IntoIter {
        self.datasets.iter()
    }
}

impl IntoIterator for DatasetList {
    type Item = Dataset;
    type IntoIter = std::vec::IntoIter<Dataset>;
    fn into_iter(self) -> Self::IntoIter {
        self.datasets.into_iter()
    }
}

impl std::ops::Index<usize> for DatasetList {
    type Output = Dataset;
    fn index(&self, index: usize) -> &Dataset {
        &self.datasets[index]
    }
}

impl std::ops::Index<&str> for DatasetList {
    type Output = Dataset;
    /// Panics, naming what is listed, when no dataset has that name.
    fn index(&self, name: &str) -> &Dataset {
        match self.get(name) {
            Some(dataset) => dataset,
            None => panic!("no dataset `{name}` in this list ({})", self.names().join(", ")),
        }
    }
}

impl Render for DatasetList {
    fn bundle(&self) -> MimeBundle {
        let mut table = Table::new(
            format!("{} datasets", self.datasets.len()),
            &["id", "name", "status", "source", "rows", "size", "tags", "updated"],
        );
        for d in &self.datasets {
            let r = &d.row;
            table.row(vec![
                r.id.to_string(),
                r.name.clone(),
                r.status.to_string(),
                r.source.clone(),
                r.num_rows.map(count).unwrap_or_default(),
                r.num_bytes.map(crate::display::bytes).unwrap_or_default(),
                r.tags.join(", "),
                r.updated_at.clone(),
            ]);
        }
        table.bundle()
    }
}
