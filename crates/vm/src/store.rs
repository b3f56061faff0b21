//! The VM store: `<state>/vms/NAME/` holds a pulled VM: `vm.json` (what it was made from),
//! `kernel`, `rootfs.ext4`, `modules/*.ko`, the optional user initramfs `initrd.extra`, and
//! `initrd.img`, Cairn's initramfs, built again whenever the `cairn` binary changes.
//!
//! A pull builds everything in a temporary sibling directory and renames it into place, so a
//! VM is complete or absent; removal renames first, then deletes.

use std::path::{Path, PathBuf};

use cairn_config::{NameKind, check_name};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::{initramfs, kernel, rootfs};

const INFO: &str = "vm.json";
const KERNEL: &str = "kernel";
const ROOTFS: &str = "rootfs.ext4";
const MODULES: &str = "modules";
const EXTRA_INITRD: &str = "initrd.extra";
const INITRD: &str = "initrd.img";
const INITRD_ID: &str = "initrd.id";

/// What `cairn vm pull` was given.
#[derive(Debug, Clone)]
pub struct PullSource {
    pub kernel: PathBuf,
    pub rootfs: PathBuf,
    pub initrd: Option<PathBuf>,
}

/// The metadata of a pulled VM (`vm.json`, and a row of `cairn vm ls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmInfo {
    pub name: String,
    /// The kernel release, when it came from a package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    pub kernel_source: PathBuf,
    pub rootfs_source: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_source: Option<PathBuf>,
    /// Modules the guest loads, in order.
    #[serde(default)]
    pub modules: Vec<String>,
    pub rootfs_bytes: u64,
    /// Seconds since the epoch.
    pub created: u64,
}

/// One pulled VM.
#[derive(Debug, Clone)]
pub struct Vm {
    pub dir: PathBuf,
    pub info: VmInfo,
}

impl Vm {
    pub fn kernel(&self) -> PathBuf {
        self.dir.join(KERNEL)
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join(ROOTFS)
    }

    /// Cairn's initramfs for the running `cairn` binary `exe` (the user's first, when one
    /// was pulled), rebuilt if it was made from another binary. When the store is not
    /// writable by this user (a root store, an upgraded binary), it is built in `scratch`
    /// for this launch only.
    pub fn initrd(&self, exe: &Path, scratch: &Path) -> Result<PathBuf> {
        let path = self.dir.join(INITRD);
        let id_file = self.dir.join(INITRD_ID);
        let id = initramfs::identity(exe)?;
        let current = std::fs::read_to_string(&id_file).unwrap_or_default();
        if current == id && path.is_file() {
            return Ok(path);
        }
        let modules: Vec<(String, PathBuf)> = self
            .info
            .modules
            .iter()
            .map(|m| (m.clone(), self.dir.join(MODULES).join(format!("{m}.ko"))))
            .collect();
        let extra = self.dir.join(EXTRA_INITRD);
        let extra = extra.is_file().then_some(extra);
        match initramfs::build(exe, &modules, extra.as_deref(), &path) {
            Ok(()) => {}
            Err(Error::Io { err: source, .. }) if is_not_writable(&source) => {
                let private = scratch.join(INITRD);
                initramfs::build(exe, &modules, extra.as_deref(), &private)?;
                return Ok(private);
            }
            Err(e) => return Err(e),
        }
        cairn_config::write_atomic(&id_file, id.as_bytes(), 0o644).map_err(Error::io(&id_file))?;
        Ok(path)
    }
}

fn is_not_writable(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS)
}

/// The VMs of one Cairn configuration.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn new(config: &cairn_config::Config) -> Store {
        Store {
            dir: config.vms_dir(),
        }
    }

    pub fn exists(&self, name: &str) -> bool {
        check_name(NameKind::Vm, name).is_ok() && self.dir.join(name).join(INFO).is_file()
    }

    pub fn get(&self, name: &str) -> Result<Vm> {
        check_name(NameKind::Vm, name)?;
        let dir = self.dir.join(name);
        let file = dir.join(INFO);
        let text = match std::fs::read(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(Error::io(&file)(e)),
        };
        let info = serde_json::from_slice(&text).map_err(|e| Error::Invalid {
            path: file.clone(),
            reason: e.to_string(),
        })?;
        Ok(Vm { dir, info })
    }

    /// Every VM, by name.
    pub fn list(&self) -> Result<Vec<VmInfo>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io(&self.dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if check_name(NameKind::Vm, &name).is_ok() && entry.path().join(INFO).is_file() {
                out.push(self.get(&name)?.info);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Pulls `source` as VM `name` with the initramfs of `exe` (the running `cairn`).
    /// Everything is checked and built aside first; an existing VM is replaced only with
    /// `force`.
    pub fn pull(&self, name: &str, source: &PullSource, exe: &Path, force: bool) -> Result<VmInfo> {
        check_name(NameKind::Vm, name)?;
        if !force && self.dir.join(name).exists() {
            return Err(Error::Exists {
                name: name.to_string(),
            });
        }
        check_sources(source)?;
        std::fs::create_dir_all(&self.dir).map_err(Error::io(&self.dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".pull-{name}-"))
            .tempdir_in(&self.dir)
            .map_err(Error::io(&self.dir))?;
        let vm = build(tmp.path(), name, source, exe)?;
        let dest = self.dir.join(name);
        let old = self.dir.join(format!(".old-{name}-{}", std::process::id()));
        let replaced = match std::fs::rename(&dest, &old) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(&dest)(e)),
        };
        let tmp_path = tmp.keep();
        if let Err(e) = std::fs::rename(&tmp_path, &dest) {
            let _ = std::fs::remove_dir_all(&tmp_path);
            if replaced {
                let _ = std::fs::rename(&old, &dest);
            }
            return Err(Error::io(&dest)(e));
        }
        if replaced {
            std::fs::remove_dir_all(&old).map_err(Error::io(&old))?;
        }
        Ok(vm.info)
    }

    /// Removes VM `name` (the caller checks that no app uses it).
    pub fn remove(&self, name: &str) -> Result<()> {
        self.get(name)?;
        let dest = self.dir.join(name);
        let doomed = self.dir.join(format!(".rm-{name}-{}", std::process::id()));
        std::fs::rename(&dest, &doomed).map_err(Error::io(&dest))?;
        std::fs::remove_dir_all(&doomed).map_err(Error::io(&doomed))
    }
}

