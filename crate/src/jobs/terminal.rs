//! Jobs in a terminal: an indicatif progress bar on stderr (hidden when stderr is not a terminal),
//! driven by the same progress events a notebook display receives.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Progress, ProgressSink, render::progress_line};

/// A progress bar for a job, on stderr.
pub struct TerminalBar {
    bar: ProgressBar,
}

impl TerminalBar {
    pub fn new() -> TerminalBar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        TerminalBar { bar }
    }
}

impl Default for TerminalBar {
    fn default() -> Self {
        Self::new()
    }
}

impl ProgressSink for TerminalBar {
    fn progress(&self, p: &Progress) {
        if p.status.is_finished() {
            self.bar.finish_and_clear();
            eprintln!("{}", progress_line(p));
            return;
        }
        let template = if p.unit == "bytes" {
            "{prefix} [{msg}] {wide_bar} {bytes}/{total_bytes} · {bytes_per_sec} · {eta} left"
        } else {
            "{prefix} [{msg}] {wide_bar} {human_pos}/{human_len} · {per_sec} · {eta} left"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            self.bar.set_style(style);
        }
        self.bar.set_prefix(p.name.clone());
        self.bar.set_message(if p.detail.is_empty() {
            p.phase.clone()
        } else {
            format!("{} · {}", p.phase, p.detail)
        });
        if let Some(total) = p.total {
            self.bar.set_length(total);
        }
        self.bar.set_position(p.done);
    }
}
