//! Kernels: a bare image (bzImage or ELF vmlinux) or a Debian kernel package, from which
//! the image and the few modules the guest needs are taken.
//!
//! Distribution kernels build the virtio drivers as modules, and the guest has no modprobe,
//! so Cairn resolves the dependencies at pull time from each module's `.modinfo` section and
//! the guest init loads the list in order.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// What the guest init needs from the kernel: the virtio-mmio transport (QEMU microvm
/// describes its devices by ACPI), the serial ports, the root disk and overlayfs.
pub const GUEST_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "overlay",
    "ext4",
];

/// A kernel ready for the store: the image, and the modules in load order.
#[derive(Debug, Clone, Default)]
pub struct Kernel {
    pub version: Option<String>,
    /// Module name and `.ko` file, dependencies first.
    pub modules: Vec<(String, PathBuf)>,
}

/// True when `path` starts like a Debian package (an `ar` archive).
pub fn is_deb(path: &Path) -> Result<bool> {
    let mut head = [0u8; 8];
    let n = read_head(path, &mut head)?;
    Ok(n == 8 && &head == b"!<arch>\n")
}

/// Checks that `path` is a kernel image QEMU can boot: an x86 bzImage (`HdrS` at 0x202)
/// or an ELF vmlinux.
pub fn check_image(path: &Path) -> Result<()> {
    let mut head = [0u8; 0x206];
    let n = read_head(path, &mut head)?;
    if n >= 4 && &head[..4] == b"\x7fELF" {
        return Ok(());
    }
    if n == head.len() && &head[0x202..0x206] == b"HdrS" {
        return Ok(());
    }
    Err(Error::NotKernel {
        path: path.to_path_buf(),
        reason: "no bzImage header and not an ELF vmlinux".into(),
    })
}

fn read_head(path: &Path, buf: &mut [u8]) -> Result<usize> {
    let mut file = std::fs::File::open(path).map_err(Error::io(path))?;
    if !file.metadata().map_err(Error::io(path))?.is_file() {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]).map_err(Error::io(path))? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Takes the kernel image of Debian package `deb` to `image` and the modules the guest
