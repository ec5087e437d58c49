//! `saekit report`: a notebook executed headless through the saekit kernel and exported as a
//! self-contained HTML report ending in its provenance footer, or (`--check`) re-executed and compared with
//! the exported run. The work is done by `notebooks/run.py` with the Jupyter tools setup installs into
//! `.venv` (nbclient, nbconvert): Jupyter's own client runs the kernel, as JupyterLab would.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use saekit::{Error, Result};

#[derive(Args)]
pub struct ReportArgs {
    /// The notebook to execute (.ipynb)
    notebook: PathBuf,
    /// The HTML report (default out/<notebook>.html); the executed notebook is written beside it (.ipynb)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Re-run the notebook and list the outputs that differ from the exported run (timings, rates, times and
    /// paths aside); exit 1 when any does. Nothing is written
    #[arg(long)]
    check: bool,
    /// With --check: the executed notebook to compare with (default: the one beside --out)
    #[arg(long, value_name = "FILE.ipynb", requires = "check")]
    against: Option<PathBuf>,
    /// The kernelspec to run (default saekit)
    #[arg(long, value_name = "NAME")]
    kernel: Option<String>,
    /// Seconds allowed per cell
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
}

/// The checkout that has notebooks/run.py: $SAEKIT_ROOT, else the one this saekit was built from.
fn checkout() -> Result<PathBuf> {
    let candidates = std::env::var_os("SAEKIT_ROOT")
        .map(PathBuf::from)
        .into_iter()
        .chain(Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf));
    for root in candidates {
        if root.join("notebooks").join("run.py").is_file() {
            return Ok(root);
        }
    }
    Err(Error::InvalidArgument(format!(
        "saekit report needs a saekit checkout (notebooks/run.py): none at {}; set SAEKIT_ROOT to one",
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).display()
    )))
}

/// Python with the Jupyter tools: $SAEKIT_PYTHON, else the checkout's .venv, else python3.
fn python(root: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("SAEKIT_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = root.join(".venv").join("bin").join("python");
    if venv.is_file() { venv } else { PathBuf::from("python3") }
}

pub fn report(args: ReportArgs, workspace: Option<&Path>) -> Result<()> {
    let root = checkout()?;
    let python = python(&root);
    let probe = Command::new(&python).args(["-c", "import nbclient, nbconvert, nbformat"]).output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(Error::InvalidArgument(format!(
                "saekit report runs notebooks with Jupyter's nbclient and nbconvert, which {} cannot import ({}); \
                 run `bash scripts/setup.sh` in {} to install them into .venv, or set SAEKIT_PYTHON to a Python \
                 that has them",
                python.display(),
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no error message").trim(),
                root.display()
            )));
        }
        Err(e) => {
            return Err(Error::InvalidArgument(format!(
                "saekit report needs Python with nbclient and nbconvert: {} could not be run ({e}); run \
                 `bash scripts/setup.sh` in {} or set SAEKIT_PYTHON",
                python.display(),
                root.display()
            )));
        }
    }
    if !args.notebook.is_file() {
        return Err(Error::InvalidArgument(format!("no notebook at {}", args.notebook.display())));
    }
    let mut command = Command::new(&python);
    command.arg(root.join("notebooks").join("run.py")).arg(&args.notebook);
    if let Some(out) = &args.out {
        command.arg("--out").arg(out);
    }
    if args.check {
        command.arg("--check");
    }
    if let Some(against) = &args.against {
        command.arg("--against").arg(against);
    }
    if let Some(dir) = workspace {
        command.arg("--workspace").arg(dir);
    }
    if let Some(kernel) = &args.kernel {
        command.arg("--kernel").arg(kernel);
    }
    if let Some(seconds) = args.timeout {
        command.arg("--timeout").arg(seconds.to_string());
    }
    let status = command.status().map_err(|e| Error::io(&python, e))?;
    if status.success() {
        Ok(())
    } else {
        // run.py has said what failed or differed; its exit status is ours.
        std::process::exit(status.code().unwrap_or(1));
    }
}
