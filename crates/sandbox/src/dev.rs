//! The minimal /dev a program expects, without exposing the host's devices.
//!
//! A tmpfs with bind mounts of the six harmless character devices (binds rather than mknod,
//! because creating device nodes is not allowed in a user namespace), a private devpts
//! instance so the sandbox's ptys are its own, a shm tmpfs and the usual fd links.

use std::path::Path;

use crate::error::Error;
use crate::rootfs::Builder;

/// Host devices bound into the sandbox's /dev, read-write.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Links every program expects in /dev.
const LINKS: [(&str, &str); 6] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
    ("ptmx", "pts/ptmx"),
];

/// Adds the steps building a /dev at `dest` to the plan.
pub(crate) fn plan(b: &mut Builder, dest: &Path) -> Result<(), Error> {
    let nosuid_nodev = libc::MS_NOSUID | libc::MS_NODEV;
    b.add_fs(dest, "mount dev tmpfs", c"tmpfs", nosuid_nodev, "mode=0755")?;
    let dest = b.resolved(dest)?;
    for name in DEVICES {
        b.bind_file(&format!("/dev/{name}"), &dest.join(name))?;
    }
    // newinstance: the sandbox's ptys are not the host's; ptmxmode: usable without gid tty.
    let pts_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
    b.add_fs(
        &dest.join("pts"),
        "mount devpts",
        c"devpts",
        pts_flags,
        "newinstance,ptmxmode=0666,mode=620",
    )?;
    b.add_fs(
        &dest.join("shm"),
        "mount dev/shm",
        c"tmpfs",
        nosuid_nodev,
        "mode=1777",
    )?;
    for (name, target) in LINKS {
        b.symlink(target, &dest.join(name))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::rootfs::{Op, RootPlan};
    use crate::spec::Mount;
    use std::path::Path;

    #[test]
    fn dev_binds_the_six_devices_and_mounts_private_pts() {
        let p = RootPlan::new(
            &[Mount::Dev {
                dest: "/dev".into(),
            }],
            Path::new("/s"),
        )
        .unwrap();
        let binds: Vec<String> = p
            .ops()
            .iter()
            .filter_map(|op| match op {
                Op::Bind { source, .. } => Some(source.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(
            binds,
            [
                "/dev/null",
                "/dev/zero",
                "/dev/full",
                "/dev/random",
                "/dev/urandom",
                "/dev/tty"
            ]
        );
        let devpts = p.ops().iter().any(|op| {
            matches!(op, Op::Mount { fstype, data, .. }
                if fstype.to_bytes() == b"devpts" && data.to_bytes().starts_with(b"newinstance"))
        });
        assert!(devpts);
    }
}
