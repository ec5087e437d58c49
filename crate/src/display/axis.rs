//! Axes as a plotting library draws them: "nice" ticks (steps of 1, 2 or 5 times a power of ten), powers of
//! ten on log axes, numbers with thousands separators or SI suffixes, and the frame every chart shares
//! (title, light gridlines, tick labels, axis titles with units) in SVG that follows the page's colours.

use super::escape;

/// One axis: its range in data units and whether it is logarithmic (then only positive values exist).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub min: f64,
    pub max: f64,
    pub log: bool,
}

impl Scale {
    /// The scale covering `values` (non-finite ones, and non-positive ones on a log scale, ignored),
    /// widened to nice bounds. An empty or one-valued range becomes a small range around it.
    pub fn covering(values: impl IntoIterator<Item = f64>, log: bool) -> Scale {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values {
            if v.is_finite() && (!log || v > 0.0) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
        if !lo.is_finite() {
            return if log { Scale { min: 1.0, max: 10.0, log } } else { Scale { min: 0.0, max: 1.0, log } };
        }
        if log {
            let (a, b) = (lo.log10().floor(), hi.log10().ceil());
            let b = if b <= a { a + 1.0 } else { b };
            return Scale { min: 10f64.powf(a), max: 10f64.powf(b), log };
        }
        if hi <= lo {
            let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
            (lo, hi) = (lo - pad, hi + pad);
        }
        let step = nice_step((hi - lo) / 5.0);
        Scale { min: (lo / step).floor() * step, max: (hi / step).ceil() * step, log }
    }

    /// The same scale starting at zero (bar heights are read from zero).
    pub fn from_zero(self) -> Scale {
        if self.log || self.min <= 0.0 { self } else { Scale { min: 0.0, ..self } }
    }

    /// Where `v` lies, from 0 (min) to 1 (max).
    pub fn fraction(&self, v: f64) -> f64 {
        if self.log {
            let (a, b) = (self.min.log10(), self.max.log10());
            if b > a { (v.max(f64::MIN_POSITIVE).log10() - a) / (b - a) } else { 0.5 }
        } else if self.max > self.min {
            (v - self.min) / (self.max - self.min)
        } else {
            0.5
        }
    }

    /// Tick positions with their labels: 1-2-5 steps on a linear axis, powers of ten on a log axis (with
    /// 2 and 5 between them when the axis spans less than two decades).
    pub fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let (a, b) = (self.min.log10().round() as i32, self.max.log10().round() as i32);
            let every = ((b - a) / 6).max(1);
            let mut ticks: Vec<(f64, String)> =
                (a..=b).filter(|e| (e - a) % every == 0).map(|e| (10f64.powi(e), power_of_ten(e))).collect();
            if b - a <= 2 {
                for e in a..b {
                    for m in [2.0, 5.0] {
                        let v = m * 10f64.powi(e);
                        ticks.push((v, number(v, v)));
                    }
                }
                ticks.sort_by(|x, y| x.0.total_cmp(&y.0));
            }
            return ticks;
        }
        let step = nice_step((self.max - self.min) / 5.0);
        let first = (self.min / step).ceil() as i64;
        let last = (self.max / step + 1e-9).floor() as i64;
        (first..=last).map(|i| i as f64 * step).map(|v| (v, number(v, step))).collect()
    }
}

/// The nice step (1, 2 or 5 × 10ⁿ) nearest above `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if !(raw > 0.0) || !raw.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let m = raw / magnitude;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// `10³`-style label of a power of ten.
pub fn power_of_ten(exponent: i32) -> String {
    const SUPERSCRIPTS: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    match exponent {
        0 => "1".into(),
        1 => "10".into(),
        e => {
            let digits: String =
                e.unsigned_abs().to_string().chars().map(|c| SUPERSCRIPTS[(c as u8 - b'0') as usize]).collect();
            format!("10{}{digits}", if e < 0 { "⁻" } else { "" })
        }
    }
}

/// A number as a chart labels it, at the precision `step` calls for: thousands separators below ten
/// thousand, SI suffixes above (`12k`, `1.5M`, `3G`), decimals only as many as the step needs.
pub fn number(v: f64, step: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    let sign = if v < 0.0 { "-" } else { "" };
    for (scale, suffix) in [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if a >= scale * 10.0 || (a >= scale && suffix != "k") {
            let decimals = decimals_for(step.abs() / scale);
            return format!("{sign}{}{suffix}", trim(format!("{:.*}", decimals, a / scale)));
        }
    }
    if a >= 1.0 && step.abs() >= 1.0 {
        return format!("{sign}{}", crate::units::count(a.round() as u64));
    }
    if a < 1e-3 {
        return format!("{v:.1e}");
    }
    trim(format!("{v:.*}", decimals_for(step.abs())))
}

/// Decimals that show steps of `step` apart (at most 6).
fn decimals_for(step: f64) -> usize {
    if step >= 1.0 || step <= 0.0 { 0 } else { ((-step.log10()).ceil() as usize).min(6) }
}

fn trim(text: String) -> String {
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

/// The frame of a chart: an SVG of `width` × `height` with a plot area inside the margins, a title,
/// light gridlines and labelled ticks on both axes (the x axis categorical when `x_labels` is given).
pub struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub right: f64,
    pub top: f64,
    pub bottom: f64,
    pub x: Scale,
    pub y: Scale,
    /// Whether the y axis has ticks and gridlines (not for categorical rows).
    pub y_ticks: bool,
}

