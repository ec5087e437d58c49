//! Exactly N examples from a manifest's phase: counts by largest remainder, each bucket's examples drawn
//! from the seed without replacement (whole extra passes, then a remainder without replacement, only as
//! far as its `max_repetitions` allows), in an order that keeps every prefix to the phase's shares, each
//! example written byte for byte. A bucket too small for its count is refused with the numbers before
//! anything is written; the output appears complete (a temporary file renamed) or not at all.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::index::{Indexed, index_all};
use super::{Manifest, examples};
use crate::activations::rng::Rng;
use crate::error::{Error, Result, count};
use crate::mix::plan::{Schedule, apportion};
use crate::sources::open::Compression;

/// How the sampled examples are ordered in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    /// Buckets interleaved so every prefix is within one example of each bucket's share.
    #[default]
    Interleaved,
    /// One seeded shuffle of the whole sample.
    Shuffled,
    /// Bucket after bucket, in manifest order.
    Grouped,
}

impl Order {
    pub fn as_str(&self) -> &'static str {
        match self {
            Order::Interleaved => "interleaved",
            Order::Shuffled => "shuffled",
            Order::Grouped => "grouped",
        }
    }
}

/// What to sample: a phase (the buckets' own weights when none), how many, the seed (the manifest's when
/// none), a repetition cap for every bucket (else each bucket's own, else 1), the order, and optionally
/// a field to tag each example with its bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleSpec {
    pub phase: Option<String>,
    pub total: Option<u64>,
    pub seed: Option<u64>,
    pub max_repetitions: Option<f64>,
    pub order: Order,
    pub tag_field: Option<String>,
}

impl SampleSpec {
    /// `total` examples with the buckets' own weights.
    pub fn new(total: u64) -> SampleSpec {
        SampleSpec { total: Some(total), ..Default::default() }
    }

    /// The phase's weights and, unless [`SampleSpec::total`] says otherwise, its size.
    pub fn of_phase(phase: impl Into<String>) -> SampleSpec {
        SampleSpec { phase: Some(phase.into()), ..Default::default() }
    }

    pub fn phase(mut self, phase: impl Into<String>) -> SampleSpec {
        self.phase = Some(phase.into());
        self
    }

    pub fn total(mut self, total: u64) -> SampleSpec {
        self.total = Some(total);
        self
    }

    pub fn seed(mut self, seed: u64) -> SampleSpec {
        self.seed = Some(seed);
        self
    }

    pub fn max_repetitions(mut self, max: f64) -> SampleSpec {
        self.max_repetitions = Some(max);
        self
    }

    pub fn order(mut self, order: Order) -> SampleSpec {
        self.order = order;
        self
    }

    /// Adds `"FIELD": "<bucket>"` to every example written (an example that has the field already is an
    /// error).
    pub fn tag_field(mut self, field: impl Into<String>) -> SampleSpec {
        self.tag_field = Some(field.into());
        self
    }
}

/// What a sample took from one bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledBucket {
    pub name: String,
    pub weight: f64,
    /// total × weight, before rounding.
    pub quota: f64,
    pub rows: u64,
    /// Examples the bucket has now.
    pub examples: u64,
    /// Different examples used (rows minus repeats).
    pub distinct: u64,
    pub max_repetitions: f64,
    pub path: String,
    pub sha256: String,
}

/// A written sample and its provenance (also written beside it as `<output>.sample.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub output: PathBuf,
    pub manifest: String,
    /// sha256 of the manifest's compact JSON.
    pub manifest_hash: String,
    pub phase: Option<String>,
    pub total: u64,
    pub seed: u64,
    pub order: Order,
    pub tag_field: Option<String>,
    pub buckets: Vec<SampledBucket>,
    pub saekit_version: String,
    pub created_at: String,
    pub seconds: f64,
    /// The first examples written, as (bucket, line).
    #[serde(skip)]
    pub preview: Vec<(String, String)>,
}

impl Sample {
    /// Where the provenance of the sample written to `output` is.
    pub fn provenance_path(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".sample.json");
        output.with_file_name(name)
    }
}

const PREVIEW: usize = 5;

