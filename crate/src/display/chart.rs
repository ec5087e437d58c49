//! Static charts as SVG (shown by exported HTML and GitHub without JavaScript) with a text twin.

use super::{MimeBundle, escape};

/// A bar chart of counts per bin, bins given in order with their labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub title: String,
    pub x_label: String,
    /// (label, count) per bin.
    pub bins: Vec<(String, u64)>,
}

impl Histogram {
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, bins: Vec<(String, u64)>) -> Self {
        Histogram { title: title.into(), x_label: x_label.into(), bins }
    }

    fn max(&self) -> u64 {
        self.bins.iter().map(|b| b.1).max().unwrap_or(0).max(1)
    }

    /// Horizontal bars of `█` for a terminal.
    pub fn plain(&self) -> String {
        let label_width = self.bins.iter().map(|b| b.0.chars().count()).max().unwrap_or(0);
        let mut out = format!("{} ({})", self.title, self.x_label);
        for (label, count) in &self.bins {
            let bar = "█".repeat(((*count as f64 / self.max() as f64) * 40.0).round() as usize);
            out.push_str(&format!("\n{label:>label_width$} │{bar} {}", crate::error::count(*count)));
        }
        out
    }

    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        let (width, height) = (560.0, 220.0);
        let (left, right, top, bottom) = (56.0, 12.0, 28.0, 52.0);
        let plot_w = width - left - right;
        let plot_h = height - top - bottom;
        let n = self.bins.len().max(1) as f64;
        let slot = plot_w / n;
        let max = self.max() as f64;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
             font-family=\"sans-serif\" font-size=\"11\" role=\"img\">\
             <title>{}</title>\
             <text x=\"{left}\" y=\"16\" font-size=\"13\" font-weight=\"600\" fill=\"currentColor\">{}</text>\
             <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"currentColor\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\" fill=\"currentColor\">0</text>",
            escape(&self.title),
            escape(&self.title),
            top + plot_h,
            left + plot_w,
            top + plot_h,
            left - 6.0,
            top + 4.0,
            crate::error::count(max as u64),
            left - 6.0,
            top + plot_h,
        );
        let label_every = (self.bins.len() / 12).max(1);
        for (i, (label, count)) in self.bins.iter().enumerate() {
            let h = (*count as f64 / max) * plot_h;
            let x = left + i as f64 * slot + slot * 0.1;
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#4c78a8\"><title>{}: {}</title></rect>",
                top + plot_h - h,
                slot * 0.8,
                escape(label),
                crate::error::count(*count)
            ));
            if i % label_every == 0 {
                svg.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"currentColor\">{}</text>",
                    x + slot * 0.4,
                    top + plot_h + 14.0,
                    escape(label)
                ));
            }
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"currentColor\">{}</text></svg>",
            left + plot_w / 2.0,
            height - 10.0,
            escape(&self.x_label)
        ));
        svg
    }

    pub fn bundle(&self) -> MimeBundle {
        MimeBundle::new(self.plain()).with("image/svg+xml", self.svg())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_draws_one_bar_per_bin_and_escapes_labels() {
        let h = Histogram::new("lengths <x>", "chars", vec![("<1k".into(), 10), ("1k".into(), 5), ("2k".into(), 0)]);
        let svg = h.svg();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("&lt;1k"));
        assert!(svg.contains("lengths &lt;x&gt;"));
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let plain = h.plain();
        assert!(plain.contains(&format!("<1k │{} 10", "█".repeat(40))));
        assert!(plain.contains(&format!(" 1k │{} 5", "█".repeat(20))));
    }
}
