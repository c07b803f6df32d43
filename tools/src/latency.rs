//! Latency reports: the HdrHistogram percentile distribution text (`.hgrm`) and an SVG plot
//! of latency by percentile, both written by hand.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Percentile ticks per half distance to 100% in the reports (as HdrHistogram's tools use).
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// One row of a percentile distribution.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PercentileRow {
    /// The highest value equivalent to the recorded values at this row.
    pub value: u64,
    /// The percentile level iterated to, `0.0..=100.0`.
    pub percentile: f64,
    /// Values recorded at or below `value`.
    pub total_count: u64,
}

/// The rows of HdrHistogram's percentile iteration (`PercentileIterator` of the Java
/// implementation): levels in fixed ticks, `ticks_per_half_distance` in each half of the
/// remaining distance to 100%, each reported at the first recorded value whose cumulative
/// share reaches it; the last recorded value once at the level reached there, then at 100%.
pub fn percentile_rows(histogram: &Histogram<u64>, ticks_per_half_distance: u32) -> Vec<PercentileRow> {
    let total = histogram.len();
    let mut rows = Vec::new();
    if total == 0 {
        return rows;
    }
    let ticks_per_half_distance = u64::from(ticks_per_half_distance.max(1));
    let recorded: Vec<(u64, u64)> =
        histogram.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect();
    let mut level = 0.0f64;
    let mut running = 0u64;
    for (index, &(value, count)) in recorded.iter().enumerate() {
        running += count;
        let last = index + 1 == recorded.len();
        while level < 100.0 && 100.0 * running as f64 / total as f64 >= level {
            rows.push(PercentileRow { value, percentile: level, total_count: running });
            // The tick size for the current half distance, as Java computes it.
            let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as u32;
            let ticks = ticks_per_half_distance.saturating_mul(1u64 << (halvings + 1).min(62));
            let next = level + 100.0 / ticks as f64;
            level = if next == level { 100.0 } else { next };
            if last {
                break;
            }
        }
    }
    let &(max_value, _) = recorded.last().expect("a non-empty histogram has a recorded value");
    rows.push(PercentileRow { value: max_value, percentile: 100.0, total_count: total });
    rows
}

/// `2^ceil(log2(2 * 10^digits))`: the sub-bucket count HdrHistogram reports for a histogram
/// with `digits` significant digits.
fn sub_bucket_count(significant_digits: u8) -> u64 {
    let largest_single_unit = 2 * 10u64.pow(u32::from(significant_digits));
    largest_single_unit.next_power_of_two()
}

/// The percentile distribution as HdrHistogram's `outputPercentileDistribution` prints it
/// (the `.hgrm` format): values divided by `unit_ratio`, with as many decimals as the
/// histogram has significant digits.
pub fn percentile_distribution(histogram: &Histogram<u64>, ticks_per_half_distance: u32, unit_ratio: f64) -> String {
    let digits = usize::from(histogram.sigfig());
    let mut out = String::with_capacity(8 * 1024);
    let _ = write!(out, "{:>12} {:>14} {:>10} {:>14}\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    for row in percentile_rows(histogram, ticks_per_half_distance) {
        let value = row.value as f64 / unit_ratio;
        let quantile = row.percentile / 100.0;
        if row.percentile != 100.0 {
            let _ = writeln!(
                out,
                "{value:12.digits$} {quantile:2.12} {:10} {:14.2}",
                row.total_count,
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(out, "{value:12.digits$} {quantile:2.12} {:10}", row.total_count);
        }
    }
    let max = if histogram.is_empty() { 0.0 } else { histogram.max() as f64 / unit_ratio };
    let _ = writeln!(
        out,
        "#[Mean    = {:12.digits$}, StdDeviation   = {:12.digits$}]",
        histogram.mean() / unit_ratio,
        histogram.stdev() / unit_ratio
    );
    let _ = writeln!(out, "#[Max     = {max:12.digits$}, Total count    = {:12}]", histogram.len());
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_bucket_count(histogram.sigfig())
    );
    out
}

/// `1234567` as `1,234,567`.
pub fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `text` with the five XML special characters escaped.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' && c != '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The label of the percentile `1 - 10^-nines`: `0%`, `90%`, `99%`, `99.9%`, ...
fn nines_label(nines: u32) -> String {
    match nines {
        0 => "0%".to_string(),
        1 => "90%".to_string(),
        2 => "99%".to_string(),
        n => format!("99.{}%", "9".repeat(n as usize - 2)),
    }
}

