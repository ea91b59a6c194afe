//! Charts as inline SVG, drawn here so the pages need no script library. Pure functions: labels
//! are escaped, sizes fixed, and an empty series draws an empty frame that says so.

use std::fmt::Write as _;

use minijinja::HtmlEscape;

/// One group of bars (a day, a repo, a reason) with one value per series.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    pub values: Vec<f64>,
}

/// A series: its name (legend) and its CSS class (colour, in `app.css`).
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub class: &'static str,
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 40.0;
const BOTTOM: f64 = 34.0;
const TOP: f64 = 18.0;

/// Grouped vertical bars; every `label_every`-th group is labelled under the axis.
pub fn bars(title: &str, series: &[Series], groups: &[Group], label_every: usize) -> String {
    let mut svg = frame(title);
    let max = groups.iter().flat_map(|g| g.values.iter().copied()).fold(0.0_f64, f64::max);
    if groups.is_empty() || max <= 0.0 {
        let _ =
            write!(svg, r#"<text class="empty" x="{}" y="{}">no data in this range</text>"#, WIDTH / 2.0, HEIGHT / 2.0);
        return close(svg, series);
    }
    let plot_w = WIDTH - LEFT - 8.0;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let slot = plot_w / groups.len() as f64;
    let bar_w = (slot * 0.8 / series.len().max(1) as f64).max(1.0);
    let _ = write!(
        svg,
        r#"<text class="axis" x="{}" y="{}" text-anchor="end">{}</text><text class="axis" x="{}" y="{}" text-anchor="end">0</text>"#,
        LEFT - 4.0,
        TOP + 4.0,
        number(max),
        LEFT - 4.0,
        TOP + plot_h
    );
    for (i, group) in groups.iter().enumerate() {
        let x0 = LEFT + slot * i as f64 + slot * 0.1;
        for (s, value) in group.values.iter().enumerate() {
            let h = plot_h * value / max;
            let class = series.get(s).map_or("s0", |s| s.class);
            let _ = write!(
                svg,
                r#"<rect class="{class}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"><title>{}: {} {}</title></rect>"#,
                x0 + bar_w * s as f64,
                TOP + plot_h - h,
                bar_w,
                h,
                HtmlEscape(&group.label),
                number(*value),
                HtmlEscape(series.get(s).map_or("", |s| s.name)),
            );
        }
        if label_every > 0 && i % label_every == 0 {
            let _ = write!(
                svg,
                r#"<text class="axis" x="{:.1}" y="{:.1}">{}</text>"#,
                x0,
                HEIGHT - BOTTOM + 14.0,
                HtmlEscape(&group.label)
            );
        }
    }
    close(svg, series)
}

/// A span of one status on a timeline, as fractions of the range.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub from: f64,
    pub to: f64,
    pub status: String,
}

/// The spans of statuses over `[start, end]` from the status at `start` and the changes after it.
pub fn spans(
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    initial: &str,
    changes: &[(chrono::DateTime<chrono::Utc>, String)],
) -> Vec<Span> {
    let total = (end - start).num_milliseconds().max(1) as f64;
    let fraction = |at: chrono::DateTime<chrono::Utc>| ((at - start).num_milliseconds() as f64 / total).clamp(0.0, 1.0);
    let mut spans = Vec::new();
    let (mut from, mut status) = (0.0, initial.to_owned());
    for (at, next) in changes.iter().filter(|(at, _)| *at > start && *at <= end) {
        let to = fraction(*at);
        if to > from {
            spans.push(Span { from, to, status: status.clone() });
        }
        (from, status) = (to, next.clone());
    }
    if from < 1.0 {
        spans.push(Span { from, to: 1.0, status });
    }
    spans
}

/// One system's status band.
pub fn timeline(spans: &[Span]) -> String {
    let mut svg = String::from(r#"<svg class="timeline" viewBox="0 0 720 14" preserveAspectRatio="none" role="img">"#);
    for span in spans {
        let _ = write!(
            svg,
            r#"<rect class="st-{}" x="{:.2}" y="0" width="{:.2}" height="14"><title>{}</title></rect>"#,
            HtmlEscape(&span.status),
            span.from * 720.0,
            (span.to - span.from) * 720.0,
            HtmlEscape(&span.status)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn frame(title: &str) -> String {
    let (title, axis, right) = (HtmlEscape(title), HEIGHT - BOTTOM, WIDTH - 8.0);
    format!(
        r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{title}"><title>{title}</title><line class="axis-line" x1="{LEFT}" y1="{axis}" x2="{right}" y2="{axis}"/>"#
    )
}

fn close(mut svg: String, series: &[Series]) -> String {
    if series.len() > 1 {
        for (i, s) in series.iter().enumerate() {
            let x = LEFT + 10.0 + 150.0 * i as f64;
            let _ = write!(
                svg,
                r#"<rect class="{}" x="{x}" y="2" width="10" height="10"/><text class="axis" x="{}" y="11">{}</text>"#,
                s.class,
                x + 14.0,
                HtmlEscape(s.name)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn number(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value:.1}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &[Series] = &[Series { name: "failed", class: "s0" }];

    #[test]
    fn bars_scale_to_the_largest_value_and_escape_labels() {
        let groups =
            vec![Group { label: "<repo>".into(), values: vec![2.0] }, Group { label: "b".into(), values: vec![4.0] }];
        let svg = bars("CI failures", ONE, &groups, 1);
        assert!(svg.contains("&lt;repo&gt;") && !svg.contains("<repo>"), "{svg}");
        // The plot is 128 high: 4 fills it, 2 half of it.
        assert!(svg.contains(r#"height="128.0""#) && svg.contains(r#"height="64.0""#), "{svg}");
        assert_eq!(svg.matches("<rect").count(), 2);
    }

    #[test]
    fn an_empty_chart_says_so() {
        assert!(bars("x", ONE, &[], 1).contains("no data in this range"));
        assert!(bars("x", ONE, &[Group { label: "a".into(), values: vec![0.0] }], 1).contains("no data"));
    }

    #[test]
    fn spans_cover_the_range_from_the_initial_status_through_each_change() {
        let t = |h: u32| chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2025, 9, 25, h, 0, 0).unwrap();
        let changes = vec![(t(1), "amber".to_owned()), (t(3), "green".to_owned()), (t(5), "red".to_owned())];
        let got = spans(t(0), t(4), "green", &changes);
        assert_eq!(
            got,
            vec![
                Span { from: 0.0, to: 0.25, status: "green".into() },
                Span { from: 0.25, to: 0.75, status: "amber".into() },
                Span { from: 0.75, to: 1.0, status: "green".into() },
            ]
        );
        assert_eq!(spans(t(0), t(4), "unknown", &[]), vec![Span { from: 0.0, to: 1.0, status: "unknown".into() }]);
    }
}
