//! What this host needs podman to be told: where podman and runc are, which OCI runtime
//! works with the host's cgroups, and ulimits this process may actually grant.

use std::path::{Path, PathBuf};

/// Directories searched for runc besides PATH: podman itself finds runtimes there, and a
/// caller's PATH (an app launched from a user shell) often lacks the sbin directories.
const RUNTIME_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// Where distributions install catatonit, the init `podman run --init` bind-mounts into the
/// container (podman's own default `init_path` first).
const INIT_PATHS: &[&str] = &[
    "/usr/libexec/podman/catatonit",
    "/usr/libexec/catatonit/catatonit",
    "/usr/local/libexec/podman/catatonit",
    "/usr/bin/catatonit",
];

/// The `nofile` ceiling podman grants containers by default as root.
const PODMAN_NOFILE_MAX: u64 = 1_048_576;
/// podman 4 lowers its own RLIMIT_NPROC to this at start as root, so its containers can
/// never get more, whatever the caller's limit.
const PODMAN_NPROC_MAX: u64 = 32_768;

/// `podman` on the caller's PATH.
pub fn find_podman() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("podman"))
        .find(|p| is_executable(p))
}

/// runc, on PATH or in the usual system directories.
pub fn find_runc() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(RUNTIME_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("runc"))
        .find(|p| is_executable(p))
}

/// Whether `podman run --init` can work: catatonit is installed.
pub fn has_init() -> bool {
    INIT_PATHS.iter().any(|p| is_executable(Path::new(p)))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `/sys/fs/cgroup` is a pure cgroup v2 hierarchy. crun (podman's default runtime
/// on Debian) refuses hybrid hosts (v1 controllers with an empty v2 tree beside them).
pub fn cgroup_v2_only() -> bool {
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: the path is a NUL-terminated literal and stat is a writable statfs.
    let rc = unsafe { libc::statfs(c"/sys/fs/cgroup".as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: statfs succeeded and filled the struct.
    let stat = unsafe { stat.assume_init() };
    stat.f_type == libc::CGROUP2_SUPER_MAGIC
}

/// The runtime to name with `--runtime`: runc on v1 or hybrid cgroups when installed,
/// otherwise podman's own choice.
pub fn runtime() -> Option<PathBuf> {
    if cgroup_v2_only() {
        return None;
    }
    find_runc()
}

/// CAP_SYS_RESOURCE's bit in the capability sets (linux/capability.h).
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether this process may raise resource limits (CAP_SYS_RESOURCE in its effective set).
pub fn can_raise_limits() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// `(soft, hard)` of one of this process's limits.
fn limit(resource: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: rl is a valid, writable rlimit.
    if unsafe { libc::getrlimit(resource, &mut rl) } != 0 {
        return None;
    }
    Some((rl.rlim_cur, rl.rlim_max))
}

/// `--ulimit` values for the resources podman raises by default (as root: nofile and nproc
/// to 1048576), when this process could not grant that: the caller's own limits, within
/// what podman itself keeps. `skip` names resources the app's run-args already set.
pub fn ulimits(skip: &[String]) -> Vec<String> {
    if can_raise_limits() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (name, resource, ceiling) in [
        ("nofile", libc::RLIMIT_NOFILE, PODMAN_NOFILE_MAX),
        ("nproc", libc::RLIMIT_NPROC, PODMAN_NPROC_MAX),
    ] {
        if skip.iter().any(|s| s == name) {
            continue;
        }
        if let Some((soft, hard)) = limit(resource) {
            out.push(ulimit_arg(name, soft, hard, ceiling));
        }
    }
    out
}

/// `--ulimit=NAME=SOFT:HARD` with both within `ceiling` and soft no higher than hard.
fn ulimit_arg(name: &str, soft: u64, hard: u64, ceiling: u64) -> String {
    let hard = hard.min(ceiling);
    let soft = soft.min(hard);
    format!("--ulimit={name}={soft}:{hard}")
}

/// Whether the caller's stdin, stdout and stderr are all terminals: only then does the
/// container get one (`-t` merges the container's stderr into the terminal).
pub fn caller_has_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    [0, 1, 2].iter().all(|fd| unsafe { libc::isatty(*fd) } == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulimits_stay_within_the_hard_limit_and_podmans_ceiling() {
        assert_eq!(
            ulimit_arg("nofile", 1024, 20000, PODMAN_NOFILE_MAX),
            "--ulimit=nofile=1024:20000"
        );
        assert_eq!(
            ulimit_arg("nproc", 96365, 96365, PODMAN_NPROC_MAX),
            "--ulimit=nproc=32768:32768"
        );
        assert_eq!(
            ulimit_arg("nofile", u64::MAX, u64::MAX, PODMAN_NOFILE_MAX),
            "--ulimit=nofile=1048576:1048576"
        );
    }

    #[test]
    fn run_args_take_precedence_over_computed_ulimits() {
        let all = ulimits(&["nofile".into(), "nproc".into()]);
        assert!(all.is_empty(), "{all:?}");
    }
}
