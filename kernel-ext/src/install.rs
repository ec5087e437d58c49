//! `saekit-kernel install`: the kernelspec, and saekit built once into a persistent build slot.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::slots;

pub fn install(args: &[String]) -> Result<()> {
    let mut prefix: Option<PathBuf> = None;
    let mut name = "saekit".to_string();
    let mut display_name = "Rust (saekit)".to_string();
    let mut prebuild_too = true;
    let mut spare_too = crate::spare::enabled();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--user" => prefix = None,
            "--prefix" | "--sys-prefix" => {
                let value = if args[i] == "--sys-prefix" {
                    std::env::var_os("VIRTUAL_ENV")
                        .map(PathBuf::from)
                        .context("--sys-prefix needs an active virtualenv")?
                } else {
                    i += 1;
                    PathBuf::from(args.get(i).context("--prefix needs a directory")?)
                };
                prefix = Some(value);
            }
            "--name" => {
                i += 1;
                name = args.get(i).context("--name needs a value")?.clone();
            }
            "--display-name" => {
                i += 1;
                display_name = args.get(i).context("--display-name needs a value")?.clone();
            }
            "--no-prebuild" => prebuild_too = false,
            "--no-spare" => spare_too = false,
            other => bail!("unknown option {other:?} (see `saekit-kernel --help`)"),
        }
        i += 1;
    }
    let kernels = match prefix {
        Some(p) => p.join("share").join("jupyter").join("kernels"),
        None => user_data_dir().join("kernels"),
    };
    let dir = kernels.join(&name);
    write_kernelspec(&dir, &display_name)?;
    println!("installed kernelspec {name:?} in {}", dir.display());
    // A running spare made by this kernel binary from these saekit sources means saekit is built: keep it.
    // One from an older build or other sources is stopped (it also holds a build slot).
    if let Some(pid) = crate::spare::running_and_current() {
        println!("a spare kernel (pid {pid}) built from these sources is running: nothing to build");
        return Ok(());
    }
    if crate::spare::stop() {
        println!("stopped the running spare kernel (another build or other sources)");
    }
    if prebuild_too {
        prebuild()?;
    }
    if spare_too {
        if let Some(pid) = crate::spare::start_detached()? {
            println!(
                "started a spare kernel (pid {pid}): it gets ready in about 20 s and waits for the next notebook; \
                 stop it with `saekit-kernel spare --stop`"
            );
        }
    }
    Ok(())
}

/// Jupyter's per-user data directory: `$JUPYTER_DATA_DIR`, else `$XDG_DATA_HOME/jupyter`, else
/// `~/.local/share/jupyter`.
fn user_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("JUPYTER_DATA_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("jupyter");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local").join("share").join("jupyter")
}

fn write_kernelspec(dir: &Path, display_name: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exe = std::env::current_exe()?.canonicalize()?;
    let crate_path = crate::saekit_crate_path();
    let mut env = serde_json::Map::new();
    env.insert("SAEKIT_CRATE_PATH".into(), json!(crate_path));
    if let Some(features) = std::env::var_os("SAEKIT_FEATURES") {
        env.insert("SAEKIT_FEATURES".into(), json!(features.to_string_lossy()));
    }
    if let Some(home) = std::env::var_os("SAEKIT_KERNEL_HOME") {
        env.insert("SAEKIT_KERNEL_HOME".into(), json!(PathBuf::from(home)));
    }
    let spec = json!({
        "argv": [exe, "--connection-file", "{connection_file}"],
        "display_name": display_name,
        "language": "rust",
        "interrupt_mode": "message",
        "env": env,
        "metadata": {"debugger": false},
    });
    std::fs::write(dir.join("kernel.json"), serde_json::to_string_pretty(&spec)? + "\n")?;
    std::fs::write(dir.join("logo-svg.svg"), LOGO_SVG)?;
    std::fs::write(dir.join("logo-32x32.png"), LOGO_32)?;
    std::fs::write(dir.join("logo-64x64.png"), LOGO_64)?;
    Ok(())
}

