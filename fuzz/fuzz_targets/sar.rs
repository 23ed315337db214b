//! libFuzzer front end of [`softbus_fuzz::sar_reassembly`].
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| softbus_fuzz::sar_reassembly(data));
