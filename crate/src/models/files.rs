//! Where a model's files are: a local folder in the Hugging Face layout (`config.json`, `tokenizer.json`,
//! `model.safetensors` or shards listed in `model.safetensors.index.json`, and for sentence-transformers
//! `modules.json` and `1_Pooling/config.json`), or a Hub model repository fetched into the HF cache through
//! [`crate::hub`] (resumable, one commit for all files).

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::hub::Hub;

/// The files of one model, found and read (weights are mapped later).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the model is called: the repo id, or the folder's path.
    pub name: String,
    pub dir: PathBuf,
    pub config: Value,
    pub weights: Vec<PathBuf>,
    pub tokenizer: Option<PathBuf>,
    pub modules: Option<Value>,
    pub pooling: Option<Value>,
}

const INDEX: &str = "model.safetensors.index.json";

impl ModelFiles {
    /// A local folder.
    pub fn from_dir(dir: &Path) -> Result<ModelFiles> {
        let name = dir.display().to_string();
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::Model {
                model: name,
                message: format!("no config.json in {} (a model folder holds config.json and weights)", dir.display()),
            });
        }
        let weights = weight_files(&name, dir)?;
        let optional = |p: &str| {
            let path = dir.join(p);
            if path.is_file() { read_json(&path).map(Some) } else { Ok(None) }
        };
        let tokenizer = Some(dir.join("tokenizer.json")).filter(|p| p.is_file());
        Ok(ModelFiles {
            name,
            dir: dir.to_path_buf(),
            config: read_json(&config_path)?,
            weights,
            tokenizer,
            modules: optional("modules.json")?,
            pooling: optional("1_Pooling/config.json")?,
        })
    }

    /// A Hub model repository (`gpt2`, `owner/name`), its files fetched into the cache (or found there).
    pub fn from_hub(hub: &Hub, repo_id: &str) -> Result<ModelFiles> {
        let repo = hub.model(repo_id);
        let info = repo.info()?;
        if !info.from_cache {
            // Every file comes from this one commit; the branch's ref lets offline mode find them again.
            hub.cache().write_ref(&repo, repo.current_revision(), &info.commit)?;
        }
        let repo = repo.revision(&info.commit);
        let has = |p: &str| info.files.iter().any(|f| f.path == p);
        if !has("config.json") {
            return Err(Error::Model { model: repo_id.into(), message: "the repository has no config.json".into() });
        }
        let config = repo.file("config.json")?;
        if has(INDEX) {
            let index = read_json(&repo.file(INDEX)?)?;
            for shard in shards(repo_id, &index)? {
                repo.file(&shard)?;
            }
        } else if has("model.safetensors") {
            repo.file("model.safetensors")?;
        } else {
            let names: Vec<&str> = info.files.iter().map(|f| f.path.as_str()).collect();
            return Err(no_safetensors(repo_id, &names));
        }
        for optional in ["tokenizer.json", "modules.json", "1_Pooling/config.json"] {
            if has(optional) {
                repo.file(optional)?;
            }
        }
        let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut files = ModelFiles::from_dir(&dir)?;
        files.name = repo_id.to_string();
        Ok(files)
    }
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not valid JSON: {e}")))
}

fn shards(name: &str, index: &Value) -> Result<Vec<String>> {
    let map = index
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::Model { model: name.into(), message: format!("{INDEX} has no weight_map") })?;
    let mut files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

fn weight_files(name: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(INDEX);
    if index.is_file() {
        return Ok(shards(name, &read_json(&index)?)?.into_iter().map(|f| dir.join(f)).collect());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    found.sort();
    if found.is_empty() {
        let names: Vec<String> = std::fs::read_dir(dir)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect())
            .unwrap_or_default();
        return Err(no_safetensors(name, &names.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    Ok(found)
}

fn no_safetensors(name: &str, files: &[&str]) -> Error {
    let bin = files.iter().any(|f| f.ends_with(".bin") || f.ends_with(".pt"));
    Error::Model {
        model: name.into(),
        message: if bin {
            "the weights are PyTorch pickles (.bin/.pt); saekit reads safetensors only: convert them with \
             `safetensors.torch.save_file`, or use a revision that has model.safetensors"
                .into()
        } else {
            format!("no .safetensors weights (files: {})", files.join(", "))
        },
    }
}

/// The model's identity as a sha256 hex digest: its config (as parsed), each weight file's length and
/// safetensors header (names, dtypes, shapes and offsets of every tensor), its tokenizer file's bytes, and
/// the dtype it computes in. Reading only the headers keeps this instant for a model of any size; weights
/// rewritten in place with the same layout and length would go unnoticed (a fine-tune is saved anew).
pub fn fingerprint(files: &ModelFiles, dtype: candle_core::DType) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut hash = Sha256::new();
    hash.update(serde_json::to_string(&files.config).unwrap_or_default().as_bytes());
    hash.update(format!("{dtype:?}").as_bytes());
    for path in &files.weights {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut size = [0u8; 8];
        file.read_exact(&mut size).map_err(|e| Error::io(path, e))?;
        let header_len = u64::from_le_bytes(size).min(len.saturating_sub(8)).min(100 << 20);
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
        hash.update(len.to_le_bytes());
        hash.update(&header);
    }
    if let Some(path) = &files.tokenizer {
        hash.update(std::fs::read(path).map_err(|e| Error::io(path, e))?);
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
