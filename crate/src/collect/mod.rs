//! Collecting training data from a running application: a [`Collector`] appends interactions (input,
//! output, type, category, quality, metadata) to a *collection*, the one artifact in saekit that grows in
//! place. A collection is a catalog artifact (kind `collection`) owning a directory with one SQLite
//! database in WAL mode: every `add` is a transaction, so several threads and processes may write at once
//! (SQLite's locks, a busy timeout), what was acknowledged is on disk before `add` returns, and a write
//! torn by kill -9 is discarded when the database is next opened (the WAL's checksums).
//!
//! SQLite or an append log of our own: measured here (`cargo run --example collect_bench`, 2 cores), an
//! append log with a checksum per record takes single records 20–30× faster (≈ 500k/s against ≈ 20–30k/s
//! one commit each) and batches of 1,000 3–5× faster (≈ 0.9–1M/s against ≈ 0.3M/s). SQLite is kept:
//! its rates are far above an application's (and the HTTP endpoint's, ≈ 17k records/s), and it brings
//! what the log would have to grow: several processes appending under one lock, indexed counts for the
//! category and daily caps, reads of the records after an id, and recovery of a torn write.
//!
//! Sampling ([`Sampling`]) decides at ingest, seeded and reproducible (a record's fate depends on the
//! seed and its content, and on what was kept before it for the caps): exclude errors, a minimum quality,
//! quality tiers with a keep rate each, a random rate, a target per category, a daily cap. Its effect is
//! counted in the collection (seen, kept, dropped by reason).
//!
//! Rooms: this file (collections and collectors), `version` (immutable snapshots, diffs, the pointer a
//! name follows, incremental exports), `serve` (the HTTP endpoint).

mod render;
pub mod serve;
pub mod version;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use render::versions_table;
pub use version::{IncrementalExport, Version, VersionDiff, VersionOf, VersionSpec};

use crate::catalog::{ArtifactPlan, IfReady, Request, StageRecord, Workspace, check_name};
use crate::curate::{ReadSpec, Records};
use crate::error::{Error, Result};
use crate::jobs::JobContext;

/// The artifact kind of collections.
pub const COLLECTION_KIND: &str = "collection";
const DB: &str = "records.sqlite";

/// One interaction of an application with its users (or any training example).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Interaction {
    pub input: String,
    pub output: String,
    /// What kind of interaction (`chat`, `completion`, `tool_call`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub category: Option<String>,
    /// A quality score in [0, 1] the application (or a reviewer) gave it.
    pub quality: Option<f64>,
    /// Whether the interaction ended in an error.
    pub error: bool,
    pub metadata: Map<String, Value>,
    /// When it happened (RFC 3339); now when not given.
    pub at: Option<String>,
}

impl Interaction {
    pub fn new(input: impl Into<String>, output: impl Into<String>) -> Interaction {
        Interaction { input: input.into(), output: output.into(), kind: "chat".into(), ..Default::default() }
    }

    pub fn kind(mut self, kind: impl Into<String>) -> Interaction {
        self.kind = kind.into();
        self
    }

    pub fn category(mut self, category: impl Into<String>) -> Interaction {
        self.category = Some(category.into());
        self
    }

    pub fn quality(mut self, quality: f64) -> Interaction {
        self.quality = Some(quality);
        self
    }

    pub fn error(mut self, error: bool) -> Interaction {
        self.error = error;
        self
    }

    pub fn at(mut self, at: impl Into<String>) -> Interaction {
        self.at = Some(at.into());
        self
    }

    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Interaction {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// An interaction from a record (`input`, `output`, `type`, `category`, `quality`, `error`, `at`; any
    /// other field goes into `metadata`), or why not.
    pub fn from_record(record: &Map<String, Value>) -> std::result::Result<Interaction, String> {
        let text = |k: &str| -> std::result::Result<Option<String>, String> {
            match record.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!("`{k}` must be a string, found {other}")),
            }
        };
        let input = text("input")?.ok_or("`input` is missing")?;
        let mut metadata = match record.get("metadata") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => return Err(format!("`metadata` must be an object, found {other}")),
        };
        for (k, v) in record {
            if !["input", "output", "type", "category", "quality", "error", "metadata", "at"].contains(&k.as_str()) {
                metadata.insert(k.clone(), v.clone());
            }
        }
        let quality = match record.get("quality") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_f64().ok_or_else(|| format!("`quality` must be a number, found {v}"))?),
        };
        let error = match record.get("error") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(format!("`error` must be true or false, found {v}")),
        };
        Ok(Interaction {
            input,
            output: text("output")?.unwrap_or_default(),
            kind: text("type")?.unwrap_or_else(|| "chat".into()),
            category: text("category")?,
            quality,
            error,
            metadata,
            at: text("at")?,
        })
    }
}

