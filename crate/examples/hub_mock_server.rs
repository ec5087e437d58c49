//! The tests' Hub-compatible server, standalone, serving one dataset `bench/big` with a generated file
//! `data/big.bin` of `--mb` MiB (an LFS file: resolve answers 302 to `/cdn/<sha256>`). Used by
//! bench/hub_bench.sh. Prints `ready <url> <repo> <file> <sha256> <bytes>` once serving, then serves until
//! its stdin closes.
//!
//!     cargo run --release --example hub_mock_server -- --mb 500 [--port 8765]

#[path = "../tests/support/mock_hub.rs"]
mod mock_hub;

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
