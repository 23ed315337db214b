//! `cargo xtask bench [ARGS]`: the reference implementation's latency and throughput over
//! loopback UDP, each next to raw UDP doing the same work.
//!
//! Runs `cargo run --release -p softbus --example bench -- ARGS`
//! (`reference-impl/examples/bench.rs`; `cargo xtask bench --help` shows its options) and
//! passes its exit status on. It needs no system prerequisites.

/// Run the bench example in release mode with `args`, with the virtual Zigbee coordinator built
/// so the serial link is measured too.
pub fn run(args: &[String]) -> anyhow::Result<u8> {
    let status = crate::cargo::run(crate::cargo::cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "softbus-harness",
        "--bin",
        "znp-emulator",
    ]))?;
    if status != 0 {
        return Ok(status);
    }
    let emulator = crate::cargo::target_dir()
        .join("release")
        .join("znp-emulator");
    crate::cargo::run(
        crate::cargo::cargo()
            .args([
                "run",
                "--quiet",
                "--release",
                "-p",
                "softbus",
                "--example",
                "bench",
                "--",
                "--znp-emulator",
            ])
            .arg(&emulator)
            .args(args),
    )
}
