//! A workspace holding the embedded Austen corpus tokenized by GPT-2 into 32-token windows (each document
//! starting with BOS), and a tiny GPT-2 (2 layers, 16 wide, fixed seed) to run it through.

use std::path::PathBuf;

use saekit::models::Model;
use saekit::tokenize::{Tokenization, TokenizeParams, Tokenizer};
use saekit::{Source, Workspace};

use super::tiny_models::write_gpt2;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub ws: Workspace,
    pub model: Model,
    pub tokens: Tokenization,
}

impl Fixture {
    pub fn model_dir(&self) -> PathBuf {
        self.dir.path().join("gpt2")
    }
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    write_gpt2(&dir.path().join("gpt2"), "", false);
    let files = saekit::data::write_corpus(&dir.path().join("corpus")).unwrap();
    let ws = Workspace::open(dir.path().join("ws")).unwrap();
    ws.add_dataset("austen", &Source::open(&files[0]).unwrap()).unwrap();
    let params = TokenizeParams { max_length: 32, stride: 32, add_bos: true, ..Default::default() };
    let tokens = ws.tokenize("austen", &Tokenizer::gpt2().unwrap(), &params).unwrap();
    let model = Model::load(dir.path().join("gpt2").to_str().unwrap()).unwrap();
    Fixture { dir, ws, model, tokens }
}
