//! Tokenization end to end on real files: every parameter and filter with known outputs (GPT-2 ids),
//! packing and separator rules, the catalog history, provenance refusal, cancellation.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use saekit::catalog::Workspace;
use saekit::jobs::{JobContext, JobStatus};
use saekit::tokenize::engine::tokenize_source;
use saekit::tokenize::{Language, Packing, Separator, TokenStore, TokenizeParams, Tokenizer};
use saekit::{Error, Source};

const EOT: u32 = 50256;
const THE: u32 = 1169; // "the"
const SP_THE: u32 = 262; // " the"

fn jsonl(dir: &Path, name: &str, texts: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let lines: Vec<String> = texts.iter().map(|t| serde_json::json!({ "text": t }).to_string()).collect();
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

/// Tokenizes `texts` with `params` and returns the stored sequences and the statistics.
fn run(texts: &[&str], params: &TokenizeParams) -> (Vec<Vec<u32>>, saekit::tokenize::TokenStats) {
    let dir = tempfile::tempdir().unwrap();
    let file = jsonl(dir.path(), "d.jsonl", texts);
    let out = dir.path().join("store");
    fs::create_dir_all(&out).unwrap();
    let tok = Tokenizer::gpt2().unwrap();
    let outcome =
        tokenize_source(&Source::open(&file).unwrap(), &tok, params, &out, 2, &JobContext::detached("t")).unwrap();
    let store = TokenStore::open(&out).unwrap();
    (store.iter().collect(), outcome.stats)
}

fn the_times(n: usize) -> String {
    format!("the{}", " the".repeat(n - 1))
}

#[test]
fn short_documents_become_one_sequence_each_in_order() {
    let (seqs, stats) = run(&["Hello world", " the", "the the"], &TokenizeParams::default());
    assert_eq!(seqs, vec![vec![15496, 995], vec![SP_THE], vec![THE, SP_THE]]);
    assert_eq!((stats.documents, stats.sequences, stats.tokens, stats.document_tokens), (3, 3, 5, 5));
}

#[test]
fn long_documents_become_overlapping_windows() {
    let params = TokenizeParams { max_length: 4, stride: 2, ..Default::default() };
    let (seqs, stats) = run(&[&the_times(7)], &params);
    let t = |n: usize| std::iter::repeat_n(SP_THE, n);
    let first: Vec<u32> = std::iter::once(THE).chain(t(3)).collect();
    assert_eq!(seqs, vec![first, t(4).collect(), t(3).collect()]);
    assert_eq!((stats.documents, stats.sequences, stats.tokens, stats.document_tokens), (1, 3, 11, 7));
}

#[test]
fn bos_and_eos_wrap_each_document() {
    let params = TokenizeParams { add_bos: true, add_eos: true, ..Default::default() };
    let (seqs, _) = run(&["Hello world"], &params);
    assert_eq!(seqs, vec![vec![EOT, 15496, 995, EOT]]);
}

#[test]
fn sequences_under_min_length_are_dropped_and_counted() {
    let params = TokenizeParams { max_length: 4, stride: 4, min_length: 2, ..Default::default() };
    let (seqs, stats) = run(&[&the_times(5), "Hello world", " the"], &params);
    assert_eq!(seqs.len(), 2, "{seqs:?}");
    assert_eq!(stats.dropped_short_sequences, 2);
}

#[test]
fn special_tokens_in_text_are_kept_or_dropped() {
    let text = "Hello<|endoftext|> world";
    let (kept, _) = run(&[text], &TokenizeParams::default());
    assert_eq!(kept, vec![vec![15496, EOT, 995]]);
    let params = TokenizeParams { drop_special_tokens: true, ..Default::default() };
    let (dropped, stats) = run(&[text], &params);
    assert_eq!(dropped, vec![vec![15496, 995]]);
    assert_eq!(stats.dropped_special_tokens, 1);
}

#[test]
fn stop_words_can_be_removed_from_sequences() {
    let params = TokenizeParams { remove_stop_words: Some(Language::English), ..Default::default() };
    let (seqs, stats) = run(&["Hello the world and the sea"], &params);
    let expected = Tokenizer::gpt2().unwrap().encode("Hello world sea").unwrap();
    assert_eq!(seqs, vec![expected]);
    assert_eq!(stats.dropped_stop_words, 3);
}

#[test]
fn packing_fills_fixed_sequences_with_bos_first_and_eos_between() {
    let (seqs, stats) = run(&["Hello world", "the the"], &TokenizeParams::packed(4));
    // Stream: Hello world EOT the the EOT → [BOS Hello world EOT] [BOS the the EOT]
    assert_eq!(seqs, vec![vec![EOT, 15496, 995, EOT], vec![EOT, THE, SP_THE, EOT]]);
    assert_eq!(stats.dropped_short_sequences, 0);

    let (seqs, stats) = run(&["Hello world", "the"], &TokenizeParams::packed(4));
    assert_eq!(seqs, vec![vec![EOT, 15496, 995, EOT]], "the short remainder is dropped");
    assert_eq!(stats.dropped_short_sequences, 1);

    let mut keep = TokenizeParams::packed(4);
    keep.packing = Some(Packing { keep_remainder: true, ..Packing::default() });
    let (seqs, _) = run(&["Hello world", "the"], &keep);
    assert_eq!(seqs, vec![vec![EOT, 15496, 995, EOT], vec![EOT, THE, EOT]]);
}

#[test]
fn packing_with_a_custom_separator_and_no_bos() {
    let mut params = TokenizeParams::packed(3);
    params.packing =
        Some(Packing { separator: Separator::Token("\u{120}the".into()), bos_first: false, keep_remainder: true });
    let (seqs, _) = run(&["Hello", "world"], &params);
    assert_eq!(seqs, vec![vec![15496, SP_THE, 6894], vec![SP_THE]]);
}

#[test]
fn packing_without_boundaries_is_refused_with_a_reason() {
    let mut params = TokenizeParams::packed(8);
    params.packing = Some(Packing { separator: Separator::None, bos_first: false, keep_remainder: false });
    let dir = tempfile::tempdir().unwrap();
    let file = jsonl(dir.path(), "d.jsonl", &["x"]);
    let err = tokenize_source(
        &Source::open(&file).unwrap(),
        &Tokenizer::gpt2().unwrap(),
        &params,
        dir.path(),
        1,
        &JobContext::detached("t"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unmarked"), "{err}");
}

#[test]
fn statistics_count_vocabulary_and_lengths() {
    let (_, stats) = run(&[&the_times(10), "Hello world"], &TokenizeParams::default());
    assert_eq!(stats.top_tokens[0].id, SP_THE);
    assert_eq!(stats.top_tokens[0].count, 9);
    assert!(stats.top_tokens[0].stop_word);
    assert_eq!(stats.unique_tokens, 4);
    assert_eq!(stats.sequence_lengths[10], 1);
    assert_eq!(stats.sequence_lengths[2], 1);
}

#[test]
fn parallel_and_single_threaded_passes_write_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> = (0..3000).map(|i| format!("Document {i}: café 🙂 {}", "word ".repeat(i % 50))).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let file = jsonl(dir.path(), "d.jsonl", &refs);
    let tok = Tokenizer::gpt2().unwrap();
    let source = Source::open(&file).unwrap().batch_rows(64);
    let mut stores = Vec::new();
    for threads in [1, 3] {
        let out = dir.path().join(format!("s{threads}"));
        fs::create_dir_all(&out).unwrap();
        tokenize_source(&source, &tok, &TokenizeParams::default(), &out, threads, &JobContext::detached("t")).unwrap();
        stores.push(TokenStore::open(&out).unwrap().iter().collect::<Vec<_>>());
    }
    assert_eq!(stores[0], stores[1]);
    assert_eq!(stores[0].len(), 3000);
    assert_eq!(stores[0][7], tok.encode(&texts[7]).unwrap());
}

fn workspace_with_dataset(dir: &Path) -> Workspace {
    let file = jsonl(dir, "d.jsonl", &["Hello world", &the_times(20), "Café 🙂"]);
    let ws = Workspace::open(dir.join("ws")).unwrap();
    ws.add_dataset("d", &Source::open(&file).unwrap()).unwrap();
    ws
}

#[test]
fn tokenizations_are_recorded_with_provenance_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace_with_dataset(dir.path());
    let tok = Tokenizer::gpt2().unwrap();
    let first = ws.tokenize("d", &tok, &TokenizeParams::default()).unwrap();
    let second = ws.tokenize("d", &tok, &TokenizeParams::packed(8)).unwrap();
    let history = ws.tokenizations("d").unwrap();
    assert_eq!(history.iter().map(|t| t.id).collect::<Vec<_>>(), vec![second.row().id, first.row().id]);
    assert_eq!(first.row().num_documents, 3);
    assert_eq!(first.store().unwrap().len(), 3);
    let provenance = first.provenance().unwrap();
    assert_eq!((provenance.dataset.as_str(), provenance.tokenizer.hash.as_str()), ("d", tok.hash().as_str()));
    assert_eq!(provenance.params, TokenizeParams::default());
    // The tokenizer comes back from the catalog, identical.
    let reloaded = first.tokenizer().unwrap();
    assert_eq!((reloaded.name(), reloaded.hash()), ("gpt2", tok.hash()));
    assert!(first.check_tokenizer(&reloaded).is_ok());
    assert_eq!(second.store().unwrap().iter().all(|s| s.len() == 8), true);
    // Deleting the dataset (with what was made from it) removes its token stores.
    let stores = [first.row().artifact_path.clone(), second.row().artifact_path.clone()];
    ws.delete_dataset_cascade("d").unwrap();
    assert!(stores.iter().all(|p| !p.exists()));
}

#[test]
fn a_different_tokenizer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace_with_dataset(dir.path());
    let tok = Tokenizer::gpt2().unwrap();
    let tokenization = ws.tokenize("d", &tok, &TokenizeParams::default()).unwrap();
    assert!(tokenization.check_tokenizer(&tok).is_ok());
    let mut other = Tokenizer::gpt2().unwrap();
    other.add_special_token("<|pad|>").unwrap();
    let err = tokenization.check_tokenizer(&other).unwrap_err();
    assert!(matches!(err, Error::TokenizerMismatch { .. }), "{err:?}");
    assert!(tokenization.page_with(&other, 0, 1).is_err());
    let page = tokenization.page_with(&tok, 0, 2).unwrap();
    assert_eq!(tokenization.page(0, 2).unwrap().sequences, page.sequences, "it knows its own tokenizer");
    assert_eq!(page.sequences[0].1.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>(), ["Hello", " world"]);
}

