//! The `models` table: a model that something was made from (an activation cache, later an SAE), recorded
//! once per identity (its fingerprint) so lineage can name it. A model's row owns no directory: the
//! weights stay where they were loaded from (a folder, the HF cache).

use rusqlite::{Transaction, params};

use super::Model;
use crate::catalog::{ArtifactPlan, ArtifactStatus, Catalog, IfReady, StageRecord, Workspace};
use crate::error::{Error, Result};
use crate::jobs::JobContext;

/// The artifact kind of models.
pub const MODEL_KIND: &str = "model";

struct ModelRecord {
    model: String,
    family: String,
    source: String,
    fingerprint: String,
    parameters: u64,
}

impl StageRecord for ModelRecord {
    fn write_in(&self, catalog: &Catalog, tx: &Transaction, id: i64) -> Result<()> {
        tx.execute(
            "INSERT OR REPLACE INTO models (id, model, family, source, fingerprint, parameters)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![id, self.model, self.family, self.source, self.fingerprint, self.parameters as i64],
        )
        .map_err(|source| Error::Catalog { path: catalog.path().to_path_buf(), source })?;
        Ok(())
    }
}

/// `<model name>@<12 hex digits of its fingerprint>`.
pub fn model_artifact_name(model: &Model) -> String {
    let fp = &model.info().fingerprint;
    format!("{}@{}", model.name(), &fp[..12.min(fp.len())])
}

impl Workspace {
    /// The catalog id of `model`, recorded now if this identity is new (safe to call again and again).
    pub fn register_model(&self, model: &Model) -> Result<i64> {
        let info = model.info();
        if info.fingerprint.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "model {} was not loaded from files (no fingerprint), so nothing made from it can name it",
                info.name
            )));
        }
        let plan = ArtifactPlan {
            kind: MODEL_KIND,
            name: model_artifact_name(model),
            working: ArtifactStatus::Pending,
            params: serde_json::json!({ "source": info.source, "dtype": info.dtype, "fingerprint": info.fingerprint }),
            parents: vec![],
            dir: None,
            if_ready: IfReady::Reuse,
            resumable: false,
        };
        let record = ModelRecord {
            model: info.name.clone(),
            family: info.family.as_str().to_string(),
            source: info.source.clone(),
            fingerprint: info.fingerprint.clone(),
            parameters: info.parameters,
        };
        let produced = self.produce(plan, &JobContext::detached("register model"), |_, _| Ok(record))?;
        Ok(produced.id())
    }
}
