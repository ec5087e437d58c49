//! `saekit manifest`: bucket manifests from a terminal. Analyse a JSONL into buckets, add buckets from
//! other files, store named phases, write exactly N examples of a phase, and print the manifest's card.
//! Each command reads and writes one manifest file (`--manifest`, default `manifest.json`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use saekit::display::Render;
use saekit::mix::manifest::{Bucket, By, Manifest, Order, Phase, SampleSpec, Select};
use saekit::{Error, Result};

#[derive(Args)]
pub struct ManifestArgs {
    /// The manifest file
    #[arg(long, global = true, value_name = "FILE", default_value = "manifest.json")]
    manifest: PathBuf,
    #[command(subcommand)]
    command: ManifestCommand,
}

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Count a JSONL's examples per bucket (by a field, or by rules) and print the distribution; with
    /// --write, start a manifest from it
    Analyze {
        #[arg(value_name = "FILE.jsonl")]
        file: PathBuf,
        /// The field naming each example's bucket (a dotted path such as meta.task)
        #[arg(long, value_name = "FIELD", conflicts_with = "rule")]
        by: Option<String>,
        /// NAME:FIELD:REGEX, in order: each example goes to the first rule whose field matches
        #[arg(long, value_name = "NAME:FIELD:REGEX")]
        rule: Vec<String>,
        /// With --rule, the bucket of examples no rule takes (else they stay unassigned)
        #[arg(long, value_name = "NAME")]
        rest: Option<String>,
        /// Write a new manifest (--manifest) with these buckets, weighted by their shares
        #[arg(long)]
        write: bool,
        /// The new manifest's name (default: the file's stem)
        #[arg(long)]
        name: Option<String>,
        /// Replace an existing manifest
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Add a bucket of a file's examples: it takes --weight of the default phase, the others scale by
    /// 1 − weight (a new manifest is made when --manifest does not exist)
    AddBucket {
        name: String,
        #[arg(long, value_name = "FILE.jsonl")]
        source: PathBuf,
        #[arg(long)]
        weight: f64,
        #[arg(long, default_value = "")]
        description: String,
        /// Only examples whose FIELD equals --equals (or matches --matches)
        #[arg(long, value_name = "FIELD")]
        field: Option<String>,
        #[arg(long, requires = "field", conflicts_with = "matches")]
        equals: Option<String>,
        #[arg(long, requires = "field", value_name = "REGEX")]
        matches: Option<String>,
        /// How many times each example may be used in one sample (default 1)
        #[arg(long, value_name = "R")]
        max_repetitions: Option<f64>,
    },
    /// Remove a bucket (the others' weights, and every phase's, scale back to one)
    RemoveBucket { name: String },
    /// Store a named phase: a weight set over the buckets (BUCKET=WEIGHT ...) and optionally its size
    Phase {
        name: String,
        /// BUCKET=WEIGHT, for each bucket in the phase (the others get 0)
        #[arg(long = "weight", value_name = "BUCKET=WEIGHT")]
        weights: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long, value_name = "N")]
        total_samples: Option<u64>,
        /// Scale the weights to sum to one (else they must)
        #[arg(long)]
        normalize: bool,
        /// Remove the phase instead
        #[arg(long, conflicts_with_all = ["weights", "normalize", "total_samples"])]
        remove: bool,
    },
    /// Write exactly N examples of a phase (largest-remainder counts, seeded, every field kept) to FILE,
    /// and their provenance to FILE.sample.json
    CreateSample {
        /// The phase (default: the buckets' own weights)
        #[arg(long)]
        phase: Option<String>,
        /// How many examples (default: the phase's total_samples)
        #[arg(long, value_name = "N")]
        total_samples: Option<u64>,
        /// The JSONL to write (.gz/.zst compress)
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Default: the manifest's seed
        #[arg(long)]
        seed: Option<u64>,
        /// Let every bucket repeat its examples up to R times (else each bucket's own cap, else 1)
        #[arg(long, value_name = "R")]
        max_repetitions: Option<f64>,
        #[arg(long, value_enum, default_value_t = Order::Interleaved)]
        order: Order,
        /// Add each example's bucket under this field
        #[arg(long, value_name = "FIELD")]
        tag_field: Option<String>,
        /// Print the sample's provenance as JSON instead of its card
        #[arg(long)]
        json: bool,
    },
    /// The manifest's card: buckets, phases side by side
    Summary {
        #[arg(long)]
        json: bool,
        /// Also write the card as a self-contained HTML page
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
    },
    /// The JSON schema manifests follow
    Schema,
}

fn parse_rule(rule: &str) -> Result<(String, Select)> {
    let mut parts = rule.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), Some(field), Some(regex)) if !name.is_empty() && !field.is_empty() => {
            Ok((name.to_string(), Select::matches(field, regex)))
        }
        _ => Err(Error::InvalidArgument(format!("--rule {rule:?}: expected NAME:FIELD:REGEX"))),
    }
}

