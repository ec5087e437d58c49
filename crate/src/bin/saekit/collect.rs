//! `saekit collect`: collections from a terminal. Make one (with its sampling), add records from stdin
//! (each acknowledged once committed) or files, serve the HTTP endpoint, show counts, export (fully or
//! incrementally), and make, list, diff and switch versions.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::Subcommand;
use saekit::catalog::Workspace;
use saekit::collect::serve::{ServeOptions, Server};
use saekit::collect::{Added, Interaction, Sampling, Tier, VersionSpec, versions_table};
use saekit::curate::CurateStep;
use saekit::display::Render;
use saekit::{Error, Result};

use crate::curate::ReadArgs;

#[derive(Subcommand)]
pub enum CollectCommand {
    /// Make a collection with its sampling (or show the one there)
    Create {
        name: String,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep this share of what passes the rest
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long)]
        exclude_errors: bool,
        #[arg(long)]
        min_quality: Option<f64>,
        /// MIN_QUALITY=RATE: records of at least this quality (up to the next tier) kept at RATE
        #[arg(long = "tier", value_name = "MIN_QUALITY=RATE")]
        tiers: Vec<String>,
        /// CATEGORY=N: at most N kept of a category
        #[arg(long = "per-category", value_name = "CATEGORY=N")]
        per_category: Vec<String>,
        #[arg(long, value_name = "N")]
        daily_cap: Option<u64>,
    },
    /// Add records: JSON lines on stdin (`{"input": …, "output": …, "type": …}`), each acknowledged with
    /// `ok ID` (or `dropped REASON`) once committed; or one record from --input/--output
    Add {
        name: String,
        #[arg(long)]
        input: Option<String>,
        #[arg(long, default_value = "")]
        output: String,
    },
    /// Add every record of a file (JSONL, CSV, Parquet; --map FIELD=PATH)
    Import {
        name: String,
        file: PathBuf,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Serve POST /records, GET /stats, GET /health (loopback by default)
    Serve {
        name: String,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        #[arg(long, default_value_t = 8780)]
        port: u16,
        /// The largest request body, in bytes
        #[arg(long, default_value_t = 1 << 20)]
        max_body: usize,
        #[arg(long, default_value_t = 32)]
        max_connections: usize,
    },
    /// Records and sampling counts
    Show { name: String },
    /// Write every record as JSONL, or with --incremental append those added since the file's last one
    Export {
        name: String,
        file: PathBuf,
        #[arg(long)]
        incremental: bool,
    },
    /// Make the next version of NAME from a collection (--of) or a dataset (--of-dataset)
    Version {
        name: String,
        #[arg(long, value_name = "COLLECTION", conflicts_with = "of_dataset")]
        of: Option<String>,
        #[arg(long, value_name = "DATASET")]
        of_dataset: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// A JSON list of curation steps applied to the snapshot
        #[arg(long, value_name = "STEPS.json")]
        steps: Option<PathBuf>,
    },
    /// The versions of NAME
    Versions { name: String },
    /// What changed between two versions
    Diff { name: String, from: u64, to: u64 },
    /// Point NAME to one of its versions
    Switch { name: String, version: u64 },
}

fn pairs(items: &[String], what: &str) -> Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
                .ok_or_else(|| Error::InvalidArgument(format!("{what} {p:?}: expected A=B")))
        })
        .collect()
}

fn number<T: std::str::FromStr>(text: &str, what: &str) -> Result<T> {
    text.parse().map_err(|_| Error::InvalidArgument(format!("{what}: {text:?} is not a number")))
}

