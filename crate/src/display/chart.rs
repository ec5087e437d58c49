//! Static charts as SVG (shown by exported HTML and GitHub without JavaScript), each with a text twin and a
//! plotly twin carrying the same axes, series and titles: histograms, horizontal bar charts, line charts
//! of several series (log axes, smoothing, downsampling), scatters with labelled points, and a grid of
//! small multiples. Axes, ticks and number formats come from [`super::axis`].

use super::axis::{Frame, Scale, number};
use super::{MimeBundle, Render, STYLE, escape};

/// Colours that read on light and dark backgrounds alike.
pub const PALETTE: [&str; 8] = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d"];

/// Points a line chart draws per series at most; longer series are downsampled (each bucket keeps its
/// lowest and highest point), so a dashboard that redraws often keeps its bundle small.
pub const MAX_POINTS: usize = 600;

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

fn bundle_of(plain: String, svg: String, plotly: serde_json::Value) -> MimeBundle {
    MimeBundle::new(plain).with("image/svg+xml", svg).with("application/vnd.plotly.v1+json", plotly.to_string())
}

fn plotly_axis(title: &str, log: bool) -> serde_json::Value {
    serde_json::json!({"title": {"text": title}, "type": if log { "log" } else { "linear" }})
}

/// A bar chart of counts per bin, bins given in order with their labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub title: String,
    pub x_label: String,
    /// (label, count) per bin.
    pub bins: Vec<(String, u64)>,
    /// Counts on a log scale (empty bins are then not drawn).
    pub log_count: bool,
}

impl Histogram {
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, bins: Vec<(String, u64)>) -> Self {
        Histogram { title: title.into(), x_label: x_label.into(), bins, log_count: false }
    }

    /// Counts on a log scale, for distributions with a long tail.
    pub fn log_count(mut self, log: bool) -> Self {
        self.log_count = log;
        self
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
            out.push_str(&format!("\n{label:>label_width$} │{bar} {}", crate::units::count(*count)));
        }
        out
    }

    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        let y = Scale::covering(self.bins.iter().map(|b| b.1 as f64).chain([0.0, 1.0]), self.log_count).from_zero();
        let frame = Frame::new(560.0, 230.0, Scale { min: 0.0, max: 1.0, log: false }, y);
        let y_title = if self.log_count { "count (log scale)" } else { "count" };
        let mut svg = frame.open(&self.title, &self.x_label, y_title, false);
        let slot = frame.plot_width() / self.bins.len().max(1) as f64;
        let base = frame.top + frame.plot_height();
        // Every label that fits beside its neighbours: one in every `label_every` bins.
        let widest = self.bins.iter().map(|b| b.0.chars().count()).max().unwrap_or(1) as f64 * 6.5 + 6.0;
        let label_every = ((widest / slot).ceil() as usize).max(1);
        for (i, (label, count)) in self.bins.iter().enumerate() {
            let x = frame.left + i as f64 * slot + slot * 0.1;
            if *count > 0 || !self.log_count {
                let top = if *count == 0 { base } else { frame.py(*count as f64) };
                svg.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}</title></rect>",
                    slot * 0.8,
                    base - top,
                    PALETTE[0],
                    escape(label),
                    crate::units::count(*count)
                ));
            }
            if i % label_every == 0 {
                svg.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"currentColor\" fill-opacity=\"0.8\">{}</text>",
                    x + slot * 0.4,
                    base + 14.0,
                    escape(label)
                ));
            }
        }
        svg.push_str("</svg>");
        svg
    }

    /// The chart as a plotly figure, for frontends that render `application/vnd.plotly.v1+json`.
    pub fn plotly(&self) -> serde_json::Value {
        serde_json::json!({
            "data": [{
                "type": "bar",
                "x": self.bins.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
                "y": self.bins.iter().map(|b| b.1).collect::<Vec<_>>(),
                "marker": {"color": PALETTE[0]},
            }],
            "layout": {
                "title": {"text": self.title},
                "xaxis": {"title": {"text": self.x_label}, "type": "category"},
                "yaxis": plotly_axis(if self.log_count { "count (log scale)" } else { "count" }, self.log_count),
            },
        })
    }
}

