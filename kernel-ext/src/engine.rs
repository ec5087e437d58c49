//! The evcxr engine on a thread of its own: it compiles and runs cells, completes and inspects code, and
//! preloads saekit when it starts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Instant;

use evcxr::{CommandContext, EvalCallbacks};
use tokio::sync::oneshot;

use crate::outputs::Outputs;

pub struct Failure {
    pub ename: String,
    pub evalue: String,
    pub traceback: Vec<String>,
}

pub struct Executed {
    /// The cell's value as a MIME bundle (empty when it has none).
    pub data: HashMap<String, String>,
    pub failure: Option<Failure>,
    /// The variables defined before the cell ran (what is lost if its process had to be stopped).
    pub variables_before: Vec<String>,
}

pub struct Completed {
    pub matches: Vec<String>,
    pub start: usize,
    pub end: usize,
}

pub enum Request {
    Execute { code: String, input: Box<dyn Fn(String, bool) -> String + Send>, reply: oneshot::Sender<Executed> },
    Complete { code: String, cursor: usize, reply: oneshot::Sender<Completed> },
    Inspect { code: String, cursor: usize, reply: oneshot::Sender<Option<(String, String)>> },
}

/// Handles shared with the rest of the kernel.
#[derive(Clone)]
pub struct Engine {
    requests: Sender<Request>,
    /// evcxr's child process (the same handle across restarts).
    pub process: Arc<std::sync::Mutex<Option<Arc<std::sync::Mutex<std::process::Child>>>>>,
    /// Set once the preload has run (or failed): the next cell runs without waiting for the start.
    pub ready: Arc<AtomicBool>,
}

impl Engine {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn send(&self, request: Request) {
        let _ = self.requests.send(request);
    }
}

/// Starts the engine thread. `preload` runs once, before any request.
pub fn start(outputs: Arc<Outputs>, preload: Vec<String>) -> Engine {
    let (requests, receiver) = channel();
    let engine =
        Engine { requests, process: Arc::new(std::sync::Mutex::new(None)), ready: Arc::new(AtomicBool::new(false)) };
    let handles = engine.clone();
    std::thread::Builder::new()
        .name("evcxr".into())
        .stack_size(64 << 20)
        .spawn(move || run(receiver, handles, outputs, preload))
        .expect("cannot start the evcxr thread");
    engine
}

fn run(requests: Receiver<Request>, handles: Engine, outputs: Arc<Outputs>, preload: Vec<String>) {
    let started = Instant::now();
    let (mut ctx, channels) = match CommandContext::new() {
        Ok(pair) => pair,
        Err(e) => {
            let message = format!("evcxr could not start: {e}");
            eprintln!("saekit-kernel: {message}");
            handles.ready.store(true, Ordering::SeqCst);
            fail_all(requests, &message);
            return;
        }
    };
    eprintln!("saekit-kernel: evcxr started in {:.2} s", started.elapsed().as_secs_f64());
    *handles.process.lock().unwrap() = Some(ctx.process_handle());
    let stderr = channels.stderr.clone();
    {
        let out = outputs.clone();
        std::thread::spawn(move || {
            for line in channels.stdout.iter() {
                out.stdout_line(line);
            }
        });
        let out = outputs.clone();
        std::thread::spawn(move || {
            for line in channels.stderr.iter() {
                out.stderr_line(line);
            }
        });
    }
    let mut preload_error = None;
    for code in &preload {
        let t = Instant::now();
        let result = ctx.execute(code);
        eprintln!("saekit-kernel: preload `{code}` in {:.2} s", t.elapsed().as_secs_f64());
        if let Err(e) = result {
            preload_error = Some(format!("saekit-kernel could not preload `{code}`: {e}"));
            eprintln!("{}", preload_error.as_deref().unwrap_or_default());
            break;
        }
    }
    eprintln!("saekit-kernel: engine ready in {:.2} s", started.elapsed().as_secs_f64());
    handles.ready.store(true, Ordering::SeqCst);

    let mut display = crate::cells::CellDisplay::default();
    for request in requests {
        match request {
            Request::Execute { code, input, reply } => {
                let callbacks = EvalCallbacks { input_reader: &|req| input(req.prompt.clone(), req.is_password) };
                let before: Vec<String> = ctx.variables_and_types().map(|(n, _)| n.to_string()).collect();
                let mut executed =
                    execute(&mut ctx, &code, callbacks, &outputs, &stderr, preload_error.take(), &mut display);
                if let Some(import) = display.after(&code) {
                    if let Err(e) = ctx.execute(&import) {
                        eprintln!("saekit-kernel: `{import}` failed: {e}");
                    }
                }
                if let Some(failure) = executed.failure.as_mut().filter(|f| f.ename == "ProcessEnded") {
                    failure.traceback.push(if before.is_empty() {
                        "No variables had been defined.".to_string()
                    } else {
                        format!("Variables lost: {}", before.join(", "))
                    });
                }
                executed.variables_before = before;
                let _ = reply.send(executed);
            }
            Request::Complete { code, cursor, reply } => {
                let completed = match ctx.completions(&code, cursor) {
                    Ok(c) => Completed {
                        matches: c.completions.into_iter().map(|c| c.code).collect(),
                        start: c.start_offset,
                        end: c.end_offset,
                    },
                    Err(_) => Completed { matches: Vec::new(), start: cursor, end: cursor },
                };
                let _ = reply.send(completed);
            }
            Request::Inspect { code, cursor, reply } => {
                let _ = reply.send(ctx.hover_at(&code, cursor).ok().filter(|(text, _)| !text.trim().is_empty()));
            }
        }
    }
}

