//! Decompression of rpm-md metadata files, chosen by the file name as createrepo_c names them:
//! `.gz` (flate2), `.xz` (liblzma), `.zst` (zstd), or uncompressed `.xml`.

use std::io::Read;

use crate::error::RepoError;

/// A reader of the decompressed content of `r`, which holds the file named `href`.
pub fn decoder<'a>(href: &str, r: impl Read + 'a) -> Result<Box<dyn Read + 'a>, RepoError> {
    let name = href.rsplit('/').next().unwrap_or(href);
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if name.ends_with(".xz") {
        Box::new(liblzma::read::XzDecoder::new_multi_decoder(r))
    } else if name.ends_with(".zst") || name.ends_with(".zstd") {
        Box::new(zstd::stream::read::Decoder::new(r)?)
    } else if name.ends_with(".xml") || !name.contains('.') {
        Box::new(r)
    } else {
        return Err(RepoError::UnsupportedCompression(href.to_string()));
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn roundtrip(href: &str, compressed: Vec<u8>) {
        let mut out = String::new();
        decoder(href, &compressed[..])
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "<metadata/>", "{href}");
    }

    #[test]
    fn every_supported_compression() {
        let data = b"<metadata/>";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(data).unwrap();
        roundtrip("repodata/a-primary.xml.gz", gz.finish().unwrap());
        let mut xz = liblzma::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(data).unwrap();
        roundtrip("repodata/a-primary.xml.xz", xz.finish().unwrap());
        roundtrip(
            "repodata/a-primary.xml.zst",
            zstd::stream::encode_all(&data[..], 3).unwrap(),
        );
        roundtrip("repodata/a-primary.xml", data.to_vec());
        assert!(decoder("repodata/a-primary.xml.bz2", &data[..]).is_err());
        let mut garbage = String::new();
        assert!(
            decoder("x.gz", &b"not gzip"[..])
                .unwrap()
                .read_to_string(&mut garbage)
                .is_err()
        );
    }
}
