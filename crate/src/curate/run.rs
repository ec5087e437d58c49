//! Curation through the catalog's one lifecycle: a [`Curate`] request reads a file (or a catalog
//! dataset), runs the preprocessing chain, optionally splits, and commits the result as a dataset
//! (Parquet, one file per split, a `split` column) whose lineage reaches its input: a file is first
//! registered by reference as `curate/<name>/input`. The record's metadata holds what each step did, the
//! split counts and the input's sha256.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::preprocess::{CurateStep, StepReport, preprocess};
use super::{ExportFormat, ExportSpec, ReadSpec, Records, SplitSpec, Splits};
use crate::catalog::{
    ArtifactPlan, DATASET_KIND, Dataset, DatasetRecord, DatasetStatus, IfReady, Request, Workspace, check_name,
};
use crate::error::{Error, Result};
use crate::jobs::JobContext;
use crate::sources::{Format, Source, SourceSpec, TextField};

/// Where the examples come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CurateInput {
    File {
        path: String,
        read: ReadSpec,
    },
    /// A catalog dataset's files, read as records.
    Dataset {
        name: String,
    },
}

/// A curated dataset to make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curate {
    pub name: String,
    pub input: CurateInput,
    pub steps: Vec<CurateStep>,
    pub split: Option<SplitSpec>,
    /// The fields filters read, and the dataset's text (`input`, then `output` when present).
    pub input_field: String,
    pub output_field: String,
}

impl Curate {
    pub fn file(name: impl Into<String>, path: impl AsRef<std::path::Path>, read: ReadSpec) -> Curate {
        Curate {
            name: name.into(),
            input: CurateInput::File { path: path.as_ref().to_string_lossy().into_owned(), read },
            steps: Vec::new(),
            split: None,
            input_field: "input".into(),
            output_field: "output".into(),
        }
    }

    pub fn dataset(name: impl Into<String>, from: impl Into<String>) -> Curate {
        Curate { input: CurateInput::Dataset { name: from.into() }, ..Curate::file(name, "", ReadSpec::new()) }
    }

    pub fn step(mut self, step: CurateStep) -> Curate {
        self.steps.push(step);
        self
    }

    pub fn split(mut self, split: SplitSpec) -> Curate {
        self.split = Some(split);
        self
    }
}

/// A curated dataset, what its steps did and its splits.
#[derive(Debug, Clone)]
pub struct Curated {
    pub dataset: Dataset,
    pub steps: Vec<StepReport>,
    pub splits: Option<Splits>,
    pub records: Records,
}

/// Registers `path` by reference so the curated dataset's lineage reaches it; `None` when it cannot be
/// read as a catalog source (a CSV without a header, say): the input is then named in the params only.
fn register_input(ws: &Workspace, name: &str, path: &str, read: &ReadSpec) -> Result<Option<Dataset>> {
    if read.columns.is_some() {
        return Ok(None);
    }
    let input_column =
        read.mapping.iter().find(|(f, _)| f == "input").map(|(_, from)| from.clone()).unwrap_or_else(|| "input".into());
    if input_column.contains('.') {
        return Ok(None);
    }
    let source = Source::open(path)?.text_column(input_column);
    ws.ensure_dataset(&format!("curate/{name}/input"), &source).map(Some)
}

impl Request for Curate {
    type Output = Curated;

