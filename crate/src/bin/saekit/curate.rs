//! `saekit validate` and `saekit curate convert|split|run`: curation from a terminal. Files are read
//! into records (`--map FIELD=PATH`, `--columns` for a CSV without a header), preprocessed by the step
//! flags (or a `--steps` JSON list), validated with thresholds into an HTML and JSON report, split
//! exactly, and written as JSONL, CSV, Parquet or the Hugging Face JSON document, or into the workspace.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use saekit::catalog::Workspace;
use saekit::curate::export::ParquetCompression;
use saekit::curate::render::steps_table;
use saekit::curate::validate::{FieldKind, FieldRule};
use saekit::curate::{Curate, CurateStep, ExportFormat, ExportSpec, ReadSpec, Records, SplitSpec, ValidateSpec};
use saekit::display::Render;
use saekit::steps::StepSpec;
use saekit::{Error, Result};

/// How to read the input into records.
#[derive(Args, Clone)]
pub struct ReadArgs {
    /// A CSV without a header: its columns, comma-separated
    #[arg(long, value_name = "A,B,…", value_delimiter = ',')]
    columns: Option<Vec<String>>,
    /// FIELD=PATH: the record's FIELD is the file's PATH (a dotted path), e.g. --map input=question
    #[arg(long = "map", value_name = "FIELD=PATH")]
    map: Vec<String>,
    /// With --map: the field that gets every unmapped column (e.g. metadata)
    #[arg(long, value_name = "FIELD")]
    rest: Option<String>,
}

impl ReadArgs {
    pub fn spec(&self) -> Result<ReadSpec> {
        let mut spec = ReadSpec::new();
        spec.columns = self.columns.clone();
        for m in &self.map {
            let (field, from) =
                m.split_once('=').ok_or_else(|| Error::InvalidArgument(format!("--map {m:?}: expected FIELD=PATH")))?;
            spec = spec.map(field.trim(), from.trim());
        }
        spec.rest = self.rest.clone();
        Ok(spec)
    }
}

/// The preprocessing chain, as flags (in this order) or a JSON list.
#[derive(Args, Clone)]
pub struct StepArgs {
    /// Clean input and output: NFKC, whitespace, markup stripped
    #[arg(long)]
    clean: bool,
    /// Also lower-case them
    #[arg(long)]
    lowercase: bool,
    /// Drop records whose input or output is missing, empty or not text
    #[arg(long)]
    require_fields: bool,
    #[arg(long, value_name = "N")]
    min_chars: Option<usize>,
    #[arg(long, value_name = "N")]
    max_chars: Option<usize>,
    /// Drop records whose input and output match REGEX
    #[arg(long, value_name = "REGEX")]
    drop_matching: Option<String>,
    /// Drop exact duplicates (normalised input and output)
    #[arg(long)]
    dedup: bool,
    /// Drop near duplicates too (MinHash, datatrove's 5-grams, 14 × 8)
    #[arg(long)]
    near_dedup: bool,
    /// Drop records scoring below Q under the default quality rules
    #[arg(long, value_name = "Q")]
    min_quality: Option<f64>,
    /// Add metadata: lengths (and --processed-at, the time)
    #[arg(long)]
    enrich: bool,
    #[arg(long, requires = "enrich")]
    processed_at: bool,
    /// A JSON list of steps (`[{"step": "clean", "unicode": "nfc"}, {"step": "filter", "filter": {…}}]`),
    /// run after the flags' steps
    #[arg(long, value_name = "STEPS.json")]
    steps: Option<PathBuf>,
}

impl StepArgs {
    fn steps(&self) -> Result<Vec<CurateStep>> {
        let mut steps = Vec::new();
        if self.clean || self.lowercase {
            let mut clean = CurateStep::clean();
            if let CurateStep::Clean { lowercase, unicode, whitespace, strip_markup, .. } = &mut clean {
                *lowercase = self.lowercase;
                if !self.clean {
                    (*unicode, *whitespace, *strip_markup) = (None, false, false);
                }
            }
            steps.push(clean);
        }
        if self.require_fields {
            steps.push(CurateStep::require_input_output());
        }
        if self.min_chars.is_some() || self.max_chars.is_some() {
            steps.push(CurateStep::filter(StepSpec::chars(self.min_chars, self.max_chars)));
        }
        if let Some(r) = &self.drop_matching {
            steps.push(CurateStep::filter(StepSpec::drop_matching(r)));
        }
        if self.dedup {
            steps.push(CurateStep::filter(StepSpec::ExactDedup));
        }
        if self.near_dedup {
            steps.push(CurateStep::filter(StepSpec::near_dedup()));
        }
        if let Some(q) = self.min_quality {
            steps.push(CurateStep::quality(q));
        }
        if self.enrich {
            steps.push(CurateStep::enrich(self.processed_at));
        }
        if let Some(path) = &self.steps {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let more: Vec<CurateStep> = serde_json::from_str(&text).map_err(|e| Error::Json {
                path: path.clone(),
                line: e.line() as u64,
                message: format!("column {}: {e}", e.column()),
            })?;
            steps.extend(more);
        }
        Ok(steps)
    }
}

