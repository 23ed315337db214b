//! `cargo xtask certify [--rig rigs/<rig>.toml] [ARGS]`: certify a device against the spec.
//!
//! Installs missing prerequisites (capture needs libpcap and tshark), then runs the suite's
//! `certify` binary with ARGS (`cargo xtask certify --help` shows its options). With no
//! arguments it certifies the reference implementation on the virtual rig. Its exit status
//! (0 all PASS or NA, 1 any FAIL or INCONC, 2 ERROR or usage) is passed on unchanged.

/// Install missing prerequisites, then run the `certify` binary with `args`.
pub fn run(args: &[String]) -> anyhow::Result<u8> {
    crate::setup::ensure()?;
    crate::cargo::run_conformance_bin("certify", args)
}
