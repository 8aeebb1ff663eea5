//! Charts as inline SVG, drawn on the server: bars and a line, nothing more.
//!
//! Why no chart crate: two chart shapes with a known DOM (each bar or point carries
//! `data-value` with the raw number the browser test compares to the views' JSON) are
//! less code than adapting a library's output to that contract.

use super::layout::escape;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 14.0;
/// About how wide one character of the 11 px labels is.
const CHAR: f64 = 7.0;
/// The longest label (in characters) drawn slanted under a bar; the full one is in its
/// `<title>`.
const SLANTED: usize = 24;

/// One bar or point: its label and its raw value (minor units, a count, basis points).
pub struct Datum {
    pub label: String,
    pub value: i128,
    /// How the value is shown in the bar's tooltip (`<title>`).
    pub shown: String,
}

/// A chart's margins: room on the left for the top of the scale in its unit, and at the
/// bottom for the labels (more when they are slanted).
struct Frame {
    left: f64,
    bottom: f64,
    height: f64,
}

impl Frame {
    fn new(top_label: &str, bottom: f64) -> Frame {
        let left = (top_label.chars().count() as f64 * CHAR + 10.0).max(40.0);
        Frame {
            left,
            bottom,
            height: HEIGHT - BOTTOM + bottom,
        }
    }

    /// The y of the axis.
    fn base(&self) -> f64 {
        self.height - self.bottom
    }

    /// The height in pixels of `value` on a scale topped by `max`.
    fn scaled(&self, value: i128, max: i128) -> f64 {
        if max <= 0 {
            return 0.0;
        }
        (value.max(0) as f64 / max as f64) * (self.base() - TOP)
    }
}

fn open(name: &str, title: &str, height: f64) -> String {
    format!(
        "<svg data-chart=\"{}\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {WIDTH} {height}\" width=\"{WIDTH}\" height=\"{height}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(name),
        escape(title)
    )
}

fn empty(name: &str, title: &str) -> String {
    format!(
        "{}<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"empty\">no data yet</text></svg>",
        open(name, title, HEIGHT),
        WIDTH / 2.0,
        HEIGHT / 2.0
    )
}

/// The axes, with the top of the scale in the chart's unit (`top_label`) and a faint line
/// across at that height.
fn axes(frame: &Frame, top_label: &str) -> String {
    let (left, base) = (frame.left, frame.base());
    format!(
        "<line x1=\"{left}\" y1=\"{TOP}\" x2=\"{left}\" y2=\"{base}\" stroke=\"#888\"/>\
         <line x1=\"{left}\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\" stroke=\"#888\"/>\
         <line x1=\"{left}\" y1=\"{TOP}\" x2=\"{WIDTH}\" y2=\"{TOP}\" stroke=\"#e3e6ea\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\" data-axis=\"top\">{}</text><text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        left - 4.0,
        TOP + 4.0,
        escape(top_label),
        left - 4.0
    )
}

/// A bar chart; with no data, a visible "no data yet" and no `data-value`. `unit` prints
/// the top of the scale (a raw number) in the chart's unit, e.g. `138,000 USD`.
///
/// Labels that do not fit under their bar are slanted (-30°) and cut to [`SLANTED`]
/// characters, the full label in their `<title>`.
pub fn bars(name: &str, title: &str, data: &[Datum], unit: impl Fn(i128) -> String) -> String {
    if data.is_empty() {
        return empty(name, title);
    }
    let max = data.iter().map(|d| d.value).max().unwrap_or(0).max(1);
    let top_label = unit(max);
    let longest = data
        .iter()
        .map(|d| d.label.chars().count())
        .max()
        .unwrap_or(0);
    let mut frame = Frame::new(&top_label, BOTTOM);
    let mut slot = (WIDTH - frame.left - 10.0) / data.len() as f64;
    // Where the first bar starts: after the axis, and when the labels are slanted, far
    // enough right that the first one does not run off the left edge.
    let mut start = frame.left + 5.0;
    let slanted = longest as f64 * CHAR > slot - 4.0;
    if slanted {
        let length = |d: &Datum| d.label.chars().count().min(SLANTED) as f64 * CHAR;
        // The vertical extent of the longest slanted label: sin 30° of its length.
        let drop = longest.min(SLANTED) as f64 * CHAR * 0.5 + 24.0;
        frame = Frame::new(&top_label, drop.max(BOTTOM));
        // Its horizontal extent: cos 30°.
        let reach = length(&data[0]) * 0.87 + 10.0;
        start += (reach - (start + slot / 2.0)).max(0.0);
        slot = (WIDTH - start - 5.0) / data.len() as f64;
    }
    let width = (slot * 0.7).max(2.0);
    let mut out = open(name, title, frame.height);
    out.push_str(&axes(&frame, &top_label));
    for (i, d) in data.iter().enumerate() {
        let h = frame.scaled(d.value, max);
        let x = start + slot * i as f64 + (slot - width) / 2.0;
        let y = frame.base() - h;
        out.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"#3b6ea5\" data-label=\"{}\" data-value=\"{}\"><title>{}: {}</title></rect>",
            escape(&d.label),
            d.value,
            escape(&d.label),
            escape(&d.shown),
        ));
        let (cx, ty) = (x + width / 2.0, frame.base() + 14.0);
        if slanted {
            out.push_str(&format!(
                "<text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" transform=\"rotate(-30 {cx:.1} {ty:.1})\"><title>{}</title>{}</text>",
                escape(&d.label),
                escape(&cut(&d.label, SLANTED)),
            ));
        } else {
            out.push_str(&format!(
                "<text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{}</text>",
                escape(&d.label),
            ));
        }
    }
    out.push_str("</svg>");
    out
}