fn fail_all(requests: Receiver<Request>, message: &str) {
    for request in requests {
        match request {
            Request::Execute { reply, .. } => {
                let failure =
                    Failure { ename: "KernelError".into(), evalue: message.into(), traceback: vec![message.into()] };
                let _ =
                    reply.send(Executed { data: HashMap::new(), failure: Some(failure), variables_before: Vec::new() });
            }
            Request::Complete { cursor, reply, .. } => {
                let _ = reply.send(Completed { matches: Vec::new(), start: cursor, end: cursor });
            }
            Request::Inspect { reply, .. } => {
                let _ = reply.send(None);
            }
        }
    }
}

fn execute(
    ctx: &mut CommandContext,
    code: &str,
    mut callbacks: EvalCallbacks,
    outputs: &Outputs,
    stderr: &crossbeam_channel::Receiver<String>,
    preload_error: Option<String>,
    display: &mut crate::cells::CellDisplay,
) -> Executed {
    if let Some(message) = preload_error {
        outputs.stderr_line(message);
    }
    // evcxr's `:opt` sets the level of every crate, which would rebuild saekit's dependencies; here it sets
    // the cells' own (see `cells`).
    if let Some(opt) = crate::cells::opt_command(code) {
        let said = opt.and_then(|(command, said)| ctx.execute(&command).map(|_| said).map_err(|e| e.to_string()));
        return match said {
            Ok(said) => Executed {
                data: HashMap::from([("text/plain".to_string(), said)]),
                failure: None,
                variables_before: Vec::new(),
            },
            Err(e) => Executed {
                data: HashMap::new(),
                failure: Some(Failure { ename: "Error".into(), evalue: e.clone(), traceback: vec![e] }),
                variables_before: Vec::new(),
            },
        };
    }
    let mut result = ctx.execute_with_callbacks(code, &mut callbacks);
    // A cell ending in an immutable variable of its own (`let v = vec![1]; v[0]`) cannot borrow it for
    // `DebugDisplay`'s `&mut self`, and rustc's help points at the `let`, where evcxr does not look for its
    // fallback: the cell is built again without the import (nothing ran: it did not compile), and the
    // import comes back after it.
    if let Err(evcxr::Error::CompilationErrors(errors)) = &result
        && errors.iter().any(|e| e.code() == Some("E0596") || e.message().contains("to be mutable"))
        && let Some(prefixed) = display.without_import(code)
    {
        result = ctx.execute_with_callbacks(&prefixed, &mut callbacks);
    }
    outputs.sync_with_child(|| !stderr.is_empty());
    let (panicked, user_error, cell_stderr) = outputs.cell_outcome();
    let failed = |failure| Executed { data: HashMap::new(), failure: Some(failure), variables_before: Vec::new() };
    match result {
        Ok(_) if panicked => failed(panic_failure(&cell_stderr)),
        Ok(_) if user_error => failed(question_mark_failure(&cell_stderr)),
        Ok(out) => {
            let data = out.content_by_mime_type.into_iter().filter(|(mime, _)| !mime.is_empty()).collect();
            Executed { data, failure: None, variables_before: Vec::new() }
        }
        Err(e) => failed(error_failure(e)),
    }
}