#[test]
fn a_cancelled_tokenization_leaves_no_store_and_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let texts: Vec<String> =
        (0..60_000).map(|i| format!("document number {i} {}", "lorem ipsum ".repeat(20))).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let file = jsonl(dir.path(), "big.jsonl", &refs);
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    ws.add_dataset("big", &Source::open(&file).unwrap()).unwrap();
    let job = ws.tokenize_job("big", &Tokenizer::gpt2().unwrap(), &TokenizeParams::default());
    while job.progress().done == 0 && !job.status().is_finished() {
        std::thread::sleep(Duration::from_millis(2));
    }
    job.cancel();
    assert_eq!(job.wait_timeout(Duration::from_millis(500)), JobStatus::Cancelled);
    assert!(ws.tokenizations("big").unwrap().is_empty());
    let tokens_dir = ws.root().join("artifacts").join("tokens");
    assert!(!tokens_dir.exists() || fs::read_dir(&tokens_dir).unwrap().count() == 0);
    let tmp: Vec<_> = fs::read_dir(ws.root().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn a_tokenize_job_reports_documents_and_tokens_as_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace_with_dataset(dir.path());
    let job = ws.tokenize_job("d", &Tokenizer::gpt2().unwrap(), &TokenizeParams::default());
    let tokenization = job.wait().unwrap();
    let progress = job.progress();
    let tokens = tokenization.row().num_tokens;
    assert_eq!(progress.detail, format!("3 documents · {tokens} tokens"));
    assert_eq!((progress.unit.as_str(), progress.status), ("bytes", JobStatus::Done));
    assert!(saekit::jobs::progress_line(&progress).contains("3 documents"));
}