/// Builds saekit into a free build slot (the first kernel's), with cargo's progress on stderr.
pub fn prebuild() -> Result<PathBuf> {
    let home = crate::kernel_home();
    let crate_path = crate::saekit_crate_path();
    let stamp = slots::source_stamp(&crate_path);
    let slot = slots::acquire(&home, &stamp)?;
    // SAFETY: set before evcxr starts its threads and child.
    unsafe { std::env::set_var("EVCXR_TMPDIR", &slot.dir) };
    crate::engine::prepare_child_env();
    crate::cell_build::serve_as_cargo(&slot.dir);
    crate::cells::write_cell_profile(slot.dir.parent().unwrap_or(&slot.dir));
    if slot.built_stamp().as_deref() == Some(stamp.as_str()) {
        eprintln!("saekit is already built in {} from these sources", slot.dir.display());
        return Ok(slot.dir.clone());
    }
    eprintln!(
        "building saekit ({}) into {} so that kernels start in seconds; the first time this takes minutes",
        crate_path.display(),
        slot.dir.display()
    );
    let start = Instant::now();
    let (mut ctx, channels) = evcxr::CommandContext::new().map_err(|e| anyhow::anyhow!("evcxr: {e}"))?;
    std::thread::spawn(move || {
        for line in channels.stderr.iter() {
            eprintln!("{line}");
        }
    });
    std::thread::spawn(move || for _ in channels.stdout.iter() {});
    // The kernel's linker too: lld changes the flags every crate is built with.
    let mut cells = crate::cells::linker_preload();
    cells.extend([
        crate::saekit_dep(&crate_path),
        "use saekit::prelude::*;".to_string(),
        "saekit::VERSION".to_string(),
    ]);
    for cell in &cells {
        ctx.execute(cell).map_err(|e| anyhow::anyhow!("building saekit failed at `{cell}`: {e}"))?;
    }
    slot.mark_built(&stamp)?;
    eprintln!("saekit built in {:.0} s ({})", start.elapsed().as_secs_f64(), slot.dir.display());
    Ok(slot.dir.clone())
}

const LOGO_SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="12" fill="#b7410e"/><g fill="#fff"><rect x="12" y="40" width="8" height="12"/><rect x="24" y="30" width="8" height="22"/><rect x="36" y="20" width="8" height="32"/><rect x="48" y="12" width="6" height="40"/></g></svg>"##;

/// The kernel's logos (drawn once by `scripts/make_logos.py`).
const LOGO_32: &[u8] = include_bytes!("../logo/logo-32x32.png");
const LOGO_64: &[u8] = include_bytes!("../logo/logo-64x64.png");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logos_are_pngs_of_their_size() {
        for (png, size) in [(LOGO_32, 32u32), (LOGO_64, 64)] {
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            assert_eq!(&png[12..16], b"IHDR");
            let (w, h) = (
                u32::from_be_bytes(png[16..20].try_into().unwrap()),
                u32::from_be_bytes(png[20..24].try_into().unwrap()),
            );
            assert_eq!((w, h), (size, size));
        }
    }

    #[test]
    fn kernelspec_names_the_binary_and_message_interrupts() {
        let dir = std::env::temp_dir().join(format!("saekit-kernelspec-{}", std::process::id()));
        write_kernelspec(&dir, "Rust (saekit)").unwrap();
        let spec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("kernel.json")).unwrap()).unwrap();
        assert_eq!(spec["argv"][1], "--connection-file");
        assert_eq!(spec["argv"][2], "{connection_file}");
        assert_eq!(spec["interrupt_mode"], "message");
        assert_eq!(spec["language"], "rust");
        assert!(spec["env"]["SAEKIT_CRATE_PATH"].as_str().unwrap().ends_with("crate"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
