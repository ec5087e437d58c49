//! The tests' Hub-compatible server, standalone, serving one dataset `bench/big` with a generated file
//! `data/big.bin` of `--mb` MiB (an LFS file: resolve answers 302 to `/cdn/<sha256>`), used by
//! bench/hub_bench.sh; or, with `--tiny`, the dataset `acme/tiny` (a card and Parquet shards
//! `data/{train,test}-00000-of-00001.parquet` with columns `text`, `id`), used by tests/test_hub_interop.py.
//! Prints `ready <url> <repo> <file> <sha256> <bytes>` once serving, then serves until its stdin closes.
//!
//!     cargo run --release --example hub_mock_server -- --mb 500 [--port 8765]
//!     cargo run --example hub_mock_server -- --tiny

#[path = "../tests/support/mod.rs"]
mod support;

use support::mock_hub;

use std::io::{BufRead, Write};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (mb, port) = (value("--mb", 500), value("--port", 0));
    if args.iter().any(|a| a == "--tiny") {
        let server = mock_hub::MockHub::start_on(port as u16);
        let train =
            mock_hub::MockFile::lfs("data/train-00000-of-00001.parquet", support::parquet_bytes("train", 0..120));
        let (sha, size) = (train.sha256.clone(), train.data.len());
        server.add_dataset(
            "acme/tiny",
            vec![
                mock_hub::MockFile::git("README.md", "---\nlicense: mit\n---\n# Tiny\n"),
                train,
                mock_hub::MockFile::lfs("data/test-00000-of-00001.parquet", support::parquet_bytes("test", 0..30)),
            ],
        );
        println!("ready {} acme/tiny data/train-00000-of-00001.parquet {sha} {size}", server.url());
        std::io::stdout().flush().unwrap();
        for _ in std::io::stdin().lock().lines() {}
        return;
    }
    let mut data = Vec::with_capacity(mb << 20);
    let mut x = 0x2545F4914F6CDD1Du64;
    while data.len() < mb << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(mb << 20);
    let server = mock_hub::MockHub::start_on(port as u16);
    let file = mock_hub::MockFile::lfs("data/big.bin", data);
    let (sha, size) = (file.sha256.clone(), file.data.len());
    server.add_dataset("bench/big", vec![file]);
    println!("ready {} bench/big data/big.bin {sha} {size}", server.url());
    std::io::stdout().flush().unwrap();
    for _ in std::io::stdin().lock().lines() {}
}
