//! The `saekit` command: the quickstart report, the workspace catalog, tokenization, the Hub and models, from
//! a terminal. Arguments are parsed by clap (`--flag VALUE` or `--flag=VALUE`, `saekit help COMMAND`,
//! `saekit completions bash|zsh|fish`); each command is a thin shell over the library.

mod activations;
mod collect;
mod curate;
mod manifest;
mod mix;
mod models;
mod pages;
mod report;
mod sae;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, Parser, Subcommand};
use saekit::catalog::{DatasetFilter, DatasetStatus, Workspace};
use saekit::display::Render;
use saekit::hub::{Hub, Selection};
use saekit::jobs::TerminalBar;
use saekit::stats::DatasetStats;
use saekit::tokenize::engine::tokenize_source;
use saekit::tokenize::{TokenizeParams, Tokenizer};
use saekit::{Error, Result, Source};

#[derive(Parser)]
#[command(
    name = "saekit",
    version,
    about = "saekit: data curation and SAE training toolkit",
    after_help = "The workspace is --workspace DIR, else $SAEKIT_HOME, else ~/.saekit. The Hub commands honour \
                  HF_ENDPOINT, HF_TOKEN or the token file, HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE=1, as \
                  huggingface_hub does."
)]
struct Cli {
    /// The workspace directory
    #[arg(long, global = true, value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Add the embedded corpus to the workspace and write an HTML report
    Quickstart {
        #[arg(long, value_name = "FILE", default_value = "saekit-report.html")]
        out: PathBuf,
    },
    /// Every chart kind on one page, with made-up data
    Gallery {
        #[arg(long, value_name = "FILE", default_value = "saekit-charts.html")]
        out: PathBuf,
    },
    /// Register files (JSONL, CSV, Parquet, a folder of .txt/.md) as a dataset
    Add {
        name: String,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// Copy files into the workspace as Parquet and register them
    Import {
        name: String,
        #[command(flatten)]
        source: SourceArgs,
    },
    /// The datasets in the catalog
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        source: Option<String>,
        /// Only names containing TEXT
        #[arg(long, value_name = "TEXT")]
        name: Option<String>,
    },
    /// A dataset's card
    Show { name: String },
    /// Set a dataset's tags
    Tag {
        name: String,
        #[arg(allow_hyphen_values = true)]
        tags: Vec<String>,
    },
    /// Delete a dataset and the files saekit made for it; one that was tokenized is refused unless --cascade
    Delete {
        name: String,
        /// Also delete what was made from it
        #[arg(long)]
        cascade: bool,
    },
    /// What a dataset was made from and what was made from it
    Lineage { name: String },
    /// Tokenize a dataset into a token store registered in the catalog, or files into DIR (--out)
    Tokenize(TokenizeArgs),
    /// The schema of files, with null counts on a sample
    Schema(SourceArgs),
    /// Statistics of files' documents
    Stats(SourceArgs),
    /// Hugging Face Hub datasets and tokenizers
    #[command(subcommand)]
    Hub(HubCommand),
    /// Language models: cards, forward passes to hook points, throughput
    #[command(subcommand)]
    Model(models::ModelCommand),
    /// Tokenizer cards
    #[command(subcommand)]
    Tokenizer(models::TokenizerCommand),
    /// Activation caches and stores: a model's activations over a tokenization, as shuffled batches
    #[command(subcommand)]
    Activations(activations::ActivationsCommand),
    /// Training mixes: run a recipe over many sources, its schema, saved versions and reports
    #[command(subcommand)]
    Mix(mix::MixCommand),
    /// Validate a file of training examples: schema, quality, duplicates, balance, readiness (exit 1 when
    /// a check fails)
    Validate(curate::ValidateArgs),
    /// Collections: records from a running application (stdin, files, HTTP), sampling, exports, versions
    #[command(subcommand)]
    Collect(collect::CollectCommand),
    /// Curation: convert and preprocess, split, or curate into the workspace
    #[command(subcommand)]
    Curate(curate::CurateCommand),
    /// Bucket manifests: analyse a JSONL into buckets, add buckets, store phases, sample exactly N examples
    Manifest(manifest::ManifestArgs),
    /// Execute a notebook headless through the saekit kernel and export it as a self-contained HTML report
    /// ending in its provenance; --check re-runs it and lists the outputs that differ from the exported run
    Report(report::ReportArgs),
    /// What the workspace holds on disk, by kind
    Du,
    /// Sparse autoencoders in SAELens' layout: make one, show one, run one
    #[command(subcommand)]
    Sae(sae::SaeCommand),
    /// Train SAEs from a run config (JSON: tokenization, model, saes, and any knob to change); run it again
    /// after a crash or Ctrl-C to continue from the last checkpoint
    Train {
        #[arg(value_name = "CONFIG.json")]
        config: PathBuf,
        /// Print the run's record as one JSON object instead of its card
        #[arg(long)]
        json: bool,
        /// Print the resolved config first
        #[arg(long)]
        show_config: bool,
    },
    /// Evaluate a run's SAEs on held-out sequences: reconstruction, and the model's loss with each SAE
    /// spliced in (CE loss recovered and KL for causal models, the sentence embedding for encoders)
    Eval {
        /// The run, by name or id
        run: String,
        #[arg(long, default_value_t = 64)]
        sequences: usize,
        #[arg(long)]
        json: bool,
    },
    /// SAE training runs in the workspace, with each SAE's final metrics
    Runs {
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (e.g. `saekit completions bash > ~/.local/share/bash-completion/completions/saekit`)
    Completions { shell: clap_complete::Shell },
}

/// Where a dataset's documents come from.
#[derive(Args)]
struct SourceArgs {
    /// Files, folders or globs
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// The column holding the text (default: text)
    #[arg(long, value_name = "COLUMN")]
    text: Option<String>,
    /// Build the text from columns, e.g. '{instruction}\n\n{output}'
    #[arg(long, allow_hyphen_values = true)]
    template: Option<String>,
    /// Skip and count unreadable records instead of stopping
    #[arg(long)]
    skip_bad_records: bool,
}

impl SourceArgs {
    fn source(&self) -> Result<Source> {
        let mut source = Source::open_many(self.paths.iter())?;
        if let Some(text) = &self.text {
            source = source.text_column(text.clone());
        }
        if let Some(template) = &self.template {
            source = source.text_template(template.replace("\\n", "\n"));
        }
        if self.skip_bad_records {
            source = source.skip_bad_records();
        }
        Ok(source)
    }
}

#[derive(Args)]
struct TokenizeArgs {
    /// A dataset's name, or with --out the files to tokenize
    #[arg(required = true, value_name = "DATASET|PATH")]
    inputs: Vec<String>,
    /// Write a token store into DIR from files (no workspace)
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// `gpt2` (the embedded tokenizer) or a tokenizer.json
    #[arg(long, default_value = "gpt2")]
    tokenizer: String,
    /// Windows over long documents
    #[arg(long, value_name = "N")]
    max_length: Option<usize>,
    /// How far each window moves along a long document
    #[arg(long, value_name = "N")]
    stride: Option<usize>,
    /// Pack documents into N-token sequences (EOS between, BOS first)
    #[arg(long, value_name = "N")]
    pack: Option<usize>,
    /// Drop (and count) sequences shorter than N tokens
    #[arg(long, value_name = "N")]
    min_length: Option<usize>,
    /// Start every document with the tokenizer's BOS token
    #[arg(long)]
    add_bos: bool,
    /// End every document with the tokenizer's EOS token
    #[arg(long)]
    add_eos: bool,
    /// Encoder threads (default: all cores)
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,
    /// With --out: one JSON line of counts and speed instead of the statistics
    #[arg(long)]
    json: bool,
    /// With --out: the column holding the text (default: text)
    #[arg(long, value_name = "COLUMN")]
    text: Option<String>,
    /// With --out: build the text from columns
    #[arg(long)]
    template: Option<String>,
    /// With --out: skip and count unreadable records
    #[arg(long)]
    skip_bad_records: bool,
}

#[derive(Subcommand)]
enum HubCommand {
    /// A Hub dataset's configs, splits and files with sizes
    Info {
        repo: String,
        #[arg(long)]
        revision: Option<String>,
    },
    /// Show the download plan, fetch the files into the HF cache (resuming what is partial) and register them
    Download(DownloadArgs),
    /// Fetch a model's tokenizer.json into the HF cache and describe it
    Tokenizer { repo: String },
}

#[derive(Args)]
struct DownloadArgs {
    repo: String,
    #[arg(long)]
    revision: Option<String>,
    #[arg(long)]
    config: Option<String>,
    #[arg(long)]
    split: Option<String>,
    /// The dataset's name in the workspace (default: REPO)
    #[arg(long)]
    name: Option<String>,
    #[arg(long, value_name = "N")]
    max_rows: Option<u64>,
    /// Only these files of the split
    #[arg(long, value_name = "GLOB[,GLOB...]")]
    files: Option<String>,
    /// The column holding the text (default: text)
    #[arg(long, value_name = "COLUMN")]
    text: Option<String>,
    #[arg(long)]
    template: Option<String>,
    /// Show the plan and stop
    #[arg(long)]
    plan_only: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let workspace_dir = cli.workspace;
    let open_workspace = || match &workspace_dir {
        Some(dir) => Workspace::open(dir),
        None => Workspace::open_default(),
    };
    let Some(command) = cli.command else {
        println!("{}", Cli::command().render_help());
        return Ok(());
    };
    match command {
        Command::Gallery { out } => {
            pages::gallery().write_html(&out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Quickstart { out } => pages::quickstart(&open_workspace()?, &out),
        Command::Add { name, source } => add(&open_workspace()?, &name, &source.source()?, false),
        Command::Import { name, source } => add(&open_workspace()?, &name, &source.source()?, true),
        Command::List { status, tag, source, name } => {
            let filter = DatasetFilter {
                status: status.map(|s| s.parse::<DatasetStatus>()).transpose()?,
                tag,
                source,
                name_contains: name,
            };
            println!("{}", open_workspace()?.find(&filter)?.bundle().plain());
            Ok(())
        }
        Command::Show { name } => {
            println!("{}", open_workspace()?.dataset(&name)?.bundle().plain());
            Ok(())
        }
        Command::Tag { name, tags } => {
            let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
            println!("{}", open_workspace()?.tag(&name, &tags)?.bundle().plain());
            Ok(())
        }
        Command::Lineage { name } => {
            println!("{}", open_workspace()?.dataset(&name)?.lineage()?.bundle().plain());
            Ok(())
        }
        Command::Delete { name, cascade } => {
            let ws = open_workspace()?;
            if cascade {
                ws.delete_dataset_cascade(&name)?;
                println!("deleted {name} and what was made from it");
            } else {
                ws.delete_dataset(&name)?;
                println!("deleted {name}");
            }
            Ok(())
        }
        Command::Tokenize(args) => tokenize(args, open_workspace),
        Command::Schema(source) => {
            println!("{}", source.source()?.schema()?.bundle().plain());
            Ok(())
        }
        Command::Stats(source) => {
            println!("{}", DatasetStats::compute(source.source()?.documents()?)?.bundle().plain());
            Ok(())
        }
        Command::Hub(command) => hub(command, open_workspace),
        Command::Model(command) => models::model(command),
        Command::Tokenizer(command) => models::tokenizer(command),
        Command::Activations(command) => activations::activations(command, open_workspace()?),
        Command::Sae(command) => sae::sae(command),
        Command::Mix(command) => mix::mix(command, open_workspace),
        Command::Manifest(args) => manifest::manifest(args),
        Command::Report(args) => report::report(args, workspace_dir.as_deref()),
        Command::Validate(args) => curate::validate(args),
        Command::Collect(command) => collect::collect(command, open_workspace),
        Command::Curate(command) => curate::curate(command, open_workspace),
        Command::Train { config, json, show_config } => train::train(&config, open_workspace()?, json, show_config),
        Command::Runs { json } => train::runs(open_workspace()?, json),
        Command::Eval { run, sequences, json } => train::eval(&run, open_workspace()?, sequences, json),
        Command::Du => {
            println!("{}", open_workspace()?.disk_usage()?.bundle().plain());
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "saekit", &mut std::io::stdout());
            Ok(())
        }
    }
}

fn add(ws: &Workspace, name: &str, source: &Source, import: bool) -> Result<()> {
    let job = if import { ws.import_dataset_job(name, source) } else { ws.add_dataset_job(name, source) };
    job.subscribe(Arc::new(TerminalBar::new()));
    let dataset = job.wait()?;
    println!("{}", dataset.bundle().plain());
    Ok(())
}

fn tokenize(args: TokenizeArgs, open_workspace: impl Fn() -> Result<Workspace>) -> Result<()> {
    let tokenizer = match args.tokenizer.as_str() {
        "gpt2" => Tokenizer::gpt2()?,
        path => Tokenizer::from_file(path)?,
    };
    let mut params = args.pack.map_or_else(TokenizeParams::default, TokenizeParams::packed);
    if let Some(n) = args.max_length {
        params.max_length = n;
    }
    if let Some(n) = args.stride {
        params.stride = n;
    }
    if let Some(n) = args.min_length {
        params.min_length = n;
    }
    params.add_bos = args.add_bos;
    params.add_eos = args.add_eos;
    let started = std::time::Instant::now();
    let Some(out) = args.out else {
        let [name] = args.inputs.as_slice() else {
            return Err(Error::InvalidArgument(
                "tokenize takes one DATASET (or --out DIR and files); see `saekit help tokenize`".into(),
            ));
        };
        let job = open_workspace()?.tokenize_job(name, &tokenizer, &params);
        job.subscribe(Arc::new(TerminalBar::new()));
        println!("{}", job.wait()?.bundle().plain());
        return Ok(());
    };
    let source = SourceArgs {
        paths: args.inputs,
        text: args.text,
        template: args.template,
        skip_bad_records: args.skip_bad_records,
    }
    .source()?;
    let partial = out.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(|e| Error::io(&partial, e))?;
    let ctx = saekit::jobs::JobContext::detached("tokenize");
    let outcome = tokenize_source(&source, &tokenizer, &params, &partial, args.threads, &ctx)?;
    std::fs::rename(&partial, &out).map_err(|e| Error::io(&out, e))?;
    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let summary = serde_json::json!({
            "documents": outcome.stats.documents,
            "sequences": outcome.store.num_sequences,
            "tokens": outcome.store.num_tokens,
            "document_tokens": outcome.stats.document_tokens,
            "seconds": seconds,
            "tokens_per_s": outcome.stats.document_tokens as f64 / seconds,
            "store": out,
        });
        println!("{summary}");
    } else {
        println!("{}", outcome.stats.bundle().plain());
        println!("token store written to {} in {seconds:.1} s", out.display());
    }
    Ok(())
}

fn hub(command: HubCommand, open_workspace: impl Fn() -> Result<Workspace>) -> Result<()> {
    let hub = Hub::from_env()?;
    match command {
        HubCommand::Info { repo, revision } => {
            let mut handle = hub.dataset(&repo);
            if let Some(revision) = &revision {
                handle = handle.revision(revision);
            }
            println!("{}", handle.info()?.bundle().plain());
            Ok(())
        }
        HubCommand::Download(args) => {
            let mut handle = hub.dataset(&args.repo);
            if let Some(revision) = &args.revision {
                handle = handle.revision(revision);
            }
            let mut selection = Selection::new();
            selection.config = args.config;
            selection.split = args.split;
            if let Some(files) = &args.files {
                selection.files = files.split(',').map(|f| f.trim().to_string()).filter(|f| !f.is_empty()).collect();
            }
            selection.max_rows = args.max_rows;
            let mut plan = handle.info()?.plan(&selection)?;
            if let Some(text) = &args.text {
                plan = plan.text_column(text);
            }
            if let Some(template) = &args.template {
                plan = plan.text_template(&template.replace("\\n", "\n"));
            }
            println!("{}", plan.bundle().plain());
            if args.plan_only {
                return Ok(());
            }
            plan.check_space()?;
            let job = open_workspace()?.download_dataset_job(args.name.as_deref().unwrap_or(&args.repo), &plan);
            job.subscribe(Arc::new(TerminalBar::new()));
            println!("{}", job.wait()?.bundle().plain());
            Ok(())
        }
        HubCommand::Tokenizer { repo } => {
            let tokenizer = Tokenizer::from_hub_with(&hub, &repo)?;
            let sample = "Sparse autoencoders find features.";
            let ids = tokenizer.encode(sample)?;
            println!(
                "tokenizer {} · vocabulary {} · identity {}",
                tokenizer.name(),
                tokenizer.vocab_size(),
                tokenizer.hash()
            );
            println!("{sample:?} → {ids:?}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_take_values_with_a_space_or_an_equals_sign() {
        for args in [
            ["saekit", "--workspace", "/w", "tokenize", "--pack", "256", "d"],
            ["saekit", "--workspace=/w", "tokenize", "--pack=256", "d", "", ""],
        ] {
            let args: Vec<&str> = args.into_iter().filter(|a| !a.is_empty()).collect();
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.workspace.as_deref(), Some(std::path::Path::new("/w")));
            let Some(Command::Tokenize(t)) = cli.command else { panic!("not tokenize") };
            assert_eq!((t.pack, t.inputs.as_slice()), (Some(256), &["d".to_string()][..]));
        }
        assert!(Cli::try_parse_from(["saekit", "tokenize", "--pack", "many", "d"]).is_err());
    }
}
