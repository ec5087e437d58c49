//! What made a session's numbers, by construction: saekit's build, the machine, the session's times, and
//! every artifact it read, reused or made in every workspace it opened, with content hashes, parameters,
//! lineage and seeds. Nothing is assembled by hand: the catalog records each touch as it happens (see
//! [`crate::catalog::TouchedArtifact`]), and [`Provenance::current`] reads the record back, so any cell of
//! a kernel (each with its own copy of saekit's statics) sees the whole session.
//!
//! It renders as text, as an HTML `<footer>` that carries its own plain-text copy, and as JSON
//! (`application/json`), which `saekit report` keeps in the exported notebook's metadata. Values whose key
//! names a secret (tokens, passwords, keys) are replaced by `[redacted]`, and so are strings that look like
//! Hub tokens, wherever they are.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog::{TouchedArtifact, Workspace, format_rfc3339};
use crate::display::{MimeBundle, Render, STYLE, escape, truncate};
use crate::session::{BuildInfo, Machine, process_kind, process_start, session_id};

/// The provenance of one session (one process: a kernel, a CLI command).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub session: String,
    /// `kernel`, `saekit`, a test binary's name.
    pub process: String,
    /// When the process started (RFC 3339 UTC), where the system says.
    pub started_at: Option<String>,
    /// When this record was read.
    pub taken_at: String,
    pub build: BuildInfo,
    pub machine: Machine,
    pub workspaces: Vec<WorkspaceProvenance>,
}

/// What a session touched in one workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceProvenance {
    pub root: PathBuf,
    pub artifacts: Vec<TouchedArtifact>,
    /// Every seed in the parameters of those artifacts.
    pub seeds: Vec<Seed>,
    /// Why the record could not be read, when it could not.
    pub error: Option<String>,
}

/// A seed found in an artifact's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seed {
    /// `kind name (#id)`.
    pub artifact: String,
    /// The parameter's path in the artifact's parameters, as `a.b[0].seed`.
    pub key: String,
    pub value: Value,
}

/// The current session's provenance (what a notebook's `provenance()` cell shows).
pub fn provenance() -> Provenance {
    Provenance::current()
}

impl Provenance {
    /// This session's provenance, over every workspace it touched.
    pub fn current() -> Provenance {
        Provenance::for_roots(&crate::session::workspaces())
    }

    /// This session's provenance in the given workspaces only.
    pub fn for_roots(roots: &[PathBuf]) -> Provenance {
        let session = session_id();
        let workspaces = roots.iter().map(|root| WorkspaceProvenance::read(root, &session)).collect();
        Provenance {
            process: process_kind(),
            started_at: process_start().map(format_rfc3339),
            taken_at: format_rfc3339(SystemTime::now()),
            build: BuildInfo::current(),
            machine: Machine::current(),
            workspaces,
            session,
        }
    }

    /// Every artifact touched, in every workspace.
    pub fn artifacts(&self) -> impl Iterator<Item = &TouchedArtifact> {
        self.workspaces.iter().flat_map(|w| w.artifacts.iter())
    }

    /// Every seed, in every workspace.
    pub fn seeds(&self) -> impl Iterator<Item = &Seed> {
        self.workspaces.iter().flat_map(|w| w.seeds.iter())
    }

