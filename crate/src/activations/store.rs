//! Serving a cache as shuffled training batches through a buffer of stated size.
//!
//! Rows (tokens) enter in blocks of [`BLOCK_ROWS`] consecutive rows, the blocks of each epoch in a seeded
//! random order, so reads stay sequential on disk while sequences and shards are mixed. The buffer holds
//! `buffer_tokens` rows. Each round it is filled, its rows' order is shuffled, the first half is served as
//! batches and the other half kept for the next round, mixed with the rows that refill the served slots
//! (SAELens' mixing buffer, without moving rows: only slot numbers are shuffled, and each row is copied
//! once into the buffer and once into its batch). When the cache runs out, what is left is served in
//! whole batches; the last few rows that do not fill a batch are counted as left over.
//!
//! Every choice depends on the seed and on counts, never on the values, so the same seed, cache, buffer
//! and batch size give the same batches. [`ActivationStore::skip`] replays the choices on row numbers
//! alone (no activation is read) and then reads only the rows the buffer holds at that point: skipping
//! costs a few nanoseconds per skipped token plus one buffer's worth of reads, not a pass over the data.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::rng::Rng;
use super::shards::CacheReader;
use crate::error::{Error, Result};

/// Rows per block: consecutive rows enter the buffer together.
pub const BLOCK_ROWS: u64 = 256;

/// How a store serves a cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreOptions {
    /// Tokens per training batch.
    pub batch_tokens: usize,
    /// Tokens the shuffle buffer holds (rounded up to a multiple of two batches).
    pub buffer_tokens: usize,
    pub seed: u64,
    /// Passes over the cache (each in a new order).
    pub epochs: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { batch_tokens: 4096, buffer_tokens: 65536, seed: 0, epochs: 1 }
    }
}

impl StoreOptions {
    /// The buffer's size in rows, as the store allocates it.
    pub fn buffer_rows(&self) -> usize {
        let unit = 2 * self.batch_tokens.max(1);
        self.buffer_tokens.max(1).div_ceil(unit) * unit
    }

    pub fn validate(&self) -> Result<()> {
        if self.batch_tokens == 0 {
            return Err(Error::InvalidArgument("batch_tokens must be at least 1".into()));
        }
        if self.epochs == 0 {
            return Err(Error::InvalidArgument("epochs must be at least 1".into()));
        }
        Ok(())
    }
}

/// Rows in blocks, each epoch's blocks in a seeded order.
#[derive(Debug, Clone)]
struct BlockStream {
    rows: u64,
    seed: u64,
    epochs: u32,
    epoch: u32,
    order: Vec<u64>,
    block: usize,
    offset: u64,
}

impl BlockStream {
    fn new(rows: u64, seed: u64, epochs: u32) -> BlockStream {
        let mut s = BlockStream { rows, seed, epochs, epoch: 0, order: Vec::new(), block: 0, offset: 0 };
        s.order_epoch();
        s
    }

    fn order_epoch(&mut self) {
        self.order = (0..self.rows.div_ceil(BLOCK_ROWS)).collect();
        Rng::new(self.seed, 1 + self.epoch as u64).shuffle(&mut self.order);
        self.block = 0;
        self.offset = 0;
    }

    fn next(&mut self) -> Option<u64> {
        loop {
            if self.epoch >= self.epochs {
                return None;
            }
            if let Some(&b) = self.order.get(self.block) {
                if self.offset < self.block_len(b) {
                    let row = b * BLOCK_ROWS + self.offset;
                    self.offset += 1;
                    return Some(row);
                }
                self.block += 1;
                self.offset = 0;
                continue;
            }
            self.epoch += 1;
            if self.epoch < self.epochs {
                self.order_epoch();
            }
        }
    }

    fn block_len(&self, b: u64) -> u64 {
        (self.rows - b * BLOCK_ROWS).min(BLOCK_ROWS)
    }

    /// Whether [`next`](Self::next) would give nothing more.
    fn is_exhausted(&self) -> bool {
        if self.epoch >= self.epochs || self.rows == 0 {
            return true;
        }
        let here = self.order.get(self.block).is_some_and(|&b| self.offset < self.block_len(b));
        !(here || self.block + 1 < self.order.len() || self.epoch + 1 < self.epochs)
    }
}

/// One training batch: `[batch_tokens, width]` f32 per hook, and the cache row of each token.
#[derive(Debug, Clone)]
pub struct ActivationBatch {
    pub hooks: Vec<(String, Tensor)>,
    /// Cache row numbers (see [`ActivationStore::token_of`] for each one's sequence, position and token).
    pub rows: Vec<u64>,
}

impl ActivationBatch {
    /// The activations at `hook`.
    pub fn get(&self, hook: &str) -> Result<&Tensor> {
        self.hooks.iter().find(|(h, _)| h == hook).map(|(_, t)| t).ok_or_else(|| {
            let have: Vec<&str> = self.hooks.iter().map(|(h, _)| h.as_str()).collect();
            Error::InvalidArgument(format!("hook `{hook}` is not in this batch; it has {}", have.join(", ")))
        })
    }