/// A panic, told from the message Rust printed on stderr: `thread '...' panicked at FILE:LINE:COL:` then
/// the message.
fn panic_failure(stderr: &[String]) -> Failure {
    let start = stderr.iter().rposition(|l| l.contains("panicked at"));
    let (location, message) = match start {
        Some(i) => {
            let message: Vec<&str> = stderr[i + 1..]
                .iter()
                .map(String::as_str)
                .take_while(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace:"))
                .collect();
            (stderr[i].clone(), message.join("\n"))
        }
        None => (String::new(), "the cell panicked".to_string()),
    };
    let mut traceback = Vec::new();
    if !location.is_empty() {
        traceback.push(location);
    }
    traceback.push(message.clone());
    traceback.push("Variables defined before this cell are kept.".to_string());
    Failure { ename: "panic".into(), evalue: message, traceback }
}

/// An error returned with `?`: evcxr printed it (Display) on stderr.
fn question_mark_failure(stderr: &[String]) -> Failure {
    let lines: Vec<String> = stderr.iter().filter(|l| !l.trim().is_empty()).cloned().collect();
    let shown: Vec<String> = lines[lines.len().saturating_sub(20)..].to_vec();
    let evalue = if shown.is_empty() { "the cell returned an error".to_string() } else { shown.join("\n") };
    let mut traceback = shown;
    traceback.push("The cell returned this error with `?`; variables defined before it are kept.".to_string());
    Failure { ename: "Error".into(), evalue, traceback }
}

fn error_failure(error: evcxr::Error) -> Failure {
    match error {
        evcxr::Error::CompilationErrors(errors) => {
            let mut traceback = Vec::new();
            for error in &errors {
                let code = error.code().map(|c| format!("[{c}]")).unwrap_or_default();
                traceback.push(format!("{}{code}: {}", error.level(), error.message()));
                for spanned in error.spanned_messages() {
                    traceback.extend(spanned.lines.iter().cloned());
                    if let Some(span) = &spanned.span {
                        let width = span.end_column.saturating_sub(span.start_column).max(1);
                        traceback.push(format!(
                            "{}{} {}",
                            " ".repeat(span.start_column.saturating_sub(1)),
                            "^".repeat(width),
                            spanned.label
                        ));
                    }
                }
                for help in error.help() {
                    traceback.push(format!("help: {help}"));
                }
                if let Some(hint) = error.evcxr_extra_hint() {
                    traceback.push(format!("hint: {hint}"));
                }
            }
            let evalue = errors.iter().map(|e| e.message()).collect::<Vec<_>>().join("\n");
            Failure { ename: "CompilationError".into(), evalue, traceback }
        }
        evcxr::Error::SubprocessTerminated(message) => Failure {
            ename: "ProcessEnded".into(),
            evalue: message.clone(),
            traceback: vec![message, "The process that ran the cells ended; variables defined before are lost.".into()],
        },
        other => {
            let message = other.to_string();
            Failure { ename: "Error".into(), evalue: message.clone(), traceback: vec![message] }
        }
    }
}

/// Lets evcxr's child process find Rust's `libstd-*.so`. Cells are built as shared objects linked to it
/// with a relative run path computed for cargo's `deps/` directory, while evcxr loads the copy one level
/// up; the path only happens to work when the build directory and the toolchain share no parent but `/`
/// (a build dir under `~/.cache` with rustup under `~/.rustup` breaks it). The child inherits this.
pub fn prepare_child_env() {
    let output = |args: &[&str]| {
        std::process::Command::new("rustc")
            .args(args)
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .unwrap_or_default()
    };
    let sysroot = output(&["--print", "sysroot"]).trim().to_string();
    let host = output(&["-vV"]).lines().find_map(|l| l.strip_prefix("host: ").map(str::to_string)).unwrap_or_default();
    if sysroot.is_empty() || host.is_empty() {
        return;
    }
    let lib = format!("{sysroot}/lib/rustlib/{host}/lib");
    let path = match std::env::var("LD_LIBRARY_PATH") {
        Ok(existing) if !existing.is_empty() => format!("{lib}:{existing}"),
        _ => lib,
    };
    // SAFETY: called before evcxr starts any thread or process.
    unsafe { std::env::set_var("LD_LIBRARY_PATH", path) };
}
