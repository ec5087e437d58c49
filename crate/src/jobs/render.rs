//! How jobs look: a one-line text bar (terminals, `watch()`, exported notebooks) and an HTML card with a
//! static bar, so a finished job in an exported notebook shows its numbers, not a widget placeholder.

use std::time::Duration;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{Job, JobStatus, Progress, ProgressSink};
use crate::display::{MimeBundle, Render, STYLE, escape, kernel};
use crate::error::count;

fn amount(n: u64, unit: &str) -> String {
    if unit == "bytes" { crate::display::bytes(n) } else { format!("{} {unit}", count(n)) }
}

fn rate(p: &Progress) -> String {
    if p.unit == "bytes" {
        format!("{}/s", crate::display::bytes(p.rate() as u64))
    } else {
        format!("{} {}/s", count(p.rate() as u64), p.unit)
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

/// `name [phase] ████████░░░░ 67% 2.0 MiB / 3.0 MiB · 1.0 MiB/s · 0:02 left`; a finished job shows its
/// outcome (`[done]`, `[failed]`, `[cancelled]`) where the phase was.
pub fn progress_line(p: &Progress) -> String {
    let label = if p.status.is_finished() || p.phase.is_empty() { p.status.as_str() } else { &p.phase };
    let mut line = format!("{} [{label}]", p.name);
    if let Some(f) = p.fraction() {
        let filled = (f * 20.0).round() as usize;
        line.push_str(&format!(" {}{}", "█".repeat(filled), "░".repeat(20 - filled)));
    }
    line.push_str(&progress_summary(p));
    line
}

/// The numbers of [`progress_line`] without the name and the text bar (the HTML card draws its own):
/// ` 67% 2.0 MiB / 3.0 MiB · 1.0 MiB/s · 0:02 left`.
fn progress_summary(p: &Progress) -> String {
    let mut line = String::new();
    match p.fraction() {
        Some(f) => {
            line.push_str(&format!(
                " {:>3.0}% {} / {}",
                f * 100.0,
                amount(p.done, &p.unit),
                amount(p.total.unwrap_or(0), &p.unit)
            ));
        }
        None if !p.unit.is_empty() => line.push_str(&format!(" {}", amount(p.done, &p.unit))),
        None => {}
    }
    if !p.unit.is_empty() {
        line.push_str(&format!(" · {}", rate(p)));
    }
    if !p.detail.is_empty() {
        line.push_str(&format!(" · {}", p.detail));
    }
    match p.status {
        JobStatus::Running | JobStatus::Queued => {
            if let Some(eta) = p.eta() {
                line.push_str(&format!(" · {} left", clock(eta)));
            }
        }
        JobStatus::Done => line.push_str(&format!(" · done in {}", clock(p.elapsed))),
        JobStatus::Cancelled => line.push_str(&format!(" · cancelled after {}", clock(p.elapsed))),
        JobStatus::Failed => {
            line.push_str(&format!(" · failed after {}: {}", clock(p.elapsed), p.error.as_deref().unwrap_or("")))
        }
    }
    line
}

/// The HTML card of a progress snapshot.
pub fn progress_html(p: &Progress) -> String {
    let percent = p.fraction().map(|f| f * 100.0).unwrap_or(if p.status == JobStatus::Done { 100.0 } else { 0.0 });
    let color = match p.status {
        JobStatus::Failed => "var(--jp-error-color1, #d1242f)",
        JobStatus::Cancelled => "var(--jp-warn-color1, #bf8700)",
        _ => "var(--jp-brand-color1, #4c78a8)",
    };
    format!(
        "{STYLE}<div class=\"saekit\"><div class=\"title\">{} <span class=\"badge\">{}</span></div>\
         <div style=\"width: 28em; height: 10px; border-radius: 5px; background: var(--jp-layout-color3, rgba(128, 128, 128, 0.3));\">\
         <div style=\"width: {percent:.1}%; height: 100%; border-radius: 5px; background: {color};\"></div></div>\
         <div class=\"muted\">{}{}</div></div>",
        escape(&p.name),
        p.status.as_str(),
        if p.status.is_finished() || p.phase.is_empty() { String::new() } else { format!("{} · ", escape(&p.phase)) },
        escape(progress_summary(p).trim_start())
    )
}

/// The bundle of a progress snapshot: a text bar and the HTML card.
pub fn progress_bundle(p: &Progress) -> MimeBundle {
    MimeBundle::new(progress_line(p)).with("text/html", progress_html(p))
}

/// A job's display: its progress, and below it the view the work published, if any.
fn job_bundle(p: &Progress, view: Option<&MimeBundle>) -> MimeBundle {
    let progress = progress_bundle(p);
    let Some(view) = view else { return progress };
    let html = format!(
        "{}{}",
        progress.get("text/html").unwrap_or_default(),
        view.get("text/html").map(str::to_string).unwrap_or_else(|| format!("<pre>{}</pre>", escape(view.plain())))
    );
    let mut bundle = MimeBundle::new(format!("{}\n{}", progress.plain(), view.plain())).with("text/html", html);
    if let Some(svg) = view.get("image/svg+xml") {
        bundle = bundle.with("image/svg+xml", svg);
    }
    bundle
}

impl<T> Render for Job<T> {
    fn bundle(&self) -> MimeBundle {
        job_bundle(&self.progress(), self.view().as_ref())
    }

    /// Under saekit-kernel a job shows as a live display that updates in place (at most
    /// [`MAX_EVENTS_PER_SECOND`](super::MAX_EVENTS_PER_SECOND) times a second) until its final rendering,
    /// also after the cell has returned. Elsewhere it shows its state now.
    fn evcxr_display(&self) {
        if kernel::under_kernel() {
            self.show_live();
        } else {
            print!("{}", self.bundle().to_evcxr());
        }
    }

    fn show(&self) {
        if kernel::under_kernel() {
            self.show_live();
        } else {
            kernel::display_bundle(&self.bundle(), None);
        }
    }
}

impl<T> Job<T> {
    fn show_live(&self) {
        let id = kernel::new_display_id();
        kernel::display_bundle(&self.bundle(), Some(&id));
        if !self.status().is_finished() {
            let sink = LiveProgress {
                id: id.clone(),
                last: Mutex::new((Instant::now(), self.view_version())),
                shared: self.shared.clone(),
            };
            self.subscribe(Arc::new(sink));
            // It may have finished between the snapshot and the subscription: show the final state.
            if self.status().is_finished() {
                kernel::update_bundle(&id, &self.bundle());
            }
        }
    }
}

impl<T> Job<T> {
    fn view_version(&self) -> u64 {
        super::lock(&self.shared.view).as_ref().map_or(0, |(v, _)| *v)
    }
}

/// Sends a job's progress to its display under saekit-kernel: at most one update per
/// 1/[`MAX_EVENTS_PER_SECOND`](super::MAX_EVENTS_PER_SECOND) s, counting the display itself, and always the
/// final state. A job with a published view is resent only when the view changes (and at the end), so a
/// dashboard is not sent again with every progress tick.
struct LiveProgress {
    id: String,
    /// When the last update went out, and the view version it carried.
    last: Mutex<(Instant, u64)>,
    shared: Arc<super::Shared>,
}

impl ProgressSink for LiveProgress {
    fn progress(&self, progress: &Progress) {
        let gap = Duration::from_millis(1000 / super::MAX_EVENTS_PER_SECOND as u64);
        let view = super::lock(&self.shared.view).clone();
        let version = view.as_ref().map_or(0, |(v, _)| *v);
        {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            let finished = progress.status.is_finished();
            if !finished && (last.0.elapsed() < gap || (version > 0 && version == last.1)) {
                return;
            }
            *last = (Instant::now(), version);
        }
        kernel::update_bundle(&self.id, &job_bundle(progress, view.as_ref().map(|(_, v)| v)));
    }
}
