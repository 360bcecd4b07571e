//! Fuzzes the nestos-config loader through `manifest.yaml`: any bytes give a config or an error, never
//! a panic or a hang.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    nosa_fuzz::load_with("manifest.yaml", data);
});