    /// The record as JSON (what `saekit report` keeps in the exported notebook).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string())
    }

    /// The record as lines of text.
    pub fn to_text(&self) -> String {
        let mut out = String::from("saekit provenance\n");
        for (key, value) in self.facts() {
            out.push_str(&format!("  {key:<10} {value}\n"));
        }
        for ws in &self.workspaces {
            out.push_str(&format!("  workspace  {}\n", ws.root.display()));
            if let Some(error) = &ws.error {
                out.push_str(&format!("    (not read: {error})\n"));
            }
            if ws.artifacts.is_empty() && ws.error.is_none() {
                out.push_str("    (nothing touched)\n");
            }
            for a in &ws.artifacts {
                out.push_str(&format!(
                    "    {:<6} {} {} (#{}) [{}] {}\n",
                    touches(a),
                    a.kind,
                    a.name,
                    a.id,
                    a.status,
                    a.content
                ));
                if !a.parents.is_empty() {
                    out.push_str(&format!("           from {}\n", a.parents.join(", ")));
                }
                if !a.params.is_null() && a.params != Value::Object(Default::default()) {
                    out.push_str(&format!("           params {}\n", truncate(&redacted(&a.params).to_string(), 400)));
                }
            }
            for s in &ws.seeds {
                out.push_str(&format!("    seed   {} = {} ({})\n", s.key, s.value, s.artifact));
            }
        }
        if self.workspaces.is_empty() {
            out.push_str("  (no workspace touched yet)\n");
        }
        out
    }

    /// The session-wide facts as (label, value) pairs, in the order shown.
    fn facts(&self) -> Vec<(&'static str, String)> {
        let b = &self.build;
        let m = &self.machine;
        let features = if b.features.is_empty() { "none".to_string() } else { b.features.join(", ") };
        let memory = m.memory_bytes.map(crate::display::bytes).unwrap_or_else(|| "unknown".to_string());
        vec![
            ("saekit", b.summary()),
            ("commit", b.commit.clone()),
            ("Cargo.lock", format!("sha256:{}", b.cargo_lock_sha256)),
            ("features", features),
            ("rustc", format!("{} ({} build, {})", b.rustc, b.profile, b.target)),
            (
                "machine",
                format!(
                    "{} {}, {} cores, {memory} memory, {} threads used{}",
                    m.os,
                    m.arch,
                    m.cores,
                    m.threads,
                    m.cpu.as_deref().map(|c| format!(", {c}")).unwrap_or_default()
                ),
            ),
            ("GPU", m.gpu.clone()),
            ("session", format!("{} ({})", self.session, self.process)),
            ("started", self.started_at.clone().unwrap_or_else(|| "unknown".to_string())),
            ("recorded", self.taken_at.clone()),
        ]
    }

    /// The record as an HTML `<footer>` (a table, then its plain-text copy in a `<details>`), escaped.
    pub fn to_html(&self) -> String {
        let mut html = String::from(
            "<footer class=\"saekit-provenance\"><h3>Provenance</h3><table class=\"saekit-facts\"><tbody>",
        );
        for (key, value) in self.facts() {
            html.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", escape(key), escape(&value)));
        }
        html.push_str("</tbody></table>");
        for ws in &self.workspaces {
            html.push_str(&format!("<h4>Workspace <code>{}</code></h4>", escape(&ws.root.to_string_lossy())));
            if let Some(error) = &ws.error {
                html.push_str(&format!("<p>not read: {}</p>", escape(error)));
            }
            if !ws.artifacts.is_empty() {
                html.push_str(
                    "<table class=\"saekit-artifacts\"><thead><tr><th>touched</th><th>artifact</th><th>status</th>\
                     <th>content</th><th>from</th><th>params</th></tr></thead><tbody>",
                );
                for a in &ws.artifacts {
                    html.push_str(&format!(
                        "<tr><td>{}</td><td>{} <b>{}</b> (#{})</td><td>{}</td><td><code>{}</code></td><td>{}</td>\
                         <td><code>{}</code></td></tr>",
                        escape(&touches(a)),
                        escape(&a.kind),
                        escape(&a.name),
                        a.id,
                        escape(&a.status),
                        escape(&a.content),
                        escape(&a.parents.join(", ")),
                        escape(&truncate(&redacted(&a.params).to_string(), 400)),
                    ));
                }
                html.push_str("</tbody></table>");
            }
            if !ws.seeds.is_empty() {
                html.push_str("<p>Seeds: ");
                let seeds: Vec<String> = ws
                    .seeds
                    .iter()
                    .map(|s| {
                        format!(
                            "<code>{} = {}</code> ({})",
                            escape(&s.key),
                            escape(&s.value.to_string()),
                            escape(&s.artifact)
                        )
                    })
                    .collect();
                html.push_str(&seeds.join("; "));
                html.push_str("</p>");
            }
        }
        html.push_str(&format!(
            "<details><summary>as text</summary><pre>{}</pre></details></footer>",
            escape(&self.to_text())
        ));
        html
    }
}

impl Render for Provenance {
    fn bundle(&self) -> MimeBundle {
        MimeBundle::new(self.to_text())
            .with("text/html", format!("{STYLE}<div class=\"saekit\">{}</div>", self.to_html()))
            .with("application/json", self.to_json())
    }
}

impl WorkspaceProvenance {
    fn read(root: &Path, session: &str) -> WorkspaceProvenance {
        let mut out =
            WorkspaceProvenance { root: root.to_path_buf(), artifacts: Vec::new(), seeds: Vec::new(), error: None };
        if !root.join("catalog.sqlite").is_file() {
            out.error = Some("the workspace is gone".to_string());
            return out;
        }
        match Workspace::open(root).and_then(|ws| ws.session_artifacts(session)) {
            Ok(artifacts) => {
                out.seeds = artifacts
                    .iter()
                    .flat_map(|a| {
                        let label = format!("{} {} (#{})", a.kind, a.name, a.id);
                        let mut found = Vec::new();
                        seeds_in(&a.params, String::new(), &mut found);
                        found.into_iter().map(move |(key, value)| Seed { artifact: label.clone(), key, value })
                    })
                    .collect();
                out.artifacts = artifacts
                    .into_iter()
                    .map(|mut a| {
                        a.params = redacted(&a.params);
                        a
                    })
                    .collect();
            }
            Err(e) => out.error = Some(e.to_string()),
        }
        out
    }
}

