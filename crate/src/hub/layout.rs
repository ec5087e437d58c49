//! How a Hub dataset's files become configs and splits, following the Hub's conventions: the `configs:`
//! section of the dataset card when there is one; else per-config folders (as in the auto-converted
//! `refs/convert/parquet` branch: `{config}/{split}/0000.parquet`); else split names in the paths
//! (`data/{split}-00000-of-00001.parquet`, `{split}/…`, `…-{split}.jsonl`), with unnamed files in `train`.

use serde::Serialize;
use serde_json::Value;

use crate::sources::Format;

/// A file of a repository as the Hub lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepoFile {
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes, when the Hub gave it (`blobs=true`) or the cache has the file.
    pub size: Option<u64>,
    /// The SHA-256 of the content, for files stored with LFS (their ETag).
    pub sha256: Option<String>,
    /// The git blob id, for files stored in git (their ETag).
    pub blob_id: Option<String>,
}

impl RepoFile {
    /// The name of the file's blob in the cache, when known before asking the Hub.
    pub fn etag(&self) -> Option<&str> {
        self.sha256.as_deref().or(self.blob_id.as_deref())
    }
}

/// One config of a dataset: its splits, and whether it is the one used when none is named.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfigInfo {
    pub name: String,
    pub default: bool,
    /// Where the config comes from: `card` (the YAML header), `folder` or `inferred` (file names).
    pub origin: &'static str,
    pub splits: Vec<SplitInfo>,
}

/// One split of a config and its data files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitInfo {
    pub name: String,
    pub files: Vec<RepoFile>,
}

impl SplitInfo {
    /// Bytes of the split's files, where the Hub gave sizes.
    pub fn num_bytes(&self) -> u64 {
        self.files.iter().filter_map(|f| f.size).sum()
    }
}

impl ConfigInfo {
    pub fn split(&self, name: &str) -> Option<&SplitInfo> {
        self.splits.iter().find(|s| s.name == name)
    }

    pub fn split_names(&self) -> Vec<String> {
        self.splits.iter().map(|s| s.name.clone()).collect()
    }
}

const SPLIT_WORDS: [(&str, &[&str]); 3] = [
    ("train", &["train", "training"]),
    ("validation", &["validation", "valid", "val", "dev"]),
    ("test", &["test", "testing", "eval", "evaluation"]),
];

/// Whether saekit can read the file as data (JSONL/JSON, CSV, Parquet; compressed or not).
pub fn is_data_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    !path.split('/').any(|c| c.starts_with('.'))
        && matches!(Format::from_path(std::path::Path::new(name)), Some(Format::Jsonl | Format::Csv | Format::Parquet))
}

/// The configs of a dataset with these files and (maybe) this card header.
pub fn configs(files: &[RepoFile], card: Option<&Value>) -> Vec<ConfigInfo> {
    let data: Vec<&RepoFile> = files.iter().filter(|f| is_data_file(&f.path)).collect();
    if let Some(declared) = card.and_then(|c| c.get("configs")).and_then(|c| c.as_array())
        && !declared.is_empty()
    {
        let configs: Vec<ConfigInfo> = declared.iter().filter_map(|c| from_card(c, &data)).collect();
        return with_default(configs);
    }
    let foldered = !data.is_empty()
        && data.iter().all(|f| {
            let mut parts = f.path.split('/');
            let first = parts.next().unwrap_or_default();
            parts.next().is_some() && first != "data" && split_word(first).is_none()
        });
    if foldered {
        let mut names: Vec<&str> = data.iter().map(|f| f.path.split('/').next().unwrap_or_default()).collect();
        names.dedup();
        names.sort();
        names.dedup();
        let configs = names
            .into_iter()
            .map(|name| {
                let prefix = format!("{name}/");
                let inside: Vec<(String, &RepoFile)> = data
                    .iter()
                    .filter_map(|f| f.path.strip_prefix(&prefix).map(|rest| (rest.to_string(), *f)))
                    .collect();
                ConfigInfo {
                    name: name.to_string(),
                    default: name == "default",
                    origin: "folder",
                    splits: infer_splits(&inside, true),
                }
            })
            .collect();
        return with_default(configs);
    }
    if data.is_empty() {
        return Vec::new();
    }
    let all: Vec<(String, &RepoFile)> = data.iter().map(|f| (f.path.clone(), *f)).collect();
    vec![ConfigInfo { name: "default".into(), default: true, origin: "inferred", splits: infer_splits(&all, false) }]
}

