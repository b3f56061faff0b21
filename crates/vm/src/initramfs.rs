//! Cairn's initramfs: `/init` is the `cairn` binary itself, with the shared libraries it
//! loads (its `PT_INTERP` and the `DT_NEEDED` closure, resolved on this host), the kernel
//! modules the guest needs and the order to load them in, `/dev/console`, and the mount
//! points the guest init uses. Nothing else: the root filesystem stays on its own disk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cpio;
use crate::error::{Error, Result};

/// Where the guest init finds its modules, and the file listing them in load order.
pub const MODULES_DIR: &str = "/lib/modules";
pub const LOAD_LIST: &str = "/lib/modules/cairn.load";
/// Mount points in the initramfs: the rootfs disk, the tmpfs of the writable layer, and
/// the overlay that becomes the target's root.
pub const MOUNT_POINTS: &[&str] = &["/dev", "/proc", "/sys", "/lower", "/rw", "/newroot"];

/// Builds the initramfs for `exe` and `modules` (name and `.ko`, in load order) at `out`,
/// with `extra` (a user's initramfs) first: the kernel unpacks concatenated archives in
/// order, so Cairn's `/init` wins.
pub fn build(
    exe: &Path,
    modules: &[(String, PathBuf)],
    extra: Option<&Path>,
    out: &Path,
) -> Result<()> {
    let scratch = tempfile::Builder::new()
        .prefix(".initramfs-")
        .tempdir_in(out.parent().unwrap_or(Path::new(".")))
        .map_err(Error::io(out))?;
    let init = stripped_copy(exe, &scratch.path().join("init"))?;
    let init_data = std::fs::read(&init).map_err(Error::io(&init))?;
    let libs = shared_libraries(exe, &init_data)?;

    let mut data = Vec::new();
    if let Some(extra) = extra {
        data = std::fs::read(extra).map_err(Error::io(extra))?;
        data.resize(data.len().div_ceil(4) * 4, 0);
    }
    let mut files: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    files.insert("/init".into(), (0o755, init_data));
    for (path, real) in &libs {
        let bytes = std::fs::read(real).map_err(Error::io(real))?;
        files.insert(path.to_string_lossy().into_owned(), (0o755, bytes));
    }
    let mut list = String::new();
    for (name, ko) in modules {
        let bytes = std::fs::read(ko).map_err(Error::io(ko))?;
        files.insert(format!("{MODULES_DIR}/{name}.ko"), (0o644, bytes));
        list.push_str(name);
        list.push('\n');
    }
    files.insert(LOAD_LIST.into(), (0o644, list.into_bytes()));

    let mut dirs: BTreeSet<String> = MOUNT_POINTS.iter().map(|s| s.to_string()).collect();
    for path in files.keys() {
        let mut p = Path::new(path).parent();
        while let Some(dir) = p.filter(|d| *d != Path::new("/")) {
            dirs.insert(dir.to_string_lossy().into_owned());
            p = dir.parent();
        }
    }
    let mut writer = cpio::Writer::new(data);
    let io = |e| Error::io(out)(e);
    for dir in &dirs {
        writer.dir(dir, 0o755).map_err(io)?;
    }
    writer
        .char_device("/dev/console", 0o600, 5, 1)
        .map_err(io)?;
    for (path, (mode, bytes)) in &files {
        writer.file(path, *mode, bytes).map_err(io)?;
    }
    let archive = writer.finish().map_err(io)?;
    cairn_config::write_atomic(out, &archive, 0o644).map_err(Error::io(out))
}

/// A copy of `exe` without symbols and debug information (`strip --strip-all`), which a
/// debug build carries by the hundred megabytes (and the guest loads all of the
/// initramfs into memory); a plain copy when `strip` is not installed. Tests put the
/// same copy in a guest's rootfs.
pub fn stripped_copy(exe: &Path, to: &Path) -> Result<PathBuf> {
    let Some(strip) = crate::find_tool("strip") else {
        std::fs::copy(exe, to).map_err(Error::io(to))?;
        return Ok(to.to_path_buf());
    };
    let stripped = Command::new(strip)
        .arg("--strip-all")
        .arg("-o")
        .arg(to)
        .arg(exe)
        .output();
    match stripped {
        Ok(out) if out.status.success() => Ok(to.to_path_buf()),
        _ => {
            std::fs::copy(exe, to).map_err(Error::io(to))?;
            Ok(to.to_path_buf())
        }
    }
}

