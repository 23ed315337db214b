//! libFuzzer front end of [`softbus_fuzz::frame`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus_fuzz::frame(data));
