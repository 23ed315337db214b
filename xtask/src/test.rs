//! `cargo xtask test [ARGS]`: the README's test command and what CI runs.
//!
//! Installs missing system prerequisites (see [`crate::setup`]), then runs
//! `cargo test --workspace ARGS`, passing its exit status on.

/// Install missing prerequisites, then run the whole workspace's tests with `args`.
pub fn run(args: &[String]) -> anyhow::Result<u8> {
    crate::setup::ensure()?;
    crate::cargo::run(
        crate::cargo::cargo()
            .args(["test", "--workspace"])
            .args(args),
    )
}
