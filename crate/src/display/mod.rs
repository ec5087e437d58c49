//! Rendering values for people: every value becomes a [`MimeBundle`] that always carries `text/plain`,
//! usually `text/html`, and `image/svg+xml` for charts, so a notebook, a terminal, an exported HTML
//! report and GitHub's viewer all show something useful without JavaScript. This module knows how to
//! draw tables, cards and charts; the stages decide what to draw.

pub mod axis;
mod chart;
pub mod kernel;
mod table;

pub use chart::{BarChart, ChartGrid, Histogram, LineChart, Scatter, downsample, smooth};
pub use kernel::{LiveDisplay, clear_output, show, show_live};
pub use table::{Card, Table};

/// Representations of one value, keyed by MIME type, `text/plain` first.
#[derive(Debug, Clone, PartialEq)]
pub struct MimeBundle {
    entries: Vec<(String, String)>,
}

impl MimeBundle {
    /// A bundle with its plain-text form.
    pub fn new(plain: impl Into<String>) -> Self {
        MimeBundle { entries: vec![("text/plain".into(), plain.into())] }
    }

    /// Adds (or replaces) a representation.
    pub fn with(mut self, mime: &str, content: impl Into<String>) -> Self {
        let content = content.into();
        match self.entries.iter_mut().find(|(m, _)| m == mime) {
            Some(entry) => entry.1 = content,
            None => self.entries.push((mime.into(), content)),
        }
        self
    }

    pub fn get(&self, mime: &str) -> Option<&str> {
        self.entries.iter().find(|(m, _)| m == mime).map(|(_, c)| c.as_str())
    }

    pub fn plain(&self) -> &str {
        self.get("text/plain").unwrap_or_default()
    }

    /// The richest HTML form: the HTML if any, else an inline SVG, else the plain text in a `<pre>`.
    pub fn html_or_fallback(&self) -> String {
        if let Some(html) = self.get("text/html") {
            html.to_string()
        } else if let Some(svg) = self.get("image/svg+xml") {
            svg.to_string()
        } else {
            format!("<pre>{}</pre>", escape(self.plain()))
        }
    }

    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The bundle in evcxr's display protocol: one `EVCXR_BEGIN_CONTENT` block per MIME type.
    pub fn to_evcxr(&self) -> String {
        let mut out = String::new();
        for (mime, content) in &self.entries {
            out.push_str(&format!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT\n"));
        }
        out
    }
}

/// Anything that renders for people.
pub trait Render {
    fn bundle(&self) -> MimeBundle;

    /// Prints the bundle for evcxr, which displays it as the cell's output.
    fn evcxr_display(&self) {
        print!("{}", self.bundle().to_evcxr());
    }