/// A quality tier: interactions with quality ≥ `min_quality` (and below the next tier up) are kept at
/// `rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    pub min_quality: f64,
    pub rate: f64,
}

/// What a collection keeps of what it is sent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sampling {
    pub seed: u64,
    pub exclude_errors: bool,
    pub min_quality: Option<f64>,
    /// Highest `min_quality` first is not required; the tier with the largest `min_quality` ≤ the
    /// interaction's quality applies (none: kept).
    pub tiers: Vec<Tier>,
    /// Keep this share of what passes the rest.
    pub rate: Option<f64>,
    /// At most this many kept per category (a stratified target).
    pub per_category: BTreeMap<String, u64>,
    /// At most this many kept per day (by `at`).
    pub daily_cap: Option<u64>,
}

impl Sampling {
    pub fn keep_all() -> Sampling {
        Sampling::default()
    }
}

/// Seen, kept and dropped by reason, since the collection was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SamplingReport {
    pub seen: u64,
    pub kept: u64,
    pub dropped: BTreeMap<String, u64>,
}

/// What became of one interaction sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Added {
    /// Kept, at this sequence number (from 1, in the order of commit).
    Kept(u64),
    Dropped(String),
}

/// A uniform number in [0, 1) from the seed and the interaction's content.
fn draw(seed: u64, what: &str, i: &Interaction) -> f64 {
    let mut bytes = Vec::with_capacity(i.input.len() + i.output.len() + what.len() + 2);
    bytes.extend_from_slice(what.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(i.input.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(i.output.as_bytes());
    let h = crate::steps::text::hash64(&bytes, seed);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn day_of(at: &str) -> String {
    at.get(..10).unwrap_or(at).to_string()
}

/// Whether to keep `i`, given what was kept before it (`kept_in` counts kept rows by category or day).
fn decide(s: &Sampling, i: &Interaction, kept_in: &mut dyn FnMut(&str, &str) -> Result<u64>) -> Result<Option<String>> {
    if s.exclude_errors && i.error {
        return Ok(Some("error".into()));
    }
    if let Some(min) = s.min_quality
        && i.quality.is_none_or(|q| q < min)
    {
        return Ok(Some("low quality".into()));
    }
    if let Some(q) = i.quality {
        let tier = s.tiers.iter().filter(|t| t.min_quality <= q).max_by(|a, b| a.min_quality.total_cmp(&b.min_quality));
        if let Some(t) = tier
            && draw(s.seed, "tier", i) >= t.rate
        {
            return Ok(Some(format!("tier ≥ {} sampled at {}", t.min_quality, t.rate)));
        }
    }
    if let Some(rate) = s.rate
        && draw(s.seed, "rate", i) >= rate
    {
        return Ok(Some(format!("sampled at rate {rate}")));
    }
    if let Some(cat) = &i.category
        && let Some(&target) = s.per_category.get(cat)
        && kept_in("category", cat)? >= target
    {
        return Ok(Some(format!("category {cat} has its {target}")));
    }
    if let Some(cap) = s.daily_cap
        && kept_in("day", &day_of(i.at.as_deref().unwrap_or("")))? >= cap
    {
        return Ok(Some(format!("daily cap {cap}")));
    }
    Ok(None)
}

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |source| Error::Catalog { path: path.to_path_buf(), source }
}

fn open_db(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(db_err(path))?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(db_err(path))?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(db_err(path))?;
    // In WAL mode NORMAL is durable against the process dying (kill -9); FULL adds a sync per commit
    // against power loss.
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_err(path))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS records (
            seq      INTEGER PRIMARY KEY AUTOINCREMENT,
            at       TEXT NOT NULL,
            day      TEXT NOT NULL,
            type     TEXT NOT NULL,
            input    TEXT NOT NULL,
            output   TEXT NOT NULL,
            category TEXT,
            quality  REAL,
            error    INTEGER NOT NULL,
            metadata TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS records_category ON records (category);
        CREATE INDEX IF NOT EXISTS records_day ON records (day);
        CREATE TABLE IF NOT EXISTS sampling (reason TEXT PRIMARY KEY, count INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
    )
    .map_err(db_err(path))?;
    Ok(conn)
}

/// Marks which copy of saekit's code is running: under evcxr every cell is a library with its own copy
/// (and its own copy of SQLite), so a connection opened by one cell's copy must not be used, or closed,
/// by another's.
static COPY: u8 = 0;

fn copy_id() -> usize {
    &COPY as *const u8 as usize
}

/// A connection with the copy of the code that opened it; closed only by that copy (another copy leaks
/// it rather than close a handle its SQLite does not know).
struct Held {
    copy: usize,
    conn: std::mem::ManuallyDrop<Connection>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.copy == copy_id() {
            // SAFETY: dropped once, here, by the copy of SQLite that opened it.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.conn) }
        }
    }
}

/// Writes to one collection. Clones share one connection (calls take turns); a collector per thread (or
/// process) writes in parallel through SQLite's locking. Kept in a notebook variable, it opens a fresh
/// connection in each later cell (see [`COPY`]).
#[derive(Clone)]
pub struct Collector {
    pub name: String,
    pub id: i64,
    path: PathBuf,
    sampling: Sampling,
    held: std::sync::Arc<std::sync::Mutex<Option<Held>>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector").field("name", &self.name).field("path", &self.path).finish()
    }
}

