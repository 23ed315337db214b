//! `report.html`: a self-contained page (no external assets, works offline and as an e-mail
//! attachment) for people: verdict counts, a percentile chart per transport, every case with
//! its reasons, failures, evidence links and an inline SVG latency histogram, and provenance.
//!
//! The page works without JavaScript; a few lines of inline script only add verdict filters.

use std::fmt::Write as _;

use super::summary::{latency_by_transport, TransportLatency};
use super::{format_us, CaseReport, LatencyReport, RunReport};
use crate::verdict::Verdict;

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && !matches!(c, '\n' | '\t') => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a relative path for an `href`: only unreserved characters and `/` stay, so
/// a path can never turn into a `javascript:` (or any other scheme) link.
fn href(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn us(v: u64) -> String {
    format_us(v, "µ")
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Inconc => "inconc",
        Verdict::Error => "error",
        Verdict::Na => "na",
    }
}

const STYLE: &str = r#"
:root{--bg:#f6f8fa;--fg:#1f2328;--muted:#656d76;--card:#fff;--line:#d0d7de;
--pass:#1a7f37;--fail:#cf222e;--inconc:#9a6700;--error:#8250df;--na:#6e7781;
--p50:#0969da;--p99:#bc4c00;--bound:#cf222e;--floor:#6e7781;--bar:#54aeff}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#8d96a0;
--card:#161b22;--line:#30363d;--bar:#388bfd;--p50:#58a6ff;--p99:#f0883e}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);
font:14px/1.45 -apple-system,BlinkMacSystemFont,"Segoe UI",Helvetica,Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}
.sub{color:var(--muted);margin:0 0 14px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.result{display:inline-block;padding:6px 12px;border-radius:6px;color:#fff;font-weight:600}
.result.pass{background:var(--pass)}.result.fail{background:var(--fail)}
.result.error{background:var(--error)}
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:18px 0 8px}
.card{background:var(--card);border:1px solid var(--line);border-top:4px solid var(--na);
border-radius:8px;padding:10px 16px;min-width:110px}
.card .n{font-size:28px;font-weight:700}.card .l{color:var(--muted);font-size:12px;
text-transform:uppercase;letter-spacing:.05em}
.card.pass{border-top-color:var(--pass)}.card.fail{border-top-color:var(--fail)}
.card.inconc{border-top-color:var(--inconc)}.card.error{border-top-color:var(--error)}
.stack{display:flex;height:10px;border-radius:5px;overflow:hidden;background:var(--line);
margin:6px 0 0;max-width:720px}
.stack span.pass{background:var(--pass)}.stack span.fail{background:var(--fail)}
.stack span.inconc{background:var(--inconc)}.stack span.error{background:var(--error)}
.stack span.na{background:var(--na)}
table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line);
border-radius:8px;overflow:hidden}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.case{border-left:4px solid var(--na)}
tr.case.pass{border-left-color:var(--pass)}tr.case.fail{border-left-color:var(--fail)}
tr.case.inconc{border-left-color:var(--inconc)}tr.case.error{border-left-color:var(--error)}
.badge{display:inline-block;min-width:58px;text-align:center;padding:2px 8px;border-radius:10px;
color:#fff;font-weight:600;font-size:12px}
.badge.pass{background:var(--pass)}.badge.fail{background:var(--fail)}
.badge.inconc{background:var(--inconc)}.badge.error{background:var(--error)}
.badge.na{background:var(--na)}
.title{color:var(--muted)}
.reason{margin:4px 0 0;white-space:pre-wrap;word-break:break-word}
ul.failures{margin:6px 0 0;padding-left:18px}
ul.failures li{margin:2px 0}
.req{font-weight:600}.nowrap{white-space:nowrap}
.evidence a{margin-right:10px;white-space:nowrap}
a{color:var(--p50)}
.lat{margin-top:8px}
.lat .stats{color:var(--muted);font-size:12.5px}
svg{display:block;max-width:100%;height:auto}
svg text{fill:var(--muted);font:10px ui-monospace,Menlo,Consolas,monospace}
svg .axis{stroke:var(--line)}svg .barr{fill:var(--bar)}
svg .m-p50{stroke:var(--p50)}svg .m-p99{stroke:var(--p99)}
svg .m-bound{stroke:var(--bound);stroke-dasharray:4 3}
svg .m-floor{stroke:var(--floor);stroke-dasharray:2 3}
svg .t-p50{fill:var(--p50)}svg .t-p99{fill:var(--p99)}svg .t-bound{fill:var(--bound)}
svg .rng{stroke:var(--muted)}svg .iqr{fill:var(--p50);opacity:.75}
svg .dot{fill:var(--p99)}
.filters{margin:0 0 10px}
.filters button{border:1px solid var(--line);background:var(--card);color:var(--fg);
border-radius:14px;padding:3px 12px;margin-right:6px;cursor:pointer}
.filters button.on{border-color:var(--p50);box-shadow:0 0 0 1px var(--p50) inset}
.chips span{display:inline-block;margin:2px 4px 2px 0;padding:1px 8px;border-radius:10px;
font-size:12px;border:1px solid var(--line)}
.chips span.on{border-color:var(--pass);color:var(--pass)}
.chips span.off{color:var(--muted);text-decoration:line-through}
footer{color:var(--muted);font-size:12px;margin:28px 0 0}
"#;

const SCRIPT: &str = r#"
document.querySelectorAll('.filters button').forEach(function(b){
 b.addEventListener('click',function(){
  document.querySelectorAll('.filters button').forEach(function(x){x.classList.remove('on')});
  b.classList.add('on');var v=b.getAttribute('data-v');
  document.querySelectorAll('tr.case').forEach(function(r){
   r.style.display=(v==='all'||r.classList.contains(v))?'':'none';});});});
"#;

/// Renders the whole report as one self-contained HTML page.
pub fn to_html(report: &RunReport) -> String {
    let p = &report.provenance;
    let s = &report.summary;
    let mut out = String::with_capacity(32 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<title>SoftBus conformance: {} ({})</title>",
        html_escape(&p.dut),
        if report.plan.is_complete() {
            result_word(report.exit_code())
        } else {
            "INCOMPLETE"
        }
    );
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>\n<main>");

    // Header.
    out.push_str("<h1>SoftBus conformance report</h1>\n");
    let _ = writeln!(
        out,
        "<p class=\"sub\">DUT <b>{}</b> &middot; rig <code>{}</code>{} &middot; {} &rarr; {} \
         &middot; seed <code>{}</code></p>",
        html_escape(&p.dut),
        html_escape(&p.rig_path),
        p.fault
            .as_deref()
            .map(|f| format!(" &middot; fault <code>{}</code>", html_escape(f)))
            .unwrap_or_default(),
        html_escape(&p.started_at),
        html_escape(&p.finished_at),
        p.seed
    );
    let incomplete = report.plan.incomplete_reason();
    let (cls, meaning) = match report.exit_code() {
        _ if incomplete.is_some() => ("error", incomplete.as_deref().unwrap_or_default()),
        0 => ("pass", "every case PASS or NA"),
        1 => ("fail", "some cases FAIL or INCONC"),
        _ => ("error", "some cases ERROR: the rig or harness broke"),
    };
    let _ = writeln!(
        out,
        "<div class=\"result {cls}\">{}: {meaning} (exit status {})</div>",
        result_word(report.exit_code()),
        report.exit_code()
    );

    // Counts.
    out.push_str("<div class=\"cards\">\n");
    let _ = writeln!(
        out,
        "<div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">cases</div></div>",
        s.total
    );
    for v in Verdict::ALL {
        let _ = writeln!(
            out,
            "<div class=\"card {}\"><div class=\"n\">{}</div><div class=\"l\">{}</div></div>",
            verdict_class(v),
            s.count(v),
            v.as_str()
        );
    }
    out.push_str("</div>\n<div class=\"stack\">");
    if s.total > 0 {
        for v in Verdict::ALL {
            let n = s.count(v);
            if n > 0 {
                let _ = write!(
                    out,
                    "<span class=\"{}\" style=\"width:{:.3}%\" title=\"{} {}\"></span>",
                    verdict_class(v),
                    100.0 * n as f64 / s.total as f64,
                    n,
                    v.as_str()
                );
            }
        }
    }
    out.push_str("</div>\n");

    // Latency per transport.
    let lat = latency_by_transport(&report.cases);
    if !lat.is_empty() {
        out.push_str("<h2>Latency by transport</h2>\n");
        out.push_str(&transport_svg(&lat));
        out.push_str(
            "<div class=\"lat\"><span class=\"stats\">bar: p50 to p99 &middot; line: min to \
             max &middot; tick: p99.9 &middot; dot: max</span></div>\n",
        );
        out.push_str(
            "<table><thead><tr><th>transport</th><th class=\"num\">cases</th>\
             <th class=\"num\">samples</th><th class=\"num\">min</th><th class=\"num\">p50</th>\
             <th class=\"num\">p90</th><th class=\"num\">p99</th><th class=\"num\">p99.9</th>\
             <th class=\"num\">max</th><th class=\"num\">mean</th></tr></thead><tbody>\n",
        );
        for t in &lat {
            let q = &t.percentiles;
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td></tr>",
                html_escape(&t.transport),
                t.cases,
                q.count,
                us(q.min_us),
                us(q.p50_us),
                us(q.p90_us),
                us(q.p99_us),
                us(q.p999_us),
                us(q.max_us),
                us(q.mean_us.round() as u64)
            );
        }
        out.push_str("</tbody></table>\n");
    }

    // Cases.
    out.push_str("<h2>Cases</h2>\n<div class=\"filters\">");
    out.push_str("<button class=\"on\" data-v=\"all\">all</button>");
    for v in Verdict::ALL {
        if s.count(v) > 0 {
            let _ = write!(
                out,
                "<button data-v=\"{}\">{} ({})</button>",
                verdict_class(v),
                v.as_str(),
                s.count(v)
            );
        }
    }
    out.push_str("</div>\n");
    out.push_str(
        "<table><thead><tr><th>verdict</th><th>case</th><th>transport</th>\
         <th>requirements</th><th class=\"num\">time</th></tr></thead><tbody>\n",
    );
    for c in &report.cases {
        write_case(&mut out, c);
    }
    out.push_str("</tbody></table>\n");

    // Provenance.
    out.push_str("<h2>Provenance</h2>\n<table><tbody>\n");
    let rows: Vec<(&str, String)> = vec![
        ("suite version", p.suite_version.clone()),
        (
            "git commit",
            p.git_commit.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("fixtures hash", p.fixtures_hash.clone()),
        ("rig", p.rig_path.clone()),
        ("rig hash", p.rig_hash.clone()),
        ("PICS hash", p.pics_hash.clone()),
        ("seed", p.seed.to_string()),
        ("host", p.host.clone()),
        ("DUT", p.dut.clone()),
        ("fault", p.fault.clone().unwrap_or_else(|| "none".into())),
        ("started", p.started_at.clone()),
        ("finished", p.finished_at.clone()),
        ("schema version", report.schema_version.to_string()),
    ];
    for (k, v) in rows {
        let _ = writeln!(
            out,
            "<tr><th>{k}</th><td class=\"mono\">{}</td></tr>",
            html_escape(&v)
        );
    }
    out.push_str("<tr><th>PICS</th><td class=\"chips\">");
    for (name, on) in &p.pics {
        let _ = write!(
            out,
            "<span class=\"{}\" title=\"{}\">{}</span>",
            if *on { "on" } else { "off" },
            if *on {
                "implemented"
            } else {
                "not implemented"
            },
            html_escape(name)
        );
    }
    out.push_str("</td></tr>\n</tbody></table>\n");
    let _ = writeln!(
        out,
        "<footer>Generated by softbus-harness &middot; report schema v{} &middot; \
         machine-readable: <a href=\"report.json\">report.json</a>, \
         <a href=\"junit.xml\">junit.xml</a>, <a href=\"results.jsonl\">results.jsonl</a></footer>",
        report.schema_version
    );
    let _ = writeln!(out, "</main>\n<script>{SCRIPT}</script>\n</body>\n</html>");
    out
}

fn result_word(exit_code: i32) -> &'static str {
    match exit_code {
        0 => "PASS",
        1 => "FAIL",
        _ => "ERROR",
    }
}

