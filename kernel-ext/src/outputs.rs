//! Where a cell's output goes: every stream, display and display update, from whichever source (evcxr's
//! channels, the child's channel socket, the kernel's own stderr while cargo builds), is published on
//! iopub as a child of the right request.
//!
//! Output that arrives while a cell runs belongs to that cell. Output that arrives after it returned (a
//! background thread, a job's progress) belongs to the last cell that ran; a display update belongs to the
//! cell that showed the display, or to the cell now running (frontends route updates by display id, and
//! a client that runs cell by cell only reads the running cell's messages).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jupyter_protocol::JupyterMessage;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedSender;

use crate::protocol::broadcast;

#[derive(Default)]
struct State {
    /// The execute request now running, if any.
    current: Option<JupyterMessage>,
    /// The last execute request that ran.
    last: Option<JupyterMessage>,
    /// Whether the running cell's code has started in the child (before that it is being compiled).
    running: bool,
    /// Which request showed each display id.
    displays: HashMap<String, JupyterMessage>,
    /// The running cell's stderr (to explain a panic) and whether it panicked.
    cell_stderr: Vec<String>,
    panicked: bool,
    /// The cell returned an error through `?`.
    user_error: bool,
    /// Writing half of the connection from evcxr's child process.
    child: Option<UnixStream>,
    pongs: u64,
    /// Connections from running saekit jobs and from cells waiting on one, each with the cell that was
    /// running when it connected: interrupting a cell cancels the jobs it started and wakes its waits.
    jobs: HashMap<u64, Watcher>,
    next_job: u64,
    last_stderr: Option<Instant>,
    /// When the last cell finished (or the kernel started); `None` while a cell is in progress.
    idle_since: Option<Instant>,
    /// Sent to evcxr's child when it connects: the working directory and environment of the Jupyter
    /// session a spare kernel was handed to.
    child_setup: Option<String>,
}

/// A saekit job's connection (told `cancel`) or a wait's (told `interrupt`), and its cell.
struct Watcher {
    stream: UnixStream,
    cell: Option<String>,
    wait: bool,
}

pub struct Outputs {
    iopub: UnboundedSender<JupyterMessage>,
    state: Mutex<State>,
    changed: Condvar,
}

