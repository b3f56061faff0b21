//! cgroup v1: one directory per controller (memory, pids, cpu), below each controller's mount.

use std::path::{Path, PathBuf};

use super::{Cgroup, exists, io_other, own_path, write_limit};
use crate::error::Error;
use crate::spec::CgroupLimits;

const MOUNT_BASE: &str = "/sys/fs/cgroup";

/// The mount directory of a v1 controller (`cpu` may be co-mounted as `cpu,cpuacct`).
fn mount_dir(controller: &str) -> Option<PathBuf> {
    let candidates: &[&str] = match controller {
        "cpu" => &["cpu", "cpu,cpuacct", "cpuacct,cpu"],
        other => &[other][..],
    };
    candidates
        .iter()
        .map(|c| Path::new(MOUNT_BASE).join(c))
        .find(|p| exists(&p.join("cgroup.procs")))
}

/// The directory to create for `controller`: below `limits.parent` (relative to the
/// controller's mount) or below the caller's own cgroup.
fn leaf_dir(
    controller: &str,
    own: &str,
    name: &str,
    limits: &CgroupLimits,
) -> Result<PathBuf, Error> {
    let mount = mount_dir(controller).ok_or_else(|| Error::CgroupUnavailable {
        path: Path::new(MOUNT_BASE).join(controller),
        err: io_other(
            "no cgroup v1 hierarchy with this controller and no cgroup v2 with it enabled",
        ),
    })?;
    let parent = match &limits.parent {
        Some(p) => p.to_string_lossy().into_owned(),
        None => own_path(own, controller).unwrap_or("/").to_string(),
    };
    Ok(mount.join(parent.trim_start_matches('/')).join(name))
}

pub(super) fn create(
    cg: &mut Cgroup,
    own: &str,
    name: &str,
    limits: &CgroupLimits,
) -> Result<(), Error> {
    if let Some(bytes) = limits.memory_max {
        let dir = leaf_dir("memory", own, name, limits)?;
        cg.mkdir(&dir)?;
        write_limit(&dir, "memory.limit_in_bytes", &bytes.to_string())?;
        // Also cap memory+swap, or a hog just swaps instead of being killed.
        if exists(&dir.join("memory.memsw.limit_in_bytes")) {
            write_limit(&dir, "memory.memsw.limit_in_bytes", &bytes.to_string())?;
        }
        cg.open_join(&dir, "tasks")?;
    }
    if let Some(max) = limits.pids_max {
        let dir = leaf_dir("pids", own, name, limits)?;
        cg.mkdir(&dir)?;
        write_limit(&dir, "pids.max", &max.to_string())?;
        cg.open_join(&dir, "tasks")?;
    }
    if let Some((quota, period)) = limits.cpu_max {
        let dir = leaf_dir("cpu", own, name, limits)?;
        cg.mkdir(&dir)?;
        // Period first: the kernel validates the quota against the current period.
        write_limit(&dir, "cpu.cfs_period_us", &period.to_string())?;
        write_limit(&dir, "cpu.cfs_quota_us", &quota.to_string())?;
        cg.open_join(&dir, "tasks")?;
    }
    Ok(())
}