impl Manifest {
    /// sha256 of the manifest's compact JSON.
    pub fn hash(&self) -> String {
        let json = serde_json::to_string(self).expect("a manifest serialises");
        Sha256::digest(json.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The rows each bucket would give for `spec` (largest remainder of total × weight), in bucket order.
    pub fn counts(&self, spec: &SampleSpec) -> Result<(u64, Vec<u64>)> {
        self.check()?;
        let weights = self.weights(spec.phase.as_deref())?;
        let total = match (spec.total, &spec.phase) {
            (Some(t), _) => t,
            (None, Some(p)) => self.phase(p)?.total_samples.ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "phase `{p}` of manifest `{}` has no total_samples; say how many examples (--total-samples)",
                    self.name
                ))
            })?,
            (None, None) => {
                return Err(Error::InvalidArgument("say how many examples to sample (--total-samples)".into()));
            }
        };
        if self.buckets.is_empty() {
            return Err(Error::InvalidArgument(format!("manifest `{}` has no buckets to sample", self.name)));
        }
        Ok((total, apportion(total, &weights)))
    }

    /// Writes exactly the planned examples to `output` (JSONL; `.gz`/`.zst` compressed by its name) and
    /// their provenance beside it; refuses, before writing anything, when a bucket is too small.
    pub fn create_sample(&self, spec: &SampleSpec, output: impl AsRef<Path>) -> Result<Sample> {
        let started = Instant::now();
        let output = std::path::absolute(output.as_ref()).map_err(|e| Error::io(output.as_ref(), e))?;
        let (total, counts) = self.counts(spec)?;
        let weights = self.weights(spec.phase.as_deref())?;
        let seed = spec.seed.unwrap_or(self.seed);
        if let Some(r) = spec.max_repetitions
            && !(r.is_finite() && r > 0.0)
        {
            return Err(Error::InvalidArgument(format!("max_repetitions {r} must be a number > 0")));
        }
        let files = index_all(self)?;
        if let Some(f) = files.iter().find(|f| f.path == output) {
            return Err(Error::InvalidArgument(format!(
                "the output {} is a bucket's source; write the sample elsewhere",
                f.path.display()
            )));
        }
        // Where each bucket's spans are: (file, member).
        let mut place = vec![(0usize, 0usize); self.buckets.len()];
        for (fi, f) in files.iter().enumerate() {
            for (mi, (bi, _)) in f.members.iter().enumerate() {
                place[*bi] = (fi, mi);
            }
        }
        let spans = |bi: usize| -> &Vec<(usize, usize)> { &files[place[bi].0].members[place[bi].1].1 };
        let reps: Vec<f64> =
            self.buckets.iter().map(|b| spec.max_repetitions.or(b.max_repetitions).unwrap_or(1.0)).collect();
        let mut short = Vec::new();
        for (bi, b) in self.buckets.iter().enumerate() {
            let n = spans(bi).len() as u64;
            let allowed = (n as f64 * reps[bi] + 1e-9).floor() as u64;
            if counts[bi] > allowed {
                short.push(format!(
                    "bucket `{}` has {} but its weight {} asks for {} of {} (max_repetitions {} allows {}){}",
                    b.name,
                    examples(n),
                    weights[bi],
                    count(counts[bi]),
                    count(total),
                    reps[bi],
                    count(allowed),
                    if n > 0 {
                        format!("; it would need max_repetitions ≥ {:.2}", counts[bi] as f64 / n as f64)
                    } else {
                        String::new()
                    }
                ));
            }
        }
        if !short.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "cannot sample {} for {} of manifest `{}`: {}. Lower the weight or the total, add examples, or \
                 allow repetition (max_repetitions, --max-repetitions)",
                examples(total),
                spec.phase.as_deref().map_or("the buckets' own weights".to_string(), |p| format!("phase `{p}`")),
                self.name,
                short.join("; ")
            )));
        }

        // Each bucket's examples in the order they are used: whole seeded passes, then a seeded remainder.
        let sequences: Vec<Vec<(usize, usize)>> = (0..self.buckets.len())
            .map(|bi| {
                let all = spans(bi);
                let (n, c) = (all.len() as u64, counts[bi]);
                let mut rng = Rng::new(seed, crate::steps::text::hash64(self.buckets[bi].name.as_bytes(), 0x6d61));
                let mut out = Vec::with_capacity(c as usize);
                let mut left = c;
                while left > 0 {
                    let mut perm: Vec<usize> = (0..n as usize).collect();
                    rng.shuffle(&mut perm);
                    let take = left.min(n) as usize;
                    out.extend(perm[..take].iter().map(|&k| all[k]));
                    left -= take as u64;
                }
                out
            })
            .collect();
        let order: Vec<usize> = match spec.order {
            Order::Interleaved => Schedule::exact(&counts).collect(),
            Order::Grouped => {
                counts.iter().enumerate().flat_map(|(i, &c)| std::iter::repeat_n(i, c as usize)).collect()
            }
            Order::Shuffled => {
                let mut o: Vec<usize> =
                    counts.iter().enumerate().flat_map(|(i, &c)| std::iter::repeat_n(i, c as usize)).collect();
                Rng::new(seed, 0x006f_7264_6572).shuffle(&mut o);
                o
            }
        };

        let dir = output.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let tmp = tempfile::Builder::new().prefix(".saekit-sample-").tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
        let mut preview = Vec::new();
        {
            let file = tmp.as_file().try_clone().map_err(|e| Error::io(tmp.path(), e))?;
            let buffered = std::io::BufWriter::with_capacity(1 << 20, file);
            let mut writer = match Compression::from_path(&output) {
                Compression::None => Out::Plain(buffered),
                Compression::Gzip => Out::Gzip(flate2::write::GzEncoder::new(buffered, flate2::Compression::default())),
                Compression::Zstd => {
                    Out::Zstd(zstd::stream::write::Encoder::new(buffered, 3).map_err(|e| Error::io(&output, e))?)
                }
            };
            let mut next = vec![0usize; self.buckets.len()];
            let io = |e| Error::io(&output, e);
            for &bi in &order {
                let span = sequences[bi][next[bi]];
                next[bi] += 1;
                let file = &files[place[bi].0];
                let line = file.line(span);
                match &spec.tag_field {
                    None => writer.write_all(line).map_err(io)?,
                    Some(field) => write_tagged(&mut writer, file, span, field, &self.buckets[bi].name, &output)?,
                }
                writer.write_all(b"\n").map_err(io)?;
                if preview.len() < PREVIEW {
                    preview.push((self.buckets[bi].name.clone(), String::from_utf8_lossy(line).into_owned()));
                }
            }
            writer.finish().map_err(io)?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
        }
        tmp.persist(&output).map_err(|e| Error::io(&output, e.error))?;

        let buckets = self
            .buckets
            .iter()
            .enumerate()
            .map(|(bi, b)| {
                let file = &files[place[bi].0];
                let n = spans(bi).len() as u64;
                SampledBucket {
                    name: b.name.clone(),
                    weight: weights[bi],
                    quota: total as f64 * weights[bi],
                    rows: counts[bi],
                    examples: n,
                    distinct: counts[bi].min(n),
                    max_repetitions: reps[bi],
                    path: b.source.path.clone(),
                    sha256: file.sha256.clone(),
                }
            })
            .collect();
        let sample = Sample {
            output: output.clone(),
            manifest: self.name.clone(),
            manifest_hash: self.hash(),
            phase: spec.phase.clone(),
            total,
            seed,
            order: spec.order,
            tag_field: spec.tag_field.clone(),
            buckets,
            saekit_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: crate::catalog::now_rfc3339(),
            seconds: started.elapsed().as_secs_f64(),
            preview,
        };
        let mut json = serde_json::to_string_pretty(&sample).expect("a sample serialises");
        json.push('\n');
        crate::files::write_atomically(&Sample::provenance_path(&output), json.as_bytes())?;
        Ok(sample)
    }
}

