//! Cell builds that skip cargo when only the cell changed.
//!
//! evcxr builds every cell with `cargo build` in the kernel's build slot. Between two cells nothing changes
//! but the cell crate's `src/lib.rs`, yet cargo reads the whole graph and checks the fingerprints of every
//! package (~330 for saekit) before it runs rustc on the cell: ~0.3 s of a trivial cell on a quiet 2-core
//! machine, more under load (#24). So the kernel serves evcxr as its cargo:
//!
//! - evcxr finds cargo by asking `rustup which cargo`. The kernel puts a directory of its own first on
//!   `PATH` (in its build slot, `bin/`), holding `rustup` and `cargo` links to this binary: `rustup which
//!   cargo` answers with that `cargo`; anything else goes to the real rustup (a machine without rustup gets
//!   "not found", and evcxr then looks for rustc on `PATH` as before).
//! - As `cargo`, this binary passes every command to the real cargo except evcxr's build of the cell crate.
//!   For that it first describes everything that decides what cargo would do, other than the cell's source:
//!   the command line, the environment, the cell crate's manifest and lockfile, every cargo config file that
//!   applies, the rustc binary, and the files of every path dependency (saekit, the cells' crate, a user's
//!   `:dep ... path = ...`), with their workspace manifests ([`inputs`]).
//! - When that description equals the one recorded at the last cargo build, and every crate file the
//!   recorded rustc command links against is still there, it runs that rustc command itself ([`replay`]),
//!   with cargo's environment, and turns rustc's JSON messages into the ones cargo prints
//!   (`compiler-message`, `compiler-artifact` naming the shared object, `build-finished`), which is all evcxr
//!   reads.
//! - Otherwise it runs the real cargo with this binary as `RUSTC_WORKSPACE_WRAPPER` (cargo runs it only for
//!   the cell crate, the one workspace member), which records the cell crate's rustc command and
//!   environment ([`record_and_run_rustc`]) before it runs rustc. The record is written only when that build
//!   got as far as rustc; a failed dependency leaves no record, so the next cell asks cargo again.
//!
//! Anything evcxr would build differently is left to cargo: a `RUSTC_WRAPPER` (sccache, evcxr's `:cache`),
//! a user's own `RUSTC_WORKSPACE_WRAPPER`, `cargo check`, `clean`, `metadata`. `SAEKIT_KERNEL_CELL_REPLAY=0`
//! sends every build to cargo. What is not seen: a build script's `rerun-if-changed` of a file outside
//! every path dependency (cargo would rerun it; a replay does not).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

/// `0`, `false`, `no` or `off`: every cell build goes through cargo.
pub const ENABLE_ENV: &str = "SAEKIT_KERNEL_CELL_REPLAY";
/// The real cargo, for the `cargo` link to run.
pub const REAL_CARGO_ENV: &str = "SAEKIT_KERNEL_REAL_CARGO";
/// The real rustup (empty when there is none), for the `rustup` link to run.
pub const REAL_RUSTUP_ENV: &str = "SAEKIT_KERNEL_REAL_RUSTUP";
/// Set for the recording wrapper: where it writes the cell crate's rustc command.
const RECORD_ENV: &str = "SAEKIT_KERNEL_RECORD_RUSTC";
/// The record of the last cargo build of the cell crate, in the cell crate's directory (the build slot).
const RECORD_FILE: &str = ".saekit-cell-rustc.json";
/// evcxr sets it for every cargo command it runs (and nothing else does).
const EVCXR_MARK_ENV: &str = "EVCXR_CORE_EXTERN";
/// The name evcxr gives the cell crate.
const CELL_CRATE: &str = "ctx";
/// Variables of the recorded rustc environment that belong to that one cargo run.
const NOT_REPLAYED: &[&str] = &["CARGO_MAKEFLAGS", "MAKEFLAGS", "MFLAGS", "RUSTC_WORKSPACE_WRAPPER", RECORD_ENV];

pub fn enabled() -> bool {
    !crate::switched_off(ENABLE_ENV)
}

