//! What a run prints and writes: a progress line per test, the closing
//! table per bucket and per SIG, JUnit XML, JSON results, the list check
//! against `passing.txt`, and the Markdown table comparing runtimes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::runner::{Outcome, Status};

fn word(s: Status) -> &'static str {
    match s {
        Status::Passed => "PASS",
        Status::Failed => "FAIL",
        Status::Skipped => "SKIP",
        Status::NotImplemented => "N/I ",
    }
}

/// One line per finished test.
pub fn progress(n: usize, total: usize, o: &Outcome) {
    if o.status == Status::Passed || o.status == Status::Failed {
        eprintln!(
            "[{n}/{total}] {} {:>6.1}s {}",
            word(o.status),
            o.seconds,
            o.codename
        );
        if o.status == Status::Failed || !o.reason.is_empty() {
            eprintln!("         {}", o.reason);
        }
    }
}

/// Counts of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Not implemented.
    pub missing: usize,
    /// Skipped.
    pub skipped: usize,
}

impl Counts {
    fn add(&mut self, s: Status) {
        match s {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::NotImplemented => self.missing += 1,
            Status::Skipped => self.skipped += 1,
        }
    }

    /// Tests counted.
    pub fn total(&self) -> usize {
        self.passed + self.failed + self.missing + self.skipped
    }
}

/// Counts grouped by `key`.
pub fn counts_by(
    results: &[Outcome],
    key: impl Fn(&Outcome) -> String,
) -> BTreeMap<String, Counts> {
    let mut m: BTreeMap<String, Counts> = BTreeMap::new();
    for o in results {
        m.entry(key(o)).or_default().add(o.status);
    }
    m
}

/// The closing summary: totals per bucket and per SIG, then each failure.
pub fn summary(results: &[Outcome]) -> String {
    let mut s = String::new();
    for (title, groups) in [
        ("bucket", counts_by(results, |o| o.bucket.clone())),
        ("sig", counts_by(results, |o| o.sig.clone())),
    ] {
        let _ = writeln!(
            s,
            "{title:<16} {:>6} {:>6} {:>8} {:>7} {:>6}",
            "passed", "failed", "not-impl", "skipped", "total"
        );
        let mut all = Counts::default();
        for (k, c) in &groups {
            let _ = writeln!(
                s,
                "{k:<16} {:>6} {:>6} {:>8} {:>7} {:>6}",
                c.passed,
                c.failed,
                c.missing,
                c.skipped,
                c.total()
            );
            all.passed += c.passed;
            all.failed += c.failed;
            all.missing += c.missing;
            all.skipped += c.skipped;
        }
        let _ = writeln!(
            s,
            "{:<16} {:>6} {:>6} {:>8} {:>7} {:>6}\n",
            "TOTAL",
            all.passed,
            all.failed,
            all.missing,
            all.skipped,
            all.total()
        );
    }
    let failed: Vec<&Outcome> = results
        .iter()
        .filter(|o| o.status == Status::Failed)
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "failed tests:");
        for o in failed {
            let _ = writeln!(s, "- {}\n    {}", o.codename, o.reason);
        }
    }
    let flaky: Vec<&Outcome> = flaky(results).collect();
    if !flaky.is_empty() {
        let _ = writeln!(s, "flaky tests (passed on a later attempt):");
        for o in flaky {
            let _ = writeln!(s, "- {}\n    {}", o.codename, o.reason);
        }
    }
    s
}

