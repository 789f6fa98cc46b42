//! Small SVG plots written beside `metadata.json`, for a person who would rather look than read: the loss per
//! epoch of an LSTM autoencoder, the histogram of an IsolationForest's training scores with its threshold.
//!
//! Plain SVG 1.1 text, no dependency, byte-for-byte reproducible (numbers written with fixed precision), so that
//! a version's files stay identical from one run of the same command to the next.

use std::fmt::Write as _;

/// The file name of the plot in a version folder, as `metadata.json`'s `plot` names it.
pub const PLOT_SVG: &str = "training.svg";

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;

/// The plot's frame: title, axes, and the mapping of data to pixels.
struct Frame {
    svg: String,
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn new(title: &str, x_label: &str, y_label: &str, x: (f64, f64), y: (f64, f64)) -> Frame {
        let mut svg = String::new();
        let _ = write!(
            svg,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="#ffffff"/>
<text x="{cx:.1}" y="20" text-anchor="middle" font-size="14">{title}</text>
<line x1="{LEFT}" y1="{yb:.1}" x2="{xr:.1}" y2="{yb:.1}" stroke="#333333"/>
<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{yb:.1}" stroke="#333333"/>
<text x="{cx:.1}" y="{xl:.1}" text-anchor="middle">{x_label}</text>
<text x="14" y="{cy:.1}" text-anchor="middle" transform="rotate(-90 14 {cy:.1})">{y_label}</text>
"##,
            cx = W / 2.0,
            yb = H - BOTTOM,
            xr = W - RIGHT,
            xl = H - 12.0,
            cy = (TOP + H - BOTTOM) / 2.0,
            title = escape(title),
            x_label = escape(x_label),
            y_label = escape(y_label),
        );
        let mut f = Frame { svg, x, y };
        for (value, anchor, px, py) in [
            (x.0, "start", LEFT, H - BOTTOM + 16.0),
            (x.1, "end", W - RIGHT, H - BOTTOM + 16.0),
            (y.0, "end", LEFT - 6.0, H - BOTTOM),
            (y.1, "end", LEFT - 6.0, TOP + 4.0),
        ] {
            let _ = writeln!(f.svg, r#"<text x="{px:.1}" y="{py:.1}" text-anchor="{anchor}">{}</text>"#, number(value));
        }
        f
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / span(self.x) * (W - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - (y - self.y.0) / span(self.y) * (H - TOP - BOTTOM)
    }

    fn finish(mut self) -> String {
        self.svg.push_str("</svg>\n");
        self.svg
    }
}

fn span((lo, hi): (f64, f64)) -> f64 {
    if hi > lo { hi - lo } else { 1.0 }
}

/// A short, fixed-precision label.
fn number(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-3) { format!("{v:.2e}") } else { format!("{v:.3}") }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// The training and validation loss per epoch, the kept epoch marked.
pub fn loss_curve(train: &[f64], validation: &[f64], best_epoch: usize) -> String {
    let epochs = train.len().max(validation.len()).max(1);
    let (lo, hi) = range(train.iter().chain(validation).copied());
    let (lo, hi) = if lo.is_finite() { (lo.min(0.0), hi) } else { (0.0, 1.0) };
    #[allow(clippy::cast_precision_loss)]
    let mut f = Frame::new(
        "Loss per epoch (training: blue, validation: orange)",
        "epoch",
        "mean squared error",
        (1.0, epochs as f64),
        (lo, hi),
    );
    for (values, color) in [(train, "#1f77b4"), (validation, "#ff7f0e")] {
        #[allow(clippy::cast_precision_loss)]
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", f.px((i + 1) as f64), f.py(*v)))
            .collect();
        let _ = writeln!(
            f.svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
    }
    if let Some(v) = validation.get(best_epoch.wrapping_sub(1)) {
        #[allow(clippy::cast_precision_loss)]
        let (x, y) = (f.px(best_epoch as f64), f.py(*v));
        let _ = writeln!(
            f.svg,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="none" stroke="#d62728" stroke-width="2"/>
<text x="{x:.1}" y="{:.1}" text-anchor="middle" fill="#d62728">kept: epoch {best_epoch}</text>"##,
            y - 10.0
        );
    }
    f.finish()
}

/// A histogram of `values` in `bins` bins with a vertical line at `threshold` (what is left of it, or right
/// of it when `above` is set, is flagged).
pub fn histogram(title: &str, x_label: &str, values: &[f64], threshold: f64, above: bool, bins: usize) -> String {
    let bins = bins.max(1);
    let (lo, hi) = range(values.iter().copied().chain(std::iter::once(threshold)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let width = span((lo, hi)) / bins as f64;
    let mut counts = vec![0usize; bins];
    for v in values.iter().filter(|v| v.is_finite()) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(0).max(1);
    #[allow(clippy::cast_precision_loss)]
    let mut f = Frame::new(title, x_label, "training rows", (lo, hi), (0.0, top as f64));
    for (i, &c) in counts.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let (x0, x1) = (lo + width * i as f64, lo + width * (i + 1) as f64);
        let flagged = if above { x0 >= threshold } else { x1 <= threshold };
        let color = if flagged { "#d62728" } else { "#1f77b4" };
        #[allow(clippy::cast_precision_loss)]
        let (px0, px1, py) = (f.px(x0), f.px(x1), f.py(c as f64));
        let _ = writeln!(
            f.svg,
            r#"<rect x="{px0:.1}" y="{py:.1}" width="{:.1}" height="{:.1}" fill="{color}"/>"#,
            (px1 - px0 - 1.0).max(0.5),
            (H - BOTTOM - py).max(0.0)
        );
    }
    let x = f.px(threshold);
    let _ = writeln!(
        f.svg,
        r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#333333" stroke-dasharray="4 3"/>
<text x="{x:.1}" y="{:.1}" text-anchor="middle">threshold {}</text>"##,
        H - BOTTOM,
        TOP - 4.0,
        number(threshold)
    );
    f.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_are_well_formed_and_reproducible() {
        let a = loss_curve(&[1.0, 0.5, 0.25], &[1.1, 0.6, 0.7], 2);
        assert_eq!(a, loss_curve(&[1.0, 0.5, 0.25], &[1.1, 0.6, 0.7], 2));
        assert!(a.starts_with("<svg ") && a.ends_with("</svg>\n"));
        assert_eq!(a.matches("<polyline").count(), 2);
        assert!(a.contains("kept: epoch 2"));
        let h = histogram("Scores", "score_samples", &[-0.5, -0.45, -0.44, -0.7], -0.6, false, 10);
        assert_eq!(h.matches("<rect ").count(), 11, "the background and ten bins");
        assert!(h.contains("threshold -0.600"));
        // The bins left of the threshold (-0.7 to -0.6: three of width 0.026) are red.
        assert_eq!(h.matches(r##"fill="#d62728""##).count(), 3, "{h}");
        // Degenerate input does not break the plot.
        assert!(histogram("t", "x", &[], f64::NAN, true, 0).ends_with("</svg>\n"));
        assert!(loss_curve(&[], &[], 0).ends_with("</svg>\n"));
    }
}
