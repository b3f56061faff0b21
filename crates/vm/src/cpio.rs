//! A writer of `newc` cpio archives, the format the kernel unpacks as an initramfs.
//!
//! The format is a 110-byte ASCII header per entry, the NUL-terminated name and the data,
//! each padded to 4 bytes, ended by a `TRAILER!!!` entry. Parents must come before their
//! children: the kernel does not create missing directories.

use std::io::{self, Write};

const MAGIC: &str = "070701";

pub const S_IFDIR: u32 = 0o040000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

/// Writes entries to `out` in the order given.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Writer<W> {
        Writer {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> io::Result<()> {
        self.entry(path, S_IFDIR | (mode & 0o7777), 2, 0, &[])
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(path, S_IFREG | (mode & 0o7777), 1, 0, data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> io::Result<()> {
        self.entry(path, S_IFLNK | 0o777, 1, 0, target.as_bytes())
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(
            path,
            S_IFCHR | (mode & 0o7777),
            1,
            (major << 16) | minor,
            &[],
        )
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header("TRAILER!!!", 0, 0, 1, 0, 0)?;
        self.out.flush()?;
        Ok(self.out)
    }

    /// `rdev` packs major (high 16 bits) and minor (low 16 bits).
    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: u32,
        data: &[u8],
    ) -> io::Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid cpio entry name {path:?}"),
            ));
        }
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: too large for cpio"),
            )
        })?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(name, ino, mode, nlink, size, rdev)?;
        self.write_padded(data)
    }

    fn header(
        &mut self,
        name: &str,
        ino: u32,
        mode: u32,
        nlink: u32,
        size: u32,
        rdev: u32,
    ) -> io::Result<()> {
        let namesize = name.len() + 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime: reproducible archives
            size,
            0, // devmajor
            0, // devminor
            rdev >> 16,
            rdev & 0xffff,
            namesize as u32,
            0, // check
        ];
        let mut head = String::with_capacity(110 + namesize);
        head.push_str(MAGIC);
        for f in fields {
            head.push_str(&format!("{f:08x}"));
        }
        head.push_str(name);
        head.push('\0');
        self.write_padded(head.as_bytes())
    }

    fn write_padded(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.written += data.len() as u64;
        let pad = (4 - (self.written % 4) as usize) % 4;
        self.out.write_all(&[0u8; 3][..pad])?;
        self.written += pad as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new());
        w.dir("/dev", 0o755).unwrap();
        w.char_device("/dev/console", 0o600, 5, 1).unwrap();
        w.dir("bin", 0o755).unwrap();
        w.file("bin/hello", 0o755, b"hello\n").unwrap();
        w.symlink("bin/hi", "hello").unwrap();
        w.finish().unwrap()
    }

    #[test]
    fn header_layout() {
        let data = sample();
        assert_eq!(data.len() % 4, 0);
        assert!(data.starts_with(b"070701"));
        // First entry: ino 1, a 0755 directory, two links, name "dev" (namesize 4).
        assert_eq!(&data[6..14], b"00000001");
        assert_eq!(&data[14..22], b"000041ed");
        assert_eq!(&data[94..102], b"00000004");
        assert_eq!(&data[110..114], b"dev\0");
        assert!(data.windows(11).any(|w| w == b"TRAILER!!!\0"));
        assert!(Writer::new(Vec::new()).file("", 0o644, b"").is_err());
    }

    /// The archive reads back with GNU cpio, names, types and contents intact.
    #[test]
    fn gnu_cpio_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.cpio");
        std::fs::write(&archive, sample()).unwrap();
        let listing = match Command::new("cpio")
            .args(["-itv", "--quiet", "-F"])
            .arg(&archive)
            .stderr(Stdio::inherit())
            .output()
        {
            Ok(out) => out,
            Err(e) => {
                eprintln!("skipped: cpio is not installed ({e})");
                return;
            }
        };
        assert!(listing.status.success());
        let text = String::from_utf8(listing.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" dev"));
        assert!(lines[1].starts_with("crw-------") && lines[1].contains("5,"));
        assert!(lines[3].starts_with("-rwxr-xr-x") && lines[3].ends_with(" bin/hello"));
        assert!(lines[4].starts_with("lrwxrwxrwx") && lines[4].ends_with("bin/hi -> hello"));
        std::fs::create_dir(dir.path().join("x")).unwrap();
        let out = Command::new("cpio")
            .args(["-i", "--quiet", "-D"])
            .arg(dir.path().join("x"))
            .arg("-F")
            .arg(&archive)
            .arg("--make-directories")
            .arg("bin/hello")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(dir.path().join("x/bin/hello")).unwrap(),
            b"hello\n"
        );
    }
}