impl Render for Histogram {
    fn bundle(&self) -> MimeBundle {
        bundle_of(self.plain(), self.svg(), self.plotly())
    }
}

/// Horizontal bars, one per category, for labels too long to sit under a bar (sources of a mix, buckets).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BarChart {
    pub title: String,
    /// What the values are, with their unit.
    pub value_label: String,
    /// (label, value) per bar, drawn top to bottom.
    pub bars: Vec<(String, f64)>,
}

impl BarChart {
    pub fn new(title: impl Into<String>, value_label: impl Into<String>) -> Self {
        BarChart { title: title.into(), value_label: value_label.into(), bars: Vec::new() }
    }

    pub fn bar(mut self, label: impl Into<String>, value: f64) -> Self {
        self.bars.push((label.into(), value));
        self
    }

    pub fn plain(&self) -> String {
        let width = self.bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(0);
        let max = self.bars.iter().map(|b| b.1).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
        let mut out = format!("{} ({})", self.title, self.value_label);
        for (label, value) in &self.bars {
            let bar = "█".repeat((value.max(0.0) / max * 40.0).round() as usize);
            out.push_str(&format!("\n{label:>width$} │{bar} {}", number(*value, nice_label_step(*value))));
        }
        out
    }

    pub fn svg(&self) -> String {
        let label_chars = self.bars.iter().map(|b| b.0.chars().count().min(40)).max().unwrap_or(4);
        let row = 22.0;
        let height = 30.0 + 44.0 + row * self.bars.len().max(1) as f64;
        let x = Scale::covering(self.bars.iter().map(|b| b.1).chain([0.0]), false).from_zero();
        let mut frame = Frame::new(600.0, height, x, Scale { min: 0.0, max: 1.0, log: false });
        frame.left = 16.0 + 6.5 * label_chars as f64;
        frame.right = 56.0;
        frame.y_ticks = false;
        let mut svg = frame.open(&self.title, &self.value_label, "", true);
        for (i, (label, value)) in self.bars.iter().enumerate() {
            let y = frame.top + i as f64 * row + 3.0;
            let (x0, x1) = (frame.px(0.0), frame.px(value.max(0.0)));
            svg.push_str(&format!(
                "<rect x=\"{x0:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {}</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"currentColor\">{}</text>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"currentColor\" fill-opacity=\"0.8\">{}</text>",
                (x1 - x0).max(0.0),
                row - 6.0,
                PALETTE[0],
                escape(label),
                number(*value, nice_label_step(*value)),
                frame.left - 6.0,
                y + row / 2.0 + 1.0,
                escape(&super::truncate(label, 40)),
                x1 + 4.0,
                y + row / 2.0 + 1.0,
                number(*value, nice_label_step(*value)),
            ));
        }
        svg.push_str("</svg>");
        svg
    }

    pub fn plotly(&self) -> serde_json::Value {
        serde_json::json!({
            "data": [{
                "type": "bar", "orientation": "h",
                "y": self.bars.iter().map(|b| b.0.as_str()).collect::<Vec<_>>(),
                "x": self.bars.iter().map(|b| b.1).collect::<Vec<_>>(),
                "marker": {"color": PALETTE[0]},
            }],
            "layout": {
                "title": {"text": self.title},
                "xaxis": plotly_axis(&self.value_label, false),
                "yaxis": {"type": "category", "autorange": "reversed"},
            },
        })
    }
}

/// A step that shows `v` with two significant digits.
fn nice_label_step(v: f64) -> f64 {
    let a = v.abs();
    if a == 0.0 { 1.0 } else { 10f64.powf(a.log10().floor() - 1.0) }
}

