//! `cargo xtask fixtures [--accept]`: regenerate the golden fixtures (`fixtures/frames/`,
//! `fixtures/crypto/`) and the codec snapshots (`reference-impl/tests/snapshots/`), show what
//! changed, and accept it. Works like `cargo insta test --review` without needing cargo-insta.
//!
//! 1. Remove pending files left by an earlier run (`*.snap.new`, `fixtures/**/*.new`).
//! 2. Run the generating tests (`-p softbus --test golden --test vectors`) with
//!    `INSTA_UPDATE=new INSTA_FORCE_PASS=1` and `SOFTBUS_UPDATE_FIXTURES=1`: a snapshot or
//!    fixture that would change is written next to the current one as `.snap.new` / `.new`.
//! 3. List every pending file with a unified diff against the current one.
//! 4. With `--accept`, move each pending file over the current one (as `cargo insta accept`
//!    does), then run the tests again without the update switches to prove they pass.
//!
//! Exit status: 0 when nothing changed or the changes were accepted; 1 when changes await
//! review (run again with `--accept`) or when the generating tests fail for another reason
//! (the codec disagrees with a spec layout: fix the code, accepting would bake the bug in).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cargo;

/// Options of `cargo xtask fixtures`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Accept the changes: move the regenerated fixtures and snapshots into place.
    #[arg(long)]
    pub accept: bool,
}

/// The test targets of the `softbus` crate that generate fixtures and snapshots.
const GENERATORS: &[&str] = &["golden", "vectors"];
/// Where the generated files live, relative to the workspace root.
const FIXTURE_DIR: &str = "fixtures";
const SNAPSHOT_DIR: &str = "reference-impl/tests/snapshots";
/// The environment switch the fixture tests read (see `reference-impl/tests/support`).
const UPDATE_ENV: &str = "SOFTBUS_UPDATE_FIXTURES";

/// A regenerated file waiting for review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The new version (`x.snap.new`, `x.json.new`).
    pub new: PathBuf,
    /// The file it replaces (may not exist yet).
    pub current: PathBuf,
}

/// Every pending file under the fixture and snapshot directories, sorted.
pub fn pending(root: &Path) -> anyhow::Result<Vec<Pending>> {
    let mut out = Vec::new();
    for dir in [FIXTURE_DIR, SNAPSHOT_DIR] {
        collect_pending(&root.join(dir), &mut out)?;
    }
    out.sort_by(|a, b| a.current.cmp(&b.current));
    Ok(out)
}

