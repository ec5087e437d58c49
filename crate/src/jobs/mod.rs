//! Background jobs: long work (reading, importing, tokenizing, training) runs on its own thread and hands
//! back a [`Job`] at once, with status, progress, cancellation, and a result or error. A panic in the work
//! becomes a failed job with its message; it never takes the caller (or a notebook kernel) down.
//!
//! The work itself is plain code that takes a [`JobContext`]: it reports progress and checks for
//! cancellation there, so the same function runs inline in a test or as a job in a cell.

mod interrupt;
mod render;
mod terminal;

pub use render::{progress_bundle, progress_line};
pub use terminal::TerminalBar;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// True once the job can change no more.
    pub fn is_finished(self) -> bool {
        matches!(self, JobStatus::Done | JobStatus::Failed | JobStatus::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Done => "done",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }
}

/// A snapshot of a job's progress.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    pub name: String,
    pub status: JobStatus,
    /// What the work is doing now ("reading", "writing", ...).
    pub phase: String,
    /// Other counts the work reports ("21,201 documents · 38,053,363 tokens").
    pub detail: String,
    pub done: u64,
    pub total: Option<u64>,
    /// What `done` counts ("bytes", "documents", "tokens").
    pub unit: String,
    pub elapsed: Duration,
    /// The error, when failed.
    pub error: Option<String>,
}

impl Progress {
    /// Units per second since the job started.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.done as f64 / secs } else { 0.0 }
    }

    /// Time left at the current rate, when the total is known.
    pub fn eta(&self) -> Option<Duration> {
        let total = self.total?;
        let rate = self.rate();
        (rate > 0.0 && total >= self.done).then(|| Duration::from_secs_f64((total - self.done) as f64 / rate))
    }

    /// Fraction done, when the total is known.
    pub fn fraction(&self) -> Option<f64> {
        self.total.filter(|&t| t > 0).map(|t| (self.done as f64 / t as f64).min(1.0))
    }
}

/// Receives progress snapshots: at most [`MAX_EVENTS_PER_SECOND`] while the job runs, and always the
/// final one.
pub trait ProgressSink: Send + Sync {
    fn progress(&self, progress: &Progress);
}

/// Rate limit for progress events sent to sinks.
pub const MAX_EVENTS_PER_SECOND: u32 = 4;

struct State {
    status: JobStatus,
    phase: String,
    detail: String,
    unit: String,
    total: Option<u64>,
    started: Option<Instant>,
    finished: Option<Instant>,
    error: Option<String>,
}

struct Shared {
    name: String,
    state: Mutex<State>,
    finished: Condvar,
    done: AtomicU64,
    cancel: AtomicBool,
    sinks: Mutex<Vec<Arc<dyn ProgressSink>>>,
    /// When the job was made, and the last event's time in milliseconds since then (plus one; 0 = none).
    created: Instant,
    last_event_ms: AtomicU64,
    /// The work's own rendering of itself (a training dashboard), with how often it was replaced.
    view: Mutex<Option<(u64, crate::display::MimeBundle)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn snapshot(&self) -> Progress {
        let state = lock(&self.state);
        let elapsed = match (state.started, state.finished) {
            (Some(s), Some(f)) => f - s,
            (Some(s), None) => s.elapsed(),
            _ => Duration::ZERO,
        };
        Progress {
            name: self.name.clone(),
            status: state.status,
            phase: state.phase.clone(),
            detail: state.detail.clone(),
            done: self.done.load(Ordering::Relaxed),
            total: state.total,
            unit: state.unit.clone(),
            elapsed,
            error: state.error.clone(),
        }
    }

    /// Sends a snapshot to the sinks, unless one went out less than 1/MAX_EVENTS_PER_SECOND ago. Cheap
    /// enough to call for every record: the common case is two atomic loads.
    fn notify(&self, force: bool) {
        let now = self.created.elapsed().as_millis() as u64 + 1;
        let gap = 1000 / MAX_EVENTS_PER_SECOND as u64;
        let last = self.last_event_ms.load(Ordering::Relaxed);
        if !force && last != 0 && now - last.min(now) < gap {
            return;
        }
        if !force && self.last_event_ms.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
            return;
        }
        self.last_event_ms.store(now, Ordering::Relaxed);
        let sinks: Vec<_> = lock(&self.sinks).clone();
        if sinks.is_empty() {
            return;
        }
        let snapshot = self.snapshot();
        for sink in sinks {
            sink.progress(&snapshot);
        }
    }
}

