//! The two HTML pages the command writes by itself: the quickstart report (the main job) and the gallery of
//! chart kinds.

use std::sync::Arc;

use saekit::catalog::{DatasetStatus, Workspace};
use saekit::jobs::TerminalBar;
use saekit::report::Report;
use saekit::tokenize::{TokenizeParams, Tokenizer};
use saekit::{Result, Source};

/// Every chart kind on one page, with made-up data: for looking at saekit's displays (and for the
/// screenshot tests, which look at them in light and dark themes).
pub fn gallery() -> Report {
    use saekit::display::{BarChart, ChartGrid, Histogram, LineChart, Scatter};
    let mut report = Report::new("saekit charts");
    let bins: Vec<(String, u64)> = (0..16)
        .map(|i| (format!("{}", 1u64 << i), ((i as f64 - 7.5).powi(2) * -40.0 + 2600.0).max(3.0) as u64))
        .collect();
    report.section("Histogram", &Histogram::new("Document length", "characters (bin start)", bins.clone()));
    report.section("Histogram, log counts", &Histogram::new("Document length", "characters", bins).log_count(true));
    let loss = |scale: f64, noise: f64| -> Vec<(f64, f64)> {
        (0..2_000)
            .map(|i| (i as f64 * 50.0, scale / (1.0 + i as f64 / 80.0) + noise * ((i * 7919 % 97) as f64 / 97.0)))
            .collect()
    };
    report.section(
        "Line chart",
        &LineChart::new("Loss", "tokens", "MSE")
            .series("train", loss(2.0, 0.3))
            .series("eval", loss(2.2, 0.05))
            .smoothed(0.9),
    );
    let zipf: Vec<(f64, f64)> = (1..20_000).map(|r| (r as f64, 5e4 / (r as f64).powf(1.05))).collect();
    report.section(
        "Log axes",
        &LineChart::new("Rank / frequency", "rank", "count").series("tokens", zipf).log_x(true).log_y(true),
    );
    let bars = BarChart::new("Mix", "documents")
        .bar("HuggingFaceFW/fineweb-edu (sample-10BT)", 61_000.0)
        .bar("code: bigcode/the-stack-smol", 24_500.0)
        .bar("math", 9_800.0)
        .bar("safety-relevant conversations", 4_700.0);
    report.section("Bar chart", &bars);
    let frontier = Scatter::new("L0 / explained variance", "L0", "explained variance")
        .series(
            "topk",
            [16.0f64, 32.0, 64.0, 128.0].iter().map(|&k| (k, 1.0 - 0.5 / k.sqrt(), format!("k={k}"))).collect(),
        )
        .series("relu", [(40.0, 0.80, "l1=5".to_string()), (90.0, 0.86, "l1=2".to_string())].to_vec())
        .log_x(true);
    report.section("Scatter", &frontier);
    let grid = ChartGrid::new("Small multiples", 2)
        .chart(&LineChart::new("layer 4", "step", "loss").series("sae", loss(1.0, 0.1)))
        .chart(&LineChart::new("layer 8", "step", "loss").series("sae", loss(1.5, 0.1)));
    report.section("Grid", &grid);
    report
}

/// The main job: the embedded corpus into the workspace, its schema and statistics, and an HTML report.
pub fn quickstart(ws: &Workspace, out: &std::path::Path) -> Result<()> {
    let started = std::time::Instant::now();
    let files = saekit::data::write_corpus(&ws.root().join("embedded"))?;
    let mut report = Report::new("saekit quickstart");
    report.provenance("workspace", ws.root().display().to_string());
    for file in &files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let name = name.split('.').next().unwrap_or("corpus").to_string();
        let source = Source::open(file)?;
        let dataset = match ws.dataset(&name) {
            Ok(existing) if existing.status() == DatasetStatus::Ready => existing,
            _ => {
                let job = ws.import_dataset_job(&name, &source);
                job.subscribe(Arc::new(TerminalBar::new()));
                let dataset = job.wait()?;
                report.section(format!("Import of {name}"), &job);
                dataset
            }
        };
        ws.tag(&name, &["embedded", "public-domain"])?;
        report.provenance(
            format!("input {name}"),
            format!("{} ({} bytes)", file.display(), std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)),
        );
        report.section(format!("Schema of {name}"), &source.schema()?);
        report.section(format!("Dataset {name}"), &ws.dataset(dataset.name())?);
        report.section(format!("First chapters of {name}"), &dataset.page(0, 3)?);
    }
    // Tokenize the Austen novels with GPT-2 into 256-token packed sequences, as SAE training wants them.
    let tokenizer = Tokenizer::gpt2()?;
    let params = TokenizeParams::packed(256);
    report.provenance("tokenizer", format!("{} (sha256 {})", tokenizer.name(), tokenizer.hash()));
    report.provenance("tokenization parameters", serde_json::to_string(&params).unwrap_or_default());
    let tokenization = match ws.latest_tokenization("austen") {
        Ok(existing) if existing.row().tokenizer_hash == tokenizer.hash() => existing,
        _ => {
            let job = ws.tokenize_job("austen", &tokenizer, &params);
            job.subscribe(Arc::new(TerminalBar::new()));
            let tokenization = job.wait()?;
            report.section("Tokenization job", &job);
            tokenization
        }
    };
    report.section("Tokenization of austen", &tokenization);
    report.section("First packed sequences", &tokenization.page_with(&tokenizer, 0, 2)?);
    report.section("Catalog", &ws.datasets()?);
    report.provenance("elapsed", format!("{:.1} s", started.elapsed().as_secs_f64()));
    let text = report.write_html_and_text(out)?;
    println!("{text}");
    println!("report written to {}", out.display());
    Ok(())
}