const PLOT_WIDTH: f64 = 960.0;
const PLOT_HEIGHT: f64 = 600.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = PLOT_WIDTH - 40.0;
const TOP: f64 = 96.0;
const BOTTOM: f64 = PLOT_HEIGHT - 84.0;
const CURVE_COLOUR: &str = "#1f5fbf";

/// An SVG image of latency (µs, log scale) by percentile (log scale of `1/(1-p)`, labelled
/// 0%, 90%, 99%, 99.9%, ...), like HdrHistogram's percentile plot: `title` in bold above
/// the plot, each of `subtitles` on a line below it.
pub fn latency_svg(histogram: &Histogram<u64>, title: &str, subtitles: &[String]) -> String {
    let rows = percentile_rows(histogram, TICKS_PER_HALF_DISTANCE);
    let total = histogram.len();
    // At least to 99.999%; further when there are enough values to tell the percentiles apart.
    let max_nines = if total == 0 { 5 } else { ((total as f64).log10().ceil() as u32).clamp(5, 9) };
    let (min_value, max_value) = match (rows.first(), rows.last()) {
        (Some(first), Some(last)) => (first.value.max(1), last.value.max(1)),
        _ => (1, 1_000),
    };
    let low_decade = (min_value as f64).log10().floor() as i32;
    let mut high_decade = (max_value as f64).log10().ceil() as i32;
    if high_decade <= low_decade {
        high_decade = low_decade + 1;
    }
    let x_of = |nines: f64| LEFT + (RIGHT - LEFT) * (nines / f64::from(max_nines)).clamp(0.0, 1.0);
    let y_of = |value: u64| {
        let decades = (value.max(1) as f64).log10() - f64::from(low_decade);
        BOTTOM - (BOTTOM - TOP) * (decades / f64::from(high_decade - low_decade)).clamp(0.0, 1.0)
    };
    let nines_of = |percentile: f64| {
        if percentile >= 100.0 {
            f64::from(max_nines)
        } else {
            (100.0 / (100.0 - percentile)).log10()
        }
    };

    let mut svg = String::with_capacity(16 * 1024 + rows.len() * 16);
    let _ = writeln!(svg, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" viewBox="0 0 {PLOT_WIDTH} {PLOT_HEIGHT}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"#
    );
    let _ = writeln!(svg, "<title>{}</title>", xml_escape(title));
    let _ = writeln!(svg, r##"<rect x="0" y="0" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" fill="#ffffff"/>"##);
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="30" font-size="18" font-weight="bold" text-anchor="middle" fill="#111111">{}</text>"##,
        PLOT_WIDTH / 2.0,
        xml_escape(title)
    );
    for (i, line) in subtitles.iter().enumerate() {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="12" text-anchor="middle" fill="#444444">{}</text>"##,
            PLOT_WIDTH / 2.0,
            52 + 17 * i,
            xml_escape(line)
        );
    }

    // Grid: a vertical line per nine, horizontal lines per decade with lighter ones at 2..9.
    let _ = writeln!(svg, r##"<g stroke="#e4e4e4" stroke-width="1">"##);
    for decade in low_decade..high_decade {
        for step in 2..10u64 {
            let y = y_of(step * 10u64.pow(decade.max(0) as u32));
            let _ = writeln!(svg, r#"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}"/>"#);
        }
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(svg, r##"<g stroke="#bbbbbb" stroke-width="1">"##);
    for decade in low_decade..=high_decade {
        let y = y_of(10u64.pow(decade.max(0) as u32));
        let _ = writeln!(svg, r#"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}"/>"#);
    }
    for nines in 0..=max_nines {
        let x = x_of(f64::from(nines));
        let _ = writeln!(svg, r#"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{BOTTOM}"/>"#);
    }
    let _ = writeln!(svg, "</g>");

    // Axes, tick labels and axis titles.
    let _ = writeln!(
        svg,
        r##"<rect x="{LEFT}" y="{TOP}" width="{}" height="{}" fill="none" stroke="#333333" stroke-width="1.5"/>"##,
        RIGHT - LEFT,
        BOTTOM - TOP
    );
    let _ = writeln!(svg, r##"<g font-size="12" fill="#222222">"##);
    for nines in 0..=max_nines {
        let x = x_of(f64::from(nines));
        let _ = writeln!(
            svg,
            r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            BOTTOM + 20.0,
            nines_label(nines)
        );
    }
    let minor_labels = high_decade - low_decade <= 2;
    for decade in low_decade..=high_decade {
        let unit = 10u64.pow(decade.max(0) as u32);
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
            LEFT - 8.0,
            y_of(unit),
            group_digits(unit)
        );
        if minor_labels && decade < high_decade {
            for step in [2, 5] {
                let _ = writeln!(
                    svg,
                    r##"<text x="{}" y="{:.1}" text-anchor="end" dominant-baseline="middle" font-size="10" fill="#666666">{}</text>"##,
                    LEFT - 8.0,
                    y_of(step * unit),
                    group_digits(step * unit)
                );
            }
        }
    }
    let _ = writeln!(svg, "</g>");
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="{}" font-size="14" text-anchor="middle" fill="#111111">Percentile (log scale of 1/(1&#8722;p))</text>"##,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 48.0
    );
    let _ = writeln!(
        svg,
        r##"<text x="0" y="0" font-size="14" text-anchor="middle" fill="#111111" transform="translate({},{}) rotate(-90)">Latency (µs, log scale)</text>"##,
        LEFT - 72.0,
        (TOP + BOTTOM) / 2.0
    );

    if rows.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="16" text-anchor="middle" fill="#aa0000">no responses recorded</text>"##,
            (LEFT + RIGHT) / 2.0,
            (TOP + BOTTOM) / 2.0
        );
    } else {
        // The curve through every row of the distribution, then flat to the right edge at the
        // maximum.
        let mut points = String::with_capacity(rows.len() * 16);
        for row in &rows {
            let _ = write!(points, "{:.1},{:.1} ", x_of(nines_of(row.percentile)), y_of(row.value));
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{CURVE_COLOUR}" stroke-width="2" stroke-linejoin="round" points="{}"/>"#,
            points.trim_end()
        );
        let marks = [(50.0, "p50"), (99.0, "p99"), (99.9, "p99.9"), (99.99, "p99.99")];
        let mut legend = Vec::with_capacity(marks.len() + 2);
        for (percentile, name) in marks {
            let value = histogram.value_at_quantile(percentile / 100.0);
            legend.push(format!("{name} {} µs", group_digits(value)));
            let nines = nines_of(percentile);
            if nines <= f64::from(max_nines) {
                let _ = writeln!(
                    svg,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#ffffff" stroke="{CURVE_COLOUR}" stroke-width="1.5"/>"##,
                    x_of(nines),
                    y_of(value)
                );
            }
        }
        legend.push(format!("max {} µs", group_digits(histogram.max())));
        legend.push(format!("{} values", group_digits(total)));
        // In the bottom right corner, which a curve rising to the right leaves free.
        let (width, height) = (170.0, legend.len() as f64 * 17.0 + 10.0);
        let (x, y) = (RIGHT - 12.0 - width, BOTTOM - 12.0 - height);
        let _ = writeln!(
            svg,
            r##"<rect x="{x}" y="{y}" width="{width}" height="{height}" fill="#ffffff" fill-opacity="0.9" stroke="#999999"/>"##
        );
        for (i, line) in legend.iter().enumerate() {
            let _ = writeln!(
                svg,
                r##"<text x="{}" y="{}" font-size="12" fill="#222222">{}</text>"##,
                x + 10.0,
                y + 18.0 + 17.0 * i as f64,
                xml_escape(line)
            );
        }
    }
    let _ = writeln!(svg, "</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram() -> Histogram<u64> {
        Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
    }

    #[test]
    fn distribution_text_matches_hdrhistogram() {
        let mut h = histogram();
        for value in 1..=4 {
            h.record(value).unwrap();
        }
        let expected = "       Value     Percentile TotalCount 1/(1-Percentile)

       1.000 0.000000000000          1           1.00
       1.000 0.100000000000          1           1.11
       1.000 0.200000000000          1           1.25
       2.000 0.300000000000          2           1.43
       2.000 0.400000000000          2           1.67
       2.000 0.500000000000          2           2.00
       3.000 0.550000000000          3           2.22
       3.000 0.600000000000          3           2.50
       3.000 0.650000000000          3           2.86
       3.000 0.700000000000          3           3.33
       3.000 0.750000000000          3           4.00
       4.000 0.775000000000          4           4.44
       4.000 1.000000000000          4
#[Mean    =        2.500, StdDeviation   =        1.118]
#[Max     =        4.000, Total count    =            4]
#[Buckets =           22, SubBuckets     =         2048]
";
        assert_eq!(percentile_distribution(&h, 5, 1.0), expected);
        // Scaled to milliseconds, one value only: a row at 0% and one at 100%.
        let mut one = histogram();
        one.record_n(1_500, 3).unwrap();
        let text = percentile_distribution(&one, 5, 1000.0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "       1.500 0.000000000000          3           1.00");
        assert_eq!(lines[3], "       1.500 1.000000000000          3");
        assert_eq!(lines[4], "#[Mean    =        1.500, StdDeviation   =        0.000]");
        assert_eq!(lines[5], "#[Max     =        1.500, Total count    =            3]");
        // Nothing recorded: header and footer only.
        let empty = percentile_distribution(&histogram(), 5, 1.0);
        assert!(empty.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n#[Mean    ="));
        assert!(empty.contains("#[Max     =        0.000, Total count    =            0]"));
    }

    #[test]
    fn rows_agree_with_the_quantile_iterator_of_the_crate() {
        // A long-tailed sample with a prime count, so no level falls exactly on a boundary.
        let mut h = histogram();
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..100_003 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            h.record((200.0 / (1.0 - u).powf(0.7)) as u64).unwrap();
        }
        let ours = percentile_rows(&h, 5);
        let theirs: Vec<(u64, f64)> =
            h.iter_quantiles(5).map(|v| (v.value_iterated_to(), v.quantile_iterated_to())).collect();
        assert_eq!(ours.len(), theirs.len());
        let mut running = 0;
        for (row, (value, quantile)) in ours.iter().zip(&theirs) {
            assert_eq!(row.value, *value);
            assert!((row.percentile / 100.0 - quantile).abs() < 1e-12, "{} vs {quantile}", row.percentile);
            assert!(row.total_count >= running);
            running = row.total_count;
        }
        assert_eq!(ours.last().unwrap().percentile, 100.0);
        assert_eq!(ours.last().unwrap().total_count, 100_003);
        assert_eq!(ours.last().unwrap().value, h.max());
        // The text has one line per row between its two header and three footer lines, and the
        // 1/(1-p) column grows.
        let text = percentile_distribution(&h, 5, 1.0);
        assert_eq!(text.lines().count(), 2 + ours.len() + 3);
        let inverse: Vec<f64> = text
            .lines()
            .skip(2)
            .take(ours.len() - 1)
            .map(|l| l.split_whitespace().nth(3).unwrap().parse().unwrap())
            .collect();
        assert!(inverse.windows(2).all(|w| w[0] <= w[1]));
        assert!(inverse.last().unwrap() > &10_000.0);
    }

    #[test]
    fn helpers() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(xml_escape("a<b & \"c\" 'd'>"), "a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;");
        assert_eq!(nines_label(0), "0%");
        assert_eq!(nines_label(5), "99.999%");
        assert_eq!(sub_bucket_count(3), 2048);
        assert_eq!(sub_bucket_count(2), 256);
    }

    /// Checks that `text` is well-formed XML as far as SVG needs: one root element, tags
    /// closed in order, quoted attributes, only known entities.
    fn check_well_formed(text: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut roots = 0;
        let mut rest = text;
        while let Some(at) = rest.find(['<', '&']) {
            let (before, from) = rest.split_at(at);
            if !before.trim().is_empty() && stack.is_empty() {
                return Err(format!("text outside the root: {before:?}"));
            }
            if from.starts_with('&') {
                let end = from.find(';').ok_or("unterminated entity")?;
                let name = &from[1..end];
                let known = ["amp", "lt", "gt", "quot", "apos"].contains(&name)
                    || (name.starts_with('#') && name[1..].chars().all(|c| c.is_ascii_digit()) && name.len() > 1);
                if !known {
                    return Err(format!("unknown entity &{name};"));
                }
                rest = &from[end + 1..];
                continue;
            }
            if let Some(body) = from.strip_prefix("<?") {
                let end = body.find("?>").ok_or("unterminated declaration")?;
                rest = &body[end + 2..];
                continue;
            }
            if let Some(body) = from.strip_prefix("<!--") {
                let end = body.find("-->").ok_or("unterminated comment")?;
                rest = &body[end + 3..];
                continue;
            }
            // A tag: find its end outside quoted attribute values.
            let mut quote = None;
            let mut end = None;
            for (i, c) in from.char_indices().skip(1) {
                match (quote, c) {
                    (None, '"' | '\'') => quote = Some(c),
                    (Some(q), c) if c == q => quote = None,
                    (None, '<') => return Err("'<' inside a tag".to_string()),
                    (None, '>') => {
                        end = Some(i);
                        break;
                    }
                    _ => {}
                }
            }
            let end = end.ok_or("unterminated tag")?;
            let tag = &from[1..end];
            rest = &from[end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name.trim() => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                continue;
            }
            let self_closing = tag.ends_with('/');
            let tag = tag.trim_end_matches('/');
            let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == ':' || c == '-') {
                return Err(format!("bad tag name in <{tag}>"));
            }
            // Attributes: name="value" pairs.
            let mut attributes = tag[name.len()..].trim();
            while !attributes.is_empty() {
                let eq = attributes.find('=').ok_or(format!("attribute without value in <{tag}>"))?;
                let quote = attributes[eq + 1..].chars().next().ok_or("missing value")?;
                if quote != '"' && quote != '\'' {
                    return Err(format!("unquoted attribute in <{tag}>"));
                }
                let close = attributes[eq + 2..].find(quote).ok_or("unterminated value")?;
                let value = &attributes[eq + 2..eq + 2 + close];
                if value.contains('<') || (value.contains('&') && check_well_formed_entities(value).is_err()) {
                    return Err(format!("bad attribute value {value:?}"));
                }
                attributes = attributes[eq + 2 + close + 1..].trim_start();
            }
            if stack.is_empty() {
                roots += 1;
            }
            if !self_closing {
                stack.push(name);
            }
        }
        if !stack.is_empty() {
            return Err(format!("unclosed elements {stack:?}"));
        }
        if roots != 1 {
            return Err(format!("{roots} root elements"));
        }
        Ok(())
    }

    fn check_well_formed_entities(text: &str) -> Result<(), String> {
        check_well_formed(&format!("<x>{text}</x>"))
    }

    #[test]
    fn the_checker_refuses_broken_xml() {
        assert!(check_well_formed("<a><b/></a>").is_ok());
        assert!(check_well_formed("<a><b></a>").is_err());
        assert!(check_well_formed("<a>x & y</a>").is_err());
        assert!(check_well_formed("<a x=1/>").is_err());
        assert!(check_well_formed("<a/><b/>").is_err());
        assert!(check_well_formed("<a>").is_err());
    }

    #[test]
    fn plots_are_well_formed_svg_with_labelled_axes() {
        let mut h = histogram();
        for i in 1..=20_000u64 {
            h.record(300 + i % 700 + if i % 1_000 == 0 { 20_000 } else { 0 }).unwrap();
        }
        let subtitles = vec!["4 terminals, window 8 & <rate> 1000/s".to_string(), "seed 1".to_string()];
        let svg = latency_svg(&h, "loadgen \"latency\"", &subtitles);
        check_well_formed(&svg).unwrap();
        assert!(
            svg.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"")
        );
        for label in [">0%<", ">90%<", ">99%<", ">99.9%<", ">99.99%<", ">99.999%<"] {
            assert!(svg.contains(label), "{label}");
        }
        assert!(svg.contains("Latency (µs, log scale)"));
        assert!(svg.contains("Percentile (log scale of 1/(1&#8722;p))"));
        assert!(svg.contains(">100<") && svg.contains(">1,000<") && svg.contains(">100,000<"));
        assert!(svg.contains("4 terminals, window 8 &amp; &lt;rate&gt; 1000/s"));
        assert!(svg.contains("loadgen &quot;latency&quot;"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains(&format!("max {} µs", group_digits(h.max()))));
        // Many values: the axis goes on to more nines.
        let mut big = histogram();
        big.record_n(1_000, 2_000_000).unwrap();
        let svg = latency_svg(&big, "t", &[]);
        check_well_formed(&svg).unwrap();
        assert!(svg.contains(">99.99999%<") && !svg.contains(">99.999999%<"));
        // Nothing recorded: still an image, saying so.
        let svg = latency_svg(&histogram(), "t", &[]);
        check_well_formed(&svg).unwrap();
        assert!(svg.contains("no responses recorded") && svg.contains(">99.999%<"));
    }
}
