//! `junit.xml`: the run as one JUnit test suite, for CI dashboards.
//!
//! Mapping: PASS → a plain `<testcase>`; FAIL → `<failure type="FAIL">` (one per broken
//! requirement); INCONC → `<failure type="inconclusive">`; ERROR → `<error>`; NA → `<skipped>`.
//! Provenance goes into `<properties>`; requirements and evidence paths into `<system-out>`.

use std::fmt::Write as _;

use super::{CaseReport, RunReport};
use crate::verdict::Verdict;

/// Escapes text for XML element content and attribute values. Characters XML 1.0 cannot carry
/// at all (control characters other than tab, newline and carriage return, U+FFFE, U+FFFF) are
/// written as the visible text `\u{..}` so no information is silently dropped.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn classname(id: &str) -> &str {
    id.rsplit_once('.')
        .or_else(|| id.rsplit_once("::"))
        .map_or("softbus", |(prefix, _)| prefix)
}

fn seconds(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

fn write_case(out: &mut String, c: &CaseReport) {
    let _ = write!(
        out,
        "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
        xml_escape(&c.id),
        xml_escape(classname(&c.id)),
        seconds(c.duration_ms)
    );
    out.push_str(">\n");
    match c.verdict {
        Verdict::Pass => {}
        Verdict::Fail => {
            if c.failures.is_empty() {
                let _ = writeln!(
                    out,
                    "      <failure type=\"FAIL\" message=\"{}\">{}</failure>",
                    xml_escape(&c.reason),
                    xml_escape(&c.reason)
                );
            }
            for f in &c.failures {
                let _ = writeln!(
                    out,
                    "      <failure type=\"FAIL\" message=\"[{}] expected {}, observed {}\">\
                     requirement: {}\nexpected: {}\nobserved: {}</failure>",
                    xml_escape(&f.requirement),
                    xml_escape(&f.expected),
                    xml_escape(&f.observed),
                    xml_escape(&f.requirement),
                    xml_escape(&f.expected),
                    xml_escape(&f.observed)
                );
            }
        }
        Verdict::Inconc => {
            let _ = writeln!(
                out,
                "      <failure type=\"inconclusive\" message=\"{}\">{}</failure>",
                xml_escape(&c.reason),
                xml_escape(&c.reason)
            );
        }
        Verdict::Error => {
            let _ = writeln!(
                out,
                "      <error type=\"ERROR\" message=\"{}\">{}</error>",
                xml_escape(&c.reason),
                xml_escape(&c.reason)
            );
        }
        Verdict::Na => {
            let _ = writeln!(
                out,
                "      <skipped message=\"NA: {}\"/>",
                xml_escape(&c.reason)
            );
        }
    }
    let mut sysout = String::new();
    let _ = writeln!(sysout, "title: {}", c.title);
    let _ = writeln!(sysout, "verdict: {}", c.verdict);
    if !c.transport.is_empty() {
        let _ = writeln!(sysout, "transport: {}", c.transport);
    }
    if !c.requirements.is_empty() {
        let _ = writeln!(sysout, "requirements: {}", c.requirements.join(", "));
    }
    if let Some(l) = &c.latency {
        let _ = writeln!(
            sysout,
            "latency: {} samples, p50 {} us, p99 {} us, max {} us, bound {} us",
            l.samples, l.p50_us, l.p99_us, l.max_us, l.bound_us
        );
    }
    for e in &c.evidence {
        let _ = writeln!(sysout, "evidence: {e}");
    }
    let _ = writeln!(
        out,
        "      <system-out>{}</system-out>",
        xml_escape(&sysout)
    );
    out.push_str("    </testcase>\n");
}

/// Renders the report as JUnit XML: one `<testsuite>` (inside `<testsuites>`), one
/// `<testcase>` per case.
pub fn to_junit_xml(report: &RunReport) -> String {
    let s = &report.summary;
    let p = &report.provenance;
    let total_ms: u64 = report.cases.iter().map(|c| c.duration_ms).sum();
    let failures = s.fail + s.inconc;
    // Cases planned but not run count as errors: a JUnit consumer must not show them green.
    let not_run = report.plan.not_run.len();
    let tests = s.total + not_run;
    let errors = s.error + not_run;
    let name = format!("softbus-conformance.{}", p.dut);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"softbus-conformance\" tests=\"{}\" failures=\"{failures}\" \
         errors=\"{}\" skipped=\"{}\" time=\"{}\">",
        tests,
        errors,
        s.na,
        seconds(total_ms)
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\" \
         skipped=\"{}\" time=\"{}\" timestamp=\"{}\" hostname=\"{}\">",
        xml_escape(&name),
        tests,
        errors,
        s.na,
        seconds(total_ms),
        xml_escape(&p.started_at),
        xml_escape(&p.host)
    );
    out.push_str("    <properties>\n");
    let mut props: Vec<(&str, String)> = vec![
        ("schema_version", report.schema_version.to_string()),
        ("suite_version", p.suite_version.clone()),
        ("git_commit", p.git_commit.clone().unwrap_or_default()),
        ("fixtures_hash", p.fixtures_hash.clone()),
        ("rig_path", p.rig_path.clone()),
        ("rig_hash", p.rig_hash.clone()),
        ("pics_hash", p.pics_hash.clone()),
        ("seed", p.seed.to_string()),
        ("dut", p.dut.clone()),
        ("started_at", p.started_at.clone()),
        ("finished_at", p.finished_at.clone()),
    ];
    if let Some(f) = &p.fault {
        props.push(("fault", f.clone()));
    }
    if !report.plan.is_complete() {
        props.push(("complete", "false".into()));
        props.push(("interrupted", report.plan.interrupted.to_string()));
        props.push(("planned", report.plan.planned.to_string()));
        if let Some(why) = &report.plan.stopped {
            props.push(("stopped", why.clone()));
        }
    }
    for (k, v) in props {
        let _ = writeln!(
            out,
            "      <property name=\"{k}\" value=\"{}\"/>",
            xml_escape(&v)
        );
    }
    out.push_str("    </properties>\n");
    for c in &report.cases {
        write_case(&mut out, c);
    }
    let why = report.plan.incomplete_reason().unwrap_or_default();
    for id in &report.plan.not_run {
        let _ = writeln!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"0\">\n      \
             <error message=\"not run\" type=\"NOT_RUN\">{}</error>\n    </testcase>",
            xml_escape(id),
            xml_escape(classname(id)),
            xml_escape(&why)
        );
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{case, provenance, report};
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_control_characters() {
        assert_eq!(
            xml_escape(r#"<a href="x">&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;&lt;/a&gt;"
        );
        assert_eq!(xml_escape("tab\tnl\ncr\r"), "tab\tnl\ncr\r");
        assert_eq!(xml_escape("nul\0esc\x1b"), "nul\\u{0}esc\\u{1b}");
        assert_eq!(xml_escape("\u{FFFF}ü"), "\\u{ffff}ü");
        assert_eq!(xml_escape("]]>"), "]]&gt;");
    }

    #[test]
    fn hostile_reason_stays_inside_its_element() {
        let mut c = case("sec.x.hostile", Verdict::Fail);
        c.failures[0].observed = "</failure><testcase name=\"pwn\">\0".into();
        c.reason = c.failures[0].observed.clone();
        let xml = to_junit_xml(&RunReport::new(provenance(), vec![c]));
        assert_eq!(xml.matches("<testcase ").count(), 1, "{xml}");
        assert!(!xml.contains('\0'));
        assert!(xml.contains("&lt;/failure&gt;&lt;testcase name=&quot;pwn&quot;&gt;\\u{0}"));
    }

    #[test]
    fn maps_verdicts_to_junit_elements() {
        let xml = to_junit_xml(&report());
        assert_eq!(xml.matches("<testsuite ").count(), 1);
        assert_eq!(xml.matches("<testcase ").count(), 6);
        assert!(xml.contains("<failure type=\"FAIL\" message=\"[SEC-7] expected replayed frame dropped, observed frame delivered\">"));
        assert!(xml.contains("<failure type=\"inconclusive\""));
        assert!(xml.contains("<error type=\"ERROR\""));
        assert!(xml.contains("<skipped message=\"NA: PICS `TRANSPORT_BLE` is false\"/>"));
        assert!(xml.contains("tests=\"6\" failures=\"2\" errors=\"1\" skipped=\"1\""));
        assert!(xml.contains("classname=\"sec.replay\""));
    }

    #[test]
    fn junit_snapshot() {
        insta::assert_snapshot!(to_junit_xml(&report()));
    }
}