/// The cheap checks, before anything is built: the files exist and have the right kind.
fn check_sources(source: &PullSource) -> Result<()> {
    if !kernel::is_deb(&source.kernel)? {
        kernel::check_image(&source.kernel)?;
    }
    rootfs::kind(&source.rootfs)?;
    if let Some(initrd) = &source.initrd {
        let meta = std::fs::metadata(initrd).map_err(Error::io(initrd))?;
        if !meta.is_file() {
            return Err(Error::Invalid {
                path: initrd.clone(),
                reason: "not a regular file".into(),
            });
        }
    }
    Ok(())
}

fn build(dir: &Path, name: &str, source: &PullSource, exe: &Path) -> Result<Vm> {
    let scratch = dir.join(".scratch");
    let kernel_file = dir.join(KERNEL);
    let kernel = if kernel::is_deb(&source.kernel)? {
        kernel::from_deb(
            &source.kernel,
            &kernel_file,
            &dir.join(MODULES),
            &scratch.join("modules"),
        )?
    } else {
        std::fs::copy(&source.kernel, &kernel_file).map_err(Error::io(&kernel_file))?;
        kernel::Kernel::default()
    };
    let rootfs_bytes =
        rootfs::make_image(&source.rootfs, &dir.join(ROOTFS), &scratch.join("rootfs"))?;
    if let Some(initrd) = &source.initrd {
        let to = dir.join(EXTRA_INITRD);
        std::fs::copy(initrd, &to).map_err(Error::io(&to))?;
    }
    remove_scratch(&scratch)?;
    let info = VmInfo {
        name: name.to_string(),
        kernel_version: kernel.version,
        kernel_source: absolute(&source.kernel),
        rootfs_source: absolute(&source.rootfs),
        initrd_source: source.initrd.as_deref().map(absolute),
        modules: kernel.modules.into_iter().map(|(n, _)| n).collect(),
        rootfs_bytes,
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let vm = Vm {
        dir: dir.to_path_buf(),
        info,
    };
    vm.initrd(exe, dir)?;
    let text = serde_json::to_vec_pretty(&vm.info).map_err(|e| Error::Invalid {
        path: dir.join(INFO),
        reason: e.to_string(),
    })?;
    let info_file = dir.join(INFO);
    cairn_config::write_atomic(&info_file, &text, 0o644).map_err(Error::io(&info_file))?;
    Ok(vm)
}

/// A tar rootfs may hold read-only directories; make them writable so they can go.
fn remove_scratch(scratch: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !scratch.exists() {
        return Ok(());
    }
    let mut stack = vec![scratch.to_path_buf()];
    while let Some(d) = stack.pop() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755));
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
    }
    std::fs::remove_dir_all(scratch).map_err(Error::io(scratch))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        check_name(NameKind::Vm, "leap").unwrap();
        check_name(NameKind::Vm, "debian-12").unwrap();
        for bad in ["", "Leap", "a/b", "..", "-x", ".hidden", "a b"] {
            assert!(check_name(NameKind::Vm, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_sources_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store {
            dir: dir.path().join("vms"),
        };
        let text = dir.path().join("t");
        std::fs::write(&text, "hello").unwrap();
        let exe = std::env::current_exe().unwrap();
        let source = PullSource {
            kernel: text.clone(),
            rootfs: dir.path().to_path_buf(),
            initrd: None,
        };
        let err = store
            .pull("x", &source, &exe, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a kernel image"), "{err}");
        let missing = PullSource {
            kernel: dir.path().join("missing"),
            ..source
        };
        assert!(store.pull("x", &missing, &exe, false).is_err());
        assert!(!store.dir.exists());
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(store.get("x"), Err(Error::NotFound { .. })));
    }
}
