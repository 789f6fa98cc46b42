//! joblib's file container: detecting compression by magic number, and decompressing with a bound.
//!
//! joblib (`joblib/compressor.py`, `numpy_pickle_utils._detect_compressor`) writes either the bare
//! pickle stream or the whole stream compressed, recognised by its first bytes: zlib (`x`), gzip
//! (`1f 8b`), bz2 (`BZ`), xz (`fd 37 7a 58 5a`), lzma (`5d 00`), lz4 (`04 22 4d 18`), and the
//! pre-0.10 format (`ZF`). Ferroserve reads zlib and gzip, joblib's default and most common choices,
//! and refuses the others with a message saying how to re-save the model.

use std::io::Read;

use crate::error::{Codec, Stream};

/// The container a file's first bytes announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Container {
    /// A bare pickle stream (plain pickle, or joblib without compression).
    Plain,
    /// joblib `compress=('zlib', n)` or `compress=n`, or `compress=('gzip', n)`.
    Compressed(Codec),
    /// A compressor Ferroserve does not read.
    Unsupported(&'static str),
    /// joblib < 0.10's `ZF` format.
    OldJoblib,
}

impl Container {
    /// Recognises the container from the first bytes of a file.
    pub(crate) fn detect(bytes: &[u8]) -> Container {
        const PREFIXES: [(&[u8], Container); 7] = [
            (b"ZF", Container::OldJoblib),
            (b"\x78", Container::Compressed(Codec::Zlib)),
            (b"\x1f\x8b", Container::Compressed(Codec::Gzip)),
            (b"BZ", Container::Unsupported("bz2")),
            (b"\xfd\x37\x7a\x58\x5a", Container::Unsupported("xz")),
            (b"\x5d\x00", Container::Unsupported("lzma")),
            (b"\x04\x22\x4d\x18", Container::Unsupported("lz4")),
        ];
        PREFIXES.iter().find(|(p, _)| bytes.starts_with(p)).map_or(Container::Plain, |(_, c)| *c)
    }

    /// The stream the interpreter reads, for error offsets.
    pub(crate) fn stream(self) -> Stream {
        match self {
            Container::Compressed(codec) => Stream::Decompressed(codec),
            _ => Stream::File,
        }
    }
}

/// Why decompression failed.
#[derive(Debug)]
pub(crate) enum DecompressError {
    /// The output would exceed the limit.
    TooLarge,
    /// The compressed data is corrupt or truncated.
    Corrupt(std::io::Error),
}

/// Decompresses what `reader` yields, producing at most `max_out` bytes: the decoder stops one byte
/// past the limit, so a bomb never allocates more than the limit.
pub(crate) fn decompress(codec: Codec, reader: impl Read, max_out: u64) -> Result<Vec<u8>, DecompressError> {
    // A multi-member reader matches Python's gzip module, which reads concatenated members.
    let reader: Box<dyn Read + '_> = match codec {
        Codec::Zlib => Box::new(flate2::read::ZlibDecoder::new(reader)),
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
    };
    let mut out = Vec::new();
    // Read one byte past the limit to tell "exactly at the limit" from "over it".
    reader.take(max_out.saturating_add(1)).read_to_end(&mut out).map_err(DecompressError::Corrupt)?;
    if out.len() as u64 > max_out {
        return Err(DecompressError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn detects_joblib_magic_numbers() {
        assert_eq!(Container::detect(b"\x80\x04"), Container::Plain);
        assert_eq!(Container::detect(b"(dp0"), Container::Plain);
        assert_eq!(Container::detect(&zlib(b"abc")), Container::Compressed(Codec::Zlib));
        assert_eq!(Container::detect(b"\x1f\x8b\x08"), Container::Compressed(Codec::Gzip));
        assert_eq!(Container::detect(b"BZh9"), Container::Unsupported("bz2"));
        assert_eq!(Container::detect(b"\x04\x22\x4d\x18"), Container::Unsupported("lz4"));
        assert_eq!(Container::detect(b"ZF0x"), Container::OldJoblib);
        assert_eq!(Container::detect(b""), Container::Plain);
    }

    #[test]
    fn decompression_is_bounded() {
        let bomb = zlib(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 2048);
        assert!(matches!(decompress(Codec::Zlib, bomb.as_slice(), 1000), Err(DecompressError::TooLarge)));
        assert_eq!(decompress(Codec::Zlib, bomb.as_slice(), 1 << 20).map(|v| v.len()).ok(), Some(1 << 20));
        assert!(matches!(decompress(Codec::Zlib, &bomb[..bomb.len() / 2], 1 << 21), Err(DecompressError::Corrupt(_))));
    }
}