fn collect_pending(dir: &Path, out: &mut Vec<Pending>) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // a directory that does not exist yet holds nothing pending
    };
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_pending(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "new") {
            out.push(Pending {
                current: path.with_extension(""),
                new: path,
            });
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn run_generators(update: bool) -> anyhow::Result<u8> {
    let mut cmd = cargo::cargo();
    cmd.args(["test", "--quiet", "-p", "softbus"]);
    for g in GENERATORS {
        cmd.args(["--test", g]);
    }
    if update {
        cmd.env("INSTA_UPDATE", "new")
            .env("INSTA_FORCE_PASS", "1")
            .env(UPDATE_ENV, "1");
    } else {
        cmd.env("INSTA_UPDATE", "no")
            .env_remove("INSTA_FORCE_PASS")
            .env_remove(UPDATE_ENV);
    }
    cargo::run(&mut cmd)
}

/// Run `cargo xtask fixtures`.
pub fn run(opts: &Options) -> anyhow::Result<u8> {
    let root = cargo::root();
    for stale in pending(&root)? {
        std::fs::remove_file(&stale.new)
            .with_context(|| format!("removing {}", stale.new.display()))?;
    }
    eprintln!("xtask: regenerating fixtures and snapshots (cargo test -p softbus --test golden --test vectors)");
    let status = run_generators(true)?;
    let changes = pending(&root)?;
    for p in &changes {
        let new = std::fs::read_to_string(&p.new)
            .with_context(|| format!("reading {}", p.new.display()))?;
        let old = std::fs::read_to_string(&p.current).unwrap_or_default();
        let what = if p.current.exists() { "changed" } else { "new" };
        println!("\n=== {} ({what})", relative(&root, &p.current));
        print!("{}", unified_diff(&old, &new, 3));
    }
    if status != 0 {
        eprintln!(
            "\nxtask: the generating tests failed for a reason other than a changed fixture (see above): \
             the codec disagrees with a spec layout or a vector. Fix that first; nothing was accepted."
        );
        return Ok(1);
    }
    if changes.is_empty() {
        println!("xtask: fixtures and snapshots are up to date");
        return Ok(0);
    }
    if !opts.accept {
        println!(
            "\nxtask: {} file(s) changed; review the diffs above, then run `cargo xtask fixtures --accept`",
            changes.len()
        );
        return Ok(1);
    }
    for p in &changes {
        std::fs::rename(&p.new, &p.current)
            .with_context(|| format!("moving {} over {}", p.new.display(), p.current.display()))?;
        println!("accepted {}", relative(&root, &p.current));
    }
    eprintln!("xtask: checking the accepted files");
    let status = run_generators(false)?;
    if status != 0 {
        eprintln!("xtask: the golden tests still fail after accepting (see above)");
        return Ok(1);
    }
    println!(
        "xtask: accepted {} file(s); the golden tests pass",
        changes.len()
    );
    Ok(0)
}

/// A line diff in unified format with `context` lines around each change.
pub fn unified_diff(old: &str, new: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let ops = diff_lines(&a, &b);
    let mut out = String::new();
    // Group the edit script into hunks of changes separated by more than 2 * context lines.
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(i, _)| i)
        .collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(context);
        let mut end = changed[i];
        while i + 1 < changed.len() && changed[i + 1] <= end + 2 * context + 1 {
            i += 1;
            end = changed[i];
        }
        let end = (end + context + 1).min(ops.len());
        let (a_start, b_start) = positions(&ops[..start]);
        let (a_len, b_len) = positions(&ops[start..end]);
        let _ = writeln!(
            out,
            "@@ -{},{a_len} +{},{b_len} @@",
            a_start + 1,
            b_start + 1
        );
        for op in &ops[start..end] {
            let _ = match op {
                Op::Same(l) => writeln!(out, " {l}"),
                Op::Delete(l) => writeln!(out, "-{l}"),
                Op::Insert(l) => writeln!(out, "+{l}"),
            };
        }
        i += 1;
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Delete(&'a str),
    Insert(&'a str),
}

/// Lines of the old and new file covered by `ops`.
fn positions(ops: &[Op<'_>]) -> (usize, usize) {
    ops.iter().fold((0, 0), |(a, b), op| match op {
        Op::Same(_) => (a + 1, b + 1),
        Op::Delete(_) => (a + 1, b),
        Op::Insert(_) => (a, b + 1),
    })
}

/// A shortest edit script by longest common subsequence (fixtures are a few hundred lines).
fn diff_lines<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut ops = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(a[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Deletions before insertions, as diff(1) prints them.
            ops.push(Op::Delete(a[i]));
            i += 1;
        } else {
            ops.push(Op::Insert(b[j]));
            j += 1;
        }
    }
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_of_equal_texts_is_empty() {
        assert_eq!(unified_diff("a\nb\n", "a\nb\n", 3), "");
    }

    #[test]
    fn diff_shows_changes_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n";
        assert_eq!(
            unified_diff(old, new, 2),
            "@@ -3,5 +3,5 @@\n 3\n 4\n-5\n+five\n 6\n 7\n"
        );
    }

    #[test]
    fn diff_of_a_new_file_is_all_insertions() {
        assert_eq!(unified_diff("", "x\ny\n", 3), "@@ -1,0 +1,2 @@\n+x\n+y\n");
    }

    #[test]
    fn distant_changes_make_separate_hunks() {
        let old: String = (0..20).map(|i| format!("{i}\n")).collect();
        let new: String = (0..20)
            .map(|i| match i {
                2 => "two\n".to_string(),
                17 => "seventeen\n".to_string(),
                _ => format!("{i}\n"),
            })
            .collect();
        let diff = unified_diff(&old, &new, 1);
        assert_eq!(diff.matches("@@ -").count(), 2, "{diff}");
        assert!(
            diff.contains("-2\n+two\n") && diff.contains("-17\n+seventeen\n"),
            "{diff}"
        );
    }

    #[test]
    fn pending_files_are_found_and_paired_with_their_targets() {
        let dir = std::env::temp_dir().join(format!("xtask-fixtures-{}", std::process::id()));
        let frames = dir.join(FIXTURE_DIR).join("frames");
        let snaps = dir.join(SNAPSHOT_DIR);
        std::fs::create_dir_all(&frames).expect("temp dir");
        std::fs::create_dir_all(&snaps).expect("temp dir");
        std::fs::write(frames.join("record.json"), "old").expect("write");
        std::fs::write(frames.join("record.json.new"), "new").expect("write");
        std::fs::write(snaps.join("golden__record.snap.new"), "new").expect("write");
        std::fs::write(snaps.join("golden__ack.snap"), "unchanged").expect("write");
        let found = pending(&dir).expect("listing");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        assert_eq!(
            found,
            vec![
                Pending {
                    new: frames.join("record.json.new"),
                    current: frames.join("record.json"),
                },
                Pending {
                    new: snaps.join("golden__record.snap.new"),
                    current: snaps.join("golden__record.snap"),
                },
            ]
        );
    }
}
