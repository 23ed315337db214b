//! Tidy checks (rust-analyzer's `tidy`): the architecture invariants of ARCHITECTURE.md, checked
//! on the source text so that `cargo test` (and so `cargo xtask test`, CI's command) fails the
//! moment one is broken.
//!
//! * conformance code never uses `softbus::endpoint` (it judges the wire, not the reference);
//! * the sans-IO modules of `softbus` use no clock, socket, thread, file or OS randomness;
//! * every source module opens with a `//!` doc comment;
//! * no import cycles between the modules of a crate;
//! * no non-test source file over [`MAX_LINES`] lines unless [`LONG_FILES`] says why.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The longest a non-test source file may be without an entry in [`LONG_FILES`].
const MAX_LINES: usize = 1500;

/// Files allowed past [`MAX_LINES`], each with the reason. Keep it short: every entry is debt.
const LONG_FILES: &[(&str, &str)] = &[];

/// Import cycles allowed, each with the reason; the check fails on any other cycle, and on an
/// entry here that is no longer a cycle. Empty: every entry would be debt.
const KNOWN_CYCLES: &[(&str, &str)] = &[];

/// The crates whose `src/` trees are checked: (directory, crate name as used in paths).
const CRATES: &[&str] = &["reference-impl", "harness", "conformance", "xtask", "tests"];

/// Modules of `softbus` that must stay sans-IO (relative to `reference-impl/src`, without `.rs`;
/// a directory covers everything under it).
const SANS_IO: &[&str] = &[
    "wire",
    "crypto",
    "endpoint",
    "discovery",
    "capability",
    "fault",
    "testing",
    "link/sar",
    "link/serial/rfc2217",
    "link/serial/addr",
    "bridge/ops",
];

/// What a sans-IO module must not mention: clocks, sockets, threads, files, OS randomness.
const IO_TOKENS: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "std::net::UdpSocket",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "UdpSocket::bind",
    "TcpStream::connect",
    "tokio::",
    "std::thread",
    "thread::spawn",
    "thread::sleep",
    "std::fs",
    "File::open",
    "File::create",
    "OsRng",
    "thread_rng",
    "getrandom",
    "from_entropy",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn rel(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The file's code without comments and without a trailing `#[cfg(test)] mod ...` block: the
/// checks are about what ships, and tests may read the clock.
fn shipped_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("#[cfg(test)]")
            && lines
                .get(i + 1)
                .is_some_and(|n| n.starts_with("mod ") || n.starts_with("pub mod "))
        {
            break;
        }
        let code = match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        out.push_str(code);
        out.push('\n');
    }
    out
}

fn is_test_file(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || p.components().any(|c| c.as_os_str() == "tests")
}

