//! Static charts as SVG (shown by exported HTML and GitHub without JavaScript) with a text twin.

use super::{MimeBundle, Render, escape};

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

    /// The chart as a plotly figure, for frontends that render `application/vnd.plotly.v1+json`.
    pub fn plotly(&self) -> serde_json::Value {
        serde_json::json!({
            "data": [{
                "type": "bar",
                "x": self.bins.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
                "y": self.bins.iter().map(|b| b.1).collect::<Vec<_>>(),
            }],
            "layout": {"title": {"text": self.title}, "xaxis": {"title": {"text": self.x_label}}},
        })
    }
}

impl Render for Histogram {
    fn bundle(&self) -> MimeBundle {
        MimeBundle::new(self.plain())
            .with("image/svg+xml", self.svg())
            .with("application/vnd.plotly.v1+json", self.plotly().to_string())
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

/// Line charts of one or more series over a shared x axis (loss curves, rates over time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// (name, points) per series.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// Plot y on a log scale (only positive values are drawn).
    pub log_y: bool,
}

const PALETTE: [&str; 6] = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2"];

fn short(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && (a >= 1e5 || a < 1e-3) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

impl LineChart {
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        LineChart { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), ..Default::default() }
    }

    /// Adds a series.
    pub fn series(mut self, name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        self.series.push((name.into(), points));
        self
    }

    pub fn log_y(mut self, log: bool) -> Self {
        self.log_y = log;
        self
    }

    fn drawable(&self) -> impl Iterator<Item = (usize, &str, Vec<(f64, f64)>)> + '_ {
        self.series.iter().enumerate().map(move |(i, (name, points))| {
            let pts = points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_y || *y > 0.0))
                .map(|&(x, y)| (x, if self.log_y { y.log10() } else { y }))
                .collect();
            (i, name.as_str(), pts)
        })
    }

    /// One line per series: its last value, minimum and number of points.
    pub fn plain(&self) -> String {
        let mut out = format!("{} ({} vs {})", self.title, self.y_label, self.x_label);
        for (name, points) in &self.series {
            let last = points.last().map(|p| short(p.1)).unwrap_or_else(|| "–".into());
            let min = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            let min = if min.is_finite() { short(min) } else { "–".into() };
            out.push_str(&format!(
                "\n  {name}: last {last}, min {min}, {} points",
                crate::error::count(points.len() as u64)
            ));
        }
        out
    }

    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        let (width, height) = (560.0, 240.0);
        let (left, right, top, bottom) = (64.0, 12.0, 28.0, 48.0);
        let (plot_w, plot_h) = (width - left - right, height - top - bottom);
        let all: Vec<(f64, f64)> = self.drawable().flat_map(|(_, _, p)| p).collect();
        let (x0, x1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.0), b.max(p.0)));
        let (y0, y1) = all.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
        let span = |a: f64, b: f64| if b > a { b - a } else { 1.0 };
        let sx = |x: f64| left + (x - x0) / span(x0, x1) * plot_w;
        let sy = |y: f64| top + plot_h - (y - y0) / span(y0, y1) * plot_h;
        let unlog = |v: f64| if self.log_y { 10f64.powf(v) } else { v };
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" \
             font-family=\"sans-serif\" font-size=\"11\" role=\"img\"><title>{t}</title>\
             <text x=\"{left}\" y=\"16\" font-size=\"13\" font-weight=\"600\" fill=\"currentColor\">{t}</text>\
             <rect x=\"{left}\" y=\"{top}\" width=\"{plot_w}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#888\"/>",
            t = escape(&self.title)
        );
        if !all.is_empty() {
            for (value, y) in [(y1, top + 4.0), (y0, top + plot_h)] {
                svg.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"end\" fill=\"currentColor\">{}</text>",
                    left - 6.0,
                    short(unlog(value))
                ));
            }
            for (value, anchor, x) in [(x0, "start", left), (x1, "end", left + plot_w)] {
                svg.push_str(&format!(
                    "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\" fill=\"currentColor\">{}</text>",
                    top + plot_h + 14.0,
                    short(value)
                ));
            }
        }
        for (i, name, points) in self.drawable() {
            let color = PALETTE[i % PALETTE.len()];
            let path: Vec<String> = points.iter().map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y))).collect();
            if !path.is_empty() {
                svg.push_str(&format!(
                    "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"><title>{}</title></polyline>",
                    path.join(" "),
                    escape(name)
                ));
            }
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\">{}</text>",
                left + 8.0,
                top + 14.0 + 13.0 * i as f64,
                escape(name)
            ));
        }
        let y_label = if self.log_y { format!("{} (log scale)", self.y_label) } else { self.y_label.clone() };
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"currentColor\">{}</text>\
             <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"currentColor\">{}</text></svg>",
            left + plot_w / 2.0,
            height - 8.0,
            escape(&self.x_label),
            top + plot_h / 2.0,
            escape(&y_label)
        ));
        svg
    }

    /// The chart as a plotly figure, for frontends that render `application/vnd.plotly.v1+json`.
    pub fn plotly(&self) -> serde_json::Value {
        let data: Vec<serde_json::Value> = self
            .series
            .iter()
            .map(|(name, points)| {
                serde_json::json!({
                    "type": "scatter", "mode": "lines", "name": name,
                    "x": points.iter().map(|p| p.0).collect::<Vec<_>>(),
                    "y": points.iter().map(|p| p.1).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "data": data,
            "layout": {
                "title": {"text": self.title},
                "xaxis": {"title": {"text": self.x_label}},
                "yaxis": {"title": {"text": self.y_label}, "type": if self.log_y { "log" } else { "linear" }},
            }
        })
    }
}

impl Render for LineChart {
    fn bundle(&self) -> MimeBundle {
        MimeBundle::new(self.plain())
            .with("image/svg+xml", self.svg())
            .with("application/vnd.plotly.v1+json", self.plotly().to_string())
    }
}

#[cfg(test)]
mod line_tests {
    use super::*;

    #[test]
    fn line_chart_draws_each_series_in_all_forms() {
        let chart = LineChart::new("loss <mse>", "step", "loss")
            .series("train", vec![(0.0, 4.0), (1.0, 2.0), (2.0, 1.0)])
            .series("val", vec![(0.0, 5.0), (2.0, 3.0)]);
        let svg = chart.svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("loss &lt;mse&gt;"));
        // The first train point sits at the left edge, the largest value (5.0) at the top.
        assert!(svg.contains(&format!("points=\"{:.1},{:.1}", 64.0, 28.0 + 164.0 - 3.0 / 4.0 * 164.0)));
        assert_eq!(
            chart.plain(),
            "loss <mse> (loss vs step)\n  train: last 1.000, min 1.000, 3 points\n  val: last 3.000, min 3.000, 2 points"
        );
        let plotly = chart.plotly();
        assert_eq!(plotly["data"][1]["y"], serde_json::json!([5.0, 3.0]));
        assert!(chart.bundle().get("application/vnd.plotly.v1+json").is_some());
    }

    #[test]
    fn log_scale_skips_non_positive_values() {
        let chart = LineChart::new("l", "x", "y").series("s", vec![(0.0, 0.0), (1.0, 10.0), (2.0, 100.0)]).log_y(true);
        let svg = chart.svg();
        let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 2);
        assert!(svg.contains("y (log scale)"));
    }
}
