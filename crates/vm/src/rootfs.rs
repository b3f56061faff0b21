//! Root filesystems: a directory or a tar archive becomes an ext4 image (`mkfs.ext4 -d`, no
//! root needed); an ext4 image is taken as it is. The guest mounts it read-only.

use std::io::Read;
use std::path::Path;
use std::process::Command;

use crate::error::{Error, Result};

/// Offset of the ext2/3/4 superblock's magic number (0xEF53, little-endian).
const EXT_MAGIC_OFFSET: usize = 1024 + 0x38;

/// What a rootfs argument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Tar { gzip: bool },
    Ext4,
}

/// Tells what `path` is, from its type and first bytes.
pub fn kind(path: &Path) -> Result<Kind> {
    let meta = std::fs::metadata(path).map_err(Error::io(path))?;
    if meta.is_dir() {
        return Ok(Kind::Dir);
    }
    let mut head = vec![0u8; 2048];
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).map_err(Error::io(path))? {
            0 => break,
            k => n += k,
        }
    }
    head.truncate(n);
    if head.len() > EXT_MAGIC_OFFSET + 1
        && head[EXT_MAGIC_OFFSET..EXT_MAGIC_OFFSET + 2] == [0x53, 0xef]
    {
        return Ok(Kind::Ext4);
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        return Ok(Kind::Tar { gzip: true });
    }
    if head.len() >= 262 && &head[257..262] == b"ustar" {
        return Ok(Kind::Tar { gzip: false });
    }
    Err(Error::NotRootfs {
        path: path.to_path_buf(),
        reason: "expected a directory, a tar archive or an ext4 image".into(),
    })
}

/// Makes the ext4 image `image` from `source`; `scratch` is an empty directory for
/// unpacking a tar archive. Returns the image's size.
pub fn make_image(source: &Path, image: &Path, scratch: &Path) -> Result<u64> {
    match kind(source)? {
        Kind::Ext4 => {
            std::fs::copy(source, image).map_err(Error::io(image))?;
        }
        Kind::Dir => mkfs(source, image)?,
        Kind::Tar { gzip } => {
            unpack(source, gzip, scratch)?;
            mkfs(scratch, image)?;
        }
    }
    let len = std::fs::metadata(image).map_err(Error::io(image))?.len();
    Ok(len)
}

fn unpack(source: &Path, gzip: bool, into: &Path) -> Result<()> {
    let file = std::fs::File::open(source).map_err(Error::io(source))?;
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    archive.set_overwrite(true);
    std::fs::create_dir_all(into).map_err(Error::io(into))?;
    archive.unpack(into).map_err(|e| Error::NotRootfs {
        path: source.to_path_buf(),
        reason: format!("cannot unpack the tar archive: {e}"),
    })
}

/// `mkfs.ext4 -d`: a journal-less ext4 image sized from the tree, owned by root at its top.
fn mkfs(tree: &Path, image: &Path) -> Result<()> {
    let (bytes, entries) = tree_size(tree)?;
    // Room for metadata and a margin: data rounded to blocks, a block per entry, +25%, +8 MiB.
    let size = (bytes + entries * 4096) / 4 * 5 + (8 << 20);
    let file = std::fs::File::create(image).map_err(Error::io(image))?;
    file.set_len(size).map_err(Error::io(image))?;
    drop(file);
    let mkfs = crate::find_tool("mkfs.ext4").ok_or_else(|| Error::Tool {
        program: "mkfs.ext4".into(),
        message: "not installed (install e2fsprogs)".into(),
    })?;
    let out = Command::new(mkfs)
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-O",
            "^has_journal",
            "-m",
            "0",
            "-L",
            "cairn-root",
        ])
        .args(["-E", "root_owner=0:0", "-N"])
        .arg((entries + 256).to_string())
        .arg("-d")
        .arg(tree)
        .arg(image)
        .output()
        .map_err(|e| Error::Tool {
            program: "mkfs.ext4".into(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(Error::Tool {
            program: "mkfs.ext4".into(),
            message: String::from_utf8_lossy(&out.stderr)
                .trim()
                .replace('\n', "; "),
        });
    }
    Ok(())
}

/// Bytes (rounded up to 4 KiB blocks) and entries below `dir`, symlinks not followed.
fn tree_size(dir: &Path) -> Result<(u64, u64)> {
    let mut bytes = 0;
    let mut entries = 1;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(Error::io(&d))? {
            let entry = entry.map_err(Error::io(&d))?;
            let meta = entry.metadata().map_err(Error::io(&entry.path()))?;
            entries += 1;
            bytes += meta.len().div_ceil(4096) * 4096;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok((bytes, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_and_tars_become_ext4_images() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("bin")).unwrap();
        std::fs::write(tree.join("bin/hello"), "hi\n").unwrap();
        let image = dir.path().join("a.ext4");
        make_image(&tree, &image, &dir.path().join("s1")).unwrap();
        assert_eq!(kind(&image).unwrap(), Kind::Ext4);
        // The image itself is accepted as a rootfs, unchanged.
        let copy = dir.path().join("b.ext4");
        make_image(&image, &copy, &dir.path().join("s2")).unwrap();
        assert_eq!(
            std::fs::read(&image).unwrap(),
            std::fs::read(&copy).unwrap()
        );

        let tar_path = dir.path().join("t.tar");
        let mut builder = tar::Builder::new(std::fs::File::create(&tar_path).unwrap());
        builder.append_dir_all(".", &tree).unwrap();
        builder.finish().unwrap();
        drop(builder);
        assert_eq!(kind(&tar_path).unwrap(), Kind::Tar { gzip: false });
        let from_tar = dir.path().join("c.ext4");
        make_image(&tar_path, &from_tar, &dir.path().join("s3")).unwrap();
        assert_eq!(kind(&from_tar).unwrap(), Kind::Ext4);
        assert!(dir.path().join("s3/bin/hello").is_file());
    }

    #[test]
    fn other_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, "not a rootfs").unwrap();
        let err = kind(&f).unwrap_err().to_string();
        assert!(err.contains("not a rootfs"), "{err}");
        assert!(kind(&dir.path().join("missing")).is_err());
    }
}