/// needs to `modules_dir` (as `NAME.ko`). Every module is staged in `scratch` first: which
/// ones are needed is only known once their dependencies are read.
pub fn from_deb(deb: &Path, image: &Path, modules_dir: &Path, scratch: &Path) -> Result<Kernel> {
    let dpkg_deb = crate::find_tool("dpkg-deb").ok_or_else(|| Error::Tool {
        program: "dpkg-deb".into(),
        message: "not installed (install dpkg)".into(),
    })?;
    let mut child = Command::new(dpkg_deb)
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Tool {
            program: "dpkg-deb".into(),
            message: e.to_string(),
        })?;
    let stdout = child.stdout.take().ok_or_else(|| Error::Tool {
        program: "dpkg-deb".into(),
        message: "no output".into(),
    })?;
    let walked = walk_data(deb, stdout, image, scratch);
    let out = child.wait_with_output().map_err(Error::io(deb))?;
    if !out.status.success() {
        return Err(Error::Invalid {
            path: deb.to_path_buf(),
            reason: format!(
                "not a readable Debian package: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let (version, staged, builtin) = walked?;
    let Some(version) = version else {
        return Err(Error::NotKernel {
            path: deb.to_path_buf(),
            reason: "the package has no boot/vmlinuz-*".into(),
        });
    };
    check_image(image)?;
    std::fs::create_dir_all(modules_dir).map_err(Error::io(modules_dir))?;
    // Only the modules the guest needs are decompressed and read, as the walk reaches them.
    let lookup = |name: &str| -> Result<Option<Vec<String>>> {
        let Some(module) = staged.get(name) else {
            return Ok(None);
        };
        let bad = |reason: String| Error::Invalid {
            path: deb.join(&module.path),
            reason,
        };
        let data = decompress(&module.file, module.compression)
            .map_err(|e| bad(format!("cannot decompress: {e}")))?;
        let info = modinfo(&data).map_err(bad)?;
        let to = modules_dir.join(format!("{name}.ko"));
        std::fs::write(&to, &data).map_err(Error::io(&to))?;
        Ok(Some(
            info.get("depends")
                .map(|d| {
                    d.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        ))
    };
    let order = load_order(deb, lookup, &builtin)?;
    let modules = order
        .into_iter()
        .map(|name| {
            let file = modules_dir.join(format!("{name}.ko"));
            (name, file)
        })
        .collect();
    Ok(Kernel {
        version: Some(version),
        modules,
    })
}

/// How a module file is compressed (distributions ship `.ko`, `.ko.xz`, `.ko.zst`, `.ko.gz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    None,
    Xz,
    Zstd,
    Gzip,
}

impl Compression {
    fn of(path: &str) -> Option<Compression> {
        let (_, suffix) = path.rsplit_once(".ko")?;
        match suffix {
            "" => Some(Compression::None),
            ".xz" => Some(Compression::Xz),
            ".zst" => Some(Compression::Zstd),
            ".gz" => Some(Compression::Gzip),
            _ => None,
        }
    }
}

fn decompress(file: &Path, compression: Compression) -> std::io::Result<Vec<u8>> {
    let data = std::fs::read(file)?;
    let mut out = Vec::new();
    match compression {
        Compression::None => return Ok(data),
        Compression::Xz => lzma_rs::xz_decompress(&mut &data[..], &mut out)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?,
        Compression::Zstd => out = zstd::decode_all(&data[..])?,
        Compression::Gzip => {
            flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut out)?;
        }
    }
    Ok(out)
}

/// A module staged from the package, as shipped.
#[derive(Debug, Clone)]
struct Staged {
    /// Its path in the package (for errors).
    path: String,
    file: PathBuf,
    compression: Compression,
}

type Walked = (Option<String>, BTreeMap<String, Staged>, BTreeSet<String>);

/// Reads the package's data tar: the image, every module (staged), `modules.builtin`.
fn walk_data(deb: &Path, tar: impl Read, image: &Path, scratch: &Path) -> Result<Walked> {
    let bad = |e: std::io::Error| Error::Invalid {
        path: deb.to_path_buf(),
        reason: format!("cannot read the package data: {e}"),
    };
    std::fs::create_dir_all(scratch).map_err(Error::io(scratch))?;
    let mut archive = tar::Archive::new(tar);
    let mut version = None;
    let mut staged = BTreeMap::new();
    let mut builtin = BTreeSet::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./").to_string();
        let rel = path.strip_prefix("usr/").unwrap_or(&path);
        if !rel.starts_with("lib/modules/") {
            if let Some(v) = rel.strip_prefix("boot/vmlinuz-") {
                version = Some(v.to_string());
                copy_entry(&mut entry, image)?;
            }
            continue;
        }
        if rel.ends_with("/modules.builtin") {
            let mut text = String::new();
            entry.read_to_string(&mut text).map_err(bad)?;
            builtin.extend(text.lines().filter_map(module_name_of_path));
        } else if let (Some(compression), Some(name)) =
            (Compression::of(rel), module_name_of_path(rel))
        {
            let file = scratch.join(staged.len().to_string());
            copy_entry(&mut entry, &file)?;
            staged.insert(
                name,
                Staged {
                    path: path.clone(),
                    file,
                    compression,
                },
            );
        }
    }
    Ok((version, staged, builtin))
}

fn copy_entry(entry: &mut impl Read, to: &Path) -> Result<()> {
    let mut file = std::fs::File::create(to).map_err(Error::io(to))?;
    std::io::copy(entry, &mut file).map_err(Error::io(to))?;
    Ok(())
}

/// `kernel/fs/ext4/ext4.ko` → `ext4`; module names use `_` where files may use `-`.
fn module_name_of_path(path: &str) -> Option<String> {
    let file = path.rsplit('/').next()?;
    let stem = file.split(".ko").next()?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// The `key=value` strings of a module's `.modinfo` section.
pub fn modinfo(data: &[u8]) -> std::result::Result<BTreeMap<String, String>, String> {
    use object::{Object, ObjectSection};
    let file = object::File::parse(data).map_err(|e| format!("not an ELF module: {e}"))?;
    let section = file
        .section_by_name(".modinfo")
        .ok_or_else(|| "no .modinfo section".to_string())?;
    let bytes = section.data().map_err(|e| e.to_string())?;
    Ok(bytes
        .split(|&b| b == 0)
        .filter_map(|item| {
            let text = std::str::from_utf8(item).ok()?;
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect())
}

/// The guest's modules and their dependencies, dependencies first; built-in ones are
/// skipped, a module that is neither built in nor in the package is an error. `lookup`
/// gives a module's dependencies (`None`: not in the package).
fn load_order(
    deb: &Path,
    mut lookup: impl FnMut(&str) -> Result<Option<Vec<String>>>,
    builtin: &BTreeSet<String>,
) -> Result<Vec<String>> {
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for name in GUEST_MODULES {
        visit(deb, name, &mut lookup, builtin, &mut seen, &mut order, 0)?;
    }
    Ok(order)
}

fn visit(
    deb: &Path,
    name: &str,
    lookup: &mut impl FnMut(&str) -> Result<Option<Vec<String>>>,
    builtin: &BTreeSet<String>,
    seen: &mut BTreeSet<String>,
    order: &mut Vec<String>,
    depth: usize,
) -> Result<()> {
    if depth > 64 {
        return Err(Error::Invalid {
            path: deb.to_path_buf(),
            reason: format!("module dependencies of {name} form a cycle"),
        });
    }
    if seen.contains(name) || builtin.contains(name) {
        return Ok(());
    }
    let Some(depends) = lookup(name)? else {
        return Err(Error::NotKernel {
            path: deb.to_path_buf(),
            reason: format!("module {name} is neither built in nor in the package"),
        });
    };
    for dep in &depends {
        visit(deb, dep, lookup, builtin, seen, order, depth + 1)?;
    }
    seen.insert(name.to_string());
    order.push(name.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names() {
        assert_eq!(
            module_name_of_path("kernel/fs/ext4/ext4.ko").as_deref(),
            Some("ext4")
        );
        assert_eq!(
            module_name_of_path("lib/modules/6.1/kernel/arch/x86/crypto/crc32-pclmul.ko")
                .as_deref(),
            Some("crc32_pclmul")
        );
    }

    #[test]
    fn order_puts_dependencies_first_and_skips_builtins() {
        let deps: BTreeMap<&str, Vec<String>> = [
            ("virtio", vec![]),
            ("virtio_ring", vec![]),
            ("virtio_mmio", vec!["virtio", "virtio_ring"]),
            ("virtio_console", vec!["virtio", "virtio_ring"]),
            ("virtio_blk", vec!["virtio", "virtio_ring"]),
            ("overlay", vec![]),
        ]
        .into_iter()
        .map(|(n, d)| (n, d.into_iter().map(String::from).collect()))
        .collect();
        let lookup = |name: &str| Ok(deps.get(name).cloned());
        let builtin: BTreeSet<String> = ["ext4".to_string()].into();
        let order = load_order(Path::new("k.deb"), lookup, &builtin).unwrap();
        assert_eq!(
            order,
            [
                "virtio",
                "virtio_ring",
                "virtio_mmio",
                "virtio_console",
                "virtio_blk",
                "overlay"
            ]
        );
        let err = load_order(Path::new("k.deb"), lookup, &BTreeSet::new()).unwrap_err();
        assert!(err.to_string().contains("module ext4"), "{err}");
        let cycle = |_: &str| Ok(Some(vec!["virtio_mmio".to_string()]));
        assert!(load_order(Path::new("k.deb"), cycle, &builtin).is_err());
    }

    #[test]
    fn compressed_modules_are_read() {
        assert_eq!(Compression::of("a/b.ko"), Some(Compression::None));
        assert_eq!(Compression::of("a/b.ko.xz"), Some(Compression::Xz));
        assert_eq!(Compression::of("a/b.ko.zst"), Some(Compression::Zstd));
        assert_eq!(Compression::of("a/b.kobj"), None);
        let dir = tempfile::tempdir().unwrap();
        let plain = b"module bytes".to_vec();
        let zst = dir.path().join("m.ko.zst");
        std::fs::write(&zst, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
        assert_eq!(decompress(&zst, Compression::Zstd).unwrap(), plain);
        let xz = dir.path().join("m.ko.xz");
        let mut packed = Vec::new();
        lzma_rs::xz_compress(&mut &plain[..], &mut packed).unwrap();
        std::fs::write(&xz, packed).unwrap();
        assert_eq!(decompress(&xz, Compression::Xz).unwrap(), plain);
        assert!(decompress(&zst, Compression::Xz).is_err());
    }

    #[test]
    fn images_are_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let bz = dir.path().join("bz");
        let mut data = vec![0u8; 0x300];
        data[0x202..0x206].copy_from_slice(b"HdrS");
        std::fs::write(&bz, &data).unwrap();
        check_image(&bz).unwrap();
        let text = dir.path().join("t");
        std::fs::write(&text, "hello").unwrap();
        assert!(
            check_image(&text)
                .unwrap_err()
                .to_string()
                .contains("not a kernel image")
        );
        assert!(!is_deb(&text).unwrap());
        assert!(check_image(dir.path()).is_err());
    }
}