#[derive(Args, Clone)]
pub struct SplitArgs {
    /// NAME=RATIO, repeatable (default train=0.8 validation=0.1 test=0.1)
    #[arg(long = "ratio", value_name = "NAME=RATIO")]
    ratios: Vec<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep each value of FIELD in the splits' proportions
    #[arg(long, value_name = "FIELD")]
    stratify: Option<String>,
    /// Identical values of FIELD stay in one split
    #[arg(long, value_name = "FIELD", default_value = "input")]
    group_by: String,
}

impl SplitArgs {
    fn spec(&self) -> Result<SplitSpec> {
        let mut spec = SplitSpec::train_validation_test();
        if !self.ratios.is_empty() {
            spec.ratios = self
                .ratios
                .iter()
                .map(|r| {
                    let (n, v) = r
                        .split_once('=')
                        .ok_or_else(|| Error::InvalidArgument(format!("--ratio {r:?}: expected NAME=RATIO")))?;
                    let v: f64 = v
                        .parse()
                        .map_err(|_| Error::InvalidArgument(format!("--ratio {r:?}: {v:?} is not a number")))?;
                    Ok((n.to_string(), v))
                })
                .collect::<Result<_>>()?;
        }
        spec.seed = self.seed;
        spec.stratify = self.stratify.clone();
        spec.group_by = self.group_by.clone();
        Ok(spec)
    }
}

#[derive(Args, Clone)]
pub struct WriteArgs {
    /// Default: by the output's name (.jsonl[.gz|.zst], .csv, .parquet, .json)
    #[arg(long, value_enum)]
    format: Option<ExportFormat>,
    /// Examples per shard (NAME-00000-of-0000N.EXT and NAME.shards.json with their sha256)
    #[arg(long, value_name = "N")]
    shard_size: Option<usize>,
    #[arg(long, value_enum, default_value_t = ParquetCompression::Snappy)]
    parquet_compression: ParquetCompression,
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    row_group_size: usize,
}

impl WriteArgs {
    fn spec(&self, out: &std::path::Path) -> Result<ExportSpec> {
        let format = match self.format.or_else(|| ExportFormat::from_path(out)) {
            Some(f) => f,
            None => {
                return Err(Error::InvalidArgument(format!(
                    "cannot tell the format of {}: name it .jsonl, .csv, .parquet or .json, or pass --format",
                    out.display()
                )));
            }
        };
        let mut spec = ExportSpec::new(format).parquet(self.parquet_compression, self.row_group_size);
        spec.shard_size = self.shard_size;
        Ok(spec)
    }
}

/// `saekit validate`.
#[derive(Args)]
pub struct ValidateArgs {
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    read: ReadArgs,
    /// The whole validation spec as JSON (fields, rules, thresholds); the flags below then adjust it
    #[arg(long, value_name = "SPEC.json")]
    spec: Option<PathBuf>,
    #[arg(long, value_name = "FIELD")]
    input: Option<String>,
    #[arg(long, value_name = "FIELD")]
    output: Option<String>,
    #[arg(long, value_name = "FIELD")]
    task: Option<String>,
    /// The field naming each example's split (readiness: sizes and leakage)
    #[arg(long, value_name = "FIELD")]
    split: Option<String>,
    /// FIELD:KIND (string, number, bool, object, array, any), required of every example; repeatable
    #[arg(long, value_name = "FIELD:KIND")]
    require: Vec<String>,
    #[arg(long)]
    min_quality: Option<f64>,
    #[arg(long)]
    max_low_quality: Option<f64>,
    #[arg(long)]
    max_duplicates: Option<f64>,
    #[arg(long)]
    min_task_balance: Option<f64>,
    #[arg(long)]
    no_near_duplicates: bool,
    /// Write the report as a self-contained HTML page
    #[arg(long, value_name = "FILE.html")]
    report: Option<PathBuf>,
    /// Write the report as JSON
    #[arg(long, value_name = "FILE.json")]
    json: Option<PathBuf>,
}

