//! libFuzzer front end of [`softbus_fuzz::endpoint::run`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus_fuzz::endpoint::run(data));
