//! The Jupyter side: the five ZeroMQ sockets, and a handler for each request the protocol defines.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use jupyter_protocol::{ConnectionInfo, JupyterMessage};
use jupyter_zmq_client::{
    KernelShellConnection, SubscriptionEvent, create_kernel_control_connection, create_kernel_heartbeat_connection,
    create_kernel_iopub_xpub_connection, create_kernel_shell_connection, create_kernel_stdin_connection,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::engine::{self, Engine, Executed, Request};
use crate::history::History;
use crate::outputs::{self, Outputs};
use crate::protocol::{broadcast, byte_offset, char_offset, content, message, mime_data};
use crate::syntax::{Completeness, completeness};
use crate::{cells, child, slots, spare};

/// How long an interrupt waits for cancelled saekit jobs to let the cell finish before stopping its process.
const INTERRUPT_GRACE: Duration = Duration::from_secs(3);

/// Runs the kernel for the connection file Jupyter gave: in a waiting spare kernel when one is ready for
/// this environment (this process then only relays its log and lives as long as it does), else here.
pub fn run(connection_file: PathBuf) -> Result<()> {
    let text = std::fs::read_to_string(&connection_file)
        .with_context(|| format!("cannot read the connection file {}", connection_file.display()))?;
    let info: ConnectionInfo = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a Jupyter connection file", connection_file.display()))?;
    if let Some(spare) = spare::claim(&text) {
        return spare::relay(spare);
    }
    let prepared = prepare()?;
    spare::replace_when_idle(&prepared);
    serve_prepared(prepared, info)
}

/// A kernel whose engine is starting (or started), not yet bound to a Jupyter connection.
pub struct Prepared {
    _slot: slots::Slot,
    pub slot_dir: PathBuf,
    socket_path: PathBuf,
    pub outputs: Arc<Outputs>,
    pub engine: Engine,
    iopub_rx: mpsc::UnboundedReceiver<JupyterMessage>,
    rust_version: String,
}

impl Prepared {
    pub fn stopper(&self) -> Stopper {
        Stopper { engine: self.engine.clone(), socket_path: self.socket_path.clone() }
    }
}

/// Stops a prepared kernel's evcxr child process and removes its channel socket, from any thread, before
/// the process exits.
#[derive(Clone)]
pub struct Stopper {
    engine: Engine,
    socket_path: PathBuf,
}

impl Stopper {
    pub fn stop(&self) {
        stop_child(&self.engine);
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// Takes a build slot, opens the channel to evcxr's child and starts the engine, which preloads saekit.
pub fn prepare() -> Result<Prepared> {
    let crate_path = crate::saekit_crate_path();
    let slot = slots::acquire(&crate::kernel_home(), &slots::source_stamp(&crate_path))?;
    let socket_path = std::env::temp_dir().join(format!("saekit-kernel-{}.sock", std::process::id()));
    // SAFETY: no other thread exists yet; evcxr's child process inherits both.
    unsafe {
        std::env::set_var("EVCXR_TMPDIR", &slot.dir);
        std::env::set_var(child::SOCKET_ENV, &socket_path);
    }
    engine::prepare_child_env();
    crate::cell_build::serve_as_cargo(&slot.dir);
    cells::write_cell_profile(slot.dir.parent().unwrap_or(&slot.dir));

    let (iopub_tx, iopub_rx) = mpsc::unbounded_channel();
    let outputs = Outputs::new(iopub_tx);
    outputs::listen(&socket_path, outputs.clone())?;
    capture_own_stderr(outputs.clone());
    // One cell (one compile): the dependency, the prelude, the import that lets plain values display in one
    // build (`cells::CellDisplay`), and a `let`, whose type inference makes
    // rust-analyzer load saekit's whole crate graph now, at start, instead of in the user's first cell.
    // The `?` switches on evcxr's support for `?` in cells, which otherwise costs the first cell that uses
    // it its rich display (evcxr retries it with the plain Debug fallback). A second, trivial cell takes
    // the one-time cost of the first cell compiled in that mode (measured: the user's first cell took
    // ~1.9 s against ~0.9 s for later ones; with this cell, about the same as later ones).
    let cells_dep = cells::write_cells_crate(&crate::kernel_home())
        .with_context(|| format!("cannot write the cells' crate under {}", crate::kernel_home().display()))?;
    let mut preload = cells::linker_preload();
    preload.extend([
        format!(
            "{}\n{}\nuse saekit::prelude::*;\n{}\nlet saekit_version = Ok::<_, saekit::Error>(saekit::VERSION)?;",
            crate::saekit_dep(&crate_path),
            cells_dep,
            cells::debug_display_import(true)
        ),
        "let _ = saekit_version.len();".to_string(),
    ]);
    let engine = engine::start(outputs.clone(), preload);
    let slot_dir = slot.dir.clone();
    Ok(Prepared { _slot: slot, slot_dir, socket_path, outputs, engine, iopub_rx, rust_version: rust_version() })
}

/// Serves Jupyter on `info`'s sockets until shutdown.
pub fn serve_prepared(prepared: Prepared, info: ConnectionInfo) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let Prepared { _slot, slot_dir: _, socket_path, outputs, engine, iopub_rx, rust_version } = prepared;
    let result = runtime.block_on(serve(info, outputs, engine.clone(), iopub_rx, rust_version));
    stop_child(&engine);
    let _ = std::fs::remove_file(&socket_path);
    result
}

/// The kernel's own stderr (where evcxr's cargo builds report "Compiling ...") goes through a pipe, so
/// dependency builds show in the cell that asked for them; everything is still written to the real stderr.
fn capture_own_stderr(outputs: Arc<Outputs>) {
    use std::io::{BufRead, BufReader, Write};
    let Some((read, mut real)) = child::divert(2, child::Direction::Out) else { return };
    let thread = std::thread::spawn(move || {
        for line in BufReader::new(read).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(real, "{line}");
            spare::copy_log_line(&line);
            outputs.kernel_stderr_line(&line);
        }
    });
    *STDERR_THREAD.lock().unwrap() = Some(thread);
}

static STDERR_THREAD: std::sync::Mutex<Option<std::thread::JoinHandle<()>>> = std::sync::Mutex::new(None);

/// Exits the process once what it wrote to stderr has reached the real stderr (and the launcher): the
/// pipe is closed on our side, and the thread copying it gets a moment to finish.
pub fn exit(code: i32) -> ! {
    let thread = STDERR_THREAD.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(thread) = thread {
        // SAFETY: replaces descriptor 2 with /dev/null, which drops our end of the stderr pipe.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
            if null >= 0 {
                libc::dup2(null, 2);
                libc::close(null);
            }
        }
        // A cargo process still running holds the pipe open too: do not wait for it long.
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while !thread.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    std::process::exit(code)
}

fn stop_child(engine: &Engine) {
    if let Some(process) = engine.process.lock().unwrap().as_ref() {
        let _ = process.lock().unwrap().kill();
    }
}

struct Shared {
    outputs: Arc<Outputs>,
    engine: Engine,
    /// Set when an interrupt had to stop the process running a cell.
    killed: AtomicBool,
    rust_version: String,
}

async fn serve(
    info: ConnectionInfo,
    outputs: Arc<Outputs>,
    engine: Engine,
    mut iopub_rx: mpsc::UnboundedReceiver<JupyterMessage>,
    rust_version: String,
) -> Result<()> {
    let session = uuid::Uuid::new_v4().to_string();
    let mut iopub = create_kernel_iopub_xpub_connection(&info, &session).await?;
    let mut shell = create_kernel_shell_connection(&info, &session).await?;
    let mut control = create_kernel_control_connection(&info, &session).await?;
    let stdin = create_kernel_stdin_connection(&info, &session).await?;
    let mut heartbeat = create_kernel_heartbeat_connection(&info).await?;

    tokio::spawn(async move { while heartbeat.single_heartbeat().await.is_ok() {} });
    tokio::spawn(async move {
        loop {
            tokio::select! {
                message = iopub_rx.recv() => match message {
                    Some(message) => { let _ = iopub.send(message).await; }
                    None => break,
                },
                event = iopub.recv_subscription() => {
                    if let Ok(SubscriptionEvent::Subscribe(topic)) = event {
                        let welcome = broadcast("iopub_welcome", json!({"subscription": topic}), None);
                        let _ = iopub.send(welcome).await;
                    }
                }
            }
        }
    });
    let (input_tx, input_rx) = mpsc::unbounded_channel();
    tokio::spawn(serve_stdin(stdin, input_rx));

    let shared = Arc::new(Shared { outputs: outputs.clone(), engine, killed: AtomicBool::new(false), rust_version });
    outputs.publish("status", json!({"execution_state": "starting"}), None);

    let control_shared = shared.clone();
    tokio::spawn(async move {
        loop {
            let Ok(request) = control.read().await else { continue };
            let shutdown = request.header.msg_type == "shutdown_request";
            if let Some(reply) = handle_control(&control_shared, &request).await {
                let _ = control.send(reply).await;
            }
            if shutdown {
                // Give the reply a moment to leave, then go (the child was stopped by the handler).
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Ok(path) = std::env::var(child::SOCKET_ENV) {
                    let _ = std::fs::remove_file(path);
                }
                exit(0);
            }
        }
    });

    let mut state = ShellState { count: 0, history: History::new(std::process::id() as u64), input_tx };
    loop {
        let Some(request) = read_request(&mut shell).await else { continue };
        handle_shell(&shared, &mut state, &mut shell, request).await;
    }
}

/// Reads a shell request, keeping requests that `jupyter-protocol`'s typed parsing refuses (it wants
/// fields clients leave out, such as `n` and `unique` of a history search) as JSON content.
async fn read_request(shell: &mut KernelShellConnection) -> Option<JupyterMessage> {
    use zeromq::SocketRecv;
    let raw = shell.socket.recv().await.ok()?;
    let raw = jupyter_zmq_client::RawMessage::from_multipart(raw, &shell.mac).ok()?;
    if raw.jparts.len() < 4 {
        return None;
    }
    let header: jupyter_protocol::Header = serde_json::from_slice(&raw.jparts[0]).ok()?;
    let parent_header = serde_json::from_slice::<jupyter_protocol::Header>(&raw.jparts[1]).ok();
    let metadata: Value = serde_json::from_slice(&raw.jparts[2]).unwrap_or(Value::Null);
    let body: Value = serde_json::from_slice(&raw.jparts[3]).ok()?;
    let content = jupyter_protocol::JupyterMessageContent::from_type_and_content(&header.msg_type, body.clone())
        .unwrap_or_else(|_| {
            jupyter_protocol::JupyterMessageContent::UnknownMessage(jupyter_protocol::UnknownMessage {
                msg_type: header.msg_type.clone(),
                content: body,
            })
        });
    Some(JupyterMessage {
        zmq_identities: raw.zmq_identities,
        header,
        parent_header,
        metadata,
        content,
        buffers: Vec::new(),
        channel: None,
    })
}

struct ShellState {
    count: u64,
    history: History,
    input_tx: mpsc::UnboundedSender<(JupyterMessage, String, bool, std::sync::mpsc::Sender<String>)>,
}

async fn handle_shell(
    shared: &Shared,
    state: &mut ShellState,
    shell: &mut KernelShellConnection,
    request: JupyterMessage,
) {
    let outputs = &shared.outputs;
    let msg_type = request.header.msg_type.clone();
    let body = content(&request);
    outputs.publish("status", json!({"execution_state": "busy"}), Some(&request));
    let reply = match msg_type.as_str() {
        "kernel_info_request" => Some(("kernel_info_reply", kernel_info(shared))),
        "execute_request" => Some(("execute_reply", execute(shared, state, &request, &body).await)),
        "complete_request" => Some(("complete_reply", complete(shared, &body).await)),
        "inspect_request" => Some(("inspect_reply", inspect(shared, &body).await)),
        "is_complete_request" => {
            let code = body["code"].as_str().unwrap_or("");
            Some((
                "is_complete_reply",
                match completeness(code) {
                    Completeness::Complete => json!({"status": "complete"}),
                    Completeness::Incomplete(indent) => json!({"status": "incomplete", "indent": indent}),
                    Completeness::Invalid => json!({"status": "invalid"}),
                },
            ))
        }
        "history_request" => Some(("history_reply", state.history.reply(&body))),
        "comm_info_request" => Some(("comm_info_reply", json!({"status": "ok", "comms": {}}))),
        "comm_open" => {
            // No comm targets yet: close it so the frontend does not wait.
            let id = body["comm_id"].clone();
            outputs.publish("comm_close", json!({"comm_id": id, "data": {}}), Some(&request));
            None
        }
        _ => None,
    };
    if let Some((reply_type, reply)) = reply {
        let _ = shell.send(message(reply_type, reply, Some(&request))).await;
    }
    outputs.publish("status", json!({"execution_state": "idle"}), Some(&request));
}

async fn execute(shared: &Shared, state: &mut ShellState, request: &JupyterMessage, body: &Value) -> Value {
    let outputs = &shared.outputs;
    let code = body["code"].as_str().unwrap_or("").to_string();
    let silent = body["silent"].as_bool().unwrap_or(false);
    let store_history = body["store_history"].as_bool().unwrap_or(true) && !silent;
    if store_history {
        state.count += 1;
    }
    let count = state.count;
    if !silent {
        outputs.publish("execute_input", json!({"code": code, "execution_count": count}), Some(request));
    }
    outputs.cell_started(request);
    shared.killed.store(false, Ordering::SeqCst);

    let allow_stdin = body["allow_stdin"].as_bool().unwrap_or(false);
    let input_tx = state.input_tx.clone();
    let parent = request.clone();
    let input = Box::new(move |prompt: String, password: bool| -> String {
        if !allow_stdin {
            return String::new();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        if input_tx.send((parent.clone(), prompt, password, tx)).is_err() {
            return String::new();
        }
        rx.recv().unwrap_or_default()
    });
    let (tx, rx) = oneshot::channel();
    shared.engine.send(Request::Execute { code: code.clone(), input, reply: tx });
    let executed = rx.await.unwrap_or_else(|_| Executed {
        variables_before: Vec::new(),
        data: Default::default(),
        failure: Some(engine::Failure {
            ename: "KernelError".into(),
            evalue: "the evcxr engine stopped".into(),
            traceback: vec!["the evcxr engine stopped".into()],
        }),
    });

    let mut plain = None;
    // A cell ending in a statement (`for`, `if` without `else`) has the value `()`: show nothing, as a
    // Python cell ending in `None` does.
    let unit = executed.data.len() == 1 && executed.data.get("text/plain").is_some_and(|p| p.trim() == "()");
    if !executed.data.is_empty() && !silent && !unit {
        let mut data = mime_data(executed.data.iter());
        if !data.contains_key("text/plain") {
            let html = data.get("text/html").and_then(Value::as_str).map(strip_tags).unwrap_or_default();
            data.insert("text/plain".into(), Value::String(html));
        }
        plain = data.get("text/plain").and_then(Value::as_str).map(str::to_string);
        outputs.publish(
            "execute_result",
            json!({"execution_count": count, "data": data, "metadata": {}}),
            Some(request),
        );
    }
    if store_history {
        state.history.record(count, &code, plain);
    }
    let reply = match executed.failure {
        None => json!({"status": "ok", "execution_count": count, "payload": [], "user_expressions": {}}),
        Some(mut failure) => {
            if shared.killed.swap(false, Ordering::SeqCst) {
                let lost = executed.variables_before.join(", ");
                failure.ename = "Interrupted".into();
                failure.evalue = "the cell ignored the interrupt, so its process was stopped".into();
                failure.traceback = vec![
                    "Interrupted: saekit jobs were asked to cancel, but the cell was still running after 3 s, so the process running cells was stopped.".into(),
                    if lost.is_empty() { "No variables had been defined.".into() } else { format!("Variables lost: {lost}") },
                ];
            }
            outputs.publish(
                "error",
                json!({"ename": failure.ename, "evalue": failure.evalue, "traceback": failure.traceback}),
                Some(request),
            );
            json!({
                "status": "error", "execution_count": count,
                "ename": failure.ename, "evalue": failure.evalue, "traceback": failure.traceback,
            })
        }
    };
    outputs.cell_finished();
    reply
}

async fn complete(shared: &Shared, body: &Value) -> Value {
    let code = body["code"].as_str().unwrap_or("").to_string();
    let cursor = body["cursor_pos"].as_u64().unwrap_or(code.chars().count() as u64) as usize;
    let byte = byte_offset(&code, cursor);
    let (tx, rx) = oneshot::channel();
    shared.engine.send(Request::Complete { code: code.clone(), cursor: byte, reply: tx });
    let done = rx.await.ok();
    let (matches, start, end) = match done {
        Some(c) => (c.matches, char_offset(&code, c.start), char_offset(&code, c.end)),
        None => (Vec::new(), cursor, cursor),
    };
    json!({"status": "ok", "matches": matches, "cursor_start": start, "cursor_end": end, "metadata": {}})
}

async fn inspect(shared: &Shared, body: &Value) -> Value {
    let code = body["code"].as_str().unwrap_or("").to_string();
    let cursor = body["cursor_pos"].as_u64().unwrap_or(code.chars().count() as u64) as usize;
    let byte = byte_offset(&code, cursor);
    let (tx, rx) = oneshot::channel();
    shared.engine.send(Request::Inspect { code, cursor: byte, reply: tx });
    match rx.await.ok().flatten() {
        Some((text, html)) => json!({
            "status": "ok", "found": true, "metadata": {},
            "data": {"text/plain": text, "text/html": html},
        }),
        None => json!({"status": "ok", "found": false, "data": {}, "metadata": {}}),
    }
}

async fn handle_control(shared: &Arc<Shared>, request: &JupyterMessage) -> Option<JupyterMessage> {
    let body = content(request);
    let reply = match request.header.msg_type.as_str() {
        "kernel_info_request" => ("kernel_info_reply", kernel_info(shared)),
        "interrupt_request" => {
            interrupt(shared).await;
            ("interrupt_reply", json!({"status": "ok"}))
        }
        "shutdown_request" => {
            stop_child(&shared.engine);
            ("shutdown_reply", json!({"status": "ok", "restart": body["restart"].as_bool().unwrap_or(false)}))
        }
        "debug_request" => ("debug_reply", json!({})),
        _ => return None,
    };
    Some(message(reply.0, reply.1, Some(request)))
}

/// Interrupts the running cell's own work: cancels the saekit jobs it started and wakes its waits on
/// jobs (again and again: a job the cell starts later is cancelled too), leaving jobs that earlier cells
/// started running; if the cell is still running after a grace period of running code (compiling does
/// not count), stops its process. With no cell running there is nothing to interrupt.
async fn interrupt(shared: &Shared) {
    let Some(cell) = shared.outputs.current_id() else { return };
    shared.outputs.interrupt_cell(&cell);
    let mut ran = Duration::ZERO;
    let step = Duration::from_millis(20);
    while shared.outputs.current_id().as_deref() == Some(cell.as_str()) {
        if ran >= INTERRUPT_GRACE {
            eprintln!(
                "saekit-kernel: interrupt: the cell kept running after its jobs were cancelled; stopping its process"
            );
            shared.killed.store(true, Ordering::SeqCst);
            stop_child(&shared.engine);
            return;
        }
        tokio::time::sleep(step).await;
        shared.outputs.interrupt_cell(&cell);
        if shared.outputs.is_running() {
            ran += step;
        }
    }
}

async fn serve_stdin(
    mut stdin: jupyter_zmq_client::KernelStdinConnection,
    mut requests: mpsc::UnboundedReceiver<(JupyterMessage, String, bool, std::sync::mpsc::Sender<String>)>,
) {
    while let Some((parent, prompt, password, reply)) = requests.recv().await {
        let request = message("input_request", json!({"prompt": prompt, "password": password}), Some(&parent));
        if stdin.send(request).await.is_err() {
            let _ = reply.send(String::new());
            continue;
        }
        let value = loop {
            match stdin.read().await {
                Ok(m) if m.header.msg_type == "input_reply" => {
                    break content(&m)["value"].as_str().unwrap_or("").to_string();
                }
                Ok(_) => continue,
                Err(_) => break String::new(),
            }
        };
        let _ = reply.send(value);
    }
}

fn kernel_info(shared: &Shared) -> Value {
    json!({
        "status": "ok",
        "protocol_version": "5.3",
        "implementation": "saekit-kernel",
        "implementation_version": env!("CARGO_PKG_VERSION"),
        "language_info": {
            "name": "rust",
            "version": shared.rust_version,
            "mimetype": "text/rust",
            "file_extension": ".rs",
            "pygments_lexer": "rust",
            "codemirror_mode": "rust",
        },
        "banner": format!(
            "saekit-kernel {} (Rust on the evcxr engine); saekit is preloaded: `use saekit::prelude::*;` is in effect",
            env!("CARGO_PKG_VERSION")
        ),
        "help_links": [{"text": "evcxr commands (:help)", "url": "https://github.com/evcxr/evcxr/blob/main/COMMON.md"}],
        "debugger": false,
    })
}

fn rust_version() -> String {
    std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_default()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}