pub fn validate(args: ValidateArgs) -> Result<()> {
    let records = Records::read(&args.file, &args.read.spec()?)?;
    let mut spec = match &args.spec {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            serde_json::from_str(&text).map_err(|e| Error::Json {
                path: path.clone(),
                line: e.line() as u64,
                message: format!("column {}: {e}", e.column()),
            })?
        }
        None => ValidateSpec::default(),
    };
    if let Some(f) = args.input {
        spec.required.retain(|r| r.field != spec.input);
        spec.required.insert(0, FieldRule::new(&f, FieldKind::String).non_empty());
        spec.input = f;
    }
    if let Some(f) = args.output {
        let old = spec.output.clone();
        spec.required.retain(|r| Some(&r.field) != old.as_ref());
        spec.required.push(FieldRule::new(&f, FieldKind::String).non_empty());
        spec.output = Some(f);
    }
    if let Some(f) = args.task {
        spec.task = Some(f);
    }
    if let Some(f) = args.split {
        spec.split = Some(f);
    }
    for r in &args.require {
        let (field, kind) = r
            .rsplit_once(':')
            .ok_or_else(|| Error::InvalidArgument(format!("--require {r:?}: expected FIELD:KIND")))?;
        let kind: FieldKind = serde_json::from_value(serde_json::Value::String(kind.to_string())).map_err(|_| {
            Error::InvalidArgument(format!("--require {r:?}: KIND is one of string, number, bool, object, array, any"))
        })?;
        spec.required.push(FieldRule::new(field, kind));
    }
    let t = &mut spec.thresholds;
    if let Some(v) = args.min_quality {
        t.min_quality = v;
    }
    if let Some(v) = args.max_low_quality {
        t.max_low_quality = v;
    }
    if let Some(v) = args.max_duplicates {
        t.max_duplicates = v;
    }
    if let Some(v) = args.min_task_balance {
        t.min_task_balance = v;
    }
    if args.no_near_duplicates {
        spec.near_duplicates = false;
    }
    let report = records.validate(&spec)?;
    println!("{}", report.with_records(&records).plain());
    if let Some(path) = &args.report {
        report.write_html(Some(&records), path)?;
        println!("\nreport: {}", path.display());
    }
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    if report.passed() {
        Ok(())
    } else {
        let failed: Vec<&str> = report.checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
        Err(Error::InvalidArgument(format!("validation failed: {}", failed.join(", "))))
    }
}

#[derive(Subcommand)]
pub enum CurateCommand {
    /// Read a file, run the preprocessing chain, write it in another format (or the same), streamed in
    /// batches (memory: one batch and what dedup remembers)
    Convert {
        input: PathBuf,
        output: PathBuf,
        /// Records per batch (Parquet output takes its schema from the first batch kept)
        #[arg(long, value_name = "N", default_value_t = 10_000)]
        batch_rows: usize,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        steps: StepArgs,
        #[command(flatten)]
        write: WriteArgs,
    },
    /// Split a file by ratios (exact counts, seeded, optionally stratified, no input in two splits) into
    /// DIR/NAME.EXT per split and DIR/splits.json
    Split {
        input: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        split: SplitArgs,
        /// jsonl (default), csv, parquet or hf-json
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Curate a file into the workspace: a dataset (a Parquet file per split) with lineage to its input
    Run {
        name: String,
        input: PathBuf,
        #[command(flatten)]
        read: ReadArgs,
        #[command(flatten)]
        steps: StepArgs,
        /// Also split (with the split flags)
        #[arg(long)]
        split: bool,
        #[command(flatten)]
        split_args: SplitArgs,
    },
}

fn extension(format: ExportFormat) -> &'static str {
    match format {
        ExportFormat::Jsonl => "jsonl",
        ExportFormat::Csv => "csv",
        ExportFormat::Parquet => "parquet",
        ExportFormat::HfJson => "json",
    }
}

pub fn curate(command: CurateCommand, open: impl FnOnce() -> Result<Workspace>) -> Result<()> {
    match command {
        CurateCommand::Convert { input, output, read, steps, write, batch_rows } => {
            let (report, reports) = saekit::curate::stream::convert(
                &input,
                &read.spec()?,
                &steps.steps()?,
                &output,
                &write.spec(&output)?,
                batch_rows,
            )?;
            if !reports.is_empty() {
                println!("{}\n", steps_table(&reports).plain());
            }
            println!("{}", report.bundle().plain());
        }
        CurateCommand::Split { input, out, read, split, format } => {
            let records = Records::read(&input, &read.spec()?)?;
            let splits = records.split(&split.spec()?)?;
            println!("{}", splits.bundle().plain());
            let mut files = Vec::new();
            for (j, name) in splits.names.iter().enumerate() {
                let path = out.join(format!("{name}.{}", extension(format)));
                let report = records.subset(&splits.indices[j]).export(&path, &ExportSpec::new(format))?;
                files.extend(report.files);
            }
            let summary = serde_json::json!({
                "input": input.display().to_string(),
                "input_sha256": records.sha256,
                "seed": splits.spec.seed,
                "ratios": splits.spec.ratios,
                "stratify": splits.spec.stratify,
                "group_by": splits.spec.group_by,
                "splits": splits.names.iter().zip(&files).map(|(n, f)| serde_json::json!({
                    "name": n, "path": f.path.file_name().unwrap_or_default().to_string_lossy(),
                    "rows": f.rows, "sha256": f.sha256,
                })).collect::<Vec<_>>(),
                "saekit_version": env!("CARGO_PKG_VERSION"),
            });
            saekit::files::write_atomically(
                &out.join("splits.json"),
                (serde_json::to_string_pretty(&summary).unwrap_or_default() + "\n").as_bytes(),
            )?;
            println!("\nwrote {} splits to {}", files.len(), out.display());
        }
        CurateCommand::Run { name, input, read, steps, split, split_args } => {
            let mut request = Curate::file(&name, &input, read.spec()?);
            request.steps = steps.steps()?;
            if split {
                request.split = Some(split_args.spec()?);
            }
            let curated = open()?.curate(&request)?;
            println!("{}", curated.bundle().plain());
        }
    }
    Ok(())
}
