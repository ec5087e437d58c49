use std::sync::Mutex;

use super::*;
use crate::display::Render;

#[derive(Default)]
struct Recorder(Mutex<Vec<Progress>>);

impl ProgressSink for Recorder {
    fn progress(&self, progress: &Progress) {
        self.0.lock().unwrap().push(progress.clone());
    }
}

#[test]
fn a_job_returns_at_once_and_its_result_on_wait() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let job = Job::spawn("sum", move |ctx| {
        rx.recv().ok();
        ctx.phase("adding", "numbers", Some(3));
        ctx.advance(3);
        Ok(1 + 2)
    });
    assert!(matches!(job.status(), JobStatus::Queued | JobStatus::Running));
    tx.send(()).unwrap();
    assert_eq!(job.wait().unwrap(), 3);
    assert_eq!(job.status(), JobStatus::Done);
    let p = job.progress();
    assert_eq!((p.done, p.total, p.phase.as_str()), (3, Some(3), "adding"));
    assert!(job.wait().is_err(), "the result is taken once");
}

#[test]
fn waiting_on_a_finished_job_returns_at_once() {
    let job = Job::spawn("quick", |_| Ok("x"));
    assert_eq!(job.wait_timeout(Duration::from_secs(5)), JobStatus::Done);
    let started = Instant::now();
    assert_eq!(job.wait_timeout(Duration::from_secs(5)), JobStatus::Done);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(job.wait().unwrap(), "x");
}

#[test]
fn cancel_stops_cooperative_work_within_500ms() {
    let job: Job<()> = Job::spawn("forever", |ctx| {
        loop {
            ctx.check()?;
            ctx.advance(1);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    let asked = Instant::now();
    job.cancel();
    assert_eq!(job.wait_timeout(Duration::from_millis(500)), JobStatus::Cancelled);
    assert!(asked.elapsed() < Duration::from_millis(500));
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
}

#[test]
fn a_panic_becomes_a_failed_job_with_its_message() {
    let job: Job<()> = Job::spawn("boom", |_| panic!("index out of range: 7"));
    let err = job.wait().unwrap_err();
    assert_eq!(err.to_string(), "job `boom` panicked: index out of range: 7");
    assert_eq!(job.status(), JobStatus::Failed);
    assert_eq!(job.progress().error.as_deref(), Some("job `boom` panicked: index out of range: 7"));
}

#[test]
fn an_error_becomes_a_failed_job() {
    let job: Job<()> = Job::spawn("bad", |_| Err(Error::InvalidArgument("no such column".into())));
    assert!(matches!(job.wait(), Err(Error::InvalidArgument(_))));
    assert_eq!(job.status(), JobStatus::Failed);
}

#[test]
fn sinks_get_rate_limited_events_and_always_the_last() {
    let recorder = Arc::new(Recorder::default());
    let job = Job::spawn_with_sinks("busy", vec![recorder.clone()], |ctx| {
        ctx.phase("counting", "items", Some(100_000));
        for _ in 0..100_000 {
            ctx.advance(1);
        }
        Ok(())
    });
    job.wait().unwrap();
    let events = recorder.0.lock().unwrap();
    // Start, phase, and final are forced; the 100,000 advances (well under a second) add at most a few.
    assert!(events.len() <= 3 + MAX_EVENTS_PER_SECOND as usize, "{} events", events.len());
    let last = events.last().unwrap();
    assert_eq!((last.status, last.done), (JobStatus::Done, 100_000));
}

#[test]
fn progress_line_shows_bar_amounts_and_outcome() {
    let p = Progress {
        name: "import".into(),
        status: JobStatus::Running,
        phase: "reading".into(),
        done: 1 << 20,
        total: Some(4 << 20),
        unit: "bytes".into(),
        elapsed: Duration::from_secs(1),
        error: None,
        detail: String::new(),
    };
    assert_eq!(
        progress_line_for(&p),
        "import [reading] █████░░░░░░░░░░░░░░░  25% 1.0 MiB / 4.0 MiB · 1.0 MiB/s · 0:03 left"
    );
    let done = Progress { status: JobStatus::Done, done: 4 << 20, elapsed: Duration::from_secs(4), ..p.clone() };
    assert_eq!(
        progress_line_for(&done),
        "import [done] ████████████████████ 100% 4.0 MiB / 4.0 MiB · 1.0 MiB/s · done in 0:04",
        "a finished job shows its outcome, not the phase it was last in"
    );
    // The card draws its own bar: its text line has the numbers, without a second (text) bar.
    let html = render::progress_bundle(&done).get("text/html").unwrap().to_string();
    assert!(html.contains("100% 4.0 MiB / 4.0 MiB · 1.0 MiB/s · done in 0:04") && !html.contains('█'), "{html}");
    assert!(!html.contains("reading"), "no stale phase: {html}");
    let running = render::progress_bundle(&p).get("text/html").unwrap().to_string();
    assert!(running.contains("reading · 25% 1.0 MiB"), "{running}");
}

fn progress_line_for(p: &Progress) -> String {
    render::progress_line(p)
}

#[test]
fn a_job_renders_text_and_escaped_html() {
    let job = Job::spawn("<script>", |_| Ok(()));
    job.wait().unwrap();
    let bundle = job.bundle();
    assert!(bundle.plain().starts_with("<script> [done]"));
    let html = bundle.get("text/html").unwrap();
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
    assert!(html.contains("width: 100.0%"));
}

#[test]
fn detached_context_runs_work_inline() {
    let ctx = JobContext::detached("inline");
    ctx.phase("p", "rows", None);
    ctx.advance(5);
    assert_eq!(ctx.progress().done, 5);
    assert!(ctx.check().is_ok());
}

#[test]
fn a_published_view_shows_under_the_progress_and_stays_after_the_end() {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (published_tx, published) = std::sync::mpsc::channel::<()>();
    let job = Job::spawn("train", move |ctx| {
        ctx.phase("training", "steps", Some(2));
        ctx.publish(crate::display::MimeBundle::new("step 1: <mse>").with("text/html", "<b>step 1</b>"));
        ctx.advance(1);
        published_tx.send(()).ok();
        rx.recv().ok();
        ctx.publish(crate::display::MimeBundle::new("step 2").with("text/html", "<b>step 2</b>"));
        ctx.advance(1);
        Ok(())
    });
    assert!(Job::spawn("plain", |_| Ok(())).view().is_none());
    published.recv().unwrap();
    let shown = job.bundle();
    assert!(
        shown.plain().starts_with("train [training]") && shown.plain().contains("step 1: <mse>"),
        "{}",
        shown.plain()
    );
    assert!(shown.get("text/html").unwrap().contains("<b>step 1</b>"));
    tx.send(()).unwrap();
    job.wait().unwrap();
    let shown = job.bundle();
    assert!(shown.plain().contains("done in") && shown.plain().contains("step 2"), "{}", shown.plain());
    assert!(!shown.plain().contains("step 1"), "the latest view replaces the one before");
}