/// The interpreter and the `DT_NEEDED` closure of an ELF executable: (path in the guest,
/// file on this host). A static executable needs nothing.
pub fn shared_libraries(exe: &Path, data: &[u8]) -> Result<Vec<(PathBuf, PathBuf)>> {
    let first = dynamic_info(exe, data)?;
    let mut out = Vec::new();
    let mut search: Vec<PathBuf> = Vec::new();
    if let Some(interp) = &first.interp {
        let interp = PathBuf::from(interp);
        if let Some(dir) = interp.parent() {
            search.push(dir.to_path_buf());
        }
        out.push((interp.clone(), interp));
    }
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    for dir in ["/lib", "/usr/lib"] {
        search.push(Path::new(dir).join(&triplet));
    }
    search.extend(["/lib64", "/usr/lib64", "/lib", "/usr/lib"].map(PathBuf::from));

    let mut seen = BTreeSet::new();
    let mut queue: Vec<(String, Vec<PathBuf>)> = first
        .needed
        .iter()
        .map(|n| (n.clone(), first.runpath.clone()))
        .collect();
    while let Some((name, runpath)) = queue.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let found = runpath
            .iter()
            .chain(&search)
            .map(|d| d.join(&name))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Invalid {
                path: exe.to_path_buf(),
                reason: format!("needs {name}, which is not found on this host"),
            })?;
        let bytes = std::fs::read(&found).map_err(Error::io(&found))?;
        let info = dynamic_info(&found, &bytes)?;
        queue.extend(info.needed.into_iter().map(|n| (n, info.runpath.clone())));
        out.push((found.clone(), found));
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct DynamicInfo {
    interp: Option<String>,
    needed: Vec<String>,
    runpath: Vec<PathBuf>,
}

fn dynamic_info(path: &Path, data: &[u8]) -> Result<DynamicInfo> {
    use object::elf;
    use object::read::elf::{Dyn, FileHeader, ProgramHeader};
    let bad = |e: object::read::Error| Error::Invalid {
        path: path.to_path_buf(),
        reason: format!("not a 64-bit ELF file: {e}"),
    };
    let header = elf::FileHeader64::<object::Endianness>::parse(data).map_err(bad)?;
    let endian = header.endian().map_err(bad)?;
    let mut info = DynamicInfo::default();
    for ph in header.program_headers(endian, data).map_err(bad)? {
        if let Some(interp) = ph.interpreter(endian, data).map_err(bad)? {
            info.interp = Some(String::from_utf8_lossy(interp).into_owned());
        }
    }
    let sections = header.sections(endian, data).map_err(bad)?;
    let Some((entries, link)) = sections.dynamic(endian, data).map_err(bad)? else {
        return Ok(info);
    };
    let strings = sections.strings(endian, data, link).map_err(bad)?;
    for entry in entries {
        let text = || -> Result<String> {
            let s = entry.string(endian, strings).map_err(bad)?;
            Ok(String::from_utf8_lossy(s).into_owned())
        };
        match entry.tag32(endian) {
            Some(elf::DT_NEEDED) => info.needed.push(text()?),
            Some(elf::DT_RUNPATH) | Some(elf::DT_RPATH) => {
                info.runpath.extend(
                    text()?
                        .split(':')
                        .filter(|s| !s.is_empty() && !s.contains('$'))
                        .map(PathBuf::from),
                );
            }
            _ => {}
        }
    }
    Ok(info)
}

/// What identifies the `cairn` binary an initramfs was built from: when it changes (an
/// upgrade, a rebuild), the initramfs is built again.
pub fn identity(exe: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(exe).map_err(Error::io(exe))?;
    Ok(format!(
        "{} {} {} {}.{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dynamic host program (coreutils' `true`) needs the C library and its loader. (Cairn's
    /// own binaries are static: see .cargo/config.toml.)
    #[test]
    fn libraries_of_a_dynamic_executable() {
        let exe = std::fs::canonicalize("/bin/true").unwrap();
        let data = std::fs::read(&exe).unwrap();
        let libs = shared_libraries(&exe, &data).unwrap();
        let names: Vec<String> = libs
            .iter()
            .map(|(p, _)| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n.starts_with("ld-linux")), "{names:?}");
        assert!(names.iter().any(|n| n == "libc.so.6"), "{names:?}");
        assert!(libs.iter().all(|(_, host)| host.is_file()));
    }

    #[test]
    fn static_executables_need_nothing() {
        let busybox = Path::new("/bin/busybox");
        let Ok(data) = std::fs::read(busybox) else {
            eprintln!("skipped: /bin/busybox is not installed");
            return;
        };
        assert!(shared_libraries(busybox, &data).unwrap().is_empty());
        assert!(shared_libraries(busybox, b"not elf").is_err());
    }

    #[test]
    fn archive_has_init_modules_and_console() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let ko = dir.path().join("m.ko");
        std::fs::write(&ko, b"module").unwrap();
        let extra = dir.path().join("extra.cpio");
        let mut w = cpio::Writer::new(Vec::new());
        w.file("extra", 0o644, b"x").unwrap();
        std::fs::write(&extra, w.finish().unwrap()).unwrap();
        let out = dir.path().join("initrd.img");
        build(&exe, &[("m".into(), ko)], Some(&extra), &out).unwrap();
        let data = std::fs::read(&out).unwrap();
        let has = |name: &str| {
            data.windows(name.len() + 1)
                .any(|w| w == format!("{name}\0").as_bytes())
        };
        for name in [
            "extra",
            "init",
            "dev/console",
            "lib/modules/m.ko",
            "lib/modules/cairn.load",
            "newroot",
        ] {
            assert!(has(name), "{name}");
        }
        assert!(data.starts_with(b"070701"));
    }
}
