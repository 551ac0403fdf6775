//! Hand-written SVG charts: line charts (training curves) and grouped bar charts (per-case
//! Dice, rankings, timings). No scripts, no external fonts: the SVG is valid on its own and
//! can be inlined in an HTML page.

use std::fmt::Write;

/// XML/HTML text escaping.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Series colours of the charts (label 1, 2, ... in the Dice charts; same as the PNG contours).
pub fn colour(i: usize) -> String {
    let c = crate::PALETTE[i % crate::PALETTE.len()];
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// `charts` (each `width` × `height`, as their `to_svg` draws them) one above the other in one
/// SVG document.
pub fn stack(charts: &[String], width: usize, height: usize) -> String {
    let total = height * charts.len();
    let mut o = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" viewBox="0 0 {width} {total}">"#
    );
    for (i, c) in charts.iter().enumerate() {
        let _ = write!(o, r#"<g transform="translate(0 {})">{c}</g>"#, i * height);
    }
    o.push_str("</svg>");
    o
}

/// A "nice" tick step (1, 2 or 5 × 10^k) for about `n` intervals over `span`.
fn nice_step(span: f64, n: usize) -> f64 {
    let raw = span / n.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// Tick values covering `[lo, hi]`, and the range widened to the outer ticks.
fn ticks(lo: f64, hi: f64, n: usize) -> (Vec<f64>, f64, f64) {
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, lo + 0.5) };
    let step = nice_step(hi - lo, n);
    let a = (lo / step).floor() * step;
    let b = (hi / step).ceil() * step;
    let k = ((b - a) / step).round() as usize;
    let t = (0..=k.min(50)).map(|i| a + i as f64 * step).collect();
    (t, a, b)
}

fn tick_label(v: f64, step: f64) -> String {
    if step >= 1.0 || v == 0.0 {
        return crate::fmt::trimmed(v);
    }
    let decimals = (-step.log10().floor()).max(0.0) as usize;
    if decimals > 4 {
        return format!("{v:.1e}");
    }
    crate::fmt::fixed(v, decimals)
}

fn finite_range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    vals.filter(|v| v.is_finite()).fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((a, b)) => Some((a.min(v), b.max(v))),
    })
}

/// One line of a [`LineChart`].
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    /// `(x, y)`; non-finite `y` breaks the line.
    pub points: Vec<(f64, f64)>,
    pub colour: String,
    pub dashed: bool,
}

/// A line chart with one y axis.
#[derive(Clone, Debug)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y range (e.g. `(0, 1)` for Dice); `None` fits the data.
    pub y_range: Option<(f64, f64)>,
}

const PAD_L: f64 = 58.0;
const PAD_R: f64 = 16.0;
const PAD_T: f64 = 30.0;

fn svg_open(o: &mut String, w: f64, h: f64, title: &str) {
    let _ = write!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11" role="img" aria-label="{t}"><rect width="{w}" height="{h}" fill="white"/><text x="{cx}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{t}</text>"#,
        t = esc(title),
        cx = w / 2.0
    );
}

/// Axis frame, y grid and labels; returns the y -> pixel map.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    ylo: f64,
    yhi: f64,
}

impl Frame {
    fn py(&self, v: f64) -> f64 {
        self.y1 - (v - self.ylo) / (self.yhi - self.ylo) * (self.y1 - self.y0)
    }
    fn draw_y(&self, o: &mut String, ticks: &[f64], step: f64, label: &str) {
        for &t in ticks {
            let y = self.py(t);
            let _ = write!(
                o,
                r##"<line x1="{}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#e3e3e3"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                self.x0,
                self.x1,
                self.x0 - 4.0,
                y + 4.0,
                esc(&tick_label(t, step))
            );
        }
        let cy = (self.y0 + self.y1) / 2.0;
        let _ = write!(
            o,
            r##"<text x="14" y="{cy:.1}" text-anchor="middle" transform="rotate(-90 14 {cy:.1})">{}</text><rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            esc(label),
            self.x0,
            self.y0,
            self.x1 - self.x0,
            self.y1 - self.y0
        );
    }
}

