//! What booting a test guest needs (tests/vm.rs, tests/cgroup_v2.rs): Debian's cloud kernel
//! package, QEMU, e2fsprogs, busybox, and a busybox root filesystem.

use std::path::{Path, PathBuf};

/// The kernel package: `CAIRN_TEST_KERNEL_DEB`, else the newest
/// `/var/cache/cairn-test/linux-image-*.deb`.
pub fn kernel_deb() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CAIRN_TEST_KERNEL_DEB") {
        return Some(PathBuf::from(p));
    }
    let mut debs: Vec<PathBuf> = std::fs::read_dir("/var/cache/cairn-test")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("linux-image-") && n.ends_with(".deb"))
        })
        .collect();
    debs.sort();
    debs.pop()
}

pub fn on_path(program: &str) -> bool {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(program).is_file())
}

/// What booting needs (the kernel package), or why the test skips.
pub fn boot_prerequisites() -> Result<PathBuf, String> {
    let deb = kernel_deb().ok_or(
        "no kernel package: set CAIRN_TEST_KERNEL_DEB or put linux-image-*.deb in /var/cache/cairn-test",
    )?;
    for (program, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mkfs.ext4", "e2fsprogs"),
        ("busybox", "busybox-static"),
        ("dpkg-deb", "dpkg"),
    ] {
        if !on_path(program) {
            return Err(format!("{program} is not installed (package {package})"));
        }
    }
    Ok(deb)
}

/// A busybox root filesystem directory `dir/rootfs` with these applets (and a shell).
pub fn busybox_rootfs(dir: &Path, applets: &[&str]) -> PathBuf {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in std::iter::once(&"sh").chain(applets) {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    root
}
