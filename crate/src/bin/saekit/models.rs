//! `saekit model` and `saekit tokenizer`: model cards, one forward pass written to safetensors, forward
//! throughput, tokenizer cards.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use saekit::display::Render;
use saekit::models::{DType, Forward, Model, ModelOptions, TokenBatch};
use saekit::tokenize::Tokenizer;
use saekit::{Error, Result};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// A model's card (MODEL: a folder in the HF layout, or a Hub repo id)
    Show {
        model: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// One forward pass; writes the hooks' activations (and what else is asked) to a safetensors file
    Run(RunArgs),
    /// Forward throughput to a hook on random ids, as one JSON line
    Bench {
        model: String,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[arg(long, default_value_t = 128)]
        seq: usize,
        /// Default: the middle block's hook_resid_post
        #[arg(long)]
        hook: Option<String>,
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
}

#[derive(Args)]
pub struct LoadArgs {
    /// The dtype to compute in
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Precision,
}

#[derive(Clone, Copy, ValueEnum)]
enum Precision {
    F32,
    Bf16,
    F16,
}

impl LoadArgs {
    fn options(&self) -> ModelOptions {
        ModelOptions::default().dtype(match self.dtype {
            Precision::F32 => DType::F32,
            Precision::Bf16 => DType::BF16,
            Precision::F16 => DType::F16,
        })
    }
}

#[derive(Args)]
pub struct RunArgs {
    model: String,
    /// Hooks to record, by TransformerLens name, comma-separated
    #[arg(long, value_name = "H,H...")]
    hooks: Option<String>,
    /// The safetensors file to write
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Token ids, sequences separated by `;` (right-padded), e.g. '1,2,3;4,5'
    #[arg(long, conflicts_with = "text", required_unless_present = "text")]
    ids: Option<String>,
    /// A text, encoded with the model's tokenizer and special tokens (repeatable)
    #[arg(long, allow_hyphen_values = true)]
    text: Vec<String>,
    /// Also write the logits
    #[arg(long)]
    logits: bool,
    /// Also write the next-token loss (and each position's)
    #[arg(long)]
    loss: bool,
    /// Also write the sentence embedding (BERT)
    #[arg(long)]
    embedding: bool,
    /// Multiply the activations at HOOK by F on the way (repeatable)
    #[arg(long, value_name = "HOOK=F")]
    scale: Vec<String>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// A tokenizer's card, with its identity (what decides the ids it gives)
    Show {
        /// `gpt2` (embedded) or a tokenizer.json
        tokenizer: String,
    },
}

pub fn tokenizer(command: TokenizerCommand) -> Result<()> {
    let TokenizerCommand::Show { tokenizer } = command;
    let tokenizer = if tokenizer == "gpt2" { Tokenizer::gpt2()? } else { Tokenizer::from_file(&tokenizer)? };
    println!("{}", tokenizer.bundle().plain());
    Ok(())
}

pub fn model(command: ModelCommand) -> Result<()> {
    match command {
        ModelCommand::Show { model, load } => {
            println!("{}", Model::load_with(&model, &load.options())?.bundle().plain());
            Ok(())
        }
        ModelCommand::Run(args) => run(args),
        ModelCommand::Bench { model, batch, seq, hook, reps, load } => {
            let model = Model::load_with(&model, &load.options())?;
            let hook = hook.unwrap_or_else(|| format!("blocks.{}.hook_resid_post", model.info().layers / 2));
            println!("{}", bench(&model, &hook, batch, seq, reps.max(1))?);
            Ok(())
        }
    }
}

fn run(args: RunArgs) -> Result<()> {
    let mut forward = Forward::new();
    if args.logits {
        forward = forward.logits();
    }
    if args.loss {
        forward = forward.loss();
    }
    if args.embedding {
        forward = forward.embedding();
    }
    if let Some(hooks) = &args.hooks {
        forward = forward.hooks(hooks.split(',').map(str::trim).filter(|h| !h.is_empty()));
    }
    for scale in &args.scale {
        let (hook, factor) = scale
            .split_once('=')
            .and_then(|(h, f)| f.parse::<f64>().ok().map(|f| (h.to_string(), f)))
            .ok_or_else(|| Error::InvalidArgument(format!("--scale {scale}: expected HOOK=FACTOR")))?;
        forward = forward.replace(hook, move |x| Ok((x * factor)?));
    }
    // The ids are checked before the model is loaded (perhaps downloaded).
    let ids = args
        .ids
        .as_deref()
        .map(|ids| {
            ids.split(';')
                .map(|s| {
                    s.split(',')
                        .map(|i| i.trim().parse::<u32>())
                        .collect::<std::result::Result<Vec<u32>, _>>()
                        .map_err(|e| Error::InvalidArgument(format!("--ids {s:?}: {e}")))
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    let model = Model::load_with(&args.model, &args.load.options())?;
    let batch = match ids {
        Some(sequences) => TokenBatch::new(&sequences)?,
        None => model.encode(&args.text)?,
    };
    let output = model.run(&batch, &forward)?;
    output.save(&args.out)?;
    println!("{}", output.bundle().plain());
    Ok(())
}

/// Forward throughput to one hook on random ids (fixed seed): one warm-up, then `reps` timed passes; one
/// JSON line, as bench/models_bench.py reads it.
fn bench(model: &Model, hook: &str, batch: usize, seq: usize, reps: usize) -> Result<String> {
    let vocab = model.info().vocab_size as u64;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let ids: Vec<u32> = (0..batch * seq)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % vocab) as u32
        })
        .collect();
    let tokens = TokenBatch::rectangular(ids, batch, seq)?;
    let forward = Forward::new().hook(hook);
    model.run(&tokens, &forward)?;
    let mut seconds = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = std::time::Instant::now();
        model.run(&tokens, &forward)?;
        seconds.push(start.elapsed().as_secs_f64());
    }
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 0 { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] };
    Ok(serde_json::json!({
        "impl": "saekit", "model": model.name(), "hook": hook, "batch": batch, "seq": seq,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(), "dtype": model.info().dtype,
        "tokens_per_s": (batch * seq) as f64 / median, "seconds": seconds,
    })
    .to_string())
}