fn write_case(out: &mut String, c: &CaseReport) {
    let cls = verdict_class(c.verdict);
    let _ = writeln!(
        out,
        "<tr class=\"case {cls}\" id=\"case-{}\"><td><span class=\"badge {cls}\">{}</span></td><td>",
        href(&c.id),
        c.verdict.as_str()
    );
    let _ = write!(
        out,
        "<code>{}</code><div class=\"title\">{}</div>",
        html_escape(&c.id),
        html_escape(&c.title)
    );
    if !c.failures.is_empty() {
        out.push_str("<ul class=\"failures\">");
        for f in &c.failures {
            let _ = write!(
                out,
                "<li><span class=\"req\">[{}]</span> expected {}, observed {}</li>",
                html_escape(&f.requirement),
                html_escape(&f.expected),
                html_escape(&f.observed)
            );
        }
        out.push_str("</ul>");
    }
    // The failures are listed above; show the other reasons (INCONC, ERROR, NA notes).
    let mut rest = c.reason.clone();
    for f in &c.failures {
        rest = rest.replace(&format!("FAIL {f}"), "");
    }
    let other_reasons: Vec<&str> = rest
        .split("; ")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .collect();
    if !other_reasons.is_empty() {
        let _ = write!(
            out,
            "<div class=\"reason\">{}</div>",
            html_escape(&other_reasons.join("\n"))
        );
    }
    if let Some(l) = &c.latency {
        out.push_str("<div class=\"lat\">");
        let _ = write!(
            out,
            "<div class=\"stats\">{} samples &middot; min {} &middot; p50 {} &middot; p90 {} \
             &middot; p99 {} &middot; p99.9 {} &middot; max {} &middot; bound {}{}</div>",
            l.samples,
            us(l.min_us),
            us(l.p50_us),
            us(l.p90_us),
            us(l.p99_us),
            us(l.p999_us),
            us(l.max_us),
            us(l.bound_us),
            l.physical_floor_us
                .map(|f| format!(" &middot; physical floor {}", us(f)))
                .unwrap_or_default()
        );
        out.push_str(&histogram_svg(l));
        out.push_str("</div>");
    }
    if !c.evidence.is_empty() {
        out.push_str("<div class=\"evidence\">evidence: ");
        for e in &c.evidence {
            let name = e.rsplit('/').next().unwrap_or(e);
            let _ = write!(
                out,
                "<a href=\"{}\" title=\"{}\">{}</a>",
                href(e),
                html_escape(e),
                html_escape(name)
            );
        }
        out.push_str("</div>");
    }
    let requirements: Vec<String> = c
        .requirements
        .iter()
        .map(|r| format!("<span class=\"nowrap\">{}</span>", html_escape(r)))
        .collect();
    let _ = writeln!(
        out,
        "</td><td>{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td></tr>",
        html_escape(&c.transport),
        requirements.join(", "),
        if c.duration_ms == 0 && c.verdict == Verdict::Na {
            "&ndash;".to_owned()
        } else {
            us(c.duration_ms.saturating_mul(1000))
        }
    );
}