/// Marks the first config default when none is.
fn with_default(mut configs: Vec<ConfigInfo>) -> Vec<ConfigInfo> {
    if !configs.iter().any(|c| c.default)
        && let Some(first) = configs.first_mut()
    {
        first.default = true;
    }
    configs
}

fn from_card(config: &Value, data: &[&RepoFile]) -> Option<ConfigInfo> {
    let name = config.get("config_name").and_then(|n| n.as_str()).unwrap_or("default").to_string();
    let default = config.get("default").and_then(|d| d.as_bool()).unwrap_or(false);
    let dir = config.get("data_dir").and_then(|d| d.as_str()).map(|d| d.trim_matches('/').to_string());
    let prefixed = |pattern: &str| match &dir {
        Some(dir) => format!("{dir}/{}", pattern.trim_start_matches('/')),
        None => pattern.to_string(),
    };
    // (split, patterns) pairs from the several shapes `data_files` takes.
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    let patterns_of = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().filter_map(|p| p.as_str().map(String::from)).collect(),
            _ => Vec::new(),
        }
    };
    match config.get("data_files") {
        Some(Value::String(s)) => wanted.push(("train".into(), vec![s.clone()])),
        Some(Value::Array(items)) if items.iter().all(|i| i.is_string()) => {
            wanted.push(("train".into(), patterns_of(&Value::Array(items.clone()))))
        }
        Some(Value::Array(items)) => {
            for item in items {
                let split = item.get("split").and_then(|s| s.as_str()).unwrap_or("train").to_string();
                wanted.push((split, item.get("path").map(patterns_of).unwrap_or_default()));
            }
        }
        Some(Value::Object(map)) => {
            for (split, v) in map {
                wanted.push((split.clone(), patterns_of(v)));
            }
        }
        _ => {
            // Only a data_dir (or nothing): infer the splits inside it.
            let inside: Vec<(String, &RepoFile)> = data
                .iter()
                .filter_map(|f| match &dir {
                    Some(d) => f.path.strip_prefix(&format!("{d}/")).map(|rest| (rest.to_string(), *f)),
                    None => Some((f.path.clone(), *f)),
                })
                .collect();
            return Some(ConfigInfo { name, default, origin: "card", splits: infer_splits(&inside, false) });
        }
    }
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut splits: Vec<SplitInfo> = Vec::new();
    for (split, patterns) in wanted {
        let mut files: Vec<RepoFile> = Vec::new();
        for pattern in patterns.iter().map(|p| prefixed(p)) {
            let matcher = glob::Pattern::new(&pattern).ok();
            let folder = format!("{}/", pattern.trim_end_matches('/'));
            for f in data {
                let hit =
                    matcher.as_ref().is_some_and(|m| m.matches_with(&f.path, options)) || f.path.starts_with(&folder);
                if hit && !files.iter().any(|g| g.path == f.path) {
                    files.push((*f).clone());
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        match splits.iter_mut().find(|s| s.name == split) {
            Some(existing) => existing.files.extend(files),
            None => splits.push(SplitInfo { name: split, files }),
        }
    }
    Some(ConfigInfo { name, default, origin: "card", splits })
}

/// The canonical split a path component names, if any (`partial-train` from the Parquet conversion too).
fn split_word(component: &str) -> Option<&'static str> {
    let c = component.to_ascii_lowercase();
    let c = c.strip_prefix("partial-").unwrap_or(&c);
    SPLIT_WORDS.iter().find(|(_, words)| words.contains(&c)).map(|(name, _)| *name)
}

/// The split a file name names: `train-0000.parquet`, `train.jsonl`, `wiki-test.csv`, `x_validation_1.json`.
fn split_in_name(name: &str) -> Option<&'static str> {
    let stem = name.split('.').next().unwrap_or(name).to_ascii_lowercase();
    let words: Vec<&str> = stem.split(['-', '_', ' ']).collect();
    // The first word, else any word that is not followed by digits-only names of shards.
    words.iter().find_map(|w| split_word(w))
}