    /// The first hook's activations (the only one, for a one-hook store).
    pub fn tensor(&self) -> &Tensor {
        &self.hooks[0].1
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// The state of a store's buffer and counters.
pub(crate) struct Buffer {
    reader: Arc<CacheReader>,
    pub(crate) options: StoreOptions,
    width: usize,
    data: Vec<f32>,
    slot_rows: Vec<u64>,
    occupied: Vec<u32>,
    free: Vec<u32>,
    serving: Vec<u32>,
    serve_pos: usize,
    stream: BlockStream,
    rng: Rng,
    /// While skipping, rows are not read.
    reading: bool,
    pub(crate) served_tokens: u64,
    pub(crate) served_batches: u64,
    pub(crate) left_over: u64,
    finished: bool,
}

impl Buffer {
    pub(crate) fn new(reader: Arc<CacheReader>, options: StoreOptions) -> Result<Buffer> {
        options.validate()?;
        let cap = options.buffer_rows();
        let width = reader.widths().iter().sum();
        let stream = BlockStream::new(reader.num_rows(), options.seed, options.epochs);
        Ok(Buffer {
            reader,
            width,
            data: Vec::new(),
            slot_rows: vec![0; cap],
            occupied: Vec::with_capacity(cap),
            free: (0..cap as u32).collect(),
            serving: Vec::with_capacity(cap),
            serve_pos: 0,
            stream,
            rng: Rng::new(options.seed, 0),
            reading: true,
            served_tokens: 0,
            served_batches: 0,
            left_over: 0,
            finished: false,
            options,
        })
    }

    pub(crate) fn reader(&self) -> &CacheReader {
        &self.reader
    }

    fn put(&mut self, slot: u32, row: u64) {
        self.slot_rows[slot as usize] = row;
        if self.reading {
            self.load(slot);
        }
    }

    fn load(&mut self, slot: u32) {
        if self.data.is_empty() {
            self.data = vec![0.0; self.slot_rows.len() * self.width];
        }
        let w = self.width;
        let row = self.slot_rows[slot as usize];
        self.reader.row_into(row, &mut self.data[slot as usize * w..(slot as usize + 1) * w]);
    }

    /// The slots of the next batch, or `None` when the cache (all epochs) is served.
    fn advance(&mut self) -> Option<Vec<u32>> {
        let n = self.options.batch_tokens;
        loop {
            if self.serve_pos + n <= self.serving.len() {
                let slots = self.serving[self.serve_pos..self.serve_pos + n].to_vec();
                self.serve_pos += n;
                self.served_tokens += n as u64;
                self.served_batches += 1;
                return Some(slots);
            }
            self.free.append(&mut self.serving);
            self.serve_pos = 0;
            if self.finished {
                return None;
            }
            let free = std::mem::take(&mut self.free);
            for (i, &slot) in free.iter().enumerate() {
                match self.stream.next() {
                    Some(row) => {
                        self.put(slot, row);
                        self.occupied.push(slot);
                    }
                    None => {
                        self.free.extend_from_slice(&free[i..]);
                        break;
                    }
                }
            }
            self.rng.shuffle(&mut self.occupied);
            let exhausted = self.stream.is_exhausted();
            let serve = if exhausted { self.occupied.len() / n * n } else { (self.occupied.len() / 2).max(n) / n * n };
            if serve == 0 || self.occupied.len() < n {
                self.left_over = self.occupied.len() as u64;
                self.free.append(&mut self.occupied);
                self.finished = true;
                return None;
            }
            self.serving = self.occupied.drain(..serve).collect();
        }
    }

    pub(crate) fn next_batch(&mut self, hooks: &[String]) -> Result<Option<ActivationBatch>> {
        let Some(slots) = self.advance() else { return Ok(None) };
        let widths = self.reader.widths();
        let n = slots.len();
        let mut out: Vec<Vec<f32>> = widths.iter().map(|&w| Vec::with_capacity(n * w)).collect();
        let mut rows = Vec::with_capacity(n);
        for &slot in &slots {
            let s = slot as usize;
            let mut at = s * self.width;
            for (o, &w) in out.iter_mut().zip(&widths) {
                o.extend_from_slice(&self.data[at..at + w]);
                at += w;
            }
            rows.push(self.slot_rows[s]);
        }
        let hooks = hooks
            .iter()
            .zip(out)
            .zip(&widths)
            .map(|((h, v), &w)| Ok((h.clone(), Tensor::from_vec(v, (n, w), &Device::Cpu)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(ActivationBatch { hooks, rows }))
    }

    /// Moves on by `tokens` (whole batches) without reading what is skipped; see the module documentation.
    pub(crate) fn skip(&mut self, tokens: u64) -> Result<u64> {
        let n = self.options.batch_tokens as u64;
        if !tokens.is_multiple_of(n) {
            return Err(Error::InvalidArgument(format!(
                "skip({tokens}): a store serves whole batches of {n} tokens; skip a multiple of {n}"
            )));
        }
        self.reading = false;
        let mut skipped = 0;
        while skipped < tokens && self.advance().is_some() {
            skipped += n;
        }
        self.reading = true;
        let live: Vec<u32> = self.occupied.iter().chain(&self.serving[self.serve_pos..]).copied().collect();
        for slot in live {
            self.load(slot);
        }
        Ok(skipped)
    }

    /// Bytes the buffer holds when full (rows, slot bookkeeping).
    pub(crate) fn bytes(options: &StoreOptions, width: usize) -> u64 {
        let cap = options.buffer_rows() as u64;
        cap * width as u64 * 4 + cap * (8 + 4 + 4 + 4)
    }
}