// ---------------------------------------------------------------------------------------------------------
// The notebook API over the lifecycle: safe re-runs, lineage, methods on values.
// ---------------------------------------------------------------------------------------------------------

#[test]
fn the_same_tokenization_asked_again_is_the_one_already_made() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace_with_dataset(dir.path());
    let tok = Tokenizer::gpt2().unwrap();
    let d = ws.dataset("d").unwrap();
    let first = d.tokenize(&tok, &TokenizeParams::packed(8)).unwrap();
    let again = d.tokenize_job(&tok, &TokenizeParams::packed(8)).wait().unwrap();
    assert_eq!((again.id(), again.name()), (first.id(), first.name()));
    assert!(
        first.name().starts_with("d/gpt2/packed-8-") && first.name().len() == "d/gpt2/packed-8-".len() + 8,
        "{}",
        first.name()
    );
    let stores = fs::read_dir(ws.root().join("artifacts/tokens")).unwrap().count();
    assert_eq!(stores, 1, "asking again wrote no second store");
    // Other parameters (or another tokenizer) are another tokenization.
    let other = d.tokenize(&tok, &TokenizeParams::packed(16)).unwrap();
    assert_ne!(other.id(), first.id());
    assert_eq!(d.tokenizations().unwrap().iter().map(|t| t.id()).collect::<Vec<_>>(), [other.id(), first.id()]);
    assert_eq!(ws.tokenization(first.name()).unwrap().id(), first.id());
    assert_eq!(ws.tokenization(&first.id().to_string()).unwrap().name(), first.name());
}

