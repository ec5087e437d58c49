//! What a spare must share with the kernel that claims it: the binary, the saekit sources, the toolchain
//! and build settings ([`Fingerprint`]), and how the launcher's environment replaces the spare's.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------------------
// The environment a process was started with

/// The environment as the process was started (before the kernel set its own variables), or as the
/// launcher had it once this process was claimed: what a spare started from here inherits.
pub(super) static STARTED_ENV: Mutex<Option<Vec<(String, String)>>> = Mutex::new(None);

/// Records the environment before the kernel changes it; called first thing.
pub fn remember_started_env() {
    *STARTED_ENV.lock().unwrap() = Some(utf8_env());
}

pub(super) fn started_env() -> Vec<(String, String)> {
    STARTED_ENV.lock().unwrap().clone().unwrap_or_else(utf8_env)
}

pub(super) fn utf8_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> =
        std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect();
    env.sort();
    env
}

/// What a spare must share with a launcher to serve it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Fingerprint {
    protocol: u32,
    /// The kernel binary: path, size and modification time.
    exe: String,
    /// The saekit crate that is preloaded, and the state of its sources.
    saekit: String,
    /// `cargo`, `rustc` and the linkers evcxr looks for (mold, lld), as found on `PATH`.
    tools: Vec<String>,
    /// The build-related variables that are set.
    build_env: Vec<(String, String)>,
}

impl Fingerprint {
    pub fn of(env: &[(String, String)]) -> Fingerprint {
        let exe = std::env::current_exe().ok();
        let exe = match exe.as_ref().and_then(|p| Some((p, std::fs::metadata(p).ok()?))) {
            Some((path, meta)) => {
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                format!("{} {} {modified}", path.display(), meta.len())
            }
            None => String::new(),
        };
        let get = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let crate_path = match get("SAEKIT_CRATE_PATH") {
            Some(p) => PathBuf::from(p),
            None => crate::default_crate_path(),
        };
        let crate_path = crate_path.canonicalize().unwrap_or(crate_path);
        let path = get("PATH").unwrap_or("");
        let tools = ["cargo", "rustc", "mold", "lld"].iter().map(|tool| find_on_path(path, tool)).collect();
        let build_env = env
            .iter()
            .filter(|(k, _)| is_build_variable(k) && k != "EVCXR_TMPDIR" && k != "EVCXR_IS_RUNTIME")
            .cloned()
            .collect();
        Fingerprint { protocol: PROTOCOL, exe, saekit: slots::source_stamp(&crate_path), tools, build_env }
    }

    /// What differs from `theirs`, in words; empty when this spare can serve them.
    pub fn differences(&self, theirs: &Fingerprint) -> Vec<String> {
        let mut why = Vec::new();
        if self.protocol != theirs.protocol {
            why.push(format!("claim protocol {} vs {}", self.protocol, theirs.protocol));
        }
        if self.exe != theirs.exe {
            why.push(format!("kernel binary changed ({} vs {})", self.exe, theirs.exe));
        }
        if self.saekit != theirs.saekit {
            why.push(format!("saekit sources changed ({} vs {})", self.saekit, theirs.saekit));
        }
        if self.tools != theirs.tools {
            why.push(format!("toolchain on PATH {:?} vs {:?}", self.tools, theirs.tools));
        }
        if self.build_env != theirs.build_env {
            let keys = |env: &[(String, String)]| env.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
            let mut names: Vec<String> = keys(&self.build_env);
            names.extend(keys(&theirs.build_env));
            names.sort();
            names.dedup();
            names.retain(|n| {
                let a = self.build_env.iter().find(|(k, _)| k == n);
                let b = theirs.build_env.iter().find(|(k, _)| k == n);
                a != b
            });
            why.push(format!("build settings differ: {}", names.join(", ")));
        }
        why
    }
}

pub(super) fn is_build_variable(key: &str) -> bool {
    BUILD_VARIABLES.contains(&key) || BUILD_PREFIXES.iter().any(|p| key.starts_with(p))
}

pub(super) fn find_on_path(path: &str, tool: &str) -> String {
    let found = crate::cells::executables_on(path.as_ref(), tool).next();
    found.map(|c| c.canonicalize().unwrap_or(c).display().to_string()).unwrap_or_default()
}

/// The changes that make a spare's environment the launcher's: variables to set, and to remove.
/// The kernel's own variables are left alone.
pub fn env_changes(ours: &[(String, String)], theirs: &[(String, String)]) -> (Vec<(String, String)>, Vec<String>) {
    let own = |k: &str| OWN_VARIABLES.contains(&k) || k.is_empty() || k.contains('=') || k.contains('\0');
    let set = theirs
        .iter()
        .filter(|(k, v)| !own(k) && !v.contains('\0') && !ours.iter().any(|(ok, ov)| ok == k && ov == v))
        .cloned()
        .collect();
    let unset =
        ours.iter().filter(|(k, _)| !own(k) && !theirs.iter().any(|(tk, _)| tk == k)).map(|(k, _)| k.clone()).collect();
    (set, unset)
}
