//! End-to-end tests of the SoftBus conformance kit live in `tests/tests/`.