#[test]
fn lineage_links_a_dataset_and_its_tokenizations_and_renders() {
    let dir = tempfile::tempdir().unwrap();
    let ws = workspace_with_dataset(dir.path());
    let tok = Tokenizer::gpt2().unwrap();
    let t = ws.tokenize("d", &tok, &TokenizeParams::default()).unwrap();
    let up = ws.lineage(&t).unwrap();
    assert_eq!(
        up.ancestors().iter().map(|a| (a.kind.as_str(), a.name.as_str())).collect::<Vec<_>>(),
        [("dataset", "d")]
    );
    assert!(up.descendants().is_empty());
    assert_eq!(up.edges, [(ws.dataset("d").unwrap().id(), t.id())]);
    let down = ws.dataset("d").unwrap().lineage().unwrap();
    assert_eq!(down.descendants().iter().map(|a| a.id).collect::<Vec<_>>(), [t.id()]);
    let bundle = saekit::display::Render::bundle(&up);
    assert!(
        bundle.plain().contains("Lineage of tokenization") && bundle.plain().contains("made from"),
        "{}",
        bundle.plain()
    );
    let svg = bundle.get("image/svg+xml").unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("<line") && svg.matches("<rect").count() == 2, "{svg}");
    // The card shows the parameters as a table of fields, not raw JSON.
    let card = saekit::display::Render::bundle(&t);
    assert!(card.plain().contains("max_length") && card.plain().contains("1024"), "{}", card.plain());
    assert!(!card.plain().contains("{\""), "raw JSON in the card: {}", card.plain());
}

#[test]
fn ensure_dataset_reuses_an_unchanged_source_and_rebuilds_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = jsonl(dir.path(), "e.jsonl", &["one", "two"]);
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    let first = ws.ensure_dataset("e", &Source::open(&file).unwrap()).unwrap();
    assert_eq!(first.row().num_rows, Some(2));
    let fingerprint = first.row().fingerprint.clone().expect("a fingerprint is recorded");
    assert_eq!(fingerprint.sha256.len(), 64);
    // Unchanged: the same row, not re-read (updated_at unchanged).
    let again = ws.ensure_dataset("e", &Source::open(&file).unwrap()).unwrap();
    assert_eq!((again.id(), &again.row().updated_at), (first.id(), &first.row().updated_at));
    // Rewritten with the same bytes (a new mtime): the content hash says it is the same.
    std::thread::sleep(Duration::from_millis(20));
    let bytes = fs::read(&file).unwrap();
    fs::write(&file, &bytes).unwrap();
    assert_eq!(ws.ensure_dataset("e", &Source::open(&file).unwrap()).unwrap().id(), first.id());
    // Another text mapping is another source: registered again.
    let remapped = ws.ensure_dataset("e", &Source::open(&file).unwrap().text_template("> {text}")).unwrap();
    assert_ne!(remapped.id(), first.id());
    let page = saekit::display::Render::bundle(&remapped.page(0, 1).unwrap()).plain().to_string();
    assert!(page.contains("> one"), "{page}");
    // Changed content: registered again with the new rows...
    jsonl(dir.path(), "e.jsonl", &["one", "two", "three"]);
    let changed = ws.ensure_dataset("e", &Source::open(&file).unwrap()).unwrap();
    assert_eq!(changed.row().num_rows, Some(3));
    // ...unless something was made from it: then it says what, and changes nothing.
    changed.tokenize(&Tokenizer::gpt2().unwrap(), &TokenizeParams::default()).unwrap();
    jsonl(dir.path(), "e.jsonl", &["four"]);
    let err = ws.ensure_dataset("e", &Source::open(&file).unwrap()).unwrap_err();
    assert!(matches!(err, Error::InUse { .. }), "{err:?}");
    assert!(err.to_string().contains("dataset `e` is used by tokenization `e/gpt2/"), "{err}");
    assert_eq!(ws.dataset("e").unwrap().row().num_rows, Some(3));
    // Listing: iterate, index by position and by name.
    let list = ws.datasets().unwrap();
    assert_eq!(list.iter().count(), 1);
    assert_eq!((&list).into_iter().map(|d| d.name()).collect::<Vec<_>>(), ["e"]);
    assert_eq!(list["e"].id(), list[0].id());
}
