//! sha256 content digests: parsing, hashing readers, and the store's file names.

use std::fmt;
use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated `sha256:<64 lowercase hex>` digest (the only algorithm registries use in practice).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(value: &str) -> Result<Digest> {
        let hex = value.strip_prefix("sha256:").ok_or_else(|| bad(value))?;
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(bad(value));
        }
        Ok(Digest(value.to_string()))
    }

    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_hasher(Sha256::new_with_prefix(data))
    }

    fn from_hasher(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// The 64 hex digits (the file name under `blobs/sha256/` and `layers/sha256/`).
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as listings show them.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    /// Fails with [`Error::DigestMismatch`] unless `actual` equals `self`.
    pub fn verify(&self, what: &'static str, actual: &Digest) -> Result<()> {
        if self == actual {
            return Ok(());
        }
        Err(Error::DigestMismatch {
            what,
            expected: self.0.clone(),
            actual: actual.0.clone(),
        })
    }
}

fn bad(value: &str) -> Error {
    Error::BadDigest {
        value: value.chars().take(100).collect(),
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A reader that hashes what passes through it, so that a blob is verified while it is
/// consumed (one pass over layer data, never a second read).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Reads the rest of the stream (tar archives end before their padding does) and returns
    /// the digest of everything read and the byte count.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((Digest::from_hasher(self.hasher), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes what it writes (downloads to a temp file).
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(mut self) -> io::Result<(Digest, u64, W)> {
        self.inner.flush()?;
        Ok((Digest::from_hasher(self.hasher), self.count, self.inner))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let d = Digest::of(b"hello");
        assert_eq!(
            d.as_str(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        for bad in [
            "",
            "sha256:",
            "md5:00",
            "sha256:ABC",
            &format!("sha256:{}x", d.hex()),
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
        assert!(Digest::parse(&format!("sha256:../../{}", &d.hex()[6..])).is_err());
    }

    #[test]
    fn hashing_reader_reads_to_end() {
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 11);
        assert_eq!(d, Digest::of(b"hello world"));
        let err = d.verify("blob", &Digest::of(b"x")).unwrap_err().to_string();
        assert!(err.contains("corrupted"), "{err}");
    }
}