/// Splits of files given by their path relative to the config's root. `folders_are_splits`: a first
/// folder names the split verbatim (the Parquet conversion's `{config}/{split}/0000.parquet`).
fn infer_splits(files: &[(String, &RepoFile)], folders_are_splits: bool) -> Vec<SplitInfo> {
    let mut named: Vec<(String, RepoFile)> = Vec::new();
    let mut unnamed: Vec<RepoFile> = Vec::new();
    for (rel, file) in files {
        let parts: Vec<&str> = rel.split('/').collect();
        let (dirs, name) = parts.split_at(parts.len() - 1);
        let split = if folders_are_splits && !dirs.is_empty() {
            let d = dirs[0];
            Some(split_word(d).map(String::from).unwrap_or_else(|| d.strip_prefix("partial-").unwrap_or(d).to_string()))
        } else {
            dirs.iter().find_map(|d| split_word(d)).or_else(|| split_in_name(name[0])).map(String::from)
        };
        match split {
            Some(s) => named.push((s, (*file).clone())),
            None => unnamed.push((*file).clone()),
        }
    }
    let mut splits: Vec<SplitInfo> = Vec::new();
    if named.is_empty() {
        if !unnamed.is_empty() {
            splits.push(SplitInfo { name: "train".into(), files: unnamed });
        }
    } else {
        for (split, file) in named {
            match splits.iter_mut().find(|s| s.name == split) {
                Some(s) => s.files.push(file),
                None => splits.push(SplitInfo { name: split, files: vec![file] }),
            }
        }
    }
    for s in &mut splits {
        s.files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    let rank = |n: &str| SPLIT_WORDS.iter().position(|(name, _)| *name == n).unwrap_or(SPLIT_WORDS.len());
    splits.sort_by(|a, b| rank(&a.name).cmp(&rank(&b.name)).then(a.name.cmp(&b.name)));
    splits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(paths: &[&str]) -> Vec<RepoFile> {
        paths.iter().map(|p| RepoFile { path: p.to_string(), size: Some(1), sha256: None, blob_id: None }).collect()
    }

    /// (config, [(split, [file])]).
    type Shape = Vec<(String, Vec<(String, Vec<String>)>)>;

    fn shape(configs: &[ConfigInfo]) -> Shape {
        configs
            .iter()
            .map(|c| {
                let splits = c
                    .splits
                    .iter()
                    .map(|s| (s.name.clone(), s.files.iter().map(|f| f.path.clone()).collect()))
                    .collect();
                (c.name.clone(), splits)
            })
            .collect()
    }

    #[test]
    fn data_split_shards_and_split_folders() {
        let f = files(&[
            "README.md",
            ".gitattributes",
            "data/train-00000-of-00002.parquet",
            "data/train-00001-of-00002.parquet",
            "data/test-00000-of-00001.parquet",
            "data/validation-00000-of-00001.parquet",
        ]);
        let got = shape(&configs(&f, None));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "default");
        let names: Vec<&str> = got[0].1.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["train", "validation", "test"]);
        assert_eq!(got[0].1[0].1.len(), 2);
        let f = files(&["train/a.jsonl", "dev/b.jsonl", "other.txt"]);
        let got = shape(&configs(&f, None));
        assert_eq!(
            got[0].1,
            vec![("train".into(), vec!["train/a.jsonl".into()]), ("validation".into(), vec!["dev/b.jsonl".into()])]
        );
    }

    #[test]
    fn unnamed_files_are_train_and_config_folders_are_configs() {
        let got = shape(&configs(&files(&["corpus.jsonl.zst", "more.csv"]), None));
        assert_eq!(got[0].1[0].0, "train");
        assert_eq!(got[0].1[0].1.len(), 2);
        let f = files(&["default/train/0000.parquet", "default/partial-test/0000.parquet", "fr/train/0000.parquet"]);
        let got = configs(&f, None);
        assert_eq!(got.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["default", "fr"]);
        assert_eq!(got[0].split_names(), ["train", "test"]);
        assert!(got[0].default);
    }
}
