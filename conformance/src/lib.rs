//! # softbus-conformance: the SoftBus v1 spec and its conformance suite
//!
//! * [`spec`]: the written specification (`conformance/spec/softbus-v1.md`) and the requirement
//!   list parsed from it (every `[ID-N]` with its RFC 2119 keyword);
//! * [`cases`]: the test cases, one module per spec section, each opening with the requirement
//!   text it checks;
//! * [`tester`]: the lower tester (SoftBus over the DUT's transports, built from the codec and
//!   crypto primitives only), the upper tester (control channel client) and the DUT launcher;
//! * [`case`]: what a case is and the context it runs in;
//! * [`run`]: the engine behind `cargo xtask certify` and the libtest-mimic harness;
//! * [`coverage`]: the requirement-to-case matrix behind `cargo xtask spec-coverage`.
//!
//! **Architecture Invariant:** no case calls the reference implementation's state machines
//! (`softbus::endpoint`); cases judge the DUT by what crosses the wire and the control channel.

pub mod case;
pub mod cases;
pub mod coverage;
pub mod run;
pub mod spec;
pub mod tester;
pub mod variant;