/// A logarithmic x axis mapping microseconds to pixels.
struct LogAxis {
    lo: f64,
    hi: f64,
    x0: f64,
    x1: f64,
}

impl LogAxis {
    fn new(min_us: u64, max_us: u64, x0: f64, x1: f64) -> LogAxis {
        let lo = (min_us.max(1) as f64) / 1.25;
        let hi = (max_us.max(min_us.max(1) + 1) as f64) * 1.25;
        LogAxis {
            lo: lo.max(0.8),
            hi,
            x0,
            x1,
        }
    }

    fn x(&self, v: f64) -> f64 {
        let v = v.clamp(self.lo, self.hi);
        self.x0 + (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln()) * (self.x1 - self.x0)
    }

    /// Tick values: 1-2-5 per decade, or decades only when that would be crowded.
    fn ticks(&self) -> Vec<u64> {
        let mut all = Vec::new();
        let mut decade = 1u64;
        while (decade as f64) <= self.hi && decade <= 100_000_000 {
            for m in [1, 2, 5] {
                let v = decade * m;
                if (v as f64) >= self.lo && (v as f64) <= self.hi {
                    all.push(v);
                }
            }
            decade *= 10;
        }
        if all.len() > 9 {
            all.retain(|v| v.to_string().starts_with('1'));
        }
        all
    }