/// Puts `slot/bin` (links named `cargo` and `rustup` to this binary) first on `PATH`, so that evcxr, which
/// asks `rustup which cargo`, builds through this binary. Must run before evcxr starts and before the process
/// has other threads. Does nothing when turned off, and reports (but survives) a failure to make the links.
pub fn serve_as_cargo(slot: &Path) {
    if !enabled() {
        return;
    }
    let bin = slot.join("bin");
    // Without this kernel's own links (a kernel started from a cell's shell, say).
    let path = std::env::var_os("PATH").unwrap_or_default();
    let others: Vec<PathBuf> = std::env::split_paths(&path).filter(|d| *d != bin).collect();
    let path = std::env::join_paths(&others).unwrap_or_default();
    let real_rustup = find_on(&path, "rustup");
    let real_cargo = real_rustup
        .as_ref()
        .and_then(|rustup| command_line(Command::new(rustup).args(["which", "cargo"])))
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| find_on(&path, "cargo"));
    let Some(real_cargo) = real_cargo else { return };
    let linked = std::env::current_exe().and_then(|exe| {
        std::fs::create_dir_all(&bin)?;
        for name in ["cargo", "rustup"] {
            let link = bin.join(name);
            if std::fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&exe, &link)?;
            }
        }
        Ok(())
    });
    if let Err(e) = linked {
        eprintln!("saekit-kernel: cannot link {} ({e}): every cell is built by cargo", bin.display());
        return;
    }
    let mut dirs = vec![bin];
    dirs.extend(others);
    let Ok(new_path) = std::env::join_paths(dirs) else { return };
    // SAFETY: called before evcxr starts any thread or process (see above).
    unsafe {
        std::env::set_var(REAL_CARGO_ENV, &real_cargo);
        std::env::set_var(REAL_RUSTUP_ENV, real_rustup.unwrap_or_default());
        std::env::set_var("PATH", new_path);
    }
}

/// Takes over when this binary was started as the `cargo` or `rustup` link, or as the recording rustc
/// wrapper; otherwise returns.
pub fn intercept() {
    if std::env::var_os(RECORD_ENV).is_some() && std::env::var_os("EVCXR_IS_RUNTIME").is_none() {
        std::process::exit(record_and_run_rustc());
    }
    let name = std::env::args_os().next().map(PathBuf::from);
    match name.as_deref().and_then(Path::file_name).and_then(|n| n.to_str()) {
        Some("cargo") => std::process::exit(cargo()),
        Some("rustup") => std::process::exit(rustup()),
        _ => {}
    }
}

/// `rustup which cargo` names the `cargo` link beside this one; everything else is the real rustup's.
fn rustup() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args == ["which", "cargo"] {
        let me = std::env::current_exe().ok();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let link = std::env::split_paths(&path).map(|d| d.join("cargo")).find(|c| c.canonicalize().ok() == me);
        if let Some(link) = link {
            println!("{}", link.display());
            return 0;
        }
    }
    let real = std::env::var_os(REAL_RUSTUP_ENV).filter(|r| !r.is_empty());
    let Some(real) = real else {
        eprintln!("rustup is not installed");
        return 1;
    };
    exec(Command::new(real).args(args))
}

fn cargo() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(real) = real_cargo() else {
        eprintln!("saekit-kernel: cannot find cargo ({REAL_CARGO_ENV} is not set and cargo is not on PATH)");
        return 101;
    };
    let Some(dir) = cell_build_dir(&args) else { return exec(Command::new(&real).args(&args)) };
    let env: BTreeMap<OsString, OsString> = std::env::vars_os().collect();
    let Some(key) = inputs(&args, &dir, &env) else { return exec(Command::new(&real).args(&args)) };
    let record_path = dir.join(RECORD_FILE);
    if let Some(record) = Record::read(&record_path).filter(|r| r.key == key && r.still_valid()) {
        return replay(&record);
    }
    // Through cargo, recording the cell crate's rustc command on the way.
    let _ = std::fs::remove_file(&record_path);
    let scratch = dir.join(RECORD_FILE).with_extension(format!("{}.json", std::process::id()));
    let _ = std::fs::remove_file(&scratch);
    let Ok(me) = std::env::current_exe() else { return exec(Command::new(&real).args(&args)) };
    let status = Command::new(&real).args(&args).env("RUSTC_WORKSPACE_WRAPPER", me).env(RECORD_ENV, &scratch).status();
    if let Ok(text) = std::fs::read_to_string(&scratch) {
        if let Ok(mut record) = serde_json::from_str::<Record>(&text) {
            record.key = key;
            record.write(&record_path);
        }
        let _ = std::fs::remove_file(&scratch);
    }
    match status {
        Ok(s) => s.code().unwrap_or(101),
        Err(e) => {
            eprintln!("saekit-kernel: cannot run {} ({e})", real.display());
            101
        }
    }
}