/// A line chart of points in order; with no data, a visible "no data yet".
/// `unit` prints the top of the scale in the chart's unit, e.g. `100 %`.
pub fn line(
    name: &str,
    title: &str,
    data: &[Datum],
    max: i128,
    unit: impl Fn(i128) -> String,
) -> String {
    if data.is_empty() {
        return empty(name, title);
    }
    let max = max
        .max(data.iter().map(|d| d.value).max().unwrap_or(0))
        .max(1);
    let top_label = unit(max);
    let frame = Frame::new(&top_label, BOTTOM);
    let step = if data.len() > 1 {
        (WIDTH - frame.left - 50.0) / (data.len() - 1) as f64
    } else {
        0.0
    };
    let point = |i: usize, v: i128| {
        (
            frame.left + 10.0 + step * i as f64,
            frame.base() - frame.scaled(v, max),
        )
    };
    let mut out = open(name, title, frame.height);
    out.push_str(&axes(&frame, &top_label));
    let path: Vec<String> = data
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (x, y) = point(i, d.value);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    out.push_str(&format!(
        "<polyline fill=\"none\" stroke=\"#3b6ea5\" stroke-width=\"2\" points=\"{}\"/>",
        path.join(" ")
    ));
    for (i, d) in data.iter().enumerate() {
        let (x, y) = point(i, d.value);
        out.push_str(&format!(
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"#3b6ea5\" data-label=\"{}\" data-value=\"{}\"><title>{}: {}</title></circle>",
            escape(&d.label),
            d.value,
            escape(&d.label),
            escape(&d.shown)
        ));
        if data.len() <= 12 || i % (data.len() / 6).max(1) == 0 {
            out.push_str(&format!(
                "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                frame.base() + 14.0,
                escape(&cut(&d.label, 14))
            ));
        }
    }
    out.push_str("</svg>");
    out
}

/// `label` cut to `n` characters, with an ellipsis when it was longer.
fn cut(label: &str, n: usize) -> String {
    if label.chars().count() <= n {
        return label.to_string();
    }
    let mut s: String = label.chars().take(n.saturating_sub(1)).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_chart_says_so_and_carries_no_values() {
        let svg = bars("x", "X", &[], |m| m.to_string());
        assert!(svg.contains("no data yet"));
        assert!(!svg.contains("data-value"));
    }

    #[test]
    fn bars_carry_raw_values_and_escape_labels() {
        let svg = bars(
            "x",
            "X",
            &[Datum {
                label: "<b>".into(),
                value: 144_840,
                shown: "1,448.40 USD".into(),
            }],
            |_| "1,448 USD".into(),
        );
        assert!(svg.contains("data-value=\"144840\""));
        assert!(!svg.contains("<b>"));
    }

    #[test]
    fn many_long_labels_are_slanted_and_cut_with_the_full_name_kept() {
        let data: Vec<Datum> = (0..8)
            .map(|i| Datum {
                label: format!("Adatum Managed Services Number {i} USD"),
                value: 1_000 * (i + 1),
                shown: String::new(),
            })
            .collect();
        let svg = bars("x", "X", &data, |m| format!("{m} units"));
        assert_eq!(svg.matches("rotate(-30").count(), 8);
        for d in &data {
            assert!(svg.contains(&format!("data-value=\"{}\"", d.value)));
            assert!(svg.contains(&format!("<title>{}</title>", d.label)));
        }
        assert!(svg.contains("Adatum Managed Services…<"));
        assert!(svg.contains(">8000 units</text>"));
        assert!(!svg.contains(">8000</text>"));

        // Few short labels fit under their bars, upright.
        let svg = bars("x", "X", &data[..2], |m| m.to_string());
        assert!(!svg.contains("rotate("));
    }

    #[test]
    fn the_line_chart_prints_the_top_of_its_scale_in_its_unit() {
        let data = [Datum {
            label: "2026-01-05".into(),
            value: 9_000,
            shown: String::new(),
        }];
        let svg = line("x", "X", &data, 10_000, |m| format!("{} %", m / 100));
        assert!(svg.contains(">100 %</text>"));
    }
}