impl Workspace {
    /// This session's provenance in this workspace.
    pub fn provenance(&self) -> Provenance {
        Provenance::for_roots(&[self.root().to_path_buf()])
    }
}

fn touches(a: &TouchedArtifact) -> String {
    a.touches.iter().map(|t| t.as_str()).collect::<Vec<_>>().join("+")
}

/// Every value under a key containing `seed` (any case), with its path.
fn seeds_in(value: &Value, path: String, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let at = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if k.to_ascii_lowercase().contains("seed") && !v.is_object() && !v.is_array() {
                    out.push((at, v.clone()));
                } else {
                    seeds_in(v, at, out);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                seeds_in(v, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Whether a parameter's name says its value is a secret.
fn secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace('-', "_");
    matches!(k.as_str(), "token" | "auth" | "authorization" | "password" | "passwd" | "secret" | "api_key" | "apikey")
        || ["_token", "_secret", "_password", "_api_key", "_apikey", "access_key", "credentials"]
            .iter()
            .any(|s| k.ends_with(s))
            && !k.ends_with("eos_token")
            && !k.ends_with("bos_token")
            && !k.ends_with("pad_token")
            && !k.ends_with("unk_token")
            && !k.ends_with("sep_token")
            && !k.ends_with("cls_token")
            && !k.ends_with("mask_token")
}

/// Whether a string looks like a Hugging Face token or an HTTP credential.
fn secret_value(s: &str) -> bool {
    let hub = s.len() >= 24
        && (s.starts_with("hf_") || s.starts_with("api_org_"))
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    hub || s.starts_with("Bearer ") || s.starts_with("Basic ")
}

/// `value` with every secret replaced by `[redacted]`.
pub(crate) fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v =
                        if secret_key(k) && !v.is_null() { Value::String("[redacted]".into()) } else { redacted(v) };
                    (k.clone(), v)
                })
                .collect::<serde_json::Map<_, _>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        Value::String(s) if secret_value(s) => Value::String("[redacted]".into()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn secrets_are_redacted_and_seeds_found() {
        let params = json!({
            "hub": {"token": "hf_abcdefghijklmnopqrstuvwxyz0123", "repo": "org/x"},
            "eos_token": "<|endoftext|>",
            "headers": ["Bearer abc"],
            "note": "hf_abcdefghijklmnopqrstuvwxyz0123",
            "sae": {"seed": 7, "sources": [{"shuffle_seed": 3}]},
            "HF_API_KEY": "x",
        });
        let r = redacted(&params);
        let text = r.to_string();
        assert!(!text.contains("hf_abc") && !text.contains("Bearer"), "{text}");
        assert_eq!(r["eos_token"], "<|endoftext|>");
        assert_eq!(r["hub"]["repo"], "org/x");
        assert_eq!(r["HF_API_KEY"], "[redacted]");
        let mut found = Vec::new();
        seeds_in(&params, String::new(), &mut found);
        let seeds: BTreeMap<String, Value> = found.into_iter().collect();
        assert_eq!(seeds.get("sae.seed"), Some(&json!(7)));
        assert_eq!(seeds.get("sae.sources[0].shuffle_seed"), Some(&json!(3)));
        assert_eq!(seeds.len(), 2);
    }

    #[test]
    fn a_session_names_what_it_made_and_read() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(dir.path()).unwrap();
        let file = dir.path().join("docs.jsonl");
        std::fs::write(&file, "{\"text\":\"a <script>b</script>\"}\n{\"text\":\"c\"}\n").unwrap();
        let source = crate::Source::open(&file).unwrap();
        ws.add_dataset("docs", &source).unwrap();
        ws.dataset("docs").unwrap();
        let p = ws.provenance();
        assert_eq!(p.workspaces.len(), 1);
        let docs = p.artifacts().find(|a| a.name == "docs").expect("the dataset is listed");
        assert_eq!(docs.kind, "dataset");
        assert!(docs.touches.contains(&crate::catalog::Touch::Made), "{:?}", docs.touches);
        assert!(docs.touches.contains(&crate::catalog::Touch::Read), "{:?}", docs.touches);
        assert!(docs.content.starts_with("sha256:") && docs.content.len() == 7 + 64, "{}", docs.content);
        assert!(crate::session::workspaces().contains(&ws.root().to_path_buf()));
        let text = p.to_text();
        assert!(text.contains("dataset docs (#") && text.contains(&p.build.cargo_lock_sha256), "{text}");
        let html = p.bundle().get("text/html").unwrap().to_string();
        assert!(html.contains("<footer class=\"saekit-provenance\">") && html.contains("<details>"));
        let back: Provenance = serde_json::from_str(p.bundle().get("application/json").unwrap()).unwrap();
        assert_eq!(back.session, p.session);
        assert_eq!(back.artifacts().count(), p.artifacts().count());
    }
}
