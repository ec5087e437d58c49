//! How evcxr builds each cell: the linker, and the cell crate's own optimisation.
//!
//! Every cell is a new crate (`ctx`) that cargo builds and links, with saekit and all of its dependencies,
//! into a shared object. Measured in #24 (2 cores, load 5-7; `bench/kernel_latency.py` has the whole cell):
//! - the linker: rustc's own `rust-lld`, the default since Rust 1.90 (evcxr's `system`), linked a trivial
//!   cell in 380 ms, Debian's lld 14 in 450 ms and mold 1.10 in 780 ms. evcxr picks mold whenever it is on
//!   `PATH`, so the kernel turns it back to `system` (free: mold changes no build flag). Debian's lld, which
//!   evcxr picks when mold is absent, is left alone: it changes the flags every crate is built with, so
//!   leaving it would rebuild saekit's dependencies. `SAEKIT_KERNEL_LINKER` overrides all of this.
//! - the cell crate's optimisation: evcxr builds cells (and everything else) at opt-level 2. At 0, rustc
//!   alone took 530 ms instead of 680 ms for a trivial cell, but whole cells in one kernel, alternating
//!   `:opt 0` and `:opt 2`, showed no gain through the noise (`x + 1` 1.84 s vs 1.70 s, a dataset card
//!   1.47 s vs 1.62 s, load 4), and code written in cells would run unoptimised. So cells stay at 2, set in
//!   a per-package profile in a cargo config file above the build slots ([`write_cell_profile`]), which
//!   `:opt N` overrides for the cell crate alone: saekit and its dependencies are not rebuilt (evcxr's own
//!   `:opt` would rebuild every dependency at that level).
//! - not levers: codegen-units=1 (990 ms, no parallel codegen) and incremental off (740 ms); cargo's own
//!   check of 330 packages costs ~450 ms per cell whatever the settings.

use std::path::Path;

/// Overrides evcxr's choice of linker: `mold`, `lld` or `system`.
pub const LINKER_ENV: &str = "SAEKIT_KERNEL_LINKER";

/// The cargo variable for `[profile.dev.package.ctx] opt-level` (it overrides the config file's value).
pub const CELL_OPT_LEVEL_ENV: &str = "CARGO_PROFILE_DEV_PACKAGE_ctx_OPT_LEVEL";

/// The cell crate's profile, as a cargo config file.
const CELL_PROFILE: &str = "\
# Written by saekit-kernel (kernel-ext/src/cells.rs): the profile of the crate evcxr builds for each cell.
# saekit and its dependencies keep evcxr's profile; `:opt N` in a notebook sets the cells' level alone.
[profile.dev.package.ctx]
opt-level = 2
";

/// Writes the cell crate's profile where cargo finds it for every build slot under `slots`:
/// `slots/.cargo/config.toml` (cargo merges the config files of the build directory's parents; evcxr writes
/// the slot's own). A failure only means cells are built at evcxr's level, so it is reported, not fatal.
pub fn write_cell_profile(slots: &Path) {
    let path = slots.join(".cargo").join("config.toml");
    if std::fs::read_to_string(&path).is_ok_and(|text| text == CELL_PROFILE) {
        return;
    }
    let written =
        std::fs::create_dir_all(path.parent().unwrap_or(slots)).and_then(|_| std::fs::write(&path, CELL_PROFILE));
    if let Err(e) = written {
        eprintln!("saekit-kernel: cannot write {} ({e}): cells are built at evcxr's opt-level", path.display());
    }
}

/// The cells to run before the preload: the evcxr command that applies [`LINKER_ENV`] when it asks for a
/// linker that is there (a linker asked for but missing is said on stderr, and evcxr's choice stays).
pub fn linker_preload() -> Vec<String> {
    let asked = std::env::var(LINKER_ENV).unwrap_or_default();
    match linker_command_for(asked.trim(), &found) {
        Ok(command) => command.into_iter().collect(),
        Err(why) => {
            eprintln!("saekit-kernel: {why}");
            Vec::new()
        }
    }
}

