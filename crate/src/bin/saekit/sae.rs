//! `saekit sae`: make a new SAE in SAELens' layout, show one (a folder or a Hub repository), and run one on
//! activations stored as `.npy`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use saekit::activations::CacheDtype;
use saekit::activations::shards::NpyWriter;
use saekit::display::Render;
use saekit::hub::Hub;
use saekit::models::{Device, Tensor};
use saekit::sae::{Architecture, Sae, SaeConfig};
use saekit::{Error, Result};

#[derive(Subcommand)]
pub enum SaeCommand {
    /// A new SAE, initialised as SAELens 6 does, written in SAELens' layout
    Init {
        #[arg(long)]
        d_in: usize,
        #[arg(long)]
        d_sae: usize,
        /// standard or topk
        #[arg(long, default_value = "standard")]
        architecture: String,
        /// TopK's k
        #[arg(long)]
        k: Option<usize>,
        /// The norm of each decoder row
        #[arg(long, default_value_t = 0.1)]
        decoder_norm: f32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        model_name: Option<String>,
        #[arg(long)]
        hook_name: Option<String>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// An SAE's card: a folder, or REPO or REPO:SUBFOLDER on the Hub
    Show { sae: String },
    /// Encode and decode `[tokens, d_in]` float32 activations from a .npy file
    Encode {
        sae: String,
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Where to write the latents `[tokens, d_sae]` (.npy)
        #[arg(long, value_name = "FILE")]
        latents: PathBuf,
        /// Where to write the reconstruction `[tokens, d_in]` (.npy)
        #[arg(long, value_name = "FILE")]
        reconstruction: Option<PathBuf>,
    },
    /// Training-step throughput on random activations: one warm-up step, then the median of `--steps`
    /// timed ones, one JSON line per architecture (what bench/sae_bench.py reads)
    Bench {
        #[arg(long, default_value_t = 768)]
        d_in: usize,
        #[arg(long, default_value_t = 16384)]
        d_sae: usize,
        /// Tokens per step
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        /// TopK's k
        #[arg(long, default_value_t = 32)]
        k: usize,
        /// Architectures to time, comma-separated
        #[arg(long, default_value = "topk,standard")]
        architectures: String,
        #[arg(long, default_value_t = 3)]
        steps: usize,
        /// Threads of the CPU step (0: one per core)
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Time the reference step (candle's operations) instead of the CPU step
        #[arg(long)]
        reference: bool,
        /// The CPU step's products on a system BLAS: `openblas` or a library's path
        #[arg(long)]
        blas: Option<String>,
    },
}

fn open(spec: &str) -> Result<Sae> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Sae::load(path);
    }
    let (repo, subfolder) = spec.split_once(':').unwrap_or((spec, ""));
    Sae::from_hub(&Hub::from_env()?, repo, subfolder)
}

