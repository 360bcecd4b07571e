//! Fuzzes the RPM reader the unpack node uses: the header limits, then the rpm crate's headers
//! and file list, as unpack reads them.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(pkg) = nosa_rules::unpack::read_package(data, "fuzz-1") {
        let md = &pkg.metadata;
        let _ = md.get_nevra();
        let _ = md.get_file_entries();
        let _ = md.get_pre_install_script();
    }
});
