//! How evcxr builds each cell: the linker, and the cell crate's own optimisation.
//!
//! Every cell is a new crate (`ctx`) that cargo builds and links, with saekit and all of its dependencies,
//! into a shared object. Measured in #24 (2 cores, load 5-7; `bench/kernel_latency.py` has the whole cell):
//! - the linker: rustc's own `rust-lld`, the default since Rust 1.90 (evcxr's `system`), linked a trivial
//!   cell in 380 ms, Debian's lld 14 in 450 ms and mold 1.10 in 780 ms. evcxr picks mold whenever it is on
//!   `PATH`, so the kernel turns it back to `system` (free: mold changes no build flag). Debian's lld, which
//!   evcxr picks when mold is absent, is left alone: it changes the flags every crate is built with, so
//!   leaving it would rebuild saekit's dependencies. `SAEKIT_KERNEL_LINKER` overrides all of this. GNU ld
//!   for the cell crate alone (`-C linker-features=-lld`) was tried after cells stopped going through cargo:
//!   `x + 1` p50 0.33 s against 0.38 s, but a dataset card 2.05 s against 0.90 s (its link pulls in much of
//!   saekit, where lld's threads win), so cells keep lld.
//! - the cell crate's optimisation: evcxr builds cells (and everything else) at opt-level 2. At 0, rustc
//!   alone took 530 ms instead of 680 ms for a trivial cell, but whole cells in one kernel, alternating
//!   `:opt 0` and `:opt 2`, showed no gain through the noise (`x + 1` 1.84 s vs 1.70 s, a dataset card
//!   1.47 s vs 1.62 s, load 4), and code written in cells would run unoptimised. So cells stay at 2, set in
//!   a per-package profile in a cargo config file above the build slots ([`write_cell_profile`]), which
//!   `:opt N` overrides for the cell crate alone: saekit and its dependencies are not rebuilt (evcxr's own
//!   `:opt` would rebuild every dependency at that level).
//! - not levers: codegen-units=1 (990 ms, no parallel codegen) and incremental off (740 ms); cargo's own
//!   check of 330 packages costs ~450 ms per cell whatever the settings (`cell_build` skips it when only
//!   the cell changed).

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

/// The name under which cells import `DebugDisplay` (see [`CellDisplay`]).
const DEBUG_DISPLAY_AS: &str = "SaekitDebugDisplay";

/// The crate of what the kernel adds to cells (`kernel-ext/cells/lib.rs`), written out by [`write_cells_crate`].
const CELLS_CRATE_NAME: &str = "saekit_cells";
const CELLS_CRATE_SOURCE: &str = include_str!("../cells/lib.rs");

/// Writes the cells' crate under `home` (only what changed, so cargo does not rebuild it for nothing) and
/// returns the evcxr `:dep` line that brings it into cells.
pub fn write_cells_crate(home: &Path) -> std::io::Result<String> {
    let dir = home.join(CELLS_CRATE_NAME);
    let manifest = format!(
        "# Written by saekit-kernel from kernel-ext/cells/lib.rs: what the kernel adds to every cell.\n\
         [package]\nname = \"{CELLS_CRATE_NAME}\"\nversion = \"{}\"\nedition = \"2024\"\n\n\
         [lib]\npath = \"src/lib.rs\"\n",
        env!("CARGO_PKG_VERSION")
    );
    for (path, text) in [(dir.join("Cargo.toml"), manifest.as_str()), (dir.join("src/lib.rs"), CELLS_CRATE_SOURCE)] {
        if std::fs::read_to_string(&path).is_ok_and(|have| have == text) {
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap_or(&dir))?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text)?;
        std::fs::rename(&partial, &path)?;
    }
    Ok(format!(":dep {CELLS_CRATE_NAME} = {{ path = {:?} }}", dir.display().to_string()))
}

/// The `use` line that gives a cell's plain values (numbers, strings, `Vec`s, ...) an `evcxr_display` of
/// their own, or (`false`) takes it away again.
pub fn debug_display_import(on: bool) -> String {
    let name = if on { "DebugDisplay" } else { "NoDebugDisplay" };
    format!("use {CELLS_CRATE_NAME}::{name} as {DEBUG_DISPLAY_AS};")
}

/// One build per cell instead of two, for cells that end in a plain value.
///
/// evcxr ends a cell whose last line is an expression with `(expr).evcxr_display();` and, when that does
/// not compile (any type without a rich display: `x + 1`), builds the cell again printing the value with
/// `:fmt`'s format, `{:?}` unless changed. On 2 cores each build is 0.5-0.7 s, so a trivial cell cost
/// 1.2-1.5 s where one build would do. `DebugDisplay` (`kernel-ext/cells`), imported by the preload, prints the same
/// `{:?}` text in the first build. `:fmt` with another format, or `:types`, must reach evcxr's fallback,
/// so while either is in effect the import is swapped for an empty trait of the same name (evcxr keeps
/// one item per name) and put back when both are at their defaults. `:clear` drops it with the prelude.
#[derive(Debug)]
pub struct CellDisplay {
    format: String,
    types: bool,
    /// Whether the import in effect is `DebugDisplay` (false: the empty trait).
    imported: bool,
    /// After `:clear` (which drops the prelude and the import) the kernel leaves cells to evcxr alone.
    cleared: bool,
}

impl Default for CellDisplay {
    /// As the preload leaves it: evcxr's defaults, with `DebugDisplay` imported.
    fn default() -> Self {
        CellDisplay { format: "{:?}".into(), types: false, imported: true, cleared: false }
    }
}