    fn label(&self) -> String {
        format!("curate {}", self.name)
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<Curated> {
        check_name(&self.name)?;
        ctx.phase("reading", "records", None);
        let (records, parent) = match &self.input {
            CurateInput::File { path, read } => {
                let records = Records::read(path, read)?;
                let parent = register_input(ws, &self.name, path, read)?;
                (records, parent)
            }
            CurateInput::Dataset { name } => {
                let dataset = ws.dataset(name)?;
                let mut all = Records::default();
                for p in dataset.source()?.files() {
                    let r = Records::read(p, &ReadSpec::new())?;
                    all.path = r.path.clone();
                    all.format = r.format.clone();
                    all.sha256 = r.sha256.clone();
                    all.rows.extend(r.rows);
                    all.lines.extend(r.lines);
                }
                (all, Some(dataset))
            }
        };
        let plan = ArtifactPlan {
            kind: DATASET_KIND,
            name: self.name.clone(),
            working: DatasetStatus::Importing,
            params: json!({
                "origin": "curate",
                "request": self,
                "input_sha256": records.sha256,
            }),
            parents: parent.iter().map(Dataset::id).collect(),
            dir: Some("datasets"),
            if_ready: IfReady::Refuse,
            resumable: false,
        };
        let mut out = None;
        let produced = ws.produce(plan, ctx, |dir, ctx| {
            let dir = dir.ok_or_else(|| Error::InvalidArgument("curation writes files".into()))?;
            ctx.phase("preprocessing", "records", Some(records.len() as u64));
            let (kept, steps) = preprocess(&records, &self.steps, &self.input_field, &self.output_field)?;
            ctx.set_done(records.len() as u64);
            let splits = self.split.as_ref().map(|s| kept.split(s)).transpose()?;
            let parts: Vec<(String, Records)> = match &splits {
                Some(s) => s
                    .names
                    .iter()
                    .enumerate()
                    .map(|(j, n)| {
                        let mut r = kept.subset(&s.indices[j]);
                        for row in &mut r.rows {
                            row.insert("split".into(), Value::String(n.clone()));
                        }
                        (n.clone(), r)
                    })
                    .collect(),
                None => vec![("data".into(), kept.clone())],
            };
            let mut files = Vec::new();
            for (name, part) in &parts {
                let path = dir.path().join(format!("{name}.parquet"));
                part.export(&path, &ExportSpec::new(ExportFormat::Parquet))?;
                files.push(path);
            }
            let paths = dir.committed_paths(ws.root(), &files);
            let has_output = kept.rows.iter().any(|r| r.contains_key(&self.output_field));
            let text = if has_output {
                TextField::Template(format!("{{{}}}\n\n{{{}}}", self.input_field, self.output_field))
            } else {
                TextField::Column(self.input_field.clone())
            };
            let spec = SourceSpec {
                paths: paths.clone(),
                format: Some(Format::Parquet),
                text,
                on_error: Default::default(),
                infer_rows: 1000,
                batch_rows: 4096,
            };
            let num_bytes = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
            let metadata = json!({
                "format": "parquet",
                "files": files.len(),
                "curation": {
                    "input": records.path.display().to_string(),
                    "input_sha256": records.sha256,
                    "input_records": records.len(),
                    "steps": steps,
                    "splits": splits.as_ref().map(|s| s.names.iter().cloned().zip(s.counts()).collect::<Vec<_>>()),
                    "seed": splits.as_ref().map(|s| s.spec.seed),
                },
                "saekit_version": crate::VERSION,
            });
            out = Some((steps, splits, kept.clone()));
            Ok(DatasetRecord {
                source: "curate".into(),
                repo_id: None,
                spec: serde_json::to_value(&spec).unwrap_or_default(),
                paths,
                metadata,
                num_rows: Some(kept.len() as u64),
                num_bytes: Some(num_bytes),
                fingerprint: None,
            })
        })?;
        let (steps, splits, records) = out.unwrap_or_default();
        Ok(Curated { dataset: ws.dataset_by_id(produced.id())?, steps, splits, records })
    }
}

impl Workspace {
    /// Makes the curated dataset `request` describes (see [`Curate`]).
    pub fn curate(&self, request: &Curate) -> Result<Curated> {
        self.make(request.clone())
    }

    /// [`Workspace::curate`] as a background job.
    pub fn curate_job(&self, request: &Curate) -> crate::jobs::Job<Curated> {
        self.make_job(request.clone())
    }
}