/// What running work sees of its job: progress reporting and the cancellation flag.
#[derive(Clone)]
pub struct JobContext {
    shared: Arc<Shared>,
}

impl JobContext {
    /// A context for running work inline, outside any job (tests, scripts); progress goes nowhere.
    pub fn detached(name: &str) -> JobContext {
        let shared = new_shared(name);
        lock(&shared.state).status = JobStatus::Running;
        JobContext { shared }
    }

    /// Starts a phase with its unit and total (if known); `done` restarts from 0.
    pub fn phase(&self, phase: &str, unit: &str, total: Option<u64>) {
        {
            let mut state = lock(&self.shared.state);
            state.phase = phase.to_string();
            state.unit = unit.to_string();
            state.total = total;
        }
        self.shared.done.store(0, Ordering::Relaxed);
        self.shared.notify(true);
    }

    /// Sets the other counts shown beside the progress (e.g. documents and tokens so far).
    pub fn set_detail(&self, detail: String) {
        lock(&self.shared.state).detail = detail;
    }

    /// Adds `n` to the work done.
    pub fn advance(&self, n: u64) {
        self.shared.done.fetch_add(n, Ordering::Relaxed);
        self.shared.notify(false);
    }

    /// Sets the work done.
    pub fn set_done(&self, done: u64) {
        self.shared.done.store(done, Ordering::Relaxed);
        self.shared.notify(false);
    }

    /// True once cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancel.load(Ordering::Relaxed)
    }

    /// `Err(Error::Cancelled)` once cancellation was asked for: call it often (every batch) with `?`.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }

    /// A snapshot of the progress.
    pub fn progress(&self) -> Progress {
        self.shared.snapshot()
    }

    /// Shows `view` as the job's display from now on (above its progress line): a dashboard of the
    /// work. A live display sends it once per call (at most [`MAX_EVENTS_PER_SECOND`] times a second),
    /// not with every progress tick, so publish what changed about once a second and keep it small
    /// (downsampled curves).
    pub fn publish(&self, view: crate::display::MimeBundle) {
        {
            let mut slot = lock(&self.shared.view);
            let version = slot.as_ref().map_or(1, |(v, _)| v + 1);
            *slot = Some((version, view));
        }
        self.shared.notify(false);
    }
}

fn new_shared(name: &str) -> Arc<Shared> {
    let state = State {
        status: JobStatus::Queued,
        phase: String::new(),
        detail: String::new(),
        unit: String::new(),
        total: None,
        started: None,
        finished: None,
        error: None,
    };
    let shared = Shared {
        name: name.to_string(),
        state: Mutex::new(state),
        finished: Condvar::new(),
        done: AtomicU64::new(0),
        cancel: AtomicBool::new(false),
        sinks: Mutex::new(Vec::new()),
        created: Instant::now(),
        last_event_ms: AtomicU64::new(0),
        view: Mutex::new(None),
    };
    Arc::new(shared)
}

/// A handle on work running in the background. Dropping the handle does not stop the work.
pub struct Job<T> {
    shared: Arc<Shared>,
    result: Arc<Mutex<Option<Result<T>>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl<T: Send + 'static> Job<T> {
    /// Starts `work` on a new thread and returns at once.
    pub fn spawn(name: &str, work: impl FnOnce(&JobContext) -> Result<T> + Send + 'static) -> Job<T> {
        Self::spawn_with_sinks(name, Vec::new(), work)
    }

