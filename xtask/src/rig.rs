//! `cargo xtask rig [ARGS]`: check and inspect rig files and the devices they name.
//!
//! Runs the suite's `rig` binary with ARGS after installing missing prerequisites (probing a
//! capture interface needs libpcap). Its exit status is passed on unchanged.

/// Install missing prerequisites, then run the `rig` binary with `args`.
pub fn run(args: &[String]) -> anyhow::Result<u8> {
    crate::setup::ensure()?;
    crate::cargo::run_conformance_bin("rig", args)
}
