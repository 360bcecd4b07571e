//! Fuzzes nestos.build.toml parsing and checking: any text gives a build file or a diagnostic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nosa_build::buildfile::BuildFile::parse(
            std::path::Path::new("/nonexistent/nestos.build.toml"),
            text.to_string(),
        );
    }
});