    /// Starts `work` with sinks subscribed before it runs, so they see every event.
    pub fn spawn_with_sinks(
        name: &str,
        sinks: Vec<Arc<dyn ProgressSink>>,
        work: impl FnOnce(&JobContext) -> Result<T> + Send + 'static,
    ) -> Job<T> {
        let shared = new_shared(name);
        *lock(&shared.sinks) = sinks;
        let result = Arc::new(Mutex::new(None));
        let context = JobContext { shared: shared.clone() };
        let slot = result.clone();
        let thread = std::thread::Builder::new().name(format!("saekit job {name}")).spawn(move || {
            let _interrupt = interrupt::InterruptWatch::connect(&context.shared);
            {
                let mut state = lock(&context.shared.state);
                state.status = JobStatus::Running;
                state.started = Some(Instant::now());
            }
            context.shared.notify(true);
            let outcome = catch_unwind(AssertUnwindSafe(|| work(&context)));
            let (status, error, value) = match outcome {
                Ok(Ok(value)) => (JobStatus::Done, None, Ok(value)),
                Ok(Err(Error::Cancelled)) => (JobStatus::Cancelled, None, Err(Error::Cancelled)),
                Ok(Err(e)) => (JobStatus::Failed, Some(e.to_string()), Err(e)),
                Err(panic) => {
                    let message = panic_message(panic.as_ref());
                    let error = Error::JobPanicked { job: context.shared.name.clone(), message };
                    (JobStatus::Failed, Some(error.to_string()), Err(error))
                }
            };
            *lock(&slot) = Some(value);
            {
                let mut state = lock(&context.shared.state);
                state.status = status;
                state.error = error;
                state.finished = Some(Instant::now());
            }
            context.shared.finished.notify_all();
            context.shared.notify(true);
        });
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(e) => {
                let mut state = lock(&shared.state);
                state.status = JobStatus::Failed;
                state.error = Some(format!("could not start a thread: {e}"));
                *lock(&result) = Some(Err(Error::InvalidArgument(format!("could not start a thread: {e}"))));
                None
            }
        };
        Job { shared, result, thread: Mutex::new(thread) }
    }
}

impl<T> Job<T> {
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn status(&self) -> JobStatus {
        lock(&self.shared.state).status
    }

    /// A snapshot of the progress.
    pub fn progress(&self) -> Progress {
        self.shared.snapshot()
    }

    /// The work's latest published view ([`JobContext::publish`]), if any.
    pub fn view(&self) -> Option<crate::display::MimeBundle> {
        lock(&self.shared.view).as_ref().map(|(_, v)| v.clone())
    }

    /// Asks the work to stop. It stops at its next check (within a batch), leaving no partial artifact.
    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::Relaxed);
    }

    /// Subscribes a sink to this job's progress events (it gets the current snapshot at once).
    pub fn subscribe(&self, sink: Arc<dyn ProgressSink>) {
        sink.progress(&self.shared.snapshot());
        lock(&self.shared.sinks).push(sink);
    }

    /// Blocks until the job has finished, or until `timeout` passes; returns the status then.
    pub fn wait_timeout(&self, timeout: Duration) -> JobStatus {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.shared.state);
        while !state.status.is_finished() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = match self.shared.finished.wait_timeout(state, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        state.status
    }

    /// Blocks until the job has finished and takes its result. A second call returns an error saying
    /// the result was already taken. Under saekit-kernel, interrupting the cell that waits returns
    /// [`Error::Interrupted`] at once: the job goes on (unless that cell started it, which cancels it),
    /// and a later `wait()` still gets its result.
    pub fn wait(&self) -> Result<T> {
        let watch = if self.status().is_finished() { None } else { interrupt::WaitWatch::connect(&self.shared.name) };
        match &watch {
            Some(w) => loop {
                if self.wait_timeout(Duration::from_millis(50)).is_finished() {
                    break;
                }
                if w.interrupted.load(Ordering::Relaxed) && !self.cancelled_by_the_interrupt() {
                    return Err(Error::Interrupted { job: self.shared.name.clone() });
                }
            },
            None => while !self.wait_timeout(Duration::from_secs(3600)).is_finished() {},
        }
        drop(watch);
        if let Some(handle) = lock(&self.thread).take() {
            let _ = handle.join();
        }
        lock(&self.result).take().unwrap_or_else(|| {
            Err(Error::InvalidArgument(format!("the result of job `{}` was already taken", self.shared.name)))
        })
    }

    /// After an interrupt of the waiting cell: whether it also cancels this job (the cell started it), in
    /// which case the wait goes on to the job's end, a check away. The kernel tells the job and the wait
    /// at the same moment on separate connections, so the job's cancel is given a moment to arrive.
    fn cancelled_by_the_interrupt(&self) -> bool {
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            if self.shared.cancel.load(Ordering::Relaxed) || self.status().is_finished() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Blocks while printing a progress line at most every `every`, then a final summary line. For
    /// terminals and notebooks with no live display channel.
    pub fn watch_every(&self, every: Duration) -> Progress {
        loop {
            let status = self.wait_timeout(every);
            let progress = self.progress();
            println!("{}", render::progress_line(&progress));
            if status.is_finished() {
                return progress;
            }
        }
    }

    /// [`Job::watch_every`] with a line per second.
    pub fn watch(&self) -> Progress {
        self.watch_every(Duration::from_secs(1))
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_string()
    }
}

#[cfg(test)]
mod tests;
