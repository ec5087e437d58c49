//! The tokenization pass: documents are read on one thread, encoded on all cores, and turned into
//! sequences (windows or packing) in their original order on the calling thread, which writes the token
//! store and counts the statistics in the same pass. Memory is bounded by the batches in flight.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, AsArray};

use super::Tokenizer;
use super::params::{Separator, TokenizeParams};
use super::stats::TokenStatsBuilder;
use super::store::{StoreMeta, TokenStoreWriter};
use crate::error::{Error, Result, count};
use crate::jobs::JobContext;
use crate::sources::Source;

/// What one tokenization pass produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub store: StoreMeta,
    pub stats: super::stats::TokenStats,
}

/// The special token ids a pass needs, resolved from the tokenizer and the parameters.
#[derive(Debug, Clone, Default)]
struct Specials {
    bos: Option<u32>,
    eos: Option<u32>,
    separator: Option<u32>,
    /// Ids of special tokens (dropped from text when asked).
    special: Vec<u32>,
}

fn resolve_specials(tokenizer: &Tokenizer, params: &TokenizeParams) -> Result<Specials> {
    let info = tokenizer.info();
    let need = |id: Option<u32>, what: &str| {
        id.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "tokenizer {} has no {what} token saekit recognises; give one with params.{}_token",
                tokenizer.name(),
                what.to_lowercase()
            ))
        })
    };
    let bos_id = |params: &TokenizeParams| match &params.bos_token {
        Some(t) => tokenizer.token_id_or_error(t).map(Some),
        None => Ok(info.bos),
    };
    let eos_id = |params: &TokenizeParams| match &params.eos_token {
        Some(t) => tokenizer.token_id_or_error(t).map(Some),
        None => Ok(info.eos),
    };
    let mut specials = Specials { special: info.special.clone(), ..Default::default() };
    let wants_bos =
        params.add_bos || params.packing.as_ref().is_some_and(|p| p.bos_first || p.separator == Separator::Bos);
    if wants_bos {
        specials.bos = Some(need(bos_id(params)?, "BOS")?);
    }
    let wants_eos = params.add_eos || params.packing.as_ref().is_some_and(|p| p.separator == Separator::Eos);
    if wants_eos {
        specials.eos = Some(need(eos_id(params)?, "EOS")?);
    }
    if let Some(packing) = &params.packing {
        specials.separator = match &packing.separator {
            Separator::Eos => specials.eos,
            Separator::Bos => specials.bos,
            Separator::Token(t) => Some(tokenizer.token_id_or_error(t)?),
            Separator::None => None,
        };
    }
    Ok(specials)
}

/// Documents per batch handed to an encoder.
const BATCH_DOCUMENTS: usize = 256;

/// A batch of documents' text on its way to the encoders, numbered to restore order.
type Work = (u64, ArrayRef);
/// A batch of documents' token ids on its way back: all ids end to end, and where each document ends.
/// Two allocations per batch rather than one per document keeps the allocator (and memory) calm.
type Done = (u64, Result<(Vec<u32>, Vec<usize>)>);

/// Tokenizes every document of `source` into a token store in `out_dir`, on `threads` encoding threads
/// (0: one per core). Progress is in bytes read; cancellation is checked after every batch.
pub fn tokenize_source(
    source: &Source,
    tokenizer: &Tokenizer,
    params: &TokenizeParams,
    out_dir: &Path,
    threads: usize,
    ctx: &JobContext,
) -> Result<Outcome> {
    params.validate()?;
    let specials = resolve_specials(tokenizer, params)?;
    let threads =
        if threads == 0 { std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) } else { threads };
    let encoder = tokenizer.encoder();
    // Small batches keep what is in flight (text on its way to the encoders, ids on their way back) to
    // a few megabytes, so memory stays flat however large the corpus is.
    let mut documents = source.batch_rows(source.spec().batch_rows.min(BATCH_DOCUMENTS)).documents()?;
    let counters = documents.counters();
    ctx.phase("tokenizing", "bytes", Some(source.total_bytes()));

    let (work_tx, work_rx) = sync_channel::<Work>(threads);
    let (done_tx, done_rx) = sync_channel::<Done>(threads);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (read_error_tx, read_error_rx) = sync_channel::<Error>(1);

    std::thread::scope(|scope| -> Result<Outcome> {
        // Reader: documents → numbered batches of text.
        scope.spawn(move || {
            let mut seq = 0u64;
            for batch in documents.by_ref() {
                match batch {
                    Ok(batch) => {
                        if work_tx.send((seq, batch.column(0).clone())).is_err() {
                            return;
                        }
                        seq += 1;
                    }
                    Err(e) => {
                        let _ = read_error_tx.send(e);
                        return;
                    }
                }
            }
        });
        // Encoders.
        for _ in 0..threads {
            let (work_rx, done_tx, encoder) = (work_rx.clone(), done_tx.clone(), encoder.clone());
            scope.spawn(move || encode_loop(&work_rx, &done_tx, encoder.as_ref(), ctx));
        }
        // Only the encoders hold these now: when they stop, the reader's sends fail and it stops too.
        drop(work_rx);
        drop(done_tx);
        collect(done_rx, read_error_rx, tokenizer, params, &specials, out_dir, ctx, &counters)
    })
}