    fn draw_ticks(&self, out: &mut String, y_axis: f64, y_top: f64) {
        let _ = write!(
            out,
            "<line class=\"axis\" x1=\"{:.1}\" y1=\"{y_axis:.1}\" x2=\"{:.1}\" y2=\"{y_axis:.1}\"/>",
            self.x0, self.x1
        );
        for t in self.ticks() {
            let x = self.x(t as f64);
            let _ = write!(
                out,
                "<line class=\"axis\" x1=\"{x:.1}\" y1=\"{y_top:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" \
                 opacity=\".45\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                y_axis + 4.0,
                y_axis + 15.0,
                us(t)
            );
        }
    }
}

/// An inline SVG histogram of one case's latency on a log time axis, with p50, p99, the bound
/// and the physical floor marked.
pub fn histogram_svg(l: &LatencyReport) -> String {
    const W: f64 = 640.0;
    const H: f64 = 170.0;
    const LEFT: f64 = 40.0;
    const RIGHT: f64 = 14.0;
    const TOP: f64 = 18.0;
    const BOTTOM: f64 = 24.0;
    const BINS: usize = 64;
    let (Some(first), Some(last)) = (l.buckets.first(), l.buckets.last()) else {
        return String::new();
    };
    let mut lo = first.low_us;
    let mut hi = last.high_us;
    lo = lo.min(l.bound_us.max(1));
    hi = hi.max(l.bound_us);
    if let Some(f) = l.physical_floor_us {
        lo = lo.min(f.max(1));
    }
    let axis = LogAxis::new(lo, hi, LEFT, W - RIGHT);
    let y_axis = H - BOTTOM;
    let plot_h = y_axis - TOP;

    let mut bins = [0u64; BINS];
    let mut ranges = [(u64::MAX, 0u64); BINS];
    for b in &l.buckets {
        let mid = ((b.low_us.max(1) as f64) * (b.high_us.max(1) as f64 + 1.0)).sqrt();
        let frac = (axis.x(mid) - axis.x0) / (axis.x1 - axis.x0);
        let i = ((frac * BINS as f64) as usize).min(BINS - 1);
        bins[i] = bins[i].saturating_add(b.count);
        ranges[i].0 = ranges[i].0.min(b.low_us);
        ranges[i].1 = ranges[i].1.max(b.high_us);
    }
    let peak = bins.iter().copied().max().unwrap_or(0).max(1);

    let mut out = String::new();
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {W} {H}\" width=\"{W}\" height=\"{H}\" role=\"img\" \
         aria-label=\"latency histogram: p50 {}, p99 {}, bound {}\">",
        us(l.p50_us),
        us(l.p99_us),
        us(l.bound_us)
    );
    axis.draw_ticks(&mut out, y_axis, TOP);
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{peak}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
        LEFT - 4.0,
        TOP + 8.0,
        LEFT - 4.0,
        y_axis
    );
    let bin_w = (axis.x1 - axis.x0) / BINS as f64;
    for (i, &n) in bins.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let h = (n as f64 / peak as f64 * plot_h).max(1.0);
        let x = axis.x0 + i as f64 * bin_w;
        let _ = write!(
            out,
            "<rect class=\"barr\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\">\
             <title>{} to {}: {n} samples</title></rect>",
            x + 0.5,
            y_axis - h,
            (bin_w - 1.0).max(1.0),
            us(ranges[i].0),
            us(ranges[i].1)
        );
    }
    // Labels sit on two rows, p50/bound left of their line and p99/floor right of it, so
    // neighbouring markers rarely collide.
    let mut marker = |v: u64, class: &str, label: &str, row: f64, before: bool| {
        let x = axis.x(v as f64);
        let (tx, anchor) = if before {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        let _ = write!(
            out,
            "<line class=\"m-{class}\" x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{y_axis:.1}\" \
             stroke-width=\"1.5\"/><text class=\"t-{class}\" x=\"{tx:.1}\" y=\"{:.1}\" \
             text-anchor=\"{anchor}\">{label}</text>",
            TOP - 4.0,
            TOP - 6.0 + row
        );
    };
    if let Some(f) = l.physical_floor_us {
        marker(f, "floor", "floor", 10.0, false);
    }
    marker(l.p50_us, "p50", "p50", 0.0, true);
    marker(l.p99_us, "p99", "p99", 10.0, false);
    marker(l.bound_us, "bound", "bound", 0.0, false);
    out.push_str("</svg>");
    out
}