/// The real cargo: as the kernel found it, else the first `cargo` on `PATH` that is not this binary.
fn real_cargo() -> Option<PathBuf> {
    if let Some(real) = std::env::var_os(REAL_CARGO_ENV).filter(|r| !r.is_empty()) {
        return Some(PathBuf::from(real));
    }
    find_on(&std::env::var_os("PATH")?, "cargo")
}

/// The cell crate's directory when `args` is evcxr's build of it (and nothing changes how rustc is run).
fn cell_build_dir(args: &[OsString]) -> Option<PathBuf> {
    let command = args.iter().find(|a| !a.to_string_lossy().starts_with('-'))?;
    if command != "build" || std::env::var_os(EVCXR_MARK_ENV).is_none() || !enabled() {
        return None;
    }
    if ["RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"].iter().any(|v| std::env::var_os(v).is_some_and(|w| !w.is_empty())) {
        return None;
    }
    let dir = std::env::current_dir().ok()?;
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).ok()?;
    manifest.lines().any(|l| l.trim() == format!("name = \"{CELL_CRATE}\"")).then_some(dir)
}

/// How many files of path dependencies a cell's build looks at before it leaves the build to cargo.
const MOST_FILES: usize = 20_000;

/// A description (hashed) of everything other than the cell's source that decides what `cargo build` would
/// do in `dir`: equal descriptions, equal builds. `None` when the path dependencies hold more than
/// [`MOST_FILES`] files (looking at them all would cost a cell more than cargo does).
fn inputs(args: &[OsString], dir: &Path, env: &BTreeMap<OsString, OsString>) -> Option<String> {
    let mut budget = MOST_FILES;
    let mut h = std::hash::DefaultHasher::new();
    1u32.hash(&mut h); // the description's own version
    if let Ok(exe) = std::env::current_exe() {
        file_stamp(&exe).hash(&mut h);
    }
    args.hash(&mut h);
    env.hash(&mut h);
    dir.hash(&mut h);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
    manifest.hash(&mut h);
    std::fs::read(dir.join("Cargo.lock")).unwrap_or_default().hash(&mut h);
    // Cargo's config files: the build directory's and its parents', then CARGO_HOME's.
    let cargo_home = env
        .get(&OsString::from("CARGO_HOME"))
        .map(PathBuf::from)
        .or_else(|| env.get(&OsString::from("HOME")).map(|home| PathBuf::from(home).join(".cargo")));
    let config_dirs = dir.ancestors().map(|d| d.join(".cargo")).chain(cargo_home);
    for config in config_dirs {
        for name in ["config.toml", "config"] {
            std::fs::read(config.join(name)).unwrap_or_default().hash(&mut h);
        }
    }
    let rustc = env.get(&OsString::from("RUSTC")).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("rustc"));
    file_stamp(&rustc).hash(&mut h);
    // Path dependencies, and theirs, with the manifests above them (workspace inheritance).
    let mut seen = Vec::new();
    let mut pending: Vec<(PathBuf, String)> =
        path_dependencies(&manifest).into_iter().map(|p| (dir.to_path_buf(), p)).collect();
    while let Some((base, dep)) = pending.pop() {
        let dep_dir = base.join(dep);
        let dep_dir = dep_dir.canonicalize().unwrap_or(dep_dir);
        if seen.contains(&dep_dir) {
            continue;
        }
        let dep_manifest = std::fs::read_to_string(dep_dir.join("Cargo.toml")).unwrap_or_default();
        pending.extend(path_dependencies(&dep_manifest).into_iter().map(|p| (dep_dir.clone(), p)));
        dep_dir.hash(&mut h);
        tree_stamp(&dep_dir, &mut h, &mut budget);
        if budget == 0 {
            return None;
        }
        for above in dep_dir.ancestors().skip(1) {
            std::fs::read(above.join("Cargo.toml")).unwrap_or_default().hash(&mut h);
        }
        seen.push(dep_dir);
    }
    Some(format!("{:016x}", h.finish()))
}