impl Render for BarChart {
    fn bundle(&self) -> MimeBundle {
        bundle_of(self.plain(), self.svg(), self.plotly())
    }
}

/// The legend: a coloured mark and the name of each series, in a row under the title, right-aligned.
fn legend<'a>(frame: &Frame, names: impl DoubleEndedIterator<Item = &'a str> + ExactSizeIterator) -> String {
    let mut svg = String::new();
    let mut x_at = frame.left + frame.plot_width();
    for (i, name) in names.enumerate().rev() {
        x_at -= 22.0 + 6.2 * name.chars().count() as f64;
        let color = PALETTE[i % PALETTE.len()];
        svg.push_str(&format!(
            "<g class=\"legend\"><line x1=\"{x_at:.1}\" y1=\"18\" x2=\"{:.1}\" y2=\"18\" stroke=\"{color}\" stroke-width=\"2.5\"/>\
             <text x=\"{:.1}\" y=\"22\" fill=\"currentColor\">{}</text></g>",
            x_at + 14.0,
            x_at + 17.0,
            escape(name)
        ));
    }
    svg
}

/// Line charts of one or more named series over a shared x axis (loss curves, rates over time).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// (name, points) per series.
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    /// Plot x on a log scale (only positive values are drawn).
    pub log_x: bool,
    /// Plot y on a log scale (only positive values are drawn).
    pub log_y: bool,
    /// Exponential smoothing weight in `[0, 1)` (TensorBoard's): when set, each series is drawn faint as
    /// it is and solid smoothed.
    pub smoothing: Option<f64>,
}

/// Exponential moving average with TensorBoard's debiasing, so the curve starts at the data.
pub fn smooth(points: &[(f64, f64)], weight: f64) -> Vec<(f64, f64)> {
    let weight = weight.clamp(0.0, 0.999);
    let (mut last, mut n) = (0.0, 0);
    points
        .iter()
        .map(|&(x, y)| {
            last = last * weight + (1.0 - weight) * y;
            n += 1;
            (x, last / (1.0 - weight.powi(n)))
        })
        .collect()
}