/// Making a collection through the lifecycle: its directory and empty database.
#[derive(Debug, Clone)]
struct MakeCollection {
    name: String,
    sampling: Sampling,
}

struct CollectionRecord;

impl StageRecord for CollectionRecord {
    fn write_in(&self, _: &crate::catalog::Catalog, _: &rusqlite::Transaction, _: i64) -> Result<()> {
        Ok(())
    }
}

impl Request for MakeCollection {
    type Output = i64;

    fn label(&self) -> String {
        format!("collection {}", self.name)
    }

    fn run(&self, ws: &Workspace, ctx: &JobContext) -> Result<i64> {
        let plan = ArtifactPlan {
            kind: COLLECTION_KIND,
            name: self.name.clone(),
            working: crate::catalog::ArtifactStatus::Importing,
            params: json!({"sampling": self.sampling}),
            parents: Vec::new(),
            dir: Some("collections"),
            if_ready: IfReady::Reuse,
            resumable: false,
        };
        let produced = ws.produce(plan, ctx, |dir, _| {
            let dir = dir.ok_or_else(|| Error::InvalidArgument("a collection owns a directory".into()))?;
            let path = dir.path().join(DB);
            let conn = open_db(&path)?;
            conn.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES ('sampling', ?1)",
                params![serde_json::to_string(&self.sampling).unwrap_or_default()],
            )
            .map_err(db_err(&path))?;
            // Everything in the main file before the directory moves.
            conn.pragma_update(None, "journal_mode", "DELETE").map_err(db_err(&path))?;
            Ok(CollectionRecord)
        })?;
        Ok(produced.id())
    }
}

impl Workspace {
    /// The collection `name`, made (keeping everything) if it does not exist.
    pub fn collection(&self, name: &str) -> Result<Collector> {
        self.collection_with(name, Sampling::keep_all())
    }

