//! Downloads one file of a Hub dataset repository into the HF cache the way saekit always does (resolve,
//! redirect, streamed to `blobs/<etag>.part`, SHA-256 verified, linked from the snapshot), and prints the
//! time it took as JSON. Honours HF_ENDPOINT, HF_HUB_CACHE and the token. Used by bench/hub_bench.sh.
//!
//!     cargo run --release --example hub_fetch -- REPO FILE [--no-checksum]

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let verify = !args.iter().any(|a| a == "--no-checksum");
    args.retain(|a| a != "--no-checksum");
    let [repo, file] = args.as_slice() else {
        eprintln!("usage: hub_fetch REPO FILE [--no-checksum]");
        std::process::exit(2);
    };
    let hub = saekit::hub::Hub::from_env()?.with_checksums(verify);
    let started = std::time::Instant::now();
    let path = hub.dataset(repo).file(file)?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path)?.len();
    println!(
        "{}",
        serde_json::json!({"bytes": bytes, "seconds": seconds, "mb_per_s": bytes as f64 / 1e6 / seconds, "path": path})
    );
    Ok(())
}