/// At most about `max` points of `points` (in x order): each bucket keeps its lowest and highest point,
/// so spikes survive.
pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max.max(2) {
        return points.to_vec();
    }
    let buckets = (max / 2).max(1);
    let size = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(buckets * 2);
    for chunk in points.chunks(size) {
        let lo = chunk.iter().enumerate().min_by(|a, b| a.1.1.total_cmp(&b.1.1)).map(|(i, _)| i).unwrap_or(0);
        let hi = chunk.iter().enumerate().max_by(|a, b| a.1.1.total_cmp(&b.1.1)).map(|(i, _)| i).unwrap_or(0);
        let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
        out.push(chunk[a]);
        if b != a {
            out.push(chunk[b]);
        }
    }
    out
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

    pub fn log_x(mut self, log: bool) -> Self {
        self.log_x = log;
        self
    }

    pub fn log_y(mut self, log: bool) -> Self {
        self.log_y = log;
        self
    }

    /// Draws each series smoothed (exponential weight in `[0, 1)`, e.g. 0.9) beside its raw curve.
    pub fn smoothed(mut self, weight: f64) -> Self {
        self.smoothing = Some(weight);
        self
    }

    fn drawable(&self, points: &[(f64, f64)]) -> Vec<(f64, f64)> {
        let kept: Vec<(f64, f64)> = points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite() && (!self.log_x || *x > 0.0) && (!self.log_y || *y > 0.0))
            .collect();
        downsample(&kept, MAX_POINTS)
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
                crate::units::count(points.len() as u64)
            ));
        }
        out
    }

    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        let drawn: Vec<Vec<(f64, f64)>> = self.series.iter().map(|(_, p)| self.drawable(p)).collect();
        let x = Scale::covering(drawn.iter().flatten().map(|p| p.0), self.log_x);
        let y = Scale::covering(drawn.iter().flatten().map(|p| p.1), self.log_y);
        let frame = Frame::new(560.0, 250.0, x, y);
        let y_title = if self.log_y { format!("{} (log scale)", self.y_label) } else { self.y_label.clone() };
        let x_title = if self.log_x { format!("{} (log scale)", self.x_label) } else { self.x_label.clone() };
        let mut svg = frame.open(&self.title, &x_title, &y_title, true);
        let polyline = |points: &[(f64, f64)], color: &str, extra: &str, name: &str| -> String {
            let path: Vec<String> =
                points.iter().map(|&(x, y)| format!("{:.1},{:.1}", frame.px(x), frame.py(y))).collect();
            format!(
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.6\" {extra} points=\"{}\"><title>{}</title></polyline>",
                path.join(" "),
                escape(name)
            )
        };
        for (i, ((name, _), points)) in self.series.iter().zip(&drawn).enumerate() {
            if points.is_empty() {
                continue;
            }
            let color = PALETTE[i % PALETTE.len()];
            match self.smoothing {
                Some(weight) => {
                    svg.push_str(&polyline(points, color, "stroke-opacity=\"0.3\"", name));
                    svg.push_str(&polyline(&smooth(points, weight), color, "", &format!("{name} (smoothed)")));
                }
                None => svg.push_str(&polyline(points, color, "", name)),
            }
        }
        svg.push_str(&legend(&frame, self.series.iter().map(|s| s.0.as_str())));
        svg.push_str("</svg>");
        svg
    }

    /// The chart as a plotly figure, for frontends that render `application/vnd.plotly.v1+json`.
    pub fn plotly(&self) -> serde_json::Value {
        let mut data = Vec::new();
        for (i, (name, points)) in self.series.iter().enumerate() {
            let points = self.drawable(points);
            let color = PALETTE[i % PALETTE.len()];
            let trace = |points: &[(f64, f64)], name: &str, opacity: f64| {
                serde_json::json!({
                    "type": "scatter", "mode": "lines", "name": name, "opacity": opacity,
                    "line": {"color": color},
                    "x": points.iter().map(|p| p.0).collect::<Vec<_>>(),
                    "y": points.iter().map(|p| p.1).collect::<Vec<_>>(),
                })
            };
            match self.smoothing {
                Some(weight) => {
                    data.push(trace(&points, name, 0.3));
                    data.push(trace(&smooth(&points, weight), &format!("{name} (smoothed)"), 1.0));
                }
                None => data.push(trace(&points, name, 1.0)),
            }
        }
        serde_json::json!({
            "data": data,
            "layout": {
                "title": {"text": self.title},
                "xaxis": plotly_axis(&self.x_label, self.log_x),
                "yaxis": plotly_axis(&self.y_label, self.log_y),
                "showlegend": true,
            }
        })
    }
}

impl Render for LineChart {
    fn bundle(&self) -> MimeBundle {
        bundle_of(self.plain(), self.svg(), self.plotly())
    }
}

/// Points in a plane, each with a label (one point per run: L0 against explained variance, say).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scatter {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// (series name, [(x, y, label)]) per series.
    pub series: Vec<(String, Vec<(f64, f64, String)>)>,
    pub log_x: bool,
    pub log_y: bool,
}