impl Outputs {
    pub fn new(iopub: UnboundedSender<JupyterMessage>) -> Arc<Outputs> {
        let state = State { idle_since: Some(Instant::now()), ..State::default() };
        Arc::new(Outputs { iopub, state: Mutex::new(state), changed: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes on iopub as a child of `parent`.
    pub fn publish(&self, msg_type: &str, content: Value, parent: Option<&JupyterMessage>) {
        let _ = self.iopub.send(broadcast(msg_type, content, parent));
    }

    /// Publishes output of the child process: it belongs to the cell whose code is running; output while
    /// no cell's code runs (idle, or the next cell still compiling) comes from threads of earlier cells and
    /// goes to the last cell that ran.
    fn publish_to_cell(&self, msg_type: &str, content: Value) {
        let parent = {
            let state = self.lock();
            let running = state.running || state.child.is_none() || state.last.is_none();
            if running { state.current.clone().or_else(|| state.last.clone()) } else { state.last.clone() }
        };
        self.publish(msg_type, content, parent.as_ref());
    }

    /// Publishes output of the kernel itself about the running cell (cargo building its dependencies).
    fn publish_to_current(&self, msg_type: &str, content: Value) {
        let parent = self.lock().current.clone();
        if parent.is_some() {
            self.publish(msg_type, content, parent.as_ref());
        }
    }

    pub fn cell_started(&self, request: &JupyterMessage) {
        let mut state = self.lock();
        state.current = Some(request.clone());
        state.idle_since = None;
        state.running = false;
        state.cell_stderr.clear();
        state.panicked = false;
        state.user_error = false;
    }

    /// How the running cell ended: whether it panicked, whether it returned an error through `?`, and its
    /// stderr.
    pub fn cell_outcome(&self) -> (bool, bool, Vec<String>) {
        let mut state = self.lock();
        let panicked = std::mem::take(&mut state.panicked);
        let user_error = std::mem::take(&mut state.user_error);
        (panicked, user_error, std::mem::take(&mut state.cell_stderr))
    }

    /// The id of the request now running.
    pub fn current_id(&self) -> Option<String> {
        self.lock().current.as_ref().map(|m| m.header.msg_id.clone())
    }

    /// Whether the running cell's code has started (it is not compiling any more).
    pub fn is_running(&self) -> bool {
        self.lock().running
    }

    /// Ends the running cell: later output goes to it as the last cell.
    pub fn cell_finished(&self) {
        let mut state = self.lock();
        state.last = state.current.take();
        state.running = false;
        state.idle_since = Some(Instant::now());
    }

    /// How long no cell has been in progress (`None` while one is).
    pub fn idle_for(&self) -> Option<Duration> {
        self.lock().idle_since.map(|t| t.elapsed())
    }

    /// Gives evcxr's child process the working directory and environment in `setup` (a `child` "env"
    /// message): now if it is connected, and again whenever it (re)connects.
    pub fn set_child_setup(&self, setup: Value) {
        let line = format!("{setup}\n");
        let mut state = self.lock();
        if let Some(child) = state.child.as_mut() {
            let _ = child.write_all(line.as_bytes());
        }
        state.child_setup = Some(line);
    }

    /// Waits until everything the child printed before now has been published: a ping answered in order
    /// on the child's socket, then stderr quiet for a moment (evcxr forwards stderr on its own thread).
    pub fn sync_with_child(&self, stderr_pending: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut state = self.lock();
        let target = state.pongs + 1;
        if let Some(child) = state.child.as_mut() {
            let ping = format!("{}\n", json!({"op": "ping", "n": target}));
            if child.write_all(ping.as_bytes()).is_ok() {
                while state.pongs < target && Instant::now() < deadline {
                    state = self
                        .changed
                        .wait_timeout(state, Duration::from_millis(50))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
        drop(state);
        let quiet = Duration::from_millis(15);
        while Instant::now() < deadline {
            let recent = self.lock().last_stderr.is_some_and(|t| t.elapsed() < quiet);
            if !stderr_pending() && !recent {
                std::thread::sleep(quiet);
                if !stderr_pending() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A line of stderr from evcxr's child.
    pub fn stderr_line(&self, line: String) {
        let text = format!("{line}\n");
        {
            let mut state = self.lock();
            state.last_stderr = Some(Instant::now());
            if state.current.is_some() {
                state.cell_stderr.push(line);
            }
        }
        // stderr comes on evcxr's own thread, which may run ahead of the socket's note that the cell's code
        // started: it goes to the cell in progress, else the last one.
        let parent = {
            let state = self.lock();
            state.current.clone().or_else(|| state.last.clone())
        };
        self.publish("stream", json!({"name": "stderr", "text": text}), parent.as_ref());
    }

    /// A line of stdout that evcxr passed on (rare: user output normally comes over the socket).
    pub fn stdout_line(&self, line: String) {
        self.publish_to_cell("stream", json!({"name": "stdout", "text": format!("{line}\n")}));
    }

    /// A line the kernel process itself wrote to stderr: cargo's "Compiling ..." while a cell builds
    /// its dependencies is shown in that cell.
    pub fn kernel_stderr_line(&self, line: &str) {
        let compiling = line.trim_start().starts_with("Compiling ");
        if compiling {
            self.publish_to_current("stream", json!({"name": "stderr", "text": format!("{}\n", line.trim())}));
        }
    }

    /// Interrupts cell `cell`'s own work: asks the saekit jobs it started to cancel and wakes its waits
    /// on jobs (a job started by an earlier cell goes on); returns how many were told.
    pub fn interrupt_cell(&self, cell: &str) -> usize {
        let mut state = self.lock();
        let mut told = 0;
        state.jobs.retain(|_, w| {
            if w.cell.as_deref() != Some(cell) {
                return true;
            }
            told += 1;
            w.stream.write_all(if w.wait { b"interrupt\n" } else { b"cancel\n" }).is_ok()
        });
        told
    }

    /// Handles one message from the child's socket.
    fn child_message(&self, message: Value) {
        match message["op"].as_str().unwrap_or("") {
            "stream" => {
                let name = if message["name"] == "stderr" { "stderr" } else { "stdout" };
                self.publish_to_cell("stream", json!({"name": name, "text": message["text"]}));
            }
            "pong" => {
                let mut state = self.lock();
                state.pongs = state.pongs.max(message["n"].as_u64().unwrap_or(0));
                self.changed.notify_all();
            }
            "panic" => self.lock().panicked = true,
            "run" => self.lock().running = true,
            "user_error" => self.lock().user_error = true,
            "display" => {
                let data = message.get("data").cloned().unwrap_or_else(|| json!({}));
                let metadata = message.get("metadata").cloned().unwrap_or_else(|| json!({}));
                let parent = {
                    let mut state = self.lock();
                    let running = state.running || state.last.is_none();
                    let parent =
                        if running { state.current.clone().or_else(|| state.last.clone()) } else { state.last.clone() };
                    if let (Some(id), Some(p)) = (message["display_id"].as_str(), parent.as_ref()) {
                        state.displays.insert(id.to_string(), p.clone());
                    }
                    parent
                };
                let mut content = json!({"data": data, "metadata": metadata, "transient": {}});
                if let Some(id) = message["display_id"].as_str() {
                    content["transient"] = json!({"display_id": id});
                }
                self.publish("display_data", content, parent.as_ref());
            }
            "update" => {
                let Some(id) = message["display_id"].as_str() else { return };
                // Frontends route updates by display id, whatever their parent; but a client that executes
                // cell by cell (nbclient) only reads messages of the cell it is running. So an update goes
                // to the running cell if there is one (a later `job.wait()` gets the final rendering into the
                // notebook), else to the cell that showed the display.
                let parent = {
                    let state = self.lock();
                    state.current.clone().or_else(|| state.displays.get(id).cloned())
                };
                let content = json!({
                    "data": message.get("data").cloned().unwrap_or_else(|| json!({})),
                    "metadata": message.get("metadata").cloned().unwrap_or_else(|| json!({})),
                    "transient": {"display_id": id},
                });
                self.publish("update_display_data", content, parent.as_ref());
            }
            "clear" => {
                self.publish_to_cell("clear_output", json!({"wait": message["wait"].as_bool().unwrap_or(false)}))
            }
            _ => {}
        }
    }
}

/// Listens on the channel socket: evcxr's child connects once per start ("hello"), each running saekit
/// job connects to be cancellable ("job"), and each `job.wait()` to be woken by an interrupt ("wait").
pub fn listen(path: &Path, outputs: Arc<Outputs>) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    crate::sockets::private_socket(path);
    std::thread::Builder::new().name("channel".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            if !crate::sockets::same_user(&stream) {
                continue;
            }
            let outputs = outputs.clone();
            std::thread::spawn(move || serve(stream, outputs));
        }
    })?;
    Ok(())
}

fn serve(stream: UnixStream, outputs: Arc<Outputs>) {
    let Ok(writer) = stream.try_clone() else { return };
    let mut lines = BufReader::new(stream).lines();
    let Some(Ok(first)) = lines.next() else { return };
    let Ok(hello) = serde_json::from_str::<Value>(&first) else { return };
    match hello["op"].as_str() {
        Some("hello") => {
            let mut writer = writer;
            let mut state = outputs.lock();
            if let Some(setup) = &state.child_setup {
                let _ = writer.write_all(setup.as_bytes());
            }
            state.child = Some(writer);
            drop(state);
            for line in lines {
                let Ok(line) = line else { break };
                if let Ok(message) = serde_json::from_str::<Value>(&line) {
                    outputs.child_message(message);
                }
            }
        }
        Some(op @ ("job" | "wait")) => {
            let id = {
                let mut state = outputs.lock();
                state.next_job += 1;
                let id = state.next_job;
                let cell = state.current.as_ref().map(|m| m.header.msg_id.clone());
                state.jobs.insert(id, Watcher { stream: writer, cell, wait: op == "wait" });
                id
            };
            // The job closes its end when it finishes.
            for line in lines {
                if line.is_err() {
                    break;
                }
            }
            outputs.lock().jobs.remove(&id);
        }
        _ => {}
    }
}
