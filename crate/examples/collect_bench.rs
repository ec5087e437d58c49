//! Which store a collection should use, measured in one run on this machine: saekit's SQLite collection
//! (WAL, `synchronous=NORMAL`) against an append log with a checksum per record (length, FNV-1a, payload;
//! a torn tail is found on open by the checksum), both durable against the process being killed (the
//! bytes are in the OS before the call returns), neither syncing to the disk per record.
//!
//!     cargo run --example collect_bench [-- RECORDS]   (the dev profile is optimised)

use std::io::Write;
use std::time::Instant;

use saekit::Workspace;
use saekit::collect::Interaction;

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn record(i: usize) -> Interaction {
    Interaction::new(
        format!("user question number {i} about an order that is late"),
        format!("the answer to {i}: it ships tomorrow"),
    )
    .category(["billing", "login", "shipping"][i % 3])
    .quality((i % 10) as f64 / 10.0)
    .at("2026-12-01T10:00:00Z")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let dir = tempfile::tempdir()?;
    let ws = Workspace::open(dir.path().join("ws"))?;

    // One record per commit (what `saekit collect add` and a chatty application do).
    let single = n.min(5_000);
    let c = ws.collection("single")?;
    let t = Instant::now();
    for i in 0..single {
        c.add(record(i))?;
    }
    let sqlite_single = single as f64 / t.elapsed().as_secs_f64();

    let log_path = dir.path().join("single.log");
    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let t = Instant::now();
    for i in 0..single {
        let payload = serde_json::to_vec(&record(i))?;
        let mut frame = Vec::with_capacity(payload.len() + 16);
        frame.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        frame.extend_from_slice(&fnv1a(&payload).to_le_bytes());
        frame.extend_from_slice(&payload);
        log.write_all(&frame)?; // one write: in the OS when it returns
    }
    let log_single = single as f64 / t.elapsed().as_secs_f64();

    // Batches of 1,000 per commit (what the HTTP endpoint and imports do).
    let c = ws.collection("batched")?;
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        c.add_many((start..(start + 1000).min(n)).map(record).collect())?;
    }
    let sqlite_batched = n as f64 / t.elapsed().as_secs_f64();

    let mut log = std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("batched.log"))?;
    let t = Instant::now();
    for start in (0..n).step_by(1000) {
        let mut frames = Vec::new();
        for i in start..(start + 1000).min(n) {
            let payload = serde_json::to_vec(&record(i))?;
            frames.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            frames.extend_from_slice(&fnv1a(&payload).to_le_bytes());
            frames.extend_from_slice(&payload);
        }
        log.write_all(&frames)?;
    }
    let log_batched = n as f64 / t.elapsed().as_secs_f64();

    println!("records/s on this machine ({single} single commits, {n} in batches of 1,000)");
    println!("{:<28} {:>12} {:>12}", "", "single", "batched");
    println!("{:<28} {:>12.0} {:>12.0}", "saekit collection (SQLite)", sqlite_single, sqlite_batched);
    println!("{:<28} {:>12.0} {:>12.0}", "append log + checksums", log_single, log_batched);
    println!(
        "{:<28} {:>11.2}× {:>11.2}×",
        "SQLite / append log",
        sqlite_single / log_single,
        sqlite_batched / log_batched
    );
    Ok(())
}