/// Tests that passed only on a later attempt.
pub fn flaky(results: &[Outcome]) -> impl Iterator<Item = &Outcome> {
    results
        .iter()
        .filter(|o| o.status == Status::Passed && o.reason.starts_with("flaky:"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML of the run (one testsuite; test cases named by codename).
pub fn junit(results: &[Outcome]) -> String {
    let failures = results
        .iter()
        .filter(|o| matches!(o.status, Status::Failed | Status::NotImplemented))
        .count();
    let skipped = results
        .iter()
        .filter(|o| o.status == Status::Skipped)
        .count();
    let time: f64 = results.iter().map(|o| o.seconds).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuite name=\"rkube-conformance-lite\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        results.len()
    );
    for o in results {
        let _ = write!(
            s,
            "  <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
            xml_escape(&o.codename),
            xml_escape(&o.bucket),
            o.seconds
        );
        match o.status {
            Status::Passed => s.push_str("/>\n"),
            Status::Skipped => {
                let _ = writeln!(
                    s,
                    "><skipped message=\"{}\"/></testcase>",
                    xml_escape(&o.reason)
                );
            }
            _ => {
                let _ = writeln!(
                    s,
                    "><failure message=\"{}\"/></testcase>",
                    xml_escape(&o.reason)
                );
            }
        }
    }
    s.push_str("</testsuite>\n");
    s
}

/// Codenames in a `passing.txt` (one per line; `#` comments, blank lines).
pub fn parse_list(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Listed tests that did not pass (a regression), and passing tests that
/// are not listed yet; only tests that ran count.
pub fn check_list(results: &[Outcome], listed: &BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    let mut regressed = Vec::new();
    let mut new = Vec::new();
    for o in results {
        let on_list = listed.contains(&o.codename);
        match o.status {
            Status::Passed if !on_list => new.push(o.codename.clone()),
            Status::Passed => {}
            _ if on_list => regressed.push(format!("{} ({})", o.codename, o.reason)),
            _ => {}
        }
    }
    (regressed, new)
}

fn cell(o: Option<&Outcome>) -> String {
    match o {
        None => "-".into(),
        Some(o) => match o.status {
            Status::Passed if o.reason.starts_with("flaky:") => "pass (flaky)".into(),
            Status::Passed => "pass".into(),
            Status::Skipped => "skipped".into(),
            Status::NotImplemented => "not implemented".into(),
            Status::Failed => format!("fail: {}", o.reason.replace('|', "\\|")),
        },
    }
}

/// Markdown comparing runs (`(runtime label, results)`): totals per bucket
/// and runtime, then one row per test with a column per runtime.
pub fn markdown(runs: &[(String, Vec<Outcome>)], header: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{header}\n");
    let _ = writeln!(
        s,
        "## Totals per bucket (passed / tests, skipped ones left out)\n"
    );
    let _ = write!(s, "| bucket |");
    for (l, _) in runs {
        let _ = write!(s, " {l} |");
    }
    let _ = write!(s, "\n|---|");
    for _ in runs {
        s.push_str("---|");
    }
    s.push('\n');
    let by: Vec<BTreeMap<String, Counts>> = runs
        .iter()
        .map(|(_, r)| counts_by(r, |o| o.bucket.clone()))
        .collect();
    let buckets: BTreeSet<String> = by.iter().flat_map(|m| m.keys().cloned()).collect();
    for b in buckets.iter().map(String::as_str).chain(["TOTAL"]) {
        let _ = write!(s, "| {b} |");
        for m in &by {
            let c = if b == "TOTAL" {
                m.values().fold(Counts::default(), |mut a, c| {
                    a.passed += c.passed;
                    a.failed += c.failed;
                    a.missing += c.missing;
                    a.skipped += c.skipped;
                    a
                })
            } else {
                m.get(b).copied().unwrap_or_default()
            };
            let _ = write!(s, " {} / {} |", c.passed, c.total() - c.skipped);
        }
        s.push('\n');
    }
    let _ = writeln!(s, "\n## Every test\n");
    let _ = write!(s, "| test | bucket |");
    for (l, _) in runs {
        let _ = write!(s, " {l} |");
    }
    let _ = write!(s, "\n|---|---|");
    for _ in runs {
        s.push_str("---|");
    }
    s.push('\n');
    let first = runs.first().map(|(_, r)| r.as_slice()).unwrap_or(&[]);
    for o in first {
        let _ = write!(s, "| {} | {} |", o.codename.replace('|', "\\|"), o.bucket);
        for (_, r) in runs {
            let _ = write!(
                s,
                " {} |",
                cell(r.iter().find(|x| x.testname == o.testname))
            );
        }
        s.push('\n');
    }
    s
}

/// Results as JSON (the input of `rkube-conformance table`).
pub fn to_json(results: &[Outcome]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(results)
}

/// Results from [`to_json`]'s output.
pub fn from_json(text: &str) -> serde_json::Result<Vec<Outcome>> {
    serde_json::from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(name: &str, status: Status) -> Outcome {
        Outcome {
            testname: name.into(),
            codename: format!("[sig-x] {name} [Conformance]"),
            sig: "x".into(),
            bucket: "API".into(),
            status,
            seconds: 1.0,
            reason: if status == Status::Failed {
                "boom".into()
            } else {
                String::new()
            },
        }
    }

    #[test]
    fn list_check_finds_regressions_and_new_passes() {
        let r = [
            o("a", Status::Passed),
            o("b", Status::Failed),
            o("c", Status::Passed),
        ];
        let listed = parse_list("# comment\n[sig-x] a [Conformance]\n[sig-x] b [Conformance]\n");
        let (reg, new) = check_list(&r, &listed);
        assert_eq!(reg, ["[sig-x] b [Conformance] (boom)"]);
        assert_eq!(new, ["[sig-x] c [Conformance]"]);
    }

    #[test]
    fn junit_escapes_and_counts() {
        let x = junit(&[o("a<b", Status::Failed), o("c", Status::Passed)]);
        assert!(x.contains("failures=\"1\""));
        assert!(x.contains("a&lt;b"));
    }

    #[test]
    fn markdown_has_a_column_per_runtime() {
        let runs = vec![
            ("cri-o".to_string(), vec![o("a", Status::Passed)]),
            ("containerd".to_string(), vec![o("a", Status::Failed)]),
        ];
        let md = markdown(&runs, "# t");
        assert!(md.contains("| API | 1 / 1 | 0 / 1 |"), "{md}");
        assert!(md.contains("| pass | fail: boom |"), "{md}");
    }
}