fn parse_weight(text: &str) -> Result<(String, f64)> {
    let (bucket, weight) = text
        .rsplit_once('=')
        .ok_or_else(|| Error::InvalidArgument(format!("--weight {text:?}: expected BUCKET=WEIGHT")))?;
    let w: f64 = weight
        .trim()
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("--weight {text:?}: {weight:?} is not a number")))?;
    Ok((bucket.trim().to_string(), w))
}

pub fn manifest(args: ManifestArgs) -> Result<()> {
    let path = args.manifest;
    match args.command {
        ManifestCommand::Analyze { file, by, rule, rest, write, name, force, json } => {
            let by = match by {
                Some(field) => By::field(field),
                None if !rule.is_empty() => By::rules(rule.iter().map(|r| parse_rule(r)).collect::<Result<_>>()?, rest),
                None => return Err(Error::InvalidArgument("say how to bucket: --by FIELD or --rule ...".into())),
            };
            let analysis = Manifest::analyze(&file, by)?;
            if json {
                println!("{}", serde_json::to_string(&analysis).unwrap_or_default());
            } else {
                println!("{}", analysis.bundle().plain());
            }
            if write {
                if path.exists() && !force {
                    return Err(Error::InvalidArgument(format!(
                        "{} exists; pass --force to replace it, or add buckets with `saekit manifest add-bucket`",
                        path.display()
                    )));
                }
                let stem = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                let stem = stem.strip_suffix(".jsonl").unwrap_or(&stem).to_string();
                let mut manifest = Manifest::from_analysis(name.unwrap_or(stem), &analysis);
                manifest.save(&path)?;
                if !json {
                    println!("\nwrote {} ({} buckets)", path.display(), manifest.buckets.len());
                }
            }
        }
        ManifestCommand::AddBucket { name, source, weight, description, field, equals, matches, max_repetitions } => {
            let mut manifest = if path.exists() {
                Manifest::load(&path)?
            } else {
                let stem = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
                let mut m = Manifest::new(stem);
                m.base = Some(
                    std::path::absolute(path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(".".as_ref()))
                        .map_err(|e| Error::io(&path, e))?,
                );
                m
            };
            let mut bucket = Bucket::new(&name, &source).weight(weight).description(description);
            if let Some(field) = field {
                bucket = bucket.select(match (equals, matches) {
                    (Some(v), _) => Select::equals(field, v),
                    (_, Some(r)) => Select::matches(field, r),
                    _ => Select { field, ..Default::default() },
                });
            }
            if let Some(r) = max_repetitions {
                bucket = bucket.max_repetitions(r);
            }
            let counted = manifest.add_bucket(bucket)?;
            manifest.save(&path)?;
            println!(
                "added bucket {name}: {} examples, weight {weight}; {} now has {} buckets",
                counted.examples,
                path.display(),
                manifest.buckets.len()
            );
        }
        ManifestCommand::RemoveBucket { name } => {
            let mut manifest = Manifest::load(&path)?;
            manifest.remove_bucket(&name)?;
            manifest.save(&path)?;
            println!("removed bucket {name}; {} buckets left", manifest.buckets.len());
        }
        ManifestCommand::Phase { name, weights, description, total_samples, normalize, remove } => {
            let mut manifest = Manifest::load(&path)?;
            if remove {
                let before = manifest.phases.len();
                manifest.phases.retain(|p| p.name != name);
                if manifest.phases.len() == before {
                    return Err(Error::InvalidArgument(format!("manifest `{}` has no phase `{name}`", manifest.name)));
                }
                manifest.save(&path)?;
                println!("removed phase {name}");
                return Ok(());
            }
            let mut phase = Phase::new(&name).description(description);
            for w in &weights {
                let (bucket, weight) = parse_weight(w)?;
                phase = phase.weight(bucket, weight);
            }
            if let Some(n) = total_samples {
                phase = phase.total_samples(n);
            }
            if normalize {
                phase = phase.normalized();
            }
            manifest.set_phase(phase)?;
            manifest.save(&path)?;
            println!("{}", manifest.phases_table().bundle().plain());
        }
        ManifestCommand::CreateSample {
            phase,
            total_samples,
            output,
            seed,
            max_repetitions,
            order,
            tag_field,
            json,
        } => {
            let manifest = Manifest::load(&path)?;
            let spec = SampleSpec { phase, total: total_samples, seed, max_repetitions, order, tag_field };
            let sample = manifest.create_sample(&spec, &output)?;
            if json {
                println!("{}", serde_json::to_string(&sample).unwrap_or_default());
            } else {
                println!("{}", sample.bundle().plain());
            }
        }
        ManifestCommand::Summary { json, html } => {
            let manifest = Manifest::load(&path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&manifest).unwrap_or_default());
            } else {
                println!("{}", manifest.bundle().plain());
            }
            if let Some(out) = html {
                let mut page = saekit::report::Report::new(format!("manifest {}", manifest.name));
                page.provenance("manifest", path.display().to_string()).provenance("saekit", env!("CARGO_PKG_VERSION"));
                page.section("manifest", &manifest);
                page.write_html(&out)?;
            }
        }
        ManifestCommand::Schema => {
            println!("{}", serde_json::to_string_pretty(&Manifest::schema()).unwrap_or_default())
        }
    }
    Ok(())
}
