//! libFuzzer front end of [`softbus_fuzz::znp_stream`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus_fuzz::znp_stream(data));
