//! Splits by ratios with exact counts: the totals are the largest-remainder apportionment of the
//! examples over the ratios (exact whenever no group of identical inputs is larger than what its split
//! has left); examples with the same (normalised) input form one group that goes whole to
//! one split, so no input is in two splits; groups are shuffled from the seed; stratified by a field,
//! each stratum is apportioned over the splits as well (the global totals stay exact, each stratum is
//! within one group of its share).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::Records;
use crate::activations::rng::Rng;
use crate::error::{Error, Result};
use crate::mix::apportion;
use crate::steps::{hash128, normalise};

/// How to split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// (split name, ratio); ratios are normalised.
    pub ratios: Vec<(String, f64)>,
    pub seed: u64,
    /// Keep each value of this field in the splits' proportions.
    pub stratify: Option<String>,
    /// The field whose identical values must stay in one split (default `input`).
    pub group_by: String,
}

impl SplitSpec {
    /// train/validation/test at 80/10/10.
    pub fn train_validation_test() -> SplitSpec {
        SplitSpec::new(&[("train", 0.8), ("validation", 0.1), ("test", 0.1)])
    }

    pub fn new(ratios: &[(&str, f64)]) -> SplitSpec {
        SplitSpec {
            ratios: ratios.iter().map(|(n, r)| (n.to_string(), *r)).collect(),
            seed: 0,
            stratify: None,
            group_by: "input".into(),
        }
    }

    pub fn seed(mut self, seed: u64) -> SplitSpec {
        self.seed = seed;
        self
    }

    pub fn stratify(mut self, field: impl Into<String>) -> SplitSpec {
        self.stratify = Some(field.into());
        self
    }

    pub fn group_by(mut self, field: impl Into<String>) -> SplitSpec {
        self.group_by = field.into();
        self
    }
}

/// The records of each split (indices into the records split), in a seeded order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Splits {
    pub spec: SplitSpec,
    pub names: Vec<String>,
    pub indices: Vec<Vec<usize>>,
    /// The exact totals aimed at (largest remainder).
    pub targets: Vec<u64>,
    /// Examples per (stratum, split), when stratified.
    pub strata: Vec<(String, Vec<u64>)>,
}

impl Splits {
    pub fn counts(&self) -> Vec<u64> {
        self.indices.iter().map(|v| v.len() as u64).collect()
    }

    /// The records of split `name`.
    pub fn records(&self, records: &Records, name: &str) -> Option<Records> {
        let i = self.names.iter().position(|n| n == name)?;
        Some(records.subset(&self.indices[i]))
    }
}

/// Splits `records` by `spec`.
pub fn split(records: &Records, spec: &SplitSpec) -> Result<Splits> {
    if spec.ratios.is_empty() {
        return Err(Error::InvalidArgument("a split needs at least one (name, ratio)".into()));
    }
    if let Some((n, r)) = spec.ratios.iter().find(|(_, r)| !r.is_finite() || *r < 0.0) {
        return Err(Error::InvalidArgument(format!("split `{n}` has ratio {r}; ratios are numbers ≥ 0")));
    }
    let sum: f64 = spec.ratios.iter().map(|r| r.1).sum();
    if sum <= 0.0 {
        return Err(Error::InvalidArgument("the split ratios sum to 0".into()));
    }
    let weights: Vec<f64> = spec.ratios.iter().map(|r| r.1 / sum).collect();
    let k = weights.len();
    let n = records.len();
    // Groups of identical inputs, in first-seen order, each with its stratum.
    let mut group_of: HashMap<u128, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for i in 0..n {
        let key = hash128(normalise(&records.text(i, &spec.group_by)).as_bytes());
        let g = *group_of.entry(key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    let stratum_names: Vec<String>;
    let stratum_of_group: Vec<usize>;
    match &spec.stratify {
        Some(f) => {
            let mut index: HashMap<String, usize> = HashMap::new();
            let mut names = Vec::new();
            stratum_of_group = groups
                .iter()
                .map(|g| {
                    let v = records.text(g[0], f);
                    *index.entry(v.clone()).or_insert_with(|| {
                        names.push(v);
                        names.len() - 1
                    })
                })
                .collect();
            stratum_names = names;
        }
        None => {
            stratum_names = vec![String::new()];
            stratum_of_group = vec![0; groups.len()];
        }
    }
    let mut stratum_of_row = vec![0usize; n];
    for (g, rows) in groups.iter().enumerate() {
        for &i in rows {
            stratum_of_row[i] = stratum_of_group[g];
        }
    }
    let targets = apportion(n as u64, &weights);
    // Rows per (stratum, split): floors of each stratum's quota, then the leftovers by largest remainder
    // within the splits' room left, so the totals are exactly `targets`.
    let sizes: Vec<u64> = (0..stratum_names.len())
        .map(|s| groups.iter().zip(&stratum_of_group).filter(|(_, gs)| **gs == s).map(|(g, _)| g.len() as u64).sum())
        .collect();
    let mut cell = vec![vec![0u64; k]; sizes.len()];
    let mut room = targets.clone();
    let mut leftovers = Vec::new();
    for (s, &size) in sizes.iter().enumerate() {
        for j in 0..k {
            let q = size as f64 * weights[j];
            cell[s][j] = (q.floor() as u64).min(room[j]);
            room[j] -= cell[s][j];
            leftovers.push((q - q.floor(), s, j));
        }
    }
    leftovers.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut left: Vec<u64> = sizes.iter().enumerate().map(|(s, &size)| size - cell[s].iter().sum::<u64>()).collect();
    for &(_, s, j) in &leftovers {
        if left[s] > 0 && room[j] > 0 {
            cell[s][j] += 1;
            left[s] -= 1;
            room[j] -= 1;
        }
    }
    for s in 0..sizes.len() {
        for j in 0..k {
            let take = left[s].min(room[j]);
            cell[s][j] += take;
            left[s] -= take;
            room[j] -= take;
        }
    }
    // Fill: the groups of each stratum in a seeded order, each to the split furthest below its cell.
    let mut rng = Rng::new(spec.seed, 0x0073_706c_6974);
    let mut order: Vec<usize> = (0..groups.len()).collect();
    rng.shuffle(&mut order);
    // Larger groups first (in the seeded order among equals), so single examples fill the counts exactly.
    order.sort_by_key(|&g| std::cmp::Reverse(groups[g].len()));
    let mut indices: Vec<Vec<usize>> = vec![Vec::new(); k];
    let mut filled = vec![vec![0u64; k]; sizes.len()];
    for &g in &order {
        let s = stratum_of_group[g];
        let len = groups[g].len() as u64;
        let j = (0..k)
            .max_by(|&a, &b| {
                let da = cell[s][a] as i64 - filled[s][a] as i64;
                let db = cell[s][b] as i64 - filled[s][b] as i64;
                da.cmp(&db).then(b.cmp(&a))
            })
            .expect("at least one split");
        filled[s][j] += len;
        indices[j].extend(&groups[g]);
    }
    let strata = match &spec.stratify {
        Some(_) => stratum_names
            .iter()
            .enumerate()
            .map(|(s, name)| {
                let c = (0..k).map(|j| indices[j].iter().filter(|&&i| stratum_of_row[i] == s).count() as u64).collect();
                (name.clone(), c)
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(Splits {
        spec: spec.clone(),
        names: spec.ratios.iter().map(|r| r.0.clone()).collect(),
        indices,
        targets,
        strata,
    })
}

impl Records {
    /// Splits these records (see [`split`]).
    pub fn split(&self, spec: &SplitSpec) -> Result<Splits> {
        split(self, spec)
    }
}