#[test]
fn conformance_never_uses_the_reference_endpoint() {
    let mut files = Vec::new();
    rust_files(&root().join("conformance/src"), &mut files);
    rust_files(&root().join("conformance/tests"), &mut files);
    let mut bad = Vec::new();
    for f in &files {
        let code = shipped_code(&fs::read_to_string(f).unwrap());
        for (n, line) in code.lines().enumerate() {
            if line.contains("softbus::endpoint") || line.contains("softbus::testing") {
                bad.push(format!("{}:{}: {}", rel(f), n + 1, line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "the suite judges only what crosses the wire (ARCHITECTURE.md): conformance code must not \
         use the reference's state machines; use softbus::wire and softbus::crypto instead:\n{}",
        bad.join("\n")
    );
}

#[test]
fn sans_io_modules_do_no_io() {
    let src = root().join("reference-impl/src");
    let mut bad = Vec::new();
    for m in SANS_IO {
        let mut files = Vec::new();
        let file = src.join(format!("{m}.rs"));
        if file.exists() {
            files.push(file);
        }
        rust_files(&src.join(m), &mut files);
        // Tests drive the sans-IO code from outside, with a clock of their own.
        for f in files.iter().filter(|f| !is_test_file(f)) {
            let code = shipped_code(&fs::read_to_string(f).unwrap());
            for (n, line) in code.lines().enumerate() {
                for t in IO_TOKENS {
                    if line.contains(t) {
                        bad.push(format!("{}:{}: `{t}` in {}", rel(f), n + 1, line.trim()));
                    }
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "these modules are sans-IO (time comes in as `now`, randomness from a seed); move the \
         I/O to a driver:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_module_has_a_doc_comment() {
    let mut bad = Vec::new();
    for c in CRATES {
        let mut files = Vec::new();
        rust_files(&root().join(c).join("src"), &mut files);
        for f in files {
            let text = fs::read_to_string(&f).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                bad.push(rel(&f));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "every module opens with a `//!` comment saying what it owns:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_source_file_is_too_long() {
    let mut bad = Vec::new();
    let mut stale = Vec::new();
    for c in CRATES {
        let mut files = Vec::new();
        rust_files(&root().join(c).join("src"), &mut files);
        for f in files {
            let r = rel(&f);
            let n = fs::read_to_string(&f).unwrap().lines().count();
            let allowed = LONG_FILES.iter().any(|(p, _)| *p == r);
            if n > MAX_LINES && !is_test_file(&f) && !allowed {
                bad.push(format!("{r}: {n} lines"));
            }
            if allowed && n <= MAX_LINES {
                stale.push(r);
            }
        }
    }
    assert!(
        bad.is_empty(),
        "split these files by concern (or add them to LONG_FILES in tests/tests/tidy.rs with \
         the reason):\n{}",
        bad.join("\n")
    );
    assert!(
        stale.is_empty(),
        "remove these from LONG_FILES, they are short now: {stale:?}"
    );
}

/// A crate's file modules: module path (`a::b`) to file.
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut out = BTreeMap::new();
    for f in files {
        let r = f.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = r
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.first().is_some_and(|p| p == "bin") {
            continue; // binaries are crates of their own
        }
        if parts
            .last()
            .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
        {
            parts.pop();
        }
        out.insert(parts.join("::"), f);
    }
    out
}

/// Expand `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(path: &str) -> Vec<String> {
    let path = path.trim();
    let Some(open) = path.find('{') else {
        return vec![path.to_string()];
    };
    let prefix = &path[..open];
    let close = path.rfind('}').filter(|&c| c > open).unwrap_or(path.len());
    let inner = &path[open + 1..close];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(&format!("{prefix}{}", p.trim())))
        .collect()
}

/// Every `crate::`/`super::`/`self::` path a module's code names, made absolute.
fn referenced_paths(module: &str, code: &str) -> Vec<Vec<String>> {
    let here: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let mut raw = Vec::new();
    // `use` statements (they start a line), braces expanded.
    let mut stmt: Option<String> = None;
    for line in code.lines() {
        let t = line.trim_start();
        let t = t
            .strip_prefix("pub(crate) ")
            .or_else(|| t.strip_prefix("pub(super) "))
            .or_else(|| t.strip_prefix("pub "))
            .unwrap_or(t);
        if stmt.is_none() {
            if let Some(u) = t.strip_prefix("use ") {
                stmt = Some(String::new());
                stmt.as_mut().unwrap().push_str(u);
            }
        } else if let Some(s) = stmt.as_mut() {
            s.push(' ');
            s.push_str(t);
        }
        if let Some(s) = stmt.take_if(|s| s.contains(';')) {
            raw.extend(expand(s.split(';').next().unwrap_or("")));
        }
    }
    // Inline paths.
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            let prev = code[..at].chars().last();
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map(|e| at + e)
                .unwrap_or(code.len());
            if prev.is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != ':') {
                raw.push(code[at..end].to_string());
            }
            from = end.max(at + 1);
        }
    }
    let mut out = Vec::new();
    for p in raw {
        let p = p.split(" as ").next().unwrap_or("").trim().to_string();
        let segs: Vec<&str> = p.split("::").filter(|s| !s.is_empty()).collect();
        let Some(first) = segs.first() else { continue };
        let mut base: Vec<String> = match *first {
            "crate" => Vec::new(),
            "self" => here.clone(),
            "super" => {
                let mut b = here.clone();
                b.pop();
                b
            }
            _ => continue,
        };
        let mut tail = &segs[1..];
        while tail.first() == Some(&"super") {
            base.pop();
            tail = &tail[1..];
        }
        base.extend(tail.iter().map(|s| s.to_string()));
        out.push(base);
    }
    out
}

fn find_cycles(crate_dir: &str) -> Vec<String> {
    let src = root().join(crate_dir).join("src");
    let mods = modules(&src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, f) in &mods {
        let code = shipped_code(&fs::read_to_string(f).unwrap());
        for path in referenced_paths(m, &code) {
            // The deepest file module the path points into.
            let mut target = None;
            for n in (0..=path.len()).rev() {
                let cand = path[..n].join("::");
                if mods.contains_key(&cand) {
                    target = Some(cand);
                    break;
                }
            }
            let Some(t) = target else { continue };
            let nested =
                |a: &str, b: &str| b.is_empty() || a == b || a.starts_with(&format!("{b}::"));
            // A module using its own ancestors or descendants is containment, not a cycle.
            if nested(m, &t) || nested(&t, m) {
                continue;
            }
            edges.entry(m.clone()).or_default().insert(t);
        }
    }
    // Tarjan's strongly connected components (module graphs are small enough to recurse).
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<String, usize>,
        low: BTreeMap<String, usize>,
        stack: Vec<String>,
        on: BTreeSet<String>,
        next: usize,
        sccs: Vec<Vec<String>>,
    }
    fn visit(s: &mut State<'_>, v: &str) {
        s.index.insert(v.to_string(), s.next);
        s.low.insert(v.to_string(), s.next);
        s.next += 1;
        s.stack.push(v.to_string());
        s.on.insert(v.to_string());
        let succ: Vec<String> = s
            .edges
            .get(v)
            .map(|e| e.iter().cloned().collect())
            .unwrap_or_default();
        for w in succ {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let lw = s.low[&w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(&w) {
                let iw = s.index[&w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(&w);
                let done = w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.sccs.push(scc);
            }
        }
    }
    let mut s = State {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        sccs: Vec::new(),
    };
    for m in mods.keys() {
        if !s.index.contains_key(m) {
            visit(&mut s, m);
        }
    }
    s.sccs
        .iter()
        .map(|scc| {
            let detail: Vec<String> = scc
                .iter()
                .flat_map(|a| {
                    edges[a]
                        .iter()
                        .filter(|b| scc.contains(b))
                        .map(move |b| format!("{a} -> {b}"))
                })
                .collect();
            format!(
                "{crate_dir}: {{{}}} ({})",
                scc.join(", "),
                detail.join("; ")
            )
        })
        .collect()
}

#[test]
fn no_import_cycles_between_modules() {
    let cycles: Vec<String> = CRATES.iter().flat_map(|c| find_cycles(c)).collect();
    let known = |c: &String| KNOWN_CYCLES.iter().any(|(k, _)| c.starts_with(k));
    let new: Vec<&String> = cycles.iter().filter(|c| !known(c)).collect();
    assert!(
        new.is_empty(),
        "modules that use each other (move what both need into a module both use):\n{}",
        new.iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let stale: Vec<&str> = KNOWN_CYCLES
        .iter()
        .map(|(k, _)| *k)
        .filter(|k| !cycles.iter().any(|c| c.starts_with(k)))
        .collect();
    assert!(
        stale.is_empty(),
        "remove these from KNOWN_CYCLES in tests/tests/tidy.rs, they are no longer cycles: {stale:?}"
    );
}

#[test]
fn the_cycle_finder_sees_a_cycle_and_expands_use_groups() {
    assert_eq!(
        expand("crate::a::{b, c::{d, e as f}}"),
        ["crate::a::b", "crate::a::c::d", "crate::a::c::e as f"]
    );
    let paths = referenced_paths("x::y", "use super::z::T;\nfn f() { crate::w::g(); }");
    assert!(paths.contains(&vec!["x".into(), "z".into(), "T".into()]));
    assert!(paths.contains(&vec!["w".into(), "g".into()]));
}
