//! Fuzzes primary.xml parsing: any bytes give the package list or an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nosa_repo::parse_primary_xml(data, "primary.xml");
});