fn linker_command_for(asked: &str, found: &dyn Fn(&str) -> bool) -> Result<Option<String>, String> {
    match asked {
        // evcxr's choice, except mold (slower here than rustc's own lld).
        "" | "auto" if found("mold") => Ok(Some(":linker system".into())),
        "" | "auto" => Ok(None),
        "system" => Ok(Some(":linker system".into())),
        "mold" | "lld" if found(asked) => Ok(Some(format!(":linker {asked}"))),
        "mold" | "lld" => Err(format!("{LINKER_ENV}={asked}, but `{asked}` is not on PATH: cells use evcxr's choice")),
        other => Err(format!("{LINKER_ENV}={other} is not one of mold, lld, system: cells use evcxr's choice")),
    }
}

/// What `:opt` does in this kernel: the cells' opt-level as a build variable for the cell crate alone
/// (`None` when `code` is not `:opt`; `Err` for a level cargo does not take).
pub fn opt_command(code: &str) -> Option<Result<(String, String), String>> {
    let rest = code.trim().strip_prefix(":opt")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let level = match rest.trim() {
        "" => "2", // `:opt` alone: optimised again
        level @ ("0" | "1" | "2" | "3" | "s" | "z") => level,
        other => return Some(Err(format!("`:opt {other}`: the level is one of 0, 1, 2, 3, s, z"))),
    };
    Some(Ok((
        format!(":build_env {CELL_OPT_LEVEL_ENV}={level}"),
        format!("cells are built at opt-level {level} (saekit and its dependencies stay as they are)"),
    )))
}

/// Whether `tool` is an executable on `PATH` (as evcxr looks for mold and lld).
pub fn found(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asked_linker_is_used_only_when_it_is_there() {
        let only_mold = |tool: &str| tool == "mold";
        let nothing = |_: &str| false;
        assert_eq!(linker_command_for("", &nothing), Ok(None));
        assert_eq!(linker_command_for("", &|tool: &str| tool == "lld"), Ok(None));
        // evcxr would pick mold, which links cells slower than rustc's own lld.
        assert_eq!(linker_command_for("", &only_mold), Ok(Some(":linker system".into())));
        assert_eq!(linker_command_for("auto", &only_mold), Ok(Some(":linker system".into())));
        assert_eq!(linker_command_for("system", &only_mold), Ok(Some(":linker system".into())));
        assert_eq!(linker_command_for("mold", &only_mold), Ok(Some(":linker mold".into())));
        assert!(linker_command_for("lld", &only_mold).unwrap_err().contains("not on PATH"));
        assert!(linker_command_for("gold", &only_mold).unwrap_err().contains("not one of"));
    }

    #[test]
    fn opt_sets_the_cell_crates_level_only() {
        assert_eq!(opt_command("x + 1"), None);
        assert_eq!(opt_command(":optional"), None);
        let (command, said) = opt_command(" :opt 1 ").unwrap().unwrap();
        assert_eq!(command, ":build_env CARGO_PROFILE_DEV_PACKAGE_ctx_OPT_LEVEL=1");
        assert!(said.contains("opt-level 1"));
        assert_eq!(opt_command(":opt").unwrap().unwrap().0, ":build_env CARGO_PROFILE_DEV_PACKAGE_ctx_OPT_LEVEL=2");
        assert_eq!(opt_command(":opt s").unwrap().unwrap().0, ":build_env CARGO_PROFILE_DEV_PACKAGE_ctx_OPT_LEVEL=s");
        assert!(opt_command(":opt 9").unwrap().is_err());
    }

    #[test]
    fn the_cell_profile_is_written_above_the_slots_once() {
        let slots = std::env::temp_dir().join(format!("saekit-cells-{}", std::process::id()));
        write_cell_profile(&slots);
        let path = slots.join(".cargo/config.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("[profile.dev.package.ctx]\nopt-level = 2\n"));
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_cell_profile(&slots);
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), modified);
        std::fs::remove_dir_all(&slots).unwrap();
    }
}
