//! Displays that know where they run: under `saekit-kernel` a value can be shown as its own output
//! (`display_data`), cleared, and updated in place later (by display id), from any thread, also after the
//! cell returned. Elsewhere the same calls degrade gracefully: under stock evcxr they print evcxr's content
//! blocks (evcxr shows the last one per MIME type when the cell ends), in a plain program they print the
//! text form.
//!
//! The channel to the kernel is stdout itself: a display message is one line, [`MARKER`] followed by JSON
//! (`{"op": "display" | "update" | "clear", ...}`). The kernel routes the child's stdout through its own
//! reader, which takes these lines out of the text stream, in order with the text around them. A running
//! job also connects to the kernel's socket (its path is in [`SOCKET_ENV`]) so that an interrupt can cancel
//! it. Nothing here keeps global state: under evcxr each cell carries its own copy of saekit's statics.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;

use serde_json::{Map, Value, json};

use super::{MimeBundle, Render};

/// Set by saekit-kernel for the process that runs cells: the path of the kernel's channel socket.
pub const SOCKET_ENV: &str = "SAEKIT_KERNEL_SOCKET";
/// Starts a line that carries a display message instead of text.
pub const MARKER: &str = "\u{1e}saekit-kernel ";

/// True when running in a cell of saekit-kernel.
pub fn under_kernel() -> bool {
    std::env::var_os(SOCKET_ENV).is_some()
}

fn under_evcxr() -> bool {
    std::env::var_os("EVCXR_IS_RUNTIME").is_some()
}

/// The bundle as Jupyter `data`: JSON MIME types as JSON values, the rest as strings.
pub fn jupyter_data(bundle: &MimeBundle) -> Map<String, Value> {
    let mut data = Map::new();
    for (mime, content) in bundle.entries() {
        let value = if mime.contains("json") { serde_json::from_str(content).ok() } else { None };
        data.insert(mime.clone(), value.unwrap_or_else(|| Value::String(content.clone())));
    }
    data
}

fn send(message: Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{MARKER}{message}");
    let _ = out.flush();
}

/// Shows a bundle as its own output, with a display id when it may be updated later.
pub(crate) fn display_bundle(bundle: &MimeBundle, display_id: Option<&str>) {
    if under_kernel() {
        let mut message = json!({"op": "display", "data": jupyter_data(bundle), "metadata": {}});
        if let Some(id) = display_id {
            message["display_id"] = json!(id);
        }
        send(message);
    } else if under_evcxr() {
        print!("{}", bundle.to_evcxr());
    } else {
        println!("{}", bundle.plain());
    }
}

/// Replaces what a display shows (under saekit-kernel; elsewhere nothing can be updated, so nothing happens).
pub(crate) fn update_bundle(display_id: &str, bundle: &MimeBundle) {
    if under_kernel() {
        send(json!({"op": "update", "display_id": display_id, "data": jupyter_data(bundle), "metadata": {}}));
    }
}

/// A fresh display id.
pub fn new_display_id() -> String {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("saekit-{:016x}", hasher.finish())
}

/// Shows a value as an output of the cell, in order with what the cell prints; several per cell are fine.
pub fn show(value: &(impl Render + ?Sized)) {
    value.show();
}

/// Shows a value that can be replaced in place later, from any thread: `let live = show_live(&chart);
/// ... live.update(&new_chart);`.
pub fn show_live(value: &(impl Render + ?Sized)) -> LiveDisplay {
    let live = LiveDisplay { id: new_display_id() };
    display_bundle(&value.bundle(), Some(&live.id));
    live
}

/// Clears the cell's output; with `wait`, only when the next output arrives (no flicker).
pub fn clear_output(wait: bool) {
    if under_kernel() {
        send(json!({"op": "clear", "wait": wait}));
    }
}

/// A shown output that can be updated in place.
#[derive(Debug, Clone)]
pub struct LiveDisplay {
    id: String,
}

impl LiveDisplay {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Replaces the display's content with this value's rendering.
    pub fn update(&self, value: &(impl Render + ?Sized)) {
        update_bundle(&self.id, &value.bundle());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keeps_json_types_as_json() {
        let bundle = MimeBundle::new("chart")
            .with("application/vnd.plotly.v1+json", r#"{"data": [1, 2]}"#)
            .with("text/html", "<b>x</b>");
        let data = jupyter_data(&bundle);
        assert_eq!(data["text/plain"], "chart");
        assert_eq!(data["application/vnd.plotly.v1+json"]["data"][1], 2);
        assert_eq!(data["text/html"], "<b>x</b>");
    }

    #[test]
    fn display_ids_differ() {
        assert_ne!(new_display_id(), new_display_id());
    }
}