/// An inline SVG with one row per transport: a bar from p50 to p99, whiskers to min and max,
/// and a tick at p99.9, all on one log time axis.
fn transport_svg(rows: &[TransportLatency]) -> String {
    const W: f64 = 640.0;
    const LEFT: f64 = 80.0;
    const RIGHT: f64 = 14.0;
    const ROW: f64 = 26.0;
    const TOP: f64 = 8.0;
    let lo = rows.iter().map(|r| r.percentiles.min_us).min().unwrap_or(1);
    let hi = rows.iter().map(|r| r.percentiles.max_us).max().unwrap_or(1);
    let axis = LogAxis::new(lo, hi, LEFT, W - RIGHT);
    let y_axis = TOP + ROW * rows.len() as f64 + 4.0;
    let h = y_axis + 22.0;
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {W} {h}\" width=\"{W}\" height=\"{h}\" role=\"img\" \
         aria-label=\"latency percentiles by transport\">"
    );
    axis.draw_ticks(&mut out, y_axis, TOP);
    for (i, r) in rows.iter().enumerate() {
        let q = &r.percentiles;
        let cy = TOP + ROW * i as f64 + ROW / 2.0;
        let (xmin, x50, x99, x999, xmax) = (
            axis.x(q.min_us as f64),
            axis.x(q.p50_us as f64),
            axis.x(q.p99_us as f64),
            axis.x(q.p999_us as f64),
            axis.x(q.max_us as f64),
        );
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <line class=\"rng\" x1=\"{xmin:.1}\" y1=\"{cy:.1}\" x2=\"{xmax:.1}\" y2=\"{cy:.1}\"/>\
             <rect class=\"iqr\" x=\"{x50:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"12\">\
             <title>{}: p50 {} .. p99 {} ({} samples)</title></rect>\
             <line class=\"m-p99\" x1=\"{x999:.1}\" y1=\"{:.1}\" x2=\"{x999:.1}\" y2=\"{:.1}\" \
             stroke-width=\"2\"><title>p99.9 {}</title></line>\
             <circle class=\"dot\" cx=\"{xmax:.1}\" cy=\"{cy:.1}\" r=\"3\">\
             <title>max {}</title></circle>",
            LEFT - 8.0,
            cy + 4.0,
            html_escape(&r.transport),
            cy - 6.0,
            (x99 - x50).max(2.0),
            html_escape(&r.transport),
            us(q.p50_us),
            us(q.p99_us),
            q.count,
            cy - 7.0,
            cy + 7.0,
            us(q.p999_us),
            us(q.max_us)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{case, provenance, report};
    use super::*;

    #[test]
    fn contains_every_case_and_count() {
        let r = report();
        let html = to_html(&r);
        for c in &r.cases {
            assert!(html.contains(&format!("<code>{}</code>", c.id)), "{}", c.id);
            assert!(html.contains(&format!("id=\"case-{}\"", c.id)));
        }
        assert!(html.contains("<span class=\"badge fail\">FAIL</span>"));
        assert!(html.contains("<span class=\"badge na\">NA</span>"));
        assert!(html
            .contains("[SEC-7]</span> expected replayed frame dropped, observed frame delivered"));
        assert!(html.contains("ERROR: some cases ERROR"));
    }

    #[test]
    fn is_self_contained() {
        let html = to_html(&report());
        for banned in ["http://", "https://", "<link", "src=", "@import", "url("] {
            assert!(!html.contains(banned), "external reference {banned:?}");
        }
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
    }

    #[test]
    fn latency_cases_get_an_svg_and_evidence_links() {
        let html = to_html(&report());
        // One per timed case plus one per-transport chart.
        assert_eq!(html.matches("<svg ").count(), 2);
        assert!(html.contains("class=\"m-bound\""));
        assert!(html.contains("class=\"m-floor\""));
        assert!(html.contains("<a href=\"cases/sess.message.latency_within_bound/capture.pcap\""));
    }

    #[test]
    fn escapes_hostile_text_and_links() {
        let mut c = case("x.<script>", Verdict::Fail);
        c.title = "<img src=x onerror=alert(1)>".into();
        c.evidence = vec!["javascript:alert(1)".into(), "a b/c\"d.log".into()];
        let html = to_html(&RunReport::new(provenance(), vec![c]));
        assert!(!html.contains("<img"));
        assert!(!html.contains("x.<script>"));
        assert!(html.contains("href=\"javascript%3Aalert%281%29\""));
        assert!(html.contains("href=\"a%20b/c%22d.log\""));
    }

    #[test]
    fn empty_report_renders() {
        let html = to_html(&RunReport::new(provenance(), vec![]));
        assert!(html.contains("every case PASS or NA"));
        assert_eq!(html.matches("<svg ").count(), 0);
    }
}