    /// The collection `name`, made with `sampling` if it does not exist (an existing one keeps the
    /// sampling it was made with).
    pub fn collection_with(&self, name: &str, sampling: Sampling) -> Result<Collector> {
        check_name(name)?;
        let id = self.make(MakeCollection { name: name.to_string(), sampling })?;
        let row = self.catalog().artifact(id)?;
        let dir = row.path.ok_or_else(|| Error::InvalidArgument(format!("collection `{name}` has no directory")))?;
        let dir = if dir.is_absolute() { dir } else { self.root().join(dir) };
        let path = dir.join(DB);
        let conn = open_db(&path)?;
        let stored: Option<String> = conn
            .query_row("SELECT value FROM settings WHERE key = 'sampling'", [], |r| r.get(0))
            .optional()
            .map_err(db_err(&path))?;
        let sampling = stored.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default();
        let held = Held { copy: copy_id(), conn: std::mem::ManuallyDrop::new(conn) };
        Ok(Collector {
            name: name.to_string(),
            id,
            path,
            sampling,
            held: std::sync::Arc::new(std::sync::Mutex::new(Some(held))),
        })
    }
}

impl Collector {
    /// Runs `f` on this copy's connection, opening one if the one held belongs to another copy.
    fn with_conn<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.as_ref().is_none_or(|h| h.copy != copy_id()) {
            if let Some(other) = held.take() {
                std::mem::forget(other);
            }
            let path = &self.path;
            let conn = Connection::open(path).map_err(db_err(path))?;
            conn.busy_timeout(Duration::from_secs(30)).map_err(db_err(path))?;
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(db_err(path))?;
            *held = Some(Held { copy: copy_id(), conn: std::mem::ManuallyDrop::new(conn) });
        }
        f(&mut held.as_mut().expect("opened above").conn)
    }

    /// Where the collection's database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// Sends one interaction; returns once it is committed (or dropped by the sampling).
    pub fn add(&self, interaction: Interaction) -> Result<Added> {
        Ok(self.add_many(vec![interaction])?.remove(0))
    }

    /// Sends interactions in one transaction (all committed or none).
    pub fn add_many(&self, interactions: Vec<Interaction>) -> Result<Vec<Added>> {
        self.with_conn(|conn| self.add_many_on(conn, interactions))
    }

    fn add_many_on(&self, conn: &mut Connection, interactions: Vec<Interaction>) -> Result<Vec<Added>> {
        let path = self.path.clone();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(db_err(&path))?;
        let mut out = Vec::with_capacity(interactions.len());
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for mut i in interactions {
            if i.at.is_none() {
                i.at = Some(crate::catalog::now_rfc3339());
            }
            let at = i.at.clone().unwrap_or_default();
            let mut kept_in = |what: &str, value: &str| -> Result<u64> {
                let sql = match what {
                    "category" => "SELECT COUNT(*) FROM records WHERE category = ?1",
                    _ => "SELECT COUNT(*) FROM records WHERE day = ?1",
                };
                let mut stmt = tx.prepare_cached(sql).map_err(db_err(&path))?;
                stmt.query_row(params![value], |r| r.get::<_, i64>(0)).map(|n| n as u64).map_err(db_err(&path))
            };
            *counts.entry("seen".into()).or_default() += 1;
            match decide(&self.sampling, &i, &mut kept_in)? {
                Some(reason) => {
                    *counts.entry(format!("dropped: {reason}")).or_default() += 1;
                    out.push(Added::Dropped(reason));
                }
                None => {
                    let mut insert = tx
                        .prepare_cached(
                            "INSERT INTO records (at, day, type, input, output, category, quality, error, metadata)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                        )
                        .map_err(db_err(&path))?;
                    insert
                        .execute(params![
                            at,
                            day_of(&at),
                            i.kind,
                            i.input,
                            i.output,
                            i.category,
                            i.quality,
                            i.error,
                            Value::Object(i.metadata.clone()).to_string()
                        ])
                        .map_err(db_err(&path))?;
                    *counts.entry("kept".into()).or_default() += 1;
                    out.push(Added::Kept(tx.last_insert_rowid() as u64));
                }
            }
        }
        for (reason, n) in counts {
            tx.prepare_cached(
                "INSERT INTO sampling (reason, count) VALUES (?1, ?2)
                 ON CONFLICT(reason) DO UPDATE SET count = count + excluded.count",
            )
            .and_then(|mut s| s.execute(params![reason, n as i64]))
            .map_err(db_err(&path))?;
        }
        tx.commit().map_err(db_err(&path))?;
        Ok(out)
    }

    /// Sends every record of a file (JSONL, CSV, Parquet; mapped to the interaction's fields), in
    /// transactions of 10,000.
    pub fn import(&self, path: impl AsRef<Path>, read: &ReadSpec) -> Result<Vec<Added>> {
        let records = Records::read(path, read)?;
        let mut all = Vec::with_capacity(records.len());
        let mut batch = Vec::new();
        for (i, row) in records.rows.iter().enumerate() {
            let interaction = Interaction::from_record(row).map_err(|m| Error::Format {
                path: records.path.clone(),
                message: format!("{}: {m}", records.location(i)),
            })?;
            batch.push(interaction);
            if batch.len() == 10_000 {
                all.extend(self.add_many(std::mem::take(&mut batch))?);
            }
        }
        if !batch.is_empty() {
            all.extend(self.add_many(batch)?);
        }
        Ok(all)
    }

    /// How many records the collection holds.
    pub fn len(&self) -> Result<u64> {
        self.with_conn(|conn| {
            conn.query_row("SELECT COUNT(*) FROM records", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(db_err(&self.path))
        })
    }

    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Seen, kept and dropped by reason.
    pub fn sampling_report(&self) -> Result<SamplingReport> {
        self.with_conn(|conn| self.sampling_report_on(conn))
    }

    fn sampling_report_on(&self, conn: &Connection) -> Result<SamplingReport> {
        let mut stmt = conn.prepare("SELECT reason, count FROM sampling").map_err(db_err(&self.path))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))
            .map_err(db_err(&self.path))?;
        let mut report = SamplingReport::default();
        for row in rows {
            let (reason, n) = row.map_err(db_err(&self.path))?;
            match reason.as_str() {
                "seen" => report.seen = n,
                "kept" => report.kept = n,
                other => {
                    report.dropped.insert(other.trim_start_matches("dropped: ").to_string(), n);
                }
            }
        }
        Ok(report)
    }

    /// The records with sequence numbers in `(after, ..]`, in order, as curation records (`id`, `input`,
    /// `output`, `type`, `category`, `quality`, `error`, `at`, `metadata`).
    pub fn records_after(&self, after: u64) -> Result<Records> {
        self.with_conn(|conn| self.records_after_on(conn, after))
    }

    fn records_after_on(&self, conn: &Connection, after: u64) -> Result<Records> {
        let mut stmt = conn
            .prepare(
                "SELECT seq, at, type, input, output, category, quality, error, metadata FROM records
                 WHERE seq > ?1 ORDER BY seq",
            )
            .map_err(db_err(&self.path))?;
        let rows = stmt
            .query_map(params![after as i64], |r| {
                let mut m = Map::new();
                m.insert("id".into(), json!(r.get::<_, i64>(0)?));
                m.insert("input".into(), json!(r.get::<_, String>(3)?));
                m.insert("output".into(), json!(r.get::<_, String>(4)?));
                m.insert("type".into(), json!(r.get::<_, String>(2)?));
                m.insert("category".into(), json!(r.get::<_, Option<String>>(5)?));
                m.insert("quality".into(), json!(r.get::<_, Option<f64>>(6)?));
                m.insert("error".into(), json!(r.get::<_, bool>(7)?));
                m.insert("at".into(), json!(r.get::<_, String>(1)?));
                let meta: String = r.get(8)?;
                m.insert("metadata".into(), serde_json::from_str(&meta).unwrap_or(Value::Null));
                Ok(m)
            })
            .map_err(db_err(&self.path))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row.map_err(db_err(&self.path))?);
        }
        let mut records = Records::from_rows(out);
        records.path = self.path.clone();
        records.format = "collection".into();
        records.lines = records.rows.iter().map(|r| r["id"].as_u64().unwrap_or(0)).collect();
        Ok(records)
    }

    /// Every record, in order.
    pub fn records(&self) -> Result<Records> {
        self.records_after(0)
    }
}
