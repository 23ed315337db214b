//! libFuzzer front end of [`softbus_fuzz::control`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus_fuzz::control(data));