impl Scatter {
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Scatter { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), ..Default::default() }
    }

    pub fn series(mut self, name: impl Into<String>, points: Vec<(f64, f64, String)>) -> Self {
        self.series.push((name.into(), points));
        self
    }

    pub fn log_x(mut self, log: bool) -> Self {
        self.log_x = log;
        self
    }

    pub fn log_y(mut self, log: bool) -> Self {
        self.log_y = log;
        self
    }

    fn drawable(&self) -> impl Iterator<Item = (usize, &(f64, f64, String))> {
        self.series.iter().enumerate().flat_map(|(i, (_, points))| points.iter().map(move |p| (i, p))).filter(
            |(_, p)| p.0.is_finite() && p.1.is_finite() && (!self.log_x || p.0 > 0.0) && (!self.log_y || p.1 > 0.0),
        )
    }

    pub fn plain(&self) -> String {
        let mut out = format!("{} ({} vs {})", self.title, self.y_label, self.x_label);
        for (name, points) in &self.series {
            out.push_str(&format!("\n  {name}:"));
            for (x, y, label) in points {
                out.push_str(&format!(
                    "\n    {label}: {} = {}, {} = {}",
                    self.x_label,
                    short(*x),
                    self.y_label,
                    short(*y)
                ));
            }
        }
        out
    }

    pub fn svg(&self) -> String {
        let x = Scale::covering(self.drawable().map(|(_, p)| p.0), self.log_x);
        let y = Scale::covering(self.drawable().map(|(_, p)| p.1), self.log_y);
        let frame = Frame::new(560.0, 280.0, x, y);
        let mut svg = frame.open(&self.title, &self.x_label, &self.y_label, true);
        for (i, (px, py, label)) in self.drawable() {
            let (cx, cy) = (frame.px(*px), frame.py(*py));
            svg.push_str(&format!(
                "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"4\" fill=\"{}\"><title>{}: ({}, {})</title></circle>\
                 <text x=\"{:.1}\" y=\"{:.1}\" fill=\"currentColor\" font-size=\"10\">{}</text>",
                PALETTE[i % PALETTE.len()],
                escape(label),
                short(*px),
                short(*py),
                cx + 6.0,
                cy - 5.0,
                escape(&super::truncate(label, 24))
            ));
        }
        svg.push_str(&legend(&frame, self.series.iter().map(|s| s.0.as_str())));
        svg.push_str("</svg>");
        svg
    }

    pub fn plotly(&self) -> serde_json::Value {
        let data: Vec<serde_json::Value> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, (name, points))| {
                serde_json::json!({
                    "type": "scatter", "mode": "markers+text", "name": name, "textposition": "top right",
                    "marker": {"color": PALETTE[i % PALETTE.len()]},
                    "x": points.iter().map(|p| p.0).collect::<Vec<_>>(),
                    "y": points.iter().map(|p| p.1).collect::<Vec<_>>(),
                    "text": points.iter().map(|p| p.2.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({
            "data": data,
            "layout": {
                "title": {"text": self.title},
                "xaxis": plotly_axis(&self.x_label, self.log_x),
                "yaxis": plotly_axis(&self.y_label, self.log_y),
            }
        })
    }
}

impl Render for Scatter {
    fn bundle(&self) -> MimeBundle {
        bundle_of(self.plain(), self.svg(), self.plotly())
    }
}

/// Several charts in one display, `columns` to a row (small multiples: one chart per SAE, per layer).
#[derive(Debug, Clone, Default)]
pub struct ChartGrid {
    pub title: String,
    pub columns: usize,
    /// The charts' bundles (each with its SVG and text).
    pub charts: Vec<MimeBundle>,
}

/// `width` and `height` of an SVG document's root element.
fn svg_size(svg: &str) -> (f64, f64) {
    let attr = |name: &str| -> f64 {
        let head = svg.split('>').next().unwrap_or("");
        head.split(&format!(" {name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    (attr("width"), attr("height"))
}

impl ChartGrid {
    pub fn new(title: impl Into<String>, columns: usize) -> Self {
        ChartGrid { title: title.into(), columns: columns.max(1), charts: Vec::new() }
    }

    pub fn chart(mut self, chart: &impl Render) -> Self {
        self.charts.push(chart.bundle());
        self
    }

    /// One SVG holding every chart at its place in the grid.
    pub fn svg(&self) -> String {
        let sizes: Vec<(f64, f64)> =
            self.charts.iter().map(|c| c.get("image/svg+xml").map(svg_size).unwrap_or((0.0, 0.0))).collect();
        let cell_w = sizes.iter().map(|s| s.0).fold(0.0, f64::max);
        let cell_h = sizes.iter().map(|s| s.1).fold(0.0, f64::max);
        let rows = self.charts.len().div_ceil(self.columns);
        let (w, h) = (cell_w * self.columns.min(self.charts.len()).max(1) as f64, 26.0 + cell_h * rows as f64);
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"sans-serif\" role=\"img\"><title>{t}</title>\
             <text x=\"8\" y=\"18\" font-size=\"14\" font-weight=\"600\" fill=\"currentColor\">{t}</text>",
            t = escape(&self.title)
        );
        for (i, chart) in self.charts.iter().enumerate() {
            let Some(inner) = chart.get("image/svg+xml") else { continue };
            let (x, y) = ((i % self.columns) as f64 * cell_w, 26.0 + (i / self.columns) as f64 * cell_h);
            // A nested <svg> keeps each chart's own coordinates; move it into its cell.
            svg.push_str(&inner.replacen("<svg ", &format!("<svg x=\"{x}\" y=\"{y}\" "), 1));
        }
        svg.push_str("</svg>");
        svg
    }
}

impl Render for ChartGrid {
    fn bundle(&self) -> MimeBundle {
        let plain: Vec<&str> = self.charts.iter().map(|c| c.plain()).collect();
        let cells: String = self
            .charts
            .iter()
            .map(|c| {
                format!(
                    "<div>{}</div>",
                    c.get("image/svg+xml")
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("<pre>{}</pre>", escape(c.plain())))
                )
            })
            .collect();
        let html = format!(
            "{STYLE}<div class=\"saekit\"><div class=\"title\">{}</div><div class=\"grid\" \
             style=\"display: grid; grid-template-columns: repeat({}, max-content); gap: 8px; overflow-x: auto\">{cells}</div></div>",
            escape(&self.title),
            self.columns
        );
        MimeBundle::new(format!("{}\n\n{}", self.title, plain.join("\n\n")))
            .with("text/html", html)
            .with("image/svg+xml", self.svg())
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
        // Nice count ticks, not the maximum printed alone.
        for tick in [">0<", ">2<", ">4<", ">10<"] {
            assert!(svg.contains(tick), "{tick} in {svg}");
        }
        let plain = h.plain();
        assert!(plain.contains(&format!("<1k │{} 10", "█".repeat(40))));
        assert!(plain.contains(&format!(" 1k │{} 5", "█".repeat(20))));
        // On a log scale the empty bin is not drawn and the axis says so.
        let log = h.clone().log_count(true).svg();
        assert_eq!(log.matches("<rect").count(), 2);
        assert!(log.contains("count (log scale)"));
        assert_eq!(h.log_count(true).plotly()["layout"]["yaxis"]["type"], "log");
    }

    #[test]
    fn line_chart_draws_each_series_with_a_legend_in_all_forms() {
        let chart = LineChart::new("loss <mse>", "step", "loss")
            .series("train", vec![(0.0, 4.0), (1.0, 2.0), (2.0, 1.0)])
            .series("val", vec![(0.0, 5.0), (2.0, 3.0)]);
        let svg = chart.svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("class=\"legend\"").count(), 2);
        assert!(svg.contains("loss &lt;mse&gt;"));
        // y runs 1..5 (nice bounds), x 0..2: the first train point sits at the left edge, 3/4 up.
        let frame = Frame::new(560.0, 250.0, Scale::covering([0.0, 2.0], false), Scale::covering([1.0, 5.0], false));
        assert!(svg.contains(&format!("points=\"{:.1},{:.1}", frame.px(0.0), frame.py(4.0))), "{svg}");
        assert_eq!(frame.py(4.0), 30.0 + 172.0 / 4.0);
        assert_eq!(
            chart.plain(),
            "loss <mse> (loss vs step)\n  train: last 1.000, min 1.000, 3 points\n  val: last 3.000, min 3.000, 2 points"
        );
        let plotly = chart.plotly();
        assert_eq!(plotly["data"][1]["y"], serde_json::json!([5.0, 3.0]));
        assert_eq!(plotly["data"][1]["name"], "val");
        assert!(chart.bundle().get("application/vnd.plotly.v1+json").is_some());
    }

    #[test]
    fn log_axes_skip_non_positive_values_and_tick_powers_of_ten() {
        let chart = LineChart::new("l", "rank", "y")
            .series("s", vec![(1.0, 0.0), (10.0, 10.0), (1000.0, 100.0)])
            .log_x(true)
            .log_y(true);
        let svg = chart.svg();
        let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 2);
        assert!(svg.contains("y (log scale)") && svg.contains("rank (log scale)"));
        assert!(svg.contains(">10³<") && svg.contains(">10²<"), "{svg}");
        assert_eq!(chart.plotly()["layout"]["xaxis"]["type"], "log");
    }

    #[test]
    fn smoothing_and_downsampling() {
        let raw: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, if i % 2 == 0 { 0.0 } else { 2.0 })).collect();
        let s = smooth(&raw, 0.9);
        assert_eq!(s[0], (0.0, 0.0), "debiased: starts at the data");
        assert!((s[9].1 - 1.0).abs() < 0.2, "{:?}", s[9]);
        let chart = LineChart::new("t", "x", "y").series("a", raw).smoothed(0.9);
        assert_eq!(chart.svg().matches("<polyline").count(), 2);
        assert_eq!(chart.plotly()["data"][1]["name"], "a (smoothed)");

        let long: Vec<(f64, f64)> = (0..100_000).map(|i| (i as f64, (i % 1000) as f64)).collect();
        let mut spiky = long.clone();
        spiky[54_321].1 = 1e6;
        let down = downsample(&spiky, 600);
        assert!(down.len() <= 600 && down.len() >= 500, "{}", down.len());
        assert!(down.contains(&(54_321.0, 1e6)), "the spike survives");
        assert!(down.windows(2).all(|w| w[0].0 < w[1].0), "still in x order");
        let big = LineChart::new("t", "x", "y").series("a", long).bundle();
        assert!(big.get("image/svg+xml").unwrap().len() < 40_000, "a long series stays small");
    }

    #[test]
    fn bars_scatter_and_grid() {
        let bars = BarChart::new("mix", "documents").bar("a very long source name <x>", 1200.0).bar("b", 300.0);
        let svg = bars.svg();
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("a very long source name &lt;x&gt;") && svg.contains(">1,200<"));
        assert_eq!(bars.plotly()["data"][0]["orientation"], "h");
        assert!(bars.plain().contains("b │██████████ 300"), "{}", bars.plain());

        let scatter = Scatter::new("frontier", "L0", "explained variance")
            .series("topk", vec![(32.0, 0.81, "k=32".into()), (64.0, 0.88, "k=64".into())]);
        let svg = scatter.svg();
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains(">k=64<"));
        assert_eq!(scatter.plotly()["data"][0]["text"], serde_json::json!(["k=32", "k=64"]));

        let grid = ChartGrid::new("two", 2).chart(&bars).chart(&scatter).chart(&LineChart::new("l", "x", "y"));
        let svg = grid.svg();
        assert_eq!(svg.matches("<svg").count(), 4, "the grid nests each chart");
        assert!(svg.contains("<svg x=\"600\" y=\"26\""), "the second chart sits in the second column");
        assert_eq!(svg_size(&svg), (1200.0, 26.0 + 2.0 * 280.0));
        let bundle = grid.bundle();
        assert!(bundle.plain().starts_with("two\n\nmix (documents)"));
        assert!(bundle.get("text/html").unwrap().contains("grid-template-columns: repeat(2, max-content)"));
    }
}