fn encode_loop(work: &Mutex<Receiver<Work>>, done: &SyncSender<Done>, encoder: &dyn super::Encode, ctx: &JobContext) {
    loop {
        let next = match work.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok((seq, texts)) = next else { return };
        let texts = texts.as_string::<i32>();
        let mut ids = Vec::new();
        let mut ends = Vec::with_capacity(texts.len());
        for text in texts.iter() {
            // Checked per document, so a cancel lands within one document's encoding time.
            if ctx.is_cancelled() {
                return;
            }
            if let Err(e) = encoder.encode_into(text.unwrap_or(""), &mut ids) {
                let _ = done.send((seq, Err(e)));
                return;
            }
            ends.push(ids.len());
        }
        if done.send((seq, Ok((ids, ends)))).is_err() {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn collect(
    done: Receiver<Done>,
    read_errors: Receiver<Error>,
    tokenizer: &Tokenizer,
    params: &TokenizeParams,
    specials: &Specials,
    out_dir: &Path,
    ctx: &JobContext,
    counters: &crate::sources::Counters,
) -> Result<Outcome> {
    let mut writer = TokenStoreWriter::create(out_dir, tokenizer.vocab_size())?;
    let mut stats = TokenStatsBuilder::new(tokenizer.vocab_size(), params.max_length);
    let mut shaper = Shaper::new(params, specials, tokenizer)?;
    let mut pending: BTreeMap<u64, (Vec<u32>, Vec<usize>)> = BTreeMap::new();
    let mut next = 0u64;
    // The channel closes when every encoder is done, after the reader stopped (at the end or an error).
    loop {
        let (seq, ids) = match done.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(item) => item,
            Err(RecvTimeoutError::Timeout) => {
                ctx.check()?;
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        pending.insert(seq, ids?);
        while let Some((ids, ends)) = pending.remove(&next) {
            next += 1;
            let mut start = 0;
            for end in ends {
                let doc = &ids[start..end];
                start = end;
                shaper.document(doc, &mut stats, &mut |seq: &[u32], stats: &mut TokenStatsBuilder| {
                    stats.sequence(seq);
                    writer.push(seq)
                })?;
            }
        }
        ctx.set_done(counters.bytes.load(Ordering::Relaxed));
        ctx.set_detail(format!("{} documents · {} tokens", count(stats.documents()), count(stats.tokens())));
        ctx.check()?;
    }
    if let Ok(e) = read_errors.try_recv() {
        return Err(e);
    }
    // Encoders stop early only when cancelled.
    ctx.check()?;
    shaper.finish(&mut stats, &mut |seq: &[u32], stats: &mut TokenStatsBuilder| {
        stats.sequence(seq);
        writer.push(seq)
    })?;
    let store = writer.finish()?;
    Ok(Outcome { store, stats: stats.finish(tokenizer, counters.skipped()) })
}

type Emit<'a> = dyn FnMut(&[u32], &mut TokenStatsBuilder) -> Result<()> + 'a;

/// Turns each document's ids into sequences, applying the filters in order: special tokens dropped,
/// stop words removed, BOS/EOS added, then windows or packing, then the minimum length.
struct Shaper<'t> {
    params: &'t TokenizeParams,
    specials: &'t Specials,
    stop_word_ids: Option<Vec<bool>>,
    packer: Option<super::sequences::Packer>,
    /// Reused for each document's ids while filters change them.
    scratch: Vec<u32>,
}

impl<'t> Shaper<'t> {
    fn new(params: &'t TokenizeParams, specials: &'t Specials, tokenizer: &Tokenizer) -> Result<Self> {
        let stop_word_ids = params.remove_stop_words.map(|lang| tokenizer.stop_word_mask(lang));
        let packer = params.packing.as_ref().map(|p| {
            super::sequences::Packer::new(
                params.max_length,
                if p.bos_first { specials.bos } else { None },
                specials.separator,
            )
        });
        Ok(Shaper { params, specials, stop_word_ids, packer, scratch: Vec::new() })
    }

    fn document(&mut self, doc: &[u32], stats: &mut TokenStatsBuilder, emit: &mut Emit<'_>) -> Result<()> {
        stats.document(doc);
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        ids.extend_from_slice(doc);
        let result = self.shape(&mut ids, stats, emit);
        self.scratch = ids;
        result
    }

    fn shape(&mut self, ids: &mut Vec<u32>, stats: &mut TokenStatsBuilder, emit: &mut Emit<'_>) -> Result<()> {
        if self.params.drop_special_tokens {
            let before = ids.len();
            ids.retain(|id| !self.specials.special.contains(id));
            stats.dropped_special_tokens += (before - ids.len()) as u64;
        }
        if let Some(mask) = &self.stop_word_ids {
            let before = ids.len();
            ids.retain(|&id| !mask.get(id as usize).copied().unwrap_or(false));
            stats.dropped_stop_words += (before - ids.len()) as u64;
        }
        if self.params.add_bos && self.packer.is_none() {
            ids.splice(0..0, self.specials.bos);
        }
        if self.params.add_eos {
            ids.extend(self.specials.eos);
        }
        match self.packer.as_mut() {
            Some(packer) => {
                let mut result = Ok(());
                packer.push(ids, |seq| {
                    if result.is_ok() {
                        result = emit(seq, stats);
                    }
                });
                result
            }
            None => {
                for window in super::sequences::windows(ids, self.params.max_length, self.params.stride) {
                    if window.len() < self.params.min_length.max(1) {
                        stats.dropped_short_sequences += 1;
                        continue;
                    }
                    emit(window, stats)?;
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self, stats: &mut TokenStatsBuilder, emit: &mut Emit<'_>) -> Result<()> {
        let keep = self.params.packing.as_ref().is_some_and(|p| p.keep_remainder);
        if let Some(rest) = self.packer.as_ref().and_then(|p| p.remainder().map(<[u32]>::to_vec)) {
            if keep && rest.len() >= self.params.min_length.max(1) {
                emit(&rest, stats)?;
            } else {
                stats.dropped_short_sequences += 1;
            }
        }
        Ok(())
    }
}