/// The `path = "..."` values of a manifest, as written.
fn path_dependencies(manifest: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in manifest.lines() {
        let mut rest = line;
        while let Some(at) = rest.find("path") {
            let key_starts = rest[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || "_-".contains(c)));
            let after = rest[at + 4..].trim_start();
            rest = &rest[at + 4..];
            if !key_starts {
                continue;
            }
            let Some(value) = after.strip_prefix('=') else { continue };
            let value = value.trim_start();
            let Some(value) = value.strip_prefix('"') else { continue };
            if let Some(end) = value.find('"') {
                paths.push(value[..end].replace("\\\\", "\\"));
            }
        }
    }
    paths
}

/// Each file's path, size and modification time under `dir`, leaving out `target` and hidden directories;
/// `budget` is how many more files may be looked at (a path dependency with more leaves every cell to cargo).
fn tree_stamp(dir: &Path, h: &mut impl Hasher, budget: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            tree_stamp(&entry.path(), h, budget);
        } else {
            let Some(left) = budget.checked_sub(1) else { return };
            *budget = left;
            entry.path().hash(h);
            file_stamp(&entry.path()).hash(h);
        }
    }
}

fn file_stamp(path: &Path) -> (u64, u128) {
    match std::fs::metadata(path) {
        Ok(m) => {
            let modified = m.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
            (m.len(), modified.map_or(0, |d| d.as_nanos()))
        }
        Err(_) => (0, 0),
    }
}

/// The cell crate's rustc command as cargo ran it, under the description of the inputs it was run for.
#[derive(Serialize, Deserialize)]
struct Record {
    #[serde(default)]
    key: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: PathBuf,
}

impl Record {
    fn read(path: &Path) -> Option<Record> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    }

    fn write(&self, path: &Path) {
        let temporary = path.with_extension("json.partial");
        let written = serde_json::to_string(self)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(&temporary, text))
            .and_then(|_| std::fs::rename(&temporary, path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
    }

    /// Whether rustc, the crates it links against and the directories it searches are all still there.
    fn still_valid(&self) -> bool {
        let mut args = self.args.iter();
        let mut ok = self.program.is_file() && self.cwd.is_dir();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--extern" => {
                    let path = args.next().and_then(|e| e.split_once('=')).map(|(_, p)| p);
                    ok &= path.is_none_or(|p| Path::new(p).is_file());
                }
                "-L" => {
                    let dir = args.next().map(|l| l.split_once('=').map_or(l.as_str(), |(_, d)| d));
                    ok &= dir.is_some_and(|d| Path::new(d).is_dir());
                }
                _ => {}
            }
        }
        ok
    }
}

/// As cargo's `RUSTC_WORKSPACE_WRAPPER` (`this rustc ARGS...`): writes the cell crate's command to the
/// record file, then runs it.
fn record_and_run_rustc() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let Some(rustc) = args.next() else { return 101 };
    let args: Vec<OsString> = args.collect();
    let is_cell = args.windows(2).any(|w| w[0] == "--crate-name" && w[1] == CELL_CRATE);
    if let (true, Some(out)) = (is_cell, std::env::var_os(RECORD_ENV)) {
        let text = |s: &OsString| s.to_str().map(str::to_string);
        let env: Option<Vec<(String, String)>> = std::env::vars_os()
            .filter(|(k, _)| !NOT_REPLAYED.iter().any(|n| k == n))
            .map(|(k, v)| Some((text(&k)?, text(&v)?)))
            .collect();
        let record = match (args.iter().map(text).collect::<Option<Vec<_>>>(), env, std::env::current_dir()) {
            (Some(args), Some(env), Ok(cwd)) => {
                Some(Record { key: String::new(), program: PathBuf::from(&rustc), args, env, cwd })
            }
            _ => None, // not UTF-8: not replayed
        };
        if let Some(record) = record {
            record.write(Path::new(&out));
        }
    }
    let mut command = Command::new(rustc);
    command.args(args).env_remove(RECORD_ENV);
    exec(&mut command)
}