    /// Shows the value as an output of its own (what [`show`] does). Values that change, such as jobs,
    /// show a display that updates in place.
    fn show(&self) {
        kernel::display_bundle(&self.bundle(), None);
    }
}

// A value behind a reference or a smart pointer renders as the value itself. Besides `(&ds).bundle()`,
// this keeps such values rich in saekit-kernel, whose cells also have a `&mut self` `evcxr_display` for
// plain values in scope (kernel-ext/cells): a cell's `(expr).evcxr_display()` finds `Render` on `Box<T>`
// or `&mut T` at the step it finds it on `T`, before that one.
impl<T: Render + ?Sized> Render for &T {
    fn bundle(&self) -> MimeBundle {
        (**self).bundle()
    }
    fn evcxr_display(&self) {
        (**self).evcxr_display()
    }
}

impl<T: Render + ?Sized> Render for &mut T {
    fn bundle(&self) -> MimeBundle {
        (**self).bundle()
    }
    fn evcxr_display(&self) {
        (**self).evcxr_display()
    }
}

macro_rules! render_through {
    ($($pointer:ident)::+) => {
        impl<T: Render + ?Sized> Render for $($pointer)::+<T> {
            fn bundle(&self) -> MimeBundle {
                (**self).bundle()
            }
            fn evcxr_display(&self) {
                (**self).evcxr_display()
            }
        }
    };
}
render_through!(Box);
render_through!(std::rc::Rc);
render_through!(std::sync::Arc);

impl Render for MimeBundle {
    fn bundle(&self) -> MimeBundle {
        self.clone()
    }
}

/// Escapes text for HTML element content and attribute values. Control characters other than tab and
/// newline are shown as `\u{..}` escapes so they cannot confuse a reader or a terminal.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Shortens text to at most `max` characters, marking the cut with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

pub use crate::units::bytes;

/// The stylesheet every saekit HTML fragment relies on: JupyterLab's theme variables first, then VS
/// Code's, then the surrounding page's own colours (`inherit`, translucent greys), so it looks at home in
/// light and dark themes alike and in exported HTML.
pub const STYLE: &str = r#"<style>
.saekit { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: var(--jp-ui-font-size1, 13px);
  color: var(--jp-ui-font-color1, var(--vscode-editor-foreground, inherit)); max-width: 100%; overflow-x: auto; }
.saekit svg { max-width: 100%; height: auto; }
.saekit table { border-collapse: collapse; margin: 4px 0; }
.saekit th, .saekit td { border-bottom: 1px solid var(--jp-border-color2, rgba(128, 128, 128, 0.35));
  padding: 3px 8px; text-align: left; vertical-align: top; overflow-wrap: anywhere; }
.saekit th { color: var(--jp-ui-font-color2, inherit); opacity: 0.85; font-weight: 600; white-space: nowrap;
  overflow-wrap: normal; }
.saekit td.num { text-align: right; font-variant-numeric: tabular-nums; }
.saekit .title { font-weight: 600; font-size: 1.1em; margin: 2px 0 4px; }
.saekit .muted { color: var(--jp-ui-font-color2, inherit); opacity: 0.85; }
.saekit .badge { border-radius: 8px; padding: 0 6px; background: var(--jp-layout-color2, rgba(128, 128, 128, 0.2)); }
.saekit .text { white-space: pre-wrap; max-width: 60em; overflow-wrap: anywhere; }
.saekit svg text { fill: currentColor; }
</style>"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup_and_controls() {
        assert_eq!(escape("<script>alert('x')</script>"), "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;");
        assert_eq!(escape("a\"b&c</table>"), "a&quot;b&amp;c&lt;/table&gt;");
        assert_eq!(escape("bell\u{7}tab\tnl\n"), "bell\\u{7}tab\tnl\n");
    }

    #[test]
    fn truncate_counts_characters() {
        assert_eq!(truncate("héllo", 3), "hél…");
        assert_eq!(truncate("hi", 3), "hi");
    }

    #[test]
    fn bundle_has_plain_text_first_and_evcxr_blocks() {
        let b = MimeBundle::new("plain").with("text/html", "<b>x</b>");
        assert_eq!(b.entries()[0].0, "text/plain");
        assert_eq!(
            b.to_evcxr(),
            "EVCXR_BEGIN_CONTENT text/plain\nplain\nEVCXR_END_CONTENT\nEVCXR_BEGIN_CONTENT text/html\n<b>x</b>\nEVCXR_END_CONTENT\n"
        );
    }
}

/// What a cell sees: the prelude's `Render`, nothing else (as evcxr writes a cell).
#[cfg(test)]
mod cell_display_tests {
    use super::{MimeBundle, Render};

    /// A value that says which `evcxr_display` a cell's last line reached.
    #[derive(Debug, Default)]
    struct Probe(std::cell::Cell<u32>);

    impl Render for Probe {
        fn bundle(&self) -> MimeBundle {
            MimeBundle::new("probe")
        }
        fn evcxr_display(&self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn a_values_rich_display_is_found_behind_references_and_pointers() {
        // What evcxr writes for a cell's last expression.
        let probe = Probe::default();
        (probe).evcxr_display();
        (&probe).evcxr_display();
        (Box::new(&probe)).evcxr_display();
        (std::sync::Arc::new(&probe)).evcxr_display();
        (std::rc::Rc::new(&probe)).evcxr_display();
        let mut mutable = &probe;
        (mutable).evcxr_display();
        (&mut mutable).evcxr_display();
        assert_eq!(probe.0.get(), 7, "every form reached Render");
        assert_eq!(Box::new(&probe).bundle().plain(), "probe");
    }
}
