//! saekit: download, curate, mix and tokenize training data and train sparse autoencoders, from plain Rust
//! or from notebook cells.
//!
//! The modules follow the data's journey: [`sources`] read files as Arrow record batches, the [`catalog`]
//! keeps a workspace of datasets and the artifacts made from them, [`stats`] describes what is in a
//! dataset, [`tokenize`] turns datasets into token stores, [`mix`] builds training mixes from many sources (with the
//! filters and deduplicators of [`steps`]), and [`hub`] brings datasets and tokenizers
//! from the Hugging Face Hub. [`models`] runs language models (GPT-2, Llama, BERT) to named hook points, and [`activations`] caches
//! their activations and serves them as shuffled training batches; [`sae`] holds sparse autoencoders in
//! SAELens' layout. Every artifact is made through the catalog's one lifecycle
//! ([`catalog::Request`], run with [`Workspace::make`], [`Workspace::make_job`] or [`Workspace::make_with`]). [`display`] renders values
//! for notebooks, terminals and HTML reports; stages use it, never the reverse.

pub mod activations;
pub mod catalog;
pub mod collect;
pub mod curate;
pub mod data;
pub mod display;
pub mod error;
pub mod files;
pub mod hub;
pub mod jobs;
pub mod mix;
pub mod models;
pub mod report;
pub mod sae;
pub mod session;
pub mod sources;
pub mod stats;
pub mod steps;
pub mod tokenize;
pub mod units;

pub use catalog::{Dataset, DatasetStatus, Workspace};
pub use error::{Error, Result};
pub use sources::{OnError, Source, TextField};

/// The saekit version, recorded in every artifact and report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(feature = "polars")]
pub mod interop;

/// What a notebook or script usually needs: `use saekit::prelude::*;`. Bringing [`display::Render`]
/// into scope is what lets evcxr show saekit values richly.
pub mod prelude {
    pub use crate::activations::{ActivationBatch, ActivationCache, ActivationSpec, ActivationStore, CacheDtype};
    pub use crate::catalog::{Artifact, Dataset, DatasetFilter, DatasetList, DatasetStatus, Lineage, Workspace};
    pub use crate::display::{
        Card, Histogram, LineChart, LiveDisplay, MimeBundle, Render, Table, clear_output, show, show_live,
    };
    pub use crate::error::{Error, Result};
    pub use crate::hub::{DatasetRepo, DownloadPlan, Hub, Selection};
    pub use crate::jobs::{Job, JobContext, JobStatus};
    pub use crate::mix::{Manifest, Mix, MixRecipe, MixSource, Phase, StopRule, Strategy};
    pub use crate::models::{Forward, HookPoint, Model, ModelOutput, TokenBatch};
    pub use crate::report::{Provenance, Report, provenance};
    pub use crate::sae::{RunConfig, Sae, SaeRun, SaeRunSpec, SaeSpec};
    pub use crate::sources::{Format, OnError, Sample, SchemaView, Source, TextField};
    pub use crate::stats::DatasetStats;
    pub use crate::steps::StepSpec;
    pub use crate::tokenize::{Packing, Tokenization, TokenizeParams, Tokenizer};
}
