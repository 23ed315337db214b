//! `cargo xtask spec-coverage [ARGS]`: which requirements of the spec have test cases.
//!
//! Runs the suite's `spec-coverage` binary, which lists every requirement ID and the cases that
//! check it and fails when a MUST has none. Its exit status is passed on unchanged.

/// Install missing prerequisites, then run the `spec-coverage` binary with `args`.
pub fn run(args: &[String]) -> anyhow::Result<u8> {
    crate::setup::ensure()?;
    crate::cargo::run_conformance_bin("spec-coverage", args)
}
