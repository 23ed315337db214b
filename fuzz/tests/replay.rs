//! Corpus replay: every input in `fixtures/fuzz/TARGET/` through its fuzz target, on stable, as
//! part of `cargo xtask test`. The corpus is what `cargo xtask fuzz cmin` kept of the
//! coverage-guided runs (the inputs that reach new code), plus any crash input once its bug is
//! fixed; replaying it proves each target's properties still hold on every path a fuzzer found.

use std::path::{Path, PathBuf};

/// The corpus of every target must exist and hold at least this many inputs: an empty or
/// missing directory would make the replay pass while checking nothing.
const MIN_INPUTS: usize = 20;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/fuzz")
        .join(target)
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask fuzz cmin`)", dir.display()))
        .map(|e| e.expect("read corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_replays_its_corpus() {
    let mut failures = Vec::new();
    let mut summary = Vec::new();
    for (name, run) in softbus_fuzz::TARGETS {
        let files = inputs(&corpus_dir(name));
        assert!(
            files.len() >= MIN_INPUTS,
            "fixtures/fuzz/{name} holds {} inputs, fewer than {MIN_INPUTS}",
            files.len()
        );
        let mut bytes = 0;
        for file in &files {
            let data = std::fs::read(file).expect("read corpus input");
            bytes += data.len();
            if let Err(panic) = std::panic::catch_unwind(|| run(&data)) {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{name}: {}: {why}", file.display()));
            }
        }
        summary.push(format!("{name}: {} inputs, {bytes} bytes", files.len()));
    }
    eprintln!("{}", summary.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_target_has_a_libfuzzer_binary_and_a_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, _) in softbus_fuzz::TARGETS {
        let bin = root.join("fuzz_targets").join(format!("{name}.rs"));
        assert!(bin.is_file(), "{} is missing", bin.display());
        assert!(
            manifest.contains(&format!(
                "name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\""
            )),
            "fuzz/Cargo.toml has no [[bin]] for {name}"
        );
        assert!(corpus_dir(name).is_dir(), "fixtures/fuzz/{name} is missing");
    }
}

#[test]
fn an_empty_input_is_harmless_everywhere() {
    for (_, run) in softbus_fuzz::TARGETS {
        run(&[]);
        run(&[0]);
        run(&[0xFF; 3]);
    }
}