/// The sample's file, compressed as its name says.
enum Out {
    Plain(std::io::BufWriter<std::fs::File>),
    Gzip(flate2::write::GzEncoder<std::io::BufWriter<std::fs::File>>),
    Zstd(zstd::stream::write::Encoder<'static, std::io::BufWriter<std::fs::File>>),
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Plain(w) => w.write(buf),
            Out::Gzip(w) => w.write(buf),
            Out::Zstd(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Plain(w) => w.flush(),
            Out::Gzip(w) => w.flush(),
            Out::Zstd(w) => w.flush(),
        }
    }
}

impl Out {
    /// Ends the compressed stream and flushes everything to the file.
    fn finish(self) -> std::io::Result<()> {
        let mut inner = match self {
            Out::Plain(w) => w,
            Out::Gzip(w) => w.finish()?,
            Out::Zstd(w) => w.finish()?,
        };
        inner.flush()?;
        inner.get_ref().sync_all()
    }
}

/// Writes the example with `"field": "bucket"` added at its end.
fn write_tagged(
    writer: &mut dyn Write,
    file: &Indexed,
    span: (usize, usize),
    field: &str,
    bucket: &str,
    output: &Path,
) -> Result<()> {
    let line = file.line(span);
    let object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(line).expect("every indexed line is a JSON object");
    if object.contains_key(field) {
        let line_no = file.bytes[..span.0].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        return Err(Error::Json {
            path: file.path.clone(),
            line: line_no,
            message: format!(
                "the example already has a field `{field}`, which the sample was asked to tag with its bucket"
            ),
        });
    }
    let close = line.iter().rposition(|&b| b == b'}').expect("an object ends with }");
    let io = |e| Error::io(output, e);
    writer.write_all(&line[..close]).map_err(io)?;
    let tag = format!(
        "{}{}:{}}}",
        if object.is_empty() { "" } else { "," },
        serde_json::Value::String(field.into()),
        serde_json::Value::String(bucket.into())
    );
    writer.write_all(tag.as_bytes()).map_err(io)?;
    writer.write_all(&line[close + 1..]).map_err(io)
}