/// Runs the recorded rustc command and prints what cargo would have printed of it (`--message-format=json`).
fn replay(record: &Record) -> i32 {
    let mut child = match Command::new(&record.program)
        .args(&record.args)
        .env_clear()
        .envs(record.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&record.cwd)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("saekit-kernel: cannot run {} ({e})", record.program.display());
            return 101;
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut shared_object = None;
    let target = serde_json::json!({"name": CELL_CRATE, "kind": ["cdylib"], "crate_types": ["cdylib"]});
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let message = serde_json::from_str::<serde_json::Value>(&line).ok();
            match message.as_ref().and_then(|m| m["$message_type"].as_str()) {
                Some("diagnostic") => {
                    let mut message = message.unwrap_or_default();
                    if let Some(rendered) = message["rendered"].as_str() {
                        message["rendered"] = strip_ansi(rendered).into();
                    }
                    let wrapped =
                        serde_json::json!({"reason": "compiler-message", "target": target, "message": message});
                    let _ = writeln!(out, "{wrapped}");
                }
                Some("artifact") => {
                    let m = message.unwrap_or_default();
                    if m["emit"] == "link" {
                        shared_object = m["artifact"].as_str().map(str::to_string);
                    }
                }
                Some(_) => {}
                None => eprintln!("{line}"),
            }
        }
    }
    let success = child.wait().is_ok_and(|s| s.success());
    if let (true, Some(path)) = (success, shared_object) {
        let artifact = serde_json::json!({
            "reason": "compiler-artifact", "target": target, "filenames": [path], "fresh": false,
        });
        let _ = writeln!(out, "{artifact}");
    }
    let _ = writeln!(out, "{}", serde_json::json!({"reason": "build-finished", "success": success}));
    if success { 0 } else { 101 }
}

/// `text` without its ANSI escape sequences (cargo strips them from `rendered` unless asked not to).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The first executable `tool` on `path` that is not this binary.
fn find_on(path: &std::ffi::OsStr, tool: &str) -> Option<PathBuf> {
    let me = std::env::current_exe().ok();
    crate::cells::executables_on(path, tool).find(|candidate| candidate.canonicalize().ok() != me)
}