impl Frame {
    pub fn new(width: f64, height: f64, x: Scale, y: Scale) -> Frame {
        Frame { width, height, left: 64.0, right: 16.0, top: 30.0, bottom: 48.0, x, y, y_ticks: true }
    }

    pub fn plot_width(&self) -> f64 {
        self.width - self.left - self.right
    }

    pub fn plot_height(&self) -> f64 {
        self.height - self.top - self.bottom
    }

    /// The x pixel of a data value.
    pub fn px(&self, x: f64) -> f64 {
        self.left + self.x.fraction(x) * self.plot_width()
    }

    /// The y pixel of a data value.
    pub fn py(&self, y: f64) -> f64 {
        self.top + (1.0 - self.y.fraction(y)) * self.plot_height()
    }

    /// The SVG's opening tag, title and background pieces: gridlines, ticks and their labels (x ticks
    /// only when `numeric_x`), the axis titles. Close the document with `</svg>`.
    pub fn open(&self, title: &str, x_title: &str, y_title: &str, numeric_x: bool) -> String {
        let (w, h) = (self.width, self.height);
        let (left, top, pw, ph) = (self.left, self.top, self.plot_width(), self.plot_height());
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
             font-family=\"sans-serif\" font-size=\"11\" role=\"img\" style=\"color: inherit\"><title>{t}</title>\
             <text x=\"{left}\" y=\"18\" font-size=\"13\" font-weight=\"600\" fill=\"currentColor\">{t}</text>",
            t = escape(title)
        );
        for (v, label) in if self.y_ticks { self.y.ticks() } else { Vec::new() } {
            let y = self.py(v);
            if !(top - 0.5..=top + ph + 0.5).contains(&y) {
                continue;
            }
            svg.push_str(&format!(
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"currentColor\" stroke-opacity=\"0.12\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" fill=\"currentColor\" fill-opacity=\"0.8\">{}</text>",
                left + pw,
                left - 6.0,
                y + 3.5,
                escape(&label)
            ));
        }
        if numeric_x {
            for (v, label) in self.x.ticks() {
                let x = self.px(v);
                if !(left - 0.5..=left + pw + 0.5).contains(&x) {
                    continue;
                }
                svg.push_str(&format!(
                    "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"currentColor\" stroke-opacity=\"0.12\"/>\
                     <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"currentColor\" fill-opacity=\"0.8\">{}</text>",
                    top + ph,
                    top + ph + 14.0,
                    escape(&label)
                ));
            }
        }
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"currentColor\" stroke-opacity=\"0.5\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"currentColor\">{}</text>\
             <text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\" fill=\"currentColor\">{}</text>",
            top + ph,
            left + pw,
            top + ph,
            left + pw / 2.0,
            h - 10.0,
            escape(x_title),
            top + ph / 2.0,
            escape(y_title)
        ));
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(scale: Scale) -> Vec<String> {
        scale.ticks().into_iter().map(|t| t.1).collect()
    }

    #[test]
    fn linear_ticks_are_nice() {
        assert_eq!(labels(Scale::covering([0.0, 4.144], false)), ["0", "1", "2", "3", "4", "5"]);
        assert_eq!(labels(Scale::covering([0.013, 0.087], false)), ["0", "0.02", "0.04", "0.06", "0.08", "0.1"]);
        assert_eq!(labels(Scale::covering([0.0, 12_345.0], false)), ["0", "5,000", "10k", "15k"]);
        assert_eq!(labels(Scale::covering([0.0, 3.2e6], false)), ["0", "1M", "2M", "3M", "4M"]);
        assert_eq!(labels(Scale::covering([-1.0, 1.0], false)), ["-1", "-0.5", "0", "0.5", "1"]);
        assert_eq!(nice_step(0.37), 0.5);
        assert_eq!(nice_step(7.0), 10.0);
    }

    #[test]
    fn log_ticks_are_powers_of_ten() {
        let scale = Scale::covering([1.0, 54_272.0], true);
        assert_eq!((scale.min, scale.max), (1.0, 100_000.0));
        assert_eq!(labels(scale), ["1", "10", "10²", "10³", "10⁴", "10⁵"]);
        assert_eq!(labels(Scale::covering([0.002, 0.9], true)), ["10⁻³", "10⁻²", "10⁻¹", "1"]);
        // Under two decades, 2 and 5 fill in.
        assert_eq!(labels(Scale::covering([1.5, 40.0], true)), ["1", "2", "5", "10", "20", "50", "10²"]);
        assert!((scale.fraction(100.0) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(number(1234.0, 1.0), "1,234");
        assert_eq!(number(12_000.0, 1000.0), "12k");
        assert_eq!(number(1_500_000.0, 100_000.0), "1.5M");
        assert_eq!(number(0.25, 0.05), "0.25");
        assert_eq!(number(0.0002, 0.0001), "2.0e-4");
        assert_eq!(power_of_ten(12), "10¹²");
    }

    #[test]
    fn frame_maps_data_to_pixels_and_draws_grid() {
        let frame = Frame::new(400.0, 200.0, Scale::covering([0.0, 10.0], false), Scale::covering([0.0, 100.0], false));
        assert_eq!((frame.px(0.0), frame.px(10.0)), (64.0, 384.0));
        assert_eq!((frame.py(0.0), frame.py(100.0)), (152.0, 30.0));
        let svg = frame.open("t <x>", "step", "loss", true);
        assert!(svg.contains("t &lt;x&gt;") && svg.contains("stroke-opacity=\"0.12\""));
        assert_eq!(svg.matches("stroke-opacity=\"0.12\"").count(), 6 + 6, "a gridline per tick on both axes");
    }
}