/// A 2-D little-endian float32 `.npy` file.
fn read_npy_f32(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: &str| Error::format(path, format!("{m} (expected a 2-D float32 .npy file)"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = String::from_utf8_lossy(bytes.get(start..start + header_len).ok_or_else(|| bad("truncated header"))?);
    if !header.contains("'<f4'") || header.contains("'fortran_order': True") {
        return Err(bad(&format!("header {}", header.trim())));
    }
    let shape = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).unwrap_or_default();
    let dims: Vec<usize> = shape.split(',').filter_map(|d| d.trim().parse().ok()).collect();
    let [rows, cols] = dims[..] else { return Err(bad(&format!("shape ({shape})"))) };
    let data = &bytes[start + header_len..];
    if data.len() != rows * cols * 4 {
        return Err(bad(&format!("{} data bytes for shape ({rows}, {cols})", data.len())));
    }
    let values: Vec<f32> = data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(Tensor::from_vec(values, (rows, cols), &Device::Cpu)?)
}

/// `t` `[rows, cols]` as a float32 `.npy` file, written under a temporary name and renamed when complete.
fn write_npy_f32(path: &Path, t: &Tensor) -> Result<()> {
    let (_, cols) = t.dims2()?;
    let partial = path.with_extension("npy.partial");
    let mut out = NpyWriter::create(&partial, "<f4", cols)?;
    for row in t.to_vec2::<f32>()? {
        out.push_f32(&row, CacheDtype::F32)?;
    }
    out.finish()?;
    std::fs::rename(&partial, path).map_err(|e| Error::io(path, e))
}

/// The process's peak resident memory (VmHWM), in bytes, where /proc says it.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// One JSON line per architecture: median seconds per step, tokens/s, the FLOPs the step does and their
/// rate, the dense-step equivalent (6 products of 2·n·d_in·d_sae, what an autograd step does) and the
/// process's peak memory so far.
#[allow(clippy::too_many_arguments)]
fn bench(
    d_in: usize,
    d_sae: usize,
    n: usize,
    k: usize,
    architecture: &str,
    steps: usize,
    threads: usize,
    reference: bool,
    blas: Option<&str>,
) -> Result<String> {
    use saekit::sae::train::{TrainConfig, Trainer};
    let arch = Architecture::by_name(architecture, Some(k))?;
    let sae = Sae::new(SaeConfig::new(d_in, d_sae, arch), 0.1, 1)?;
    let config = TrainConfig { total_steps: (steps + 1) as u64, ..Default::default() };
    let blas = blas.map(|b| saekit::sae::blas::Blas::open(b).map(std::sync::Arc::new)).transpose()?;
    let mut trainer = if reference {
        Trainer::reference(sae, config)?
    } else {
        Trainer::new(sae, config)?.threads(threads).blas(blas.clone())
    };
    let x = saekit::sae::uniform(n * d_in, 1);
    let x = Tensor::from_vec(x, (n, d_in), &Device::Cpu)?;
    let before = peak_rss();
    let first = trainer.step(&x)?;
    let mut seconds = Vec::with_capacity(steps);
    let mut last = first;
    let mut phases: Vec<(&str, Vec<f64>)> = Vec::new();
    for _ in 0..steps.max(1) {
        let start = std::time::Instant::now();
        last = trainer.step(&x)?;
        seconds.push(start.elapsed().as_secs_f64());
        for (i, &(name, t)) in trainer.last_step_phases().iter().enumerate() {
            if phases.len() <= i {
                phases.push((name, Vec::new()));
            }
            phases[i].1.push(t);
        }
    }
    let median_of = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let phases: serde_json::Map<String, serde_json::Value> =
        phases.iter().map(|(name, t)| (name.to_string(), serde_json::json!(median_of(t)))).collect();
    let mut sorted = seconds.clone();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let median = if sorted.len() % 2 == 0 { (sorted[mid - 1] + sorted[mid]) / 2.0 } else { sorted[mid] };
    let product = 2.0 * n as f64 * d_in as f64 * d_sae as f64;
    let work = match (arch, reference) {
        (_, true) => 6.0 * product,
        (Architecture::Standard, false) => 5.0 * product,
        // The encoder, then per token k latents through the decoder, its input gradient and both weights.
        (Architecture::TopK { .. }, false) => product + 4.0 * 2.0 * n as f64 * k as f64 * d_in as f64,
    };
    Ok(serde_json::json!({
        "impl": if reference { "saekit-reference".to_string() } else if let Some(b) = &blas { format!("saekit+{}", b.name()) } else { "saekit".to_string() },
        "architecture": architecture,
        "d_in": d_in, "d_sae": d_sae, "batch": n, "k": k, "threads": threads,
        "seconds_per_step": median, "seconds": seconds, "tokens_per_s": n as f64 / median,
        "gflop": work / 1e9, "gflop_per_s": work / 1e9 / median,
        "dense_equivalent_gflop_per_s": 6.0 * product / 1e9 / median,
        "peak_rss_bytes": peak_rss(), "rss_before_bytes": before, "loss": last.loss, "l0": last.l0,
        "phases_seconds": phases,
    })
    .to_string())
}

pub fn sae(command: SaeCommand) -> Result<()> {
    match command {
        SaeCommand::Bench { d_in, d_sae, batch, k, architectures, steps, threads, reference, blas } => {
            for arch in architectures.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                println!("{}", bench(d_in, d_sae, batch, k, arch, steps, threads, reference, blas.as_deref())?);
            }
            Ok(())
        }
        SaeCommand::Init { d_in, d_sae, architecture, k, decoder_norm, seed, model_name, hook_name, out } => {
            let mut config = SaeConfig::new(d_in, d_sae, Architecture::by_name(&architecture, k)?);
            config.metadata.model_name = model_name;
            config.metadata.hook_name = hook_name;
            let sae = Sae::new(config, decoder_norm, seed)?;
            sae.save(&out)?;
            println!("{}", sae.bundle().plain());
            println!("wrote {}", out.display());
            Ok(())
        }
        SaeCommand::Show { sae } => {
            println!("{}", open(&sae)?.bundle().plain());
            Ok(())
        }
        SaeCommand::Encode { sae, input, latents, reconstruction } => {
            let sae = open(&sae)?;
            let x = read_npy_f32(&input)?;
            let (z, x_hat) = sae.forward(&x)?;
            write_npy_f32(&latents, &z)?;
            if let Some(path) = reconstruction {
                write_npy_f32(&path, &x_hat)?;
            }
            Ok(())
        }
    }
}