pub fn collect(command: CollectCommand, open: impl FnOnce() -> Result<Workspace>) -> Result<()> {
    let ws = open()?;
    match command {
        CollectCommand::Create { name, seed, rate, exclude_errors, min_quality, tiers, per_category, daily_cap } => {
            let mut sampling = Sampling { seed, rate, exclude_errors, min_quality, daily_cap, ..Default::default() };
            for (q, r) in pairs(&tiers, "--tier")? {
                sampling.tiers.push(Tier { min_quality: number(&q, "--tier")?, rate: number(&r, "--tier")? });
            }
            let mut targets = BTreeMap::new();
            for (c, n) in pairs(&per_category, "--per-category")? {
                targets.insert(c, number(&n, "--per-category")?);
            }
            sampling.per_category = targets;
            let collector = ws.collection_with(&name, sampling)?;
            println!("{}", collector.bundle().plain());
        }
        CollectCommand::Add { name, input, output } => {
            let collector = ws.collection(&name)?;
            if let Some(input) = input {
                match collector.add(Interaction::new(input, output))? {
                    Added::Kept(id) => println!("ok {id}"),
                    Added::Dropped(why) => println!("dropped {why}"),
                }
                return Ok(());
            }
            let stdin = std::io::stdin();
            let mut out = std::io::stdout().lock();
            for (i, line) in stdin.lock().lines().enumerate() {
                let line = line.map_err(|e| Error::io("stdin", e))?;
                if line.trim().is_empty() {
                    continue;
                }
                let record: serde_json::Map<String, serde_json::Value> = match serde_json::from_str(&line) {
                    Ok(r) => r,
                    Err(e) => {
                        writeln!(out, "error line {}: {e}", i + 1).ok();
                        continue;
                    }
                };
                let reply = match Interaction::from_record(&record) {
                    Err(e) => format!("error line {}: {e}", i + 1),
                    Ok(interaction) => match collector.add(interaction)? {
                        Added::Kept(id) => format!("ok {id}"),
                        Added::Dropped(why) => format!("dropped {why}"),
                    },
                };
                writeln!(out, "{reply}").map_err(|e| Error::io("stdout", e))?;
                out.flush().map_err(|e| Error::io("stdout", e))?;
            }
        }
        CollectCommand::Import { name, file, read } => {
            let collector = ws.collection(&name)?;
            let added = collector.import(&file, &read.spec()?)?;
            let kept = added.iter().filter(|a| matches!(a, Added::Kept(_))).count();
            println!("{} records read, {kept} kept", added.len());
            println!("{}", collector.sampling_report()?.bundle().plain());
        }
        CollectCommand::Serve { name, host, port, max_body, max_connections } => {
            let collector = ws.collection(&name)?;
            let options = ServeOptions { max_body, max_connections, ..Default::default() };
            let server = Server::start(collector, &format!("{host}:{port}"), options)?;
            println!("collection {name}: listening on http://{}", server.addr);
            std::io::stdout().flush().ok();
            server.wait();
        }
        CollectCommand::Show { name } => println!("{}", ws.collection(&name)?.bundle().plain()),
        CollectCommand::Export { name, file, incremental } => {
            let collector = ws.collection(&name)?;
            if incremental {
                println!("{}", collector.export_incremental(&ws, &file)?.bundle().plain());
            } else {
                println!("{}", collector.export_all(&file)?.bundle().plain());
            }
        }
        CollectCommand::Version { name, of, of_dataset, description, steps } => {
            let mut spec = match (of, of_dataset) {
                (Some(c), _) => VersionSpec::of_collection(&name, c),
                (None, Some(d)) => VersionSpec::of_dataset(&name, d),
                (None, None) => return Err(Error::InvalidArgument("say what to version: --of or --of-dataset".into())),
            }
            .description(description);
            if let Some(path) = steps {
                let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                let list: Vec<CurateStep> = serde_json::from_str(&text).map_err(|e| Error::Json {
                    path: path.clone(),
                    line: e.line() as u64,
                    message: format!("column {}: {e}", e.column()),
                })?;
                spec.steps = list;
            }
            println!("{}", ws.make_version(&spec)?.bundle().plain());
        }
        CollectCommand::Versions { name } => println!("{}", versions_table(&ws.versions(&name)?).plain()),
        CollectCommand::Diff { name, from, to } => println!("{}", ws.diff_versions(&name, from, to)?.bundle().plain()),
        CollectCommand::Switch { name, version } => println!("{}", ws.switch_version(&name, version)?.bundle().plain()),
    }
    Ok(())
}