impl CellDisplay {
    /// `code` with the import taken away first, for a cell that failed to build because of it (`None` when
    /// it is not in effect); [`CellDisplay::after`] then puts it back.
    pub fn without_import(&mut self, code: &str) -> Option<String> {
        if self.cleared || !self.imported {
            return None;
        }
        self.imported = false;
        Some(format!("{}\n{code}", debug_display_import(false)))
    }

    /// Follows the evcxr commands of a cell that ran, and returns the `use` line to run next when the
    /// import must change.
    pub fn after(&mut self, code: &str) -> Option<String> {
        for line in code.lines().map(str::trim) {
            let (command, args) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            match command {
                ":fmt" => self.format = if args.trim().is_empty() { "{:?}".into() } else { args.trim().into() },
                ":types" => self.types = !self.types,
                ":clear" => self.cleared = true,
                _ => {}
            }
        }
        let wanted = self.format == "{:?}" && !self.types;
        if self.cleared || wanted == self.imported {
            return None;
        }
        self.imported = wanted;
        Some(debug_display_import(wanted))
    }
}

/// Whether `tool` is an executable on `PATH` (as evcxr looks for mold and lld).
pub fn found(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| executables_on(&path, tool).next().is_some())
}

/// Every executable file named `tool` in the directories of `path` (a `PATH` value), in order; empty entries
/// are skipped rather than read as the working directory.
pub fn executables_on<'a>(path: &'a std::ffi::OsStr, tool: &'a str) -> impl Iterator<Item = std::path::PathBuf> + 'a {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path).filter(|dir| !dir.as_os_str().is_empty()).map(move |dir| dir.join(tool)).filter(
        |candidate| std::fs::metadata(candidate).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0),
    )
}

/// The cells' crate, compiled into the tests as it is in a cell (a `Render`-like trait of the test's own in
/// scope beside it).
#[cfg(test)]
#[allow(dead_code)]
#[path = "../cells/lib.rs"]
mod cells_crate;

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
    fn plain_values_get_a_display_and_rich_ones_keep_theirs() {
        #[allow(unused_imports)]
        use super::cells_crate::DebugDisplay as SaekitDebugDisplay;
        use std::cell::Cell;
        trait Render {
            fn evcxr_display(&self);
        }
        #[derive(Debug, Default)]
        struct Rich(Cell<u32>);
        impl Render for Rich {
            fn evcxr_display(&self) {
                self.0.set(self.0.get() + 1);
            }
        }
        impl<T: Render + ?Sized> Render for &mut T {
            fn evcxr_display(&self) {
                (**self).evcxr_display()
            }
        }
        impl<T: Render + ?Sized> Render for Box<T> {
            fn evcxr_display(&self) {
                (**self).evcxr_display()
            }
        }
        let rich = Rich::default();
        (rich).evcxr_display();
        (&rich).evcxr_display();
        (Box::new(Rich::default())).evcxr_display();
        let mut boxed = Box::new(&rich);
        (&mut boxed).evcxr_display();
        assert_eq!(rich.0.get(), 3, "a Render value, also behind &mut and Box, keeps its display");
        // Plain values print their Debug text (to stdout, as evcxr reads it).
        (1 + 1).evcxr_display();
        (vec![Some("a")]).evcxr_display();
        ([1u8; 2]).evcxr_display();
    }

    #[test]
    fn the_cells_crate_is_written_once() {
        let home = std::env::temp_dir().join(format!("saekit-cells-crate-{}", std::process::id()));
        let dep = write_cells_crate(&home).unwrap();
        assert!(dep.starts_with(":dep saekit_cells = { path = "), "{dep}");
        let lib = home.join("saekit_cells/src/lib.rs");
        assert_eq!(std::fs::read_to_string(&lib).unwrap(), CELLS_CRATE_SOURCE);
        let manifest = std::fs::read_to_string(home.join("saekit_cells/Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"saekit_cells\""), "{manifest}");
        let modified = std::fs::metadata(&lib).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(write_cells_crate(&home).unwrap(), dep);
        assert_eq!(std::fs::metadata(&lib).unwrap().modified().unwrap(), modified);
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn the_debug_display_import_follows_fmt_and_types() {
        let mut display = CellDisplay::default();
        assert_eq!(display.after("x + 1"), None);
        assert_eq!(display.after(":fmt {:#?}"), Some(debug_display_import(false)));
        assert_eq!(display.after("vec![1]"), None);
        assert_eq!(display.after(":fmt"), Some(debug_display_import(true)));
        assert_eq!(display.after(":types"), Some(debug_display_import(false)));
        assert_eq!(display.after(":fmt {:?}"), None, "types are still on");
        assert_eq!(display.after("let y = 2;\n:types\ny"), Some(debug_display_import(true)));
        assert_eq!(display.after(":fmt   {:?}  "), None);
        assert_eq!(
            display.without_import("let v = vec![1];\nv[0]").unwrap(),
            format!("{}\nlet v = vec![1];\nv[0]", debug_display_import(false))
        );
        assert_eq!(display.without_import("v[0]"), None, "already taken away");
        assert_eq!(
            display.after("let v = vec![1];\nv[0]"),
            Some(debug_display_import(true)),
            "and put back after the cell"
        );
        assert_eq!(display.after(":clear"), None);
        assert_eq!(display.after(":fmt {:x}"), None, "after :clear the kernel leaves cells to evcxr");
        assert_eq!(debug_display_import(true), "use saekit_cells::DebugDisplay as SaekitDebugDisplay;");
        assert_eq!(debug_display_import(false), "use saekit_cells::NoDebugDisplay as SaekitDebugDisplay;");
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
