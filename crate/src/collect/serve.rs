//! The collection's HTTP endpoint (`saekit collect serve`): HTTP/1.1 on loopback by default, one request
//! per connection, a bounded number of connections at once, a size limit on requests.
//!
//! - `POST /records`: a JSON object, a JSON array of objects, or JSON lines, each an [`Interaction`]
//!   record; all committed in one transaction, or none. `200 {"received", "kept", "dropped", "ids"}`.
//! - `GET /stats`: `{"records", "sampling"}`. `GET /health`: `ok`.
//! - Malformed JSON or records: `400` naming the line and what was expected; too large: `413`; a body
//!   without `Content-Length`: `411`; other paths `404`, other methods `405`. A bad request never stops
//!   the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Added, Collector, Interaction};
use crate::error::{Error, Result};

/// Limits of the endpoint.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The largest request body accepted.
    pub max_body: usize,
    /// Connections served at once (more wait in the listen queue).
    pub max_connections: usize,
    /// How long a connection may take to send its request.
    pub read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { max_body: 1 << 20, max_connections: 32, read_timeout: Duration::from_secs(10) }
    }
}

/// A running endpoint; dropped or [`Server::stop`]ped, it stops accepting.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (use port 0 for a free one) and serves `collector` on a thread of its own.
    pub fn start(collector: Collector, addr: &str, options: ServeOptions) -> Result<Server> {
        let listener =
            TcpListener::bind(addr).map_err(|e| Error::InvalidArgument(format!("cannot listen on {addr}: {e}")))?;
        let local = listener.local_addr().map_err(|e| Error::InvalidArgument(e.to_string()))?;
        listener.set_nonblocking(true).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, collector, options, flag));
        Ok(Server { addr: local, stop, thread: Some(thread) })
    }

    /// Serves until the process ends.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, collector: Collector, options: ServeOptions, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                while active.load(Ordering::SeqCst) >= options.max_connections {
                    std::thread::sleep(Duration::from_millis(1));
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (collector, options, active) = (collector.clone(), options.clone(), active.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &collector, &options);
                    active.fetch_sub(1, Ordering::SeqCst);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(2)),
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn respond(stream: &mut TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let text = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

fn error(stream: &mut TcpStream, status: u16, message: String) -> std::io::Result<()> {
    respond(stream, status, &json!({"error": message}))
}

const MAX_HEAD: usize = 16 * 1024;

fn handle(mut stream: TcpStream, collector: &Collector, options: &ServeOptions) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(options.read_timeout))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = Vec::new();
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = reader.by_ref().take((MAX_HEAD + 1 - head.len().min(MAX_HEAD)) as u64).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&line);
        if head.len() > MAX_HEAD {
            return error(&mut stream, 431, format!("the request head is over {MAX_HEAD} bytes"));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            break;
        }
        lines.push(text);
    }
    let Some(request) = lines.first() else { return error(&mut stream, 400, "an empty request".into()) };
    let mut parts = request.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let header = |name: &str| {
        lines[1..].iter().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/health") => respond(&mut stream, 200, &json!("ok")),
        ("GET", "/stats") => {
            let records = collector.len().unwrap_or(0);
            let sampling = collector.sampling_report().unwrap_or_default();
            respond(&mut stream, 200, &json!({"collection": collector.name, "records": records, "sampling": sampling}))
        }
        ("POST", "/records") => {
            if header("transfer-encoding").is_some() {
                return error(
                    &mut stream,
                    411,
                    "send the body with a Content-Length (chunked bodies are not read)".into(),
                );
            }
            let Some(length) = header("content-length") else {
                return error(&mut stream, 411, "a Content-Length header is required".into());
            };
            let Ok(length) = length.parse::<usize>() else {
                return error(&mut stream, 400, format!("Content-Length {length:?} is not a number"));
            };
            if length > options.max_body {
                return error(
                    &mut stream,
                    413,
                    format!("the body is {length} bytes; at most {} are accepted", options.max_body),
                );
            }
            let mut body = vec![0u8; length];
            if let Err(e) = reader.read_exact(&mut body) {
                return error(
                    &mut stream,
                    400,
                    format!("the body ended before its Content-Length ({length} bytes): {e}"),
                );
            }
            let interactions = match parse_body(&body) {
                Ok(i) => i,
                Err(m) => return error(&mut stream, 400, m),
            };
            match collector.add_many(interactions) {
                Ok(added) => {
                    let ids: Vec<u64> =
                        added.iter().filter_map(|a| if let Added::Kept(id) = a { Some(*id) } else { None }).collect();
                    respond(
                        &mut stream,
                        200,
                        &json!({"received": added.len(), "kept": ids.len(), "dropped": added.len() - ids.len(), "ids": ids}),
                    )
                }
                Err(e) => error(&mut stream, 500, e.to_string()),
            }
        }
        (_, "/records" | "/stats" | "/health") => error(&mut stream, 405, format!("{method} is not allowed on {path}")),
        _ => error(&mut stream, 404, format!("no such endpoint {path}: POST /records, GET /stats, GET /health")),
    }
}

/// A body's interactions: one JSON object, a JSON array of objects, or JSON lines.
fn parse_body(body: &[u8]) -> std::result::Result<Vec<Interaction>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("the body is not UTF-8: {e}"))?;
    let trimmed = text.trim_start();
    let records: Vec<(String, Map<String, Value>)> = if trimmed.starts_with('[') {
        let values: Vec<Value> =
            serde_json::from_str(text).map_err(|e| format!("line {} column {}: {e}", e.line(), e.column()))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::Object(m) => Ok((format!("item {}", i + 1), m)),
                other => Err(format!("item {}: expected a JSON object, found {other}", i + 1)),
            })
            .collect::<std::result::Result<_, _>>()?
    } else {
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("line {} column {}: {e}", i + 1, e.column()))?;
            match v {
                Value::Object(m) => out.push((format!("line {}", i + 1), m)),
                other => return Err(format!("line {}: expected a JSON object, found {other}", i + 1)),
            }
        }
        out
    };
    if records.is_empty() {
        return Err("no records in the body".into());
    }
    records.iter().map(|(at, m)| Interaction::from_record(m).map_err(|e| format!("{at}: {e}"))).collect()
}
