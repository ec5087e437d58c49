//! `saekit-kernel`: a Jupyter kernel for Rust on the evcxr engine, with saekit preloaded and outputs that
//! update in place.
//!
//! One binary plays three parts, chosen by how it is started:
//! - the kernel (`saekit-kernel --connection-file F`), which speaks the Jupyter protocol;
//! - evcxr's child process, which loads and runs the compiled cells (evcxr re-executes this binary with
//!   `EVCXR_IS_RUNTIME` set); here [`child::interpose`] first routes the child's stdout through the kernel
//!   channel, so output and display updates arrive live even while no cell runs;
//! - `saekit-kernel install`, which registers the kernelspec and builds saekit once into a build slot.

mod cell_build;
mod cells;
mod child;
mod engine;
mod history;
mod install;
mod outputs;
mod protocol;
mod server;
mod slots;
mod sockets;
mod spare;
mod syntax;

use std::path::PathBuf;

const USAGE: &str = "\
saekit-kernel: a Jupyter kernel for Rust with saekit preloaded

usage:
  saekit-kernel --connection-file FILE     run the kernel (Jupyter starts it this way)
  saekit-kernel install [--user | --prefix DIR] [--name NAME] [--no-prebuild] [--no-spare]
                                           register the kernelspec, build saekit once into a
                                           persistent build slot, and start a spare kernel
  saekit-kernel prebuild                   build saekit into a free build slot (install does this)
  saekit-kernel spare [--start | --wait [SECONDS] | --status | --stop]
                                           the spare kernel: a preloaded kernel that waits for the
                                           next notebook, so that it starts in about a second
                                           (without options: run one in the foreground)
  saekit-kernel --version

environment:
  SAEKIT_KERNEL_HOME   build slots and history (default ~/.cache/saekit-kernel)
  SAEKIT_CRATE_PATH    the saekit crate to preload (default: the one this kernel was built from)
  SAEKIT_FEATURES      saekit's cargo features in cells, comma-separated (default: cuda when this kernel
                       was built with --features cuda, else none)
  SAEKIT_KERNEL_SPARE  0 turns spare kernels off (each kernel then starts in ~20 s)
  SAEKIT_KERNEL_SPARE_IDLE
                       seconds an unclaimed spare kernel waits before it exits (default 3600)
  SAEKIT_KERNEL_CELL_REPLAY
                       0 builds every cell through cargo (default: a cell whose build inputs are
                       unchanged but for its source is compiled by rustc directly, as cargo last did)
  SAEKIT_KERNEL_LINKER mold, lld or system: the linker cells are built with (default: Debian's lld
                       when it is on PATH and mold is not, as evcxr chooses, else rustc's own lld;
                       mold only when asked; switching to or from lld rebuilds saekit's dependencies once)
";

fn main() {
    // As the cells' `cargo` or `rustup` (see cell_build), in evcxr's child process and when acting as its
    // rustc wrapper, control never returns from here.
    cell_build::intercept();
    child::interpose();
    evcxr::runtime_hook();
    spare::remember_started_env();

    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--connection-file") | Some("--control_file") | Some("-f") => match args.get(1) {
            Some(file) => server::run(PathBuf::from(file)),
            None => Err(anyhow::anyhow!("--connection-file needs a file")),
        },
        Some("install") => install::install(&args[1..]),
        Some("prebuild") => install::prebuild().map(|_| ()),
        Some("spare") => spare::command(&args[1..]),
        Some("--version") | Some("-V") => {
            println!("saekit-kernel {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => {
            eprint!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("saekit-kernel: {e:#}");
        std::process::exit(1);
    }
}

/// Whether the environment variable `name` turns something off: `0`, `false`, `no` or `off`.
pub fn switched_off(name: &str) -> bool {
    matches!(std::env::var(name).unwrap_or_default().trim().to_ascii_lowercase().as_str(), "0" | "false" | "no" | "off")
}

/// The saekit crate that kernels preload: `SAEKIT_CRATE_PATH`, else the crate beside this kernel's source;
/// canonical when it exists (it names the crate in build stamps and `:dep` lines).
pub fn saekit_crate_path() -> PathBuf {
    let path = match std::env::var_os("SAEKIT_CRATE_PATH") {
        Some(p) => PathBuf::from(p),
        None => default_crate_path(),
    };
    path.canonicalize().unwrap_or(path)
}

/// The saekit features cells are built with: `SAEKIT_FEATURES` (comma-separated) when set, else `cuda` when
/// this kernel was built with its `cuda` feature, else none.
pub fn saekit_features() -> Vec<String> {
    match std::env::var("SAEKIT_FEATURES") {
        Ok(list) => list.split(',').map(str::trim).filter(|f| !f.is_empty()).map(String::from).collect(),
        Err(_) if cfg!(feature = "cuda") => vec!["cuda".to_string()],
        Err(_) => Vec::new(),
    }
}

/// The evcxr `:dep` line that brings saekit (from `crate_path`, with [`saekit_features`]) into cells.
pub fn saekit_dep(crate_path: &std::path::Path) -> String {
    dep_line(crate_path, &saekit_features())
}

fn dep_line(crate_path: &std::path::Path, features: &[String]) -> String {
    if features.is_empty() {
        format!(":dep saekit = {{ path = {:?} }}", crate_path.display().to_string())
    } else {
        format!(":dep saekit = {{ path = {:?}, features = {features:?} }}", crate_path.display().to_string())
    }
}

/// The saekit crate beside this kernel's source.
pub fn default_crate_path() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../crate"))
}

/// Where build slots and history live.
pub fn kernel_home() -> PathBuf {
    if let Some(p) = std::env::var_os("SAEKIT_KERNEL_HOME") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(cache) => PathBuf::from(cache).join("saekit-kernel"),
        None => home.join(".cache").join("saekit-kernel"),
    }
}

#[cfg(test)]
mod dep_tests {
    use super::dep_line;

    #[test]
    fn cells_get_saekit_with_the_asked_features() {
        let path = std::path::Path::new("/src/saekit/crate");
        assert_eq!(dep_line(path, &[]), r#":dep saekit = { path = "/src/saekit/crate" }"#);
        assert_eq!(
            dep_line(path, &["cuda".to_string()]),
            r#":dep saekit = { path = "/src/saekit/crate", features = ["cuda"] }"#
        );
    }
}
