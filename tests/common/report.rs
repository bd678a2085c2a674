//! hugeload's `-v` report.

use super::*;

/// `hugeload: huge <start>-<end> <N> x 2M <backend>`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HugeLine {
    pub range: Span,
    pub pages: u64,
    pub backend: String,
}

/// `hugeload: huge <start>-<end> on 4 KiB pages: <reason>`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FallbackLine {
    pub range: Span,
    pub reason: String,
}

/// `hugeload: total text <size> (<T> bytes), on huge pages <size> (<H>
/// bytes, <P>%), huge pages <U> of at most <L> possible (<C> from the page
/// cache, <K> copies), strategy <s>, backend <b>`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TotalLine {
    pub text: u64,
    pub on_huge: u64,
    pub percent: String,
    pub used: u64,
    pub least: u64,
    /// Of `used`, pages from the page cache (no copy).
    pub cached: u64,
    /// Of `used`, copies (hugetlb or THP).
    pub copies: u64,
    pub strategy: String,
    pub backend: String,
}

#[derive(Clone, Debug, Default)]
pub struct Report {
    pub huge: Vec<HugeLine>,
    pub fallback: Vec<FallbackLine>,
    pub totals: Vec<TotalLine>,
    /// Every stderr line that does not start with `hugeload: `.
    pub other_lines: Vec<String>,
}

impl Report {
    /// The one total line (panics unless there is exactly one).
    pub fn total(&self, stderr: &str) -> &TotalLine {
        assert_eq!(
            self.totals.len(),
            1,
            "expected exactly one `hugeload: total text` line, stderr:\n{stderr}"
        );
        &self.totals[0]
    }
}

fn parse_hex_range(s: &str, line: &str) -> Span {
    let (a, b) = s
        .split_once('-')
        .unwrap_or_else(|| panic!("bad range {s:?} in {line:?}"));
    let hex = |x: &str| {
        assert!(
            x.len() == 16 && x.bytes().all(|c| c.is_ascii_hexdigit()),
            "address {x:?} is not 16 hex digits in {line:?}"
        );
        u64::from_str_radix(x, 16).unwrap()
    };
    Span {
        start: hex(a),
        end: hex(b),
    }
}

fn parse_num(s: &str, line: &str) -> u64 {
    s.parse()
        .unwrap_or_else(|_| panic!("expected a number, got {s:?} in {line:?}"))
}

/// Parses the `-v` lines of hugeload's stderr; panics on a `huge` or
/// `total` line that does not have the documented format.
pub fn parse_report(stderr: &str) -> Report {
    let mut r = Report::default();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix("hugeload: ") else {
            r.other_lines.push(line.to_string());
            continue;
        };
        if let Some(h) = rest.strip_prefix("huge ") {
            let w: Vec<&str> = h.split_whitespace().collect();
            assert!(w.len() >= 2, "short huge line {line:?}");
            let range = parse_hex_range(w[0], line);
            assert!(
                range.start < range.end
                    && range.start.is_multiple_of(HUGE)
                    && range.end.is_multiple_of(HUGE),
                "huge range not 2 MiB-aligned or empty: {line:?}"
            );
            if w[1] == "on" {
                let reason = h
                    .split_once("on 4 KiB pages:")
                    .unwrap_or_else(|| panic!("bad fallback line {line:?}"))
                    .1
                    .trim()
                    .to_string();
                r.fallback.push(FallbackLine { range, reason });
            } else {
                // Words after the backend (a remark in parentheses) are
                // allowed.
                assert!(
                    w.len() >= 5 && w[2] == "x" && w[3] == "2M",
                    "bad huge line {line:?}"
                );
                assert!(
                    w.len() == 5 || w[5].starts_with('('),
                    "unexpected words after the backend in {line:?}"
                );
                let pages = parse_num(w[1], line);
                assert_eq!(
                    pages * HUGE,
                    range.len(),
                    "page count disagrees with the range in {line:?}"
                );
                assert!(
                    ["thp", "hugetlb", "pagecache"].contains(&w[4]),
                    "unknown backend in {line:?}"
                );
                r.huge.push(HugeLine {
                    range,
                    pages,
                    backend: w[4].to_string(),
                });
            }
        } else if let Some(t) = rest.strip_prefix("total text ") {
            // The sizes for a person come first; the numbers are in
            // parentheses: `(T bytes)`, `(H bytes, P%)`.
            let num_after = |key: &str| -> &str {
                t.split(key)
                    .nth(1)
                    .and_then(|r| r.split([' ', ',', ')']).next())
                    .unwrap_or_else(|| panic!("no {key:?} in {line:?}"))
            };
            let text = t
                .split_once(" (")
                .and_then(|(_, r)| r.split_once(" bytes),"))
                .map(|(n, _)| n)
                .unwrap_or_else(|| panic!("no text bytes in {line:?}"));
            let huge_part = t
                .split_once("on huge pages ")
                .map(|(_, r)| r)
                .unwrap_or_else(|| panic!("no `on huge pages` in {line:?}"));
            let (on_huge, percent) = huge_part
                .split_once(" (")
                .and_then(|(_, r)| r.split_once(" bytes, "))
                .and_then(|(h, r)| Some((h, r.split_once("%),")?.0)))
                .unwrap_or_else(|| panic!("bad `on huge pages` part in {line:?}"));
            let used = num_after("), huge pages ");
            let least = num_after(" of at most ");
            let cached = num_after(" possible (");
            let copies = num_after(" from the page cache, ");
            assert!(t.contains(" copies), strategy "), "bad total line {line:?}");
            let strategy = num_after(", strategy ");
            let backend = t
                .rsplit_once(", backend ")
                .map(|(_, b)| b)
                .unwrap_or_else(|| panic!("no backend in {line:?}"));
            let total = TotalLine {
                text: parse_num(text, line),
                on_huge: parse_num(on_huge, line),
                percent: percent.to_string(),
                used: parse_num(used, line),
                least: parse_num(least, line),
                cached: parse_num(cached, line),
                copies: parse_num(copies, line),
                strategy: strategy.to_string(),
                backend: backend.to_string(),
            };
            assert_eq!(
                total.cached + total.copies,
                total.used,
                "page-cache pages and copies do not add up in {line:?}"
            );
            r.totals.push(total);
        }
    }
    r
}
