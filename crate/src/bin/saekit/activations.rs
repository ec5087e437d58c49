//! `saekit activations` and `saekit du`: cache a model's activations over a tokenization and serve them as
//! shuffled batches (with the plan said first), list caches, clean up the unused ones, disk usage.

use std::sync::Arc;

use clap::{Args, Subcommand};
use saekit::activations::{ActivationSpec, CacheDtype};
use saekit::catalog::Workspace;
use saekit::display::Render;
use saekit::jobs::TerminalBar;
use saekit::models::Model;
use saekit::units::parse_bytes;
use saekit::{Error, Result};
use sha2::{Digest, Sha256};

#[derive(Subcommand)]
pub enum ActivationsCommand {
    /// Cache a model's activations over a tokenization (or reuse the cache), then optionally serve them
    Make(MakeArgs),
    /// Only say what a store would use (memory by part, disk) and whether the budgets allow it
    Plan(MakeArgs),
    /// The activation caches in the workspace
    List,
    /// Remove the caches nothing was made from
    Clean,
}

#[derive(Args)]
pub struct MakeArgs {
    /// The tokenization, by name or id
    #[arg(long)]
    tokenization: String,
    /// A model folder in the HF layout, or a Hub repo id
    #[arg(long)]
    model: String,
    /// A hook by TransformerLens name (repeatable)
    #[arg(long = "hook", required = true)]
    hooks: Vec<String>,
    /// f32, f16 or bf16
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Keep special tokens (BOS, EOS, [CLS], [SEP]…)
    #[arg(long)]
    keep_special_tokens: bool,
    /// Drop tokens whose norm is above FACTOR × the median; 0 keeps every token
    #[arg(long, default_value_t = 10.0)]
    outlier_factor: f32,
    #[arg(long)]
    max_tokens: Option<u64>,
    #[arg(long, default_value_t = 65536)]
    shard_tokens: usize,
    #[arg(long, default_value_t = 4096)]
    batch_tokens: usize,
    #[arg(long, default_value_t = 65536)]
    buffer_tokens: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 1)]
    epochs: u32,
    /// The memory budget, e.g. 2GiB
    #[arg(long, default_value = "4GiB")]
    memory: String,
    /// The disk budget, e.g. 20GiB (default: what is free)
    #[arg(long)]
    disk: Option<String>,
    /// Serve every batch and print a digest of them (rows and values)
    #[arg(long)]
    serve: bool,
    /// Before serving, skip this many tokens (a multiple of the batch size)
    #[arg(long, default_value_t = 0)]
    skip: u64,
    /// Print one JSON object (plan; or, with make --serve, the fill's counts and the serving speed, whose digest then covers the rows only)
    #[arg(long)]
    json: bool,
}

fn size(text: &str, what: &str) -> Result<u64> {
    parse_bytes(text)
        .ok_or_else(|| Error::InvalidArgument(format!("--{what} {text}: expected a size like 512MiB or 2GiB")))
}

impl MakeArgs {
    fn spec(&self, ws: &Workspace) -> Result<ActivationSpec> {
        let tokenization = ws.tokenization(&self.tokenization)?;
        let model = Model::load(&self.model)?;
        let mut spec = ActivationSpec::new(&tokenization, &model, &self.hooks)
            .dtype(self.dtype.parse::<CacheDtype>()?)
            .exclude_special_tokens(!self.keep_special_tokens)
            .outlier_factor((self.outlier_factor > 0.0).then_some(self.outlier_factor))
            .shard_tokens(self.shard_tokens)
            .batch_tokens(self.batch_tokens)
            .buffer_tokens(self.buffer_tokens)
            .seed(self.seed)
            .epochs(self.epochs)
            .memory(size(&self.memory, "memory")?);
        if let Some(max) = self.max_tokens {
            spec = spec.max_tokens(max);
        }
        if let Some(disk) = &self.disk {
            spec = spec.disk(size(disk, "disk")?);
        }
        Ok(spec)
    }
}

pub fn activations(command: ActivationsCommand, ws: Workspace) -> Result<()> {
    match command {
        ActivationsCommand::Plan(args) => {
            let plan = ws.plan_activations(&args.spec(&ws)?)?;
            if args.json {
                println!("{}", serde_json::to_string(&plan).unwrap_or_default());
            } else {
                println!("{}", plan.bundle().plain());
            }
            plan.check()
        }
        ActivationsCommand::Make(args) => {
            let spec = args.spec(&ws)?;
            let plan = ws.plan_activations(&spec)?;
            eprintln!("{}", plan.bundle().plain());
            let reused = plan.reuses.is_some();
            let job = ws.activation_store_job(&spec);
            if !args.json {
                job.subscribe(Arc::new(TerminalBar::new()));
            }
            let mut store = job.wait()?;
            if !args.json {
                println!("{}", store.cache().bundle().plain());
            }
            if args.serve {
                let started = std::time::Instant::now();
                if args.skip > 0 {
                    store.skip(args.skip)?;
                }
                let mut digest = Sha256::new();
                while let Some(batch) = store.next_batch()? {
                    for r in &batch.rows {
                        digest.update(r.to_le_bytes());
                    }
                    // The JSON report measures serving: its digest covers the rows only.
                    for (_, t) in batch.hooks.iter().filter(|_| !args.json) {
                        for v in t.flatten_all()?.to_vec1::<f32>()? {
                            digest.update(v.to_le_bytes());
                        }
                    }
                }
                let hex: String = digest.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
                let seconds = started.elapsed().as_secs_f64();
                if args.json {
                    let stats = store.cache().stats();
                    let report = serde_json::json!({
                        "cache": store.cache().name(),
                        "reused": reused,
                        "kept": stats.kept,
                        "tokens_seen": stats.tokens_seen,
                        "sequences_per_batch": stats.sequences_per_batch,
                        "fill_seconds": stats.seconds,
                        "forward_seconds": stats.forward_seconds,
                        "fill_tokens_per_s": stats.tokens_per_second(),
                        "forward_tokens_per_s": stats.forward_tokens_per_second(),
                        "served_tokens": store.served_tokens(),
                        "serve_seconds": seconds,
                        "serve_tokens_per_s": store.served_tokens() as f64 / seconds.max(1e-9),
                        "digest": hex,
                    });
                    println!("{report}");
                    return Ok(());
                }
                println!(
                    "served {} batches, {} tokens, {} left over; digest {hex}",
                    store.served_batches(),
                    store.served_tokens(),
                    store.left_over()
                );
            }
            Ok(())
        }
        ActivationsCommand::List => {
            for cache in ws.activation_caches()? {
                let hooks: Vec<String> = cache.hooks().iter().map(|h| h.name.clone()).collect();
                println!(
                    "{}\t{}\t{} tokens\t{}\t{}",
                    cache.id(),
                    cache.name(),
                    cache.num_tokens(),
                    hooks.join(","),
                    cache.row().dtype
                );
            }
            Ok(())
        }
        ActivationsCommand::Clean => {
            println!("{}", ws.remove_unused_caches()?.bundle().plain());
            Ok(())
        }
    }
}
