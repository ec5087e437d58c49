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

pub fn sae(command: SaeCommand) -> Result<()> {
    match command {
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
