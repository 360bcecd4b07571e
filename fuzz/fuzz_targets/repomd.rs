//! Fuzzes repomd.xml parsing: any bytes give the metadata list or an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = nosa_repo::parse_repomd(data, "repomd.xml");
});
