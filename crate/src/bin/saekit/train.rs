//! `saekit train CONFIG.json` and `saekit runs`: train SAEs headless (a terminal progress line, the run
//! written into the workspace; run again after a crash or Ctrl-C to continue from the last checkpoint) and
//! list the runs with their final metrics.

use std::path::Path;
use std::sync::Arc;

use saekit::catalog::Workspace;
use saekit::display::Render;
use saekit::jobs::TerminalBar;
use saekit::sae::{RunConfig, SaeRunSpec};
use saekit::{Error, Result};

pub fn train(config: &Path, ws: Workspace, json: bool, show_config: bool) -> Result<()> {
    let text = std::fs::read_to_string(config).map_err(|e| Error::io(config, e))?;
    let config = RunConfig::from_json(&text).map_err(|e| Error::format(config, e))?;
    let spec = SaeRunSpec::from_config(&ws, config)?;
    if show_config {
        eprintln!("{}", spec.config.bundle().plain());
    }
    let job = ws.train_saes_job(&spec);
    if !json {
        job.subscribe(Arc::new(TerminalBar::new()));
    }
    let run = job.wait()?;
    if json {
        println!("{}", serde_json::to_string(run.row()).unwrap_or_default());
    } else {
        println!("{}", run.bundle().plain());
    }
    Ok(())
}

pub fn runs(ws: Workspace, json: bool) -> Result<()> {
    let runs = ws.sae_runs()?;
    if json {
        let rows: Vec<_> = runs.iter().map(|r| r.row()).collect();
        println!("{}", serde_json::to_string(&rows).unwrap_or_default());
        return Ok(());
    }
    println!("id\tname\tsteps\ttokens\tsae\thook\tL0\texplained_variance\tmse\tdead");
    for run in &runs {
        for s in run.summaries() {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{:.2}\t{:.4}\t{:.5}\t{}",
                run.id(),
                run.name(),
                run.steps(),
                run.tokens(),
                s.name,
                s.hook,
                s.last.l0,
                s.last.explained_variance,
                s.last.mse,
                s.last.dead
            );
        }
    }
    Ok(())
}

pub fn eval(run: &str, ws: Workspace, sequences: usize, json: bool) -> Result<()> {
    let run = ws.sae_run(run)?;
    let model = saekit::models::Model::load(&run.config()?.model)?;
    let evaluation = run.evaluate(&ws, &model, sequences)?;
    if json {
        println!("{}", serde_json::to_string(&evaluation).unwrap_or_default());
    } else {
        println!("{}", evaluation.bundle().plain());
    }
    Ok(())
}
