//! Micro-VMs whose init is Cairn itself: the vm engine of registered apps and `cairn vm`.
//!
//! **Store** ([`store`]): `cairn vm pull NAME --kernel K --rootfs R [--initrd I]` keeps under
//! `<state>/vms/NAME/` a kernel (a bzImage/vmlinux, or taken from a Debian kernel package
//! together with the modules the guest needs, [`kernel`]), a read-only ext4 rootfs image
//! (made from a directory or a tar archive with `mkfs.ext4 -d`, or an ext4 image as is,
//! [`rootfs`]), the user's optional extra initramfs, and Cairn's own initramfs
//! ([`initramfs`]: the `cairn` binary as `/init`, its shared libraries, the modules).
//!
//! **Launch** ([`host`]): QEMU `microvm` (KVM when it works, else TCG; `CAIRN_VM_ACCEL=tcg`
//! forces TCG), the rootfs as a read-only virtio-blk disk, and four virtio-serial ports
//! ([`proto`]): `cairn.control` (JSON lines: the request with argv, environment, cwd and
//! overlay size; signals; the exit report), and one raw port per stream (`cairn.stdin`,
//! `cairn.stdout`, `cairn.stderr`). This host has no vhost-vsock, so virtio-serial it is;
//! Firecracker is not supported yet (it has no Debian package to test against).
//!
//! **Guest** ([`guest`]): `main()` checks [`guest::is_guest`] first (PID 1, named `/init`,
//! `cairn.guest` on the kernel command line); the init loads the modules, finds the ports,
//! mounts the rootfs under an overlay with a tmpfs upper layer (the app's overlay size),
//! runs the target there and reports its status (128+N for signal N).
//!
//! When the caller's stdin and stdout are a terminal, the target gets a pseudo-terminal in
//! the guest (its output on the stdout port, stderr on it too when the caller's is a
//! terminal), the caller's terminal is raw meanwhile, and size changes follow (`ssh -t`).
//!
//! A call is complete when the guest has reported the status and the host has received as
//! many stdout and stderr bytes as the guest relayed; then QEMU is killed. QEMU dies with
//! its launcher (`PR_SET_PDEATHSIG`), so a killed `cairn` leaves no VM behind.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod cpio;
mod error;
pub mod guest;
pub mod host;
pub mod initramfs;
pub mod kernel;
pub mod proto;
pub mod rootfs;
pub mod store;

pub use error::{Error, Result};
pub use host::Launch;
pub use store::{PullSource, Store, Vm, VmInfo};

/// The target's `PATH` unless the app sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `launch` in VM `name` of `store`; see [`host::run`].
pub fn run(
    store: &Store,
    name: &str,
    launch: &Launch,
    instance_dir: &std::path::Path,
) -> Result<i32> {
    let vm = store.get(name)?;
    let exe = std::env::current_exe().map_err(Error::io(std::path::Path::new("/proc/self/exe")))?;
    host::run(&vm, launch, &exe, instance_dir)
}

/// A fresh instance directory for a `cairn vm run` call under `<run>/vm-run/`, removed
/// when dropped (apps use their own instance directories). Its name carries the owner's
/// pid, so that those of killed launchers are removed here.
pub fn temp_instance(config: &cairn_config::Config, name: &str) -> Result<tempfile::TempDir> {
    let dir = config.vm_run_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    remove_stale_instances(&dir);
    tempfile::Builder::new()
        .prefix(&format!("{name}.{}.", std::process::id()))
        .tempdir_in(&dir)
        .map_err(Error::io(&dir))
}

/// Removes the instance directories of `dir` whose owner (`NAME.PID.XXXX`) is gone.
fn remove_stale_instances(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|n| n.split('.').nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        let gone = pid.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                == Err(nix::errno::Errno::ESRCH)
        });
        if gone {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The path of host tool `program`: from `PATH`, then the sbin directories (mkfs.ext4
/// lives there, and a user's `PATH` often lacks them). `None` when not installed.
pub fn find_tool(program: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(Into::into))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_instances_go() {
        let run = tempfile::tempdir().unwrap();
        let stale = run.path().join("vm-run/leap.999999999.abc");
        std::fs::create_dir_all(&stale).unwrap();
        let config = cairn_config::Config::with_dirs(run.path(), run.path(), run.path());
        let mine = temp_instance(&config, "leap").unwrap();
        assert!(!stale.exists());
        let again = temp_instance(&config, "leap").unwrap();
        assert!(mine.path().is_dir() && again.path().is_dir());
    }
}