fn command_line(command: &mut Command) -> Option<String> {
    let output = command.stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    (output.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// Replaces this process with `command` (returns only when that fails).
fn exec(command: &mut Command) -> i32 {
    use std::os::unix::process::CommandExt;
    let e = command.exec();
    eprintln!("saekit-kernel: cannot run {:?} ({e})", command.get_program());
    101
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("saekit-cell-build-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn path_dependencies_are_read_as_evcxr_and_cargo_write_them() {
        let manifest = r#"
[lib]
crate-type = ["cdylib"]
[dependencies]
saekit = { path = "/src/saekit/crate", features = ["cuda"] }
saekit_cells = { path = "/home/r/.cache/saekit-kernel/saekit_cells" }
regex = "1"
local = { version = "0.1", path="../local" }
"#;
        assert_eq!(
            path_dependencies(manifest),
            ["/src/saekit/crate", "/home/r/.cache/saekit-kernel/saekit_cells", "../local"]
        );
        assert!(path_dependencies("[dependencies]\nxpath = \"1\"\n").is_empty());
    }

    #[test]
    fn rendered_diagnostics_lose_their_colours_only() {
        let coloured = "\u{1b}[0m\u{1b}[1m\u{1b}[38;5;9merror[E0425]\u{1b}[0m: cannot find value `y`";
        assert_eq!(strip_ansi(coloured), "error[E0425]: cannot find value `y`");
        assert_eq!(strip_ansi("plain [text] ~"), "plain [text] ~");
    }

    #[test]
    fn the_inputs_change_with_a_path_dependency_and_not_with_the_cell() {
        let root = scratch("inputs");
        let dep = root.join("dep");
        std::fs::create_dir_all(dep.join("src")).unwrap();
        std::fs::create_dir_all(dep.join("target/debug")).unwrap();
        std::fs::write(dep.join("Cargo.toml"), "[package]\nname = \"dep\"\n").unwrap();
        std::fs::write(dep.join("src/lib.rs"), "pub fn f() -> u32 { 1 }\n").unwrap();
        let cell = root.join("slot");
        std::fs::create_dir_all(cell.join("src")).unwrap();
        let manifest = format!("[package]\nname = \"ctx\"\n[dependencies]\ndep = {{ path = {:?} }}\n", dep.display());
        std::fs::write(cell.join("Cargo.toml"), &manifest).unwrap();
        std::fs::write(cell.join("src/lib.rs"), "fn cell_1() {}").unwrap();
        let args: Vec<OsString> = ["build", "--message-format=json"].map(OsString::from).to_vec();
        let env: BTreeMap<OsString, OsString> = [("HOME", "/nonexistent"), ("RUSTC", "/nonexistent/rustc")]
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .into();
        let first = inputs(&args, &cell, &env).unwrap();
        std::fs::write(cell.join("src/lib.rs"), "fn cell_2() { let x = 1; }").unwrap();
        std::fs::write(dep.join("target/debug/out"), "build output").unwrap();
        assert_eq!(
            inputs(&args, &cell, &env).unwrap(),
            first,
            "the cell's source and a dependency's target/ are not inputs"
        );

        std::fs::write(dep.join("src/lib.rs"), "pub fn f() -> u32 { 22 }\n").unwrap();
        let edited = inputs(&args, &cell, &env).unwrap();
        assert_ne!(edited, first, "an edited dependency");
        std::fs::write(dep.join("src/extra.rs"), "").unwrap();
        let added = inputs(&args, &cell, &env).unwrap();
        assert_ne!(added, edited, "a file added to a dependency");
        std::fs::write(root.join("Cargo.toml"), "[workspace.package]\nversion = \"2.0.0\"\n").unwrap();
        let workspace = inputs(&args, &cell, &env).unwrap();
        assert_ne!(workspace, added, "the manifest of a workspace above the dependency");
        std::fs::create_dir_all(root.join(".cargo")).unwrap();
        std::fs::write(root.join(".cargo/config.toml"), "[profile.dev]\nopt-level = 0\n").unwrap();
        let config = inputs(&args, &cell, &env).unwrap();
        assert_ne!(config, workspace, "a cargo config file above the cell crate");
        std::fs::write(cell.join("Cargo.lock"), "version = 4\n").unwrap();
        let lock = inputs(&args, &cell, &env).unwrap();
        assert_ne!(lock, config, "the lockfile");
        let mut other_env = env.clone();
        other_env.insert("CARGO_PROFILE_DEV_PACKAGE_ctx_OPT_LEVEL".into(), "0".into());
        assert_ne!(inputs(&args, &cell, &other_env).unwrap(), lock, "the environment");
        let release: Vec<OsString> = ["build", "--release"].map(OsString::from).to_vec();
        assert_ne!(inputs(&release, &cell, &env).unwrap(), lock, "the command line");
        assert_eq!(inputs(&args, &cell, &env).unwrap(), lock);
        let mut budget = 10;
        tree_stamp(&dep, &mut std::hash::DefaultHasher::new(), &mut budget);
        assert_eq!(budget, 7, "three files outside target/");
        let mut budget = 2;
        tree_stamp(&dep, &mut std::hash::DefaultHasher::new(), &mut budget);
        assert_eq!(budget, 0, "the budget is spent before the third file");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_record_is_replayed_only_while_what_it_links_against_is_there() {
        let root = scratch("record");
        let rlib = root.join("libsaekit-0123.rlib");
        std::fs::write(&rlib, "rlib").unwrap();
        let rustc = std::env::current_exe().unwrap();
        let record = Record {
            key: "k".into(),
            program: rustc,
            args: [
                "--crate-name",
                "ctx",
                "-L",
                &format!("dependency={}", root.display()),
                "--extern",
                &format!("saekit={}", rlib.display()),
                "--extern",
                "proc_macro",
            ]
            .map(String::from)
            .to_vec(),
            env: vec![("PATH".into(), "/usr/bin".into())],
            cwd: root.clone(),
        };
        assert!(record.still_valid());
        let path = root.join(RECORD_FILE);
        record.write(&path);
        let read = Record::read(&path).unwrap();
        assert_eq!((read.key.as_str(), read.args.len()), ("k", 8));
        std::fs::remove_file(&rlib).unwrap();
        assert!(!read.still_valid(), "a dependency's rlib was removed (cargo clean)");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