fn legend(o: &mut String, x_right: f64, y: f64, items: &[(String, String, bool)]) {
    let mut x = x_right;
    for (name, col, dashed) in items.iter().rev() {
        let tw = 7.0 * name.chars().count() as f64 + 26.0;
        x -= tw;
        let dash = if *dashed { r#" stroke-dasharray="5 3""# } else { "" };
        let _ = write!(
            o,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{col}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
            x + 16.0,
            x + 19.0,
            y + 4.0,
            esc(name)
        );
    }
}

impl LineChart {
    pub fn to_svg(&self, width: usize, height: usize) -> String {
        let (w, h) = (width as f64, height as f64);
        let mut o = String::new();
        svg_open(&mut o, w, h, &self.title);
        let xr = finite_range(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
        let yr = self.y_range.or_else(|| finite_range(self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1))));
        let (Some((xlo, xhi)), Some((ylo, yhi))) = (xr, yr) else {
            let _ = write!(o, r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#, w / 2.0, h / 2.0);
            return o;
        };
        let (yt, ylo, yhi) = if self.y_range.is_some() && yhi > ylo {
            let step = nice_step(yhi - ylo, 5);
            let n = ((yhi - ylo) / step).round() as usize;
            ((0..=n).map(|i| ylo + i as f64 * step).collect(), ylo, yhi)
        } else {
            ticks(ylo, yhi, 5)
        };
        let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
        let (xt, xlo, xhi) = ticks(xlo, xhi, 8);
        let xstep = if xt.len() > 1 { xt[1] - xt[0] } else { 1.0 };
        let f = Frame { x0: PAD_L, x1: w - PAD_R, y0: PAD_T + 14.0, y1: h - 40.0, ylo, yhi };
        f.draw_y(&mut o, &yt, ystep, &self.y_label);
        let px = |v: f64| f.x0 + (v - xlo) / (xhi - xlo) * (f.x1 - f.x0);
        for &t in &xt {
            let _ = write!(
                o,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#888"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                f.y1,
                f.y1 + 4.0,
                f.y1 + 16.0,
                esc(&tick_label(t, xstep)),
                x = px(t)
            );
        }
        let _ = write!(
            o,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            (f.x0 + f.x1) / 2.0,
            h - 8.0,
            esc(&self.x_label)
        );
        for s in &self.series {
            let dash = if s.dashed { r#" stroke-dasharray="5 3""# } else { "" };
            let mut run: Vec<String> = Vec::new();
            let flush = |run: &mut Vec<String>, o: &mut String| {
                if run.len() == 1 {
                    // A lone point between gaps: draw it as a dot.
                    if let Some((x, y)) = run[0].split_once(',') {
                        let _ = write!(o, r#"<circle cx="{x}" cy="{y}" r="2" fill="{}"/>"#, s.colour);
                    }
                } else if run.len() > 1 {
                    let _ = write!(
                        o,
                        r#"<polyline fill="none" stroke="{}" stroke-width="1.6"{dash} points="{}"/>"#,
                        s.colour,
                        run.join(" ")
                    );
                }
                run.clear();
            };
            // At most ~2 points per pixel column: long logs (1000 epochs) stay small. The
            // last point is always kept.
            let stride = s.points.len().div_ceil(((f.x1 - f.x0) * 2.0).max(1.0) as usize).max(1);
            let n = s.points.len();
            let kept = s.points.iter().enumerate().filter(|(i, _)| i % stride == 0 || i + 1 == n).map(|(_, p)| p);
            for &(x, y) in kept {
                if x.is_finite() && y.is_finite() {
                    run.push(format!("{:.1},{:.1}", px(x), f.py(y.clamp(ylo, yhi))));
                } else {
                    flush(&mut run, &mut o);
                }
            }
            flush(&mut run, &mut o);
        }
        let items: Vec<(String, String, bool)> =
            self.series.iter().map(|s| (s.name.clone(), s.colour.clone(), s.dashed)).collect();
        legend(&mut o, w - PAD_R, PAD_T + 2.0, &items);
        o.push_str("</svg>");
        o
    }
}

/// One group of bars (a label, a metric) of a [`BarChart`].
#[derive(Clone, Debug)]
pub struct BarGroup {
    pub name: String,
    pub colour: String,
    /// One value per category; NaN draws no bar and a "NaN" mark.
    pub values: Vec<f64>,
}

/// A grouped vertical bar chart: for each category, one bar per group.
#[derive(Clone, Debug)]
pub struct BarChart {
    pub title: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub groups: Vec<BarGroup>,
    pub y_range: Option<(f64, f64)>,
    /// Print the value above each bar (with this formatter).
    pub value_labels: Option<fn(f64) -> String>,
}

impl BarChart {
    /// The natural width for the number of bars (at least `min_width`).
    pub fn width_for(&self, min_width: usize) -> usize {
        let per_cat = (self.groups.len().max(1) * 12 + 10) as f64;
        ((PAD_L + PAD_R + per_cat * self.categories.len() as f64) as usize).max(min_width)
    }

    /// The chart as SVG. One function (~85 lines): frame, axis, bars and labels share the
    /// pixel geometry computed at the top.
    pub fn to_svg(&self, width: usize, height: usize) -> String {
        let (w, h) = (width as f64, height as f64);
        let mut o = String::new();
        svg_open(&mut o, w, h, &self.title);
        let n = self.categories.len();
        let yr = self.y_range.or_else(|| {
            finite_range(self.groups.iter().flat_map(|g| g.values.iter().copied()).chain([0.0]))
                .map(|(a, b)| (a.min(0.0), b))
        });
        let Some((ylo, yhi)) = yr.filter(|_| n > 0) else {
            let _ = write!(o, r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#, w / 2.0, h / 2.0);
            return o;
        };
        let longest = self.categories.iter().map(|c| c.chars().count()).max().unwrap_or(0) as f64;
        let rotate = n > 6 || longest > 12.0;
        let bottom = if rotate { (longest * 6.0).clamp(30.0, 140.0) + 16.0 } else { 34.0 };
        let (yt, ylo, yhi) = if self.y_range.is_some() && yhi > ylo {
            let step = nice_step(yhi - ylo, 5);
            let k = ((yhi - ylo) / step).round() as usize;
            ((0..=k).map(|i| ylo + i as f64 * step).collect(), ylo, yhi)
        } else {
            ticks(ylo, yhi, 5)
        };
        let ystep = if yt.len() > 1 { yt[1] - yt[0] } else { 1.0 };
        let f = Frame { x0: PAD_L, x1: w - PAD_R, y0: PAD_T + 14.0, y1: h - bottom, ylo, yhi };
        f.draw_y(&mut o, &yt, ystep, &self.y_label);
        let cat_w = (f.x1 - f.x0) / n as f64;
        let g = self.groups.len().max(1) as f64;
        let bar_w = ((cat_w * 0.8) / g).max(1.0);
        let zero = f.py(0.0f64.clamp(ylo, yhi));
        for (c, name) in self.categories.iter().enumerate() {
            let cx = f.x0 + cat_w * (c as f64 + 0.5);
            for (gi, grp) in self.groups.iter().enumerate() {
                let v = grp.values.get(c).copied().unwrap_or(f64::NAN);
                let x = cx - bar_w * g / 2.0 + bar_w * gi as f64;
                if !v.is_finite() {
                    let _ = write!(
                        o,
                        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="8" fill="#999">NaN</text>"##,
                        x + bar_w / 2.0,
                        zero - 3.0
                    );
                    continue;
                }
                let y = f.py(v.clamp(ylo, yhi));
                let (top, hgt) = if y < zero { (y, zero - y) } else { (zero, y - zero) };
                let _ = write!(
                    o,
                    r#"<rect x="{x:.1}" y="{top:.1}" width="{:.1}" height="{hgt:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    (bar_w - 0.5).max(0.8),
                    grp.colour,
                    esc(name),
                    esc(&crate::fmt::score(v))
                );
                if let Some(fmt) = self.value_labels {
                    let _ = write!(
                        o,
                        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="9">{}</text>"#,
                        x + bar_w / 2.0,
                        top - 3.0,
                        esc(&fmt(v))
                    );
                }
            }
            if rotate {
                let _ = write!(
                    o,
                    r#"<text x="{cx:.1}" y="{:.1}" text-anchor="end" transform="rotate(-60 {cx:.1} {:.1})">{}</text>"#,
                    f.y1 + 10.0,
                    f.y1 + 10.0,
                    esc(name)
                );
            } else {
                let _ =
                    write!(o, r#"<text x="{cx:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, f.y1 + 16.0, esc(name));
            }
        }
        if self.groups.len() > 1 {
            let items: Vec<(String, String, bool)> =
                self.groups.iter().map(|g| (g.name.clone(), g.colour.clone(), false)).collect();
            legend(&mut o, w - PAD_R, PAD_T + 2.0, &items);
        }
        o.push_str("</svg>");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_nice() {
        let (t, a, b) = ticks(0.13, 0.87, 5);
        assert_eq!((a, b), (0.0, 1.0));
        assert_eq!(t.len(), 6);
        assert_eq!(nice_step(950.0, 8), 200.0);
        assert_eq!(tick_label(0.2, 0.2), "0.2");
    }

    #[test]
    fn line_chart_breaks_at_nan_and_escapes() {
        let c = LineChart {
            title: "a<b".into(),
            x_label: "epoch".into(),
            y_label: "loss".into(),
            series: vec![Series {
                name: "train".into(),
                points: vec![(0.0, 1.0), (1.0, 0.5), (2.0, f64::NAN), (3.0, 0.2), (4.0, 0.1)],
                colour: colour(0),
                dashed: false,
            }],
            y_range: None,
        };
        let s = c.to_svg(400, 300);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("a&lt;b"));
        let long = LineChart {
            series: vec![Series {
                name: "x".into(),
                points: (0..5000).map(|i| (i as f64, (i as f64).sin())).collect(),
                colour: colour(1),
                dashed: true,
            }],
            ..c.clone()
        };
        let svg = long.to_svg(400, 300);
        let pts = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split(' ').count();
        assert!(pts <= 2 * 400 + 1 && pts > 400, "{pts} points drawn");
        let empty = LineChart { series: vec![], ..c.clone() };
        assert!(empty.to_svg(400, 300).contains("no data"));
        let both = stack(&[c.to_svg(400, 300), empty.to_svg(400, 300)], 400, 300);
        assert!(both.contains(r#"height="600""#) && both.contains("translate(0 300)"));
        assert_eq!(both.matches("<svg").count(), 3);
    }

    #[test]
    fn bar_chart_one_bar_per_value() {
        let c = BarChart {
            title: "Dice".into(),
            y_label: "Dice".into(),
            categories: vec!["a".into(), "b".into(), "c".into()],
            groups: vec![
                BarGroup { name: "1".into(), colour: colour(0), values: vec![0.5, 0.7, f64::NAN] },
                BarGroup { name: "2".into(), colour: colour(1), values: vec![0.1, 0.2, 0.3] },
            ],
            y_range: Some((0.0, 1.0)),
            value_labels: None,
        };
        let s = c.to_svg(c.width_for(300), 300);
        assert_eq!(s.matches("<rect x=").count(), 5 + 1); // 5 bars + the plot frame
        assert!(s.contains(">NaN</text>"));
    }
}
