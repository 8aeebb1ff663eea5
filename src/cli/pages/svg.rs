//! Charts as inline SVG, drawn on the server: bars and a line, nothing more.
//!
//! Why no chart crate: two chart shapes with a known DOM (each bar or point carries
//! `data-value` with the raw number the browser test compares to the views' JSON) are
//! less code than adapting a library's output to that contract.

use super::layout::escape;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 40.0;
const TOP: f64 = 14.0;

/// One bar or point: its label and its raw value (minor units, a count, basis points).
pub struct Datum {
    pub label: String,
    pub value: i128,
    /// How the value is shown in the bar's tooltip (`<title>`).
    pub shown: String,
}

fn open(name: &str, title: &str) -> String {
    format!(
        "<svg data-chart=\"{}\" role=\"img\" aria-label=\"{}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" width=\"{WIDTH}\" height=\"{HEIGHT}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(name),
        escape(title)
    )
}

fn empty(name: &str, title: &str) -> String {
    format!(
        "{}<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"empty\">no data yet</text></svg>",
        open(name, title),
        WIDTH / 2.0,
        HEIGHT / 2.0
    )
}

fn axes(max: i128) -> String {
    let base = HEIGHT - BOTTOM;
    format!(
        "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\" stroke=\"#888\"/>\
         <line x1=\"{LEFT}\" y1=\"{base}\" x2=\"{WIDTH}\" y2=\"{base}\" stroke=\"#888\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max}</text><text x=\"{}\" y=\"{base}\" text-anchor=\"end\">0</text>",
        LEFT - 4.0,
        TOP + 8.0,
        LEFT - 4.0
    )
}

/// The height in pixels of `value` on a scale topped by `max`.
fn scaled(value: i128, max: i128) -> f64 {
    if max <= 0 {
        return 0.0;
    }
    (value.max(0) as f64 / max as f64) * (HEIGHT - BOTTOM - TOP)
}

/// A bar chart; with no data, a visible "no data yet" and no `data-value`.
pub fn bars(name: &str, title: &str, data: &[Datum]) -> String {
    if data.is_empty() {
        return empty(name, title);
    }
    let max = data.iter().map(|d| d.value).max().unwrap_or(0).max(1);
    let slot = (WIDTH - LEFT - 10.0) / data.len() as f64;
    let width = (slot * 0.7).max(2.0);
    let mut out = open(name, title);
    out.push_str(&axes(max));
    for (i, d) in data.iter().enumerate() {
        let h = scaled(d.value, max);
        let x = LEFT + 5.0 + slot * i as f64 + (slot - width) / 2.0;
        let y = HEIGHT - BOTTOM - h;
        out.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" fill=\"#3b6ea5\" data-label=\"{}\" data-value=\"{}\"><title>{}: {}</title></rect>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            escape(&d.label),
            d.value,
            escape(&d.label),
            escape(&d.shown),
            x + width / 2.0,
            HEIGHT - BOTTOM + 14.0,
            escape(&short(&d.label)),
        ));
    }
    out.push_str("</svg>");
    out
}

/// A line chart of points in order; with no data, a visible "no data yet".
pub fn line(name: &str, title: &str, data: &[Datum], max: i128) -> String {
    if data.is_empty() {
        return empty(name, title);
    }
    let max = max
        .max(data.iter().map(|d| d.value).max().unwrap_or(0))
        .max(1);
    let step = if data.len() > 1 {
        (WIDTH - LEFT - 20.0) / (data.len() - 1) as f64
    } else {
        0.0
    };
    let point = |i: usize, v: i128| {
        (
            LEFT + 10.0 + step * i as f64,
            HEIGHT - BOTTOM - scaled(v, max),
        )
    };
    let mut out = open(name, title);
    out.push_str(&axes(max));
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
                HEIGHT - BOTTOM + 14.0,
                escape(&short(&d.label))
            ));
        }
    }
    out.push_str("</svg>");
    out
}

/// An axis label short enough to sit under a bar.
fn short(label: &str) -> String {
    let mut s: String = label.chars().take(14).collect();
    if label.chars().count() > 14 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_chart_says_so_and_carries_no_values() {
        let svg = bars("x", "X", &[]);
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
        );
        assert!(svg.contains("data-value=\"144840\""));
        assert!(!svg.contains("<b>"));
    }
}
