//! How Hub values look: a repository's configs, splits and files; a download plan with sizes and disk
//! space; the Hub connection itself (saying whether a token is set and from where, never the token).
//! Every string from a repository goes through the display layer's escaping.

use super::plan::{DatasetRepo, DownloadPlan};
use super::{Hub, RepoKind};
use crate::display::{Card, MimeBundle, Render, Table, bytes};
use crate::error::count;

const FILES_SHOWN: usize = 25;

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn size(size: Option<u64>) -> String {
    size.map(bytes).unwrap_or_else(|| "?".into())
}

impl Render for DatasetRepo {
    fn bundle(&self) -> MimeBundle {
        let total: u64 = self.files.iter().filter_map(|f| f.size).sum();
        let title = format!("{} {}", if self.kind == RepoKind::Dataset { "Dataset" } else { "Model" }, self.id);
        let mut card = Card::new(title)
            .badge(if self.from_cache { "cached (offline)".to_string() } else { self.revision.clone() })
            .fact("revision", format!("{} (commit {})", self.revision, short(&self.commit)))
            .fact("files", format!("{} · {}", count(self.files.len() as u64), bytes(total)));
        if let Some(gated) = &self.gated {
            card = card.fact("gated", if gated == "false" { "no".to_string() } else { format!("yes ({gated})") });
        }
        if self.kind == RepoKind::Dataset {
            card = card.fact(
                "configs",
                if self.configs.is_empty() { "none found".into() } else { self.config_names().join(", ") },
            );
            let conversion = if self.parquet_conversion.is_empty() {
                "none".to_string()
            } else {
                let names: Vec<&str> = self.parquet_conversion.iter().map(|c| c.name.as_str()).collect();
                format!("revision refs/convert/parquet: {}", names.join(", "))
            };
            card = card.fact("Parquet conversion", conversion);
            let mut splits = Table::new("Configs and splits", &["config", "split", "files", "size", "from"]);
            for config in &self.configs {
                for split in &config.splits {
                    let name = if config.default { format!("{} (default)", config.name) } else { config.name.clone() };
                    splits.row(vec![
                        name,
                        split.name.clone(),
                        count(split.files.len() as u64),
                        bytes(split.num_bytes()),
                        config.origin.to_string(),
                    ]);
                }
            }
            if !splits.rows.is_empty() {
                card = card.section(&splits.bundle());
            }
        }
        let mut files = Table::new("Files", &["path", "size", "sha256 (LFS)"]);
        for f in self.files.iter().take(FILES_SHOWN) {
            files.row(vec![f.path.clone(), size(f.size), f.sha256.as_deref().map(short).unwrap_or("").to_string()]);
        }
        if self.files.len() > FILES_SHOWN {
            files.footer = Some(format!("{FILES_SHOWN} of {} files", count(self.files.len() as u64)));
        }
        card.section(&files.bundle()).bundle()
    }
}

impl Render for DownloadPlan {
    fn bundle(&self) -> MimeBundle {
        let needed = self.bytes_to_fetch();
        let partial = self.files.iter().filter(|f| !f.cached && f.partial > 0).count();
        let mut card = Card::new(format!("Download of {} {}", self.kind.as_str(), self.repo_id))
            .badge(if self.offline { "offline".to_string() } else { "plan".to_string() })
            .fact(
                "revision",
                match &self.commit {
                    Some(c) => format!("{} (commit {})", self.revision, short(c)),
                    None => self.revision.clone(),
                },
            );
        if let Some(config) = &self.config {
            card = card.fact("config", config.clone()).fact("splits", self.splits.join(", "));
        }
        card = card
            .fact(
                "files",
                format!(
                    "{} · {} cached · {} partly fetched",
                    count(self.files.len() as u64),
                    count(self.cached_files() as u64),
                    count(partial as u64)
                ),
            )
            .fact("total size", bytes(self.total_bytes()))
            .fact("to download", bytes(needed))
            .fact("free disk", format!("{} in {}", bytes(self.free_bytes), self.cache_dir.display()))
            .fact(
                "space",
                if needed <= self.free_bytes {
                    "enough".to_string()
                } else {
                    format!("NOT enough: {} short", bytes(needed - self.free_bytes))
                },
            );
        if let Some(rows) = self.max_rows {
            card = card.fact(
                "row cap",
                format!("{} rows (files are fetched in order until they hold that many)", count(rows)),
            );
        }
        let mut files = Table::new("Files", &["path", "split", "size", "state"]);
        for f in self.files.iter().take(FILES_SHOWN) {
            let state = if f.cached {
                "cached".to_string()
            } else if f.partial > 0 {
                format!("resume after {}", bytes(f.partial))
            } else {
                "to download".to_string()
            };
            files.row(vec![f.path.clone(), f.split.clone(), size(f.size), state]);
        }
        if self.files.len() > FILES_SHOWN {
            files.footer = Some(format!("{FILES_SHOWN} of {} files", count(self.files.len() as u64)));
        }
        card.section(&files.bundle()).bundle()
    }
}

impl Render for Hub {
    fn bundle(&self) -> MimeBundle {
        let token = match self.token_origin() {
            Some(origin) => format!("set ({origin})"),
            None => "none".into(),
        };
        Card::new("Hugging Face Hub")
            .badge(if self.offline { "offline" } else { "online" })
            .fact("endpoint", self.endpoint.clone())
            .fact("cache", self.cache.root().display().to_string())
            .fact("token", token)
            .bundle()
    }
}
