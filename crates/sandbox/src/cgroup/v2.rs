//! cgroup v2: one directory in the unified hierarchy, used only when the parent delegates
//! every controller the limits need (listed in its `cgroup.subtree_control`).

use std::path::{Path, PathBuf};

use super::{Cgroup, exists, own_path, write_limit};
use crate::error::Error;
use crate::spec::CgroupLimits;

/// The unified hierarchy's mount: pure v2 at /sys/fs/cgroup, or hybrid at .../unified.
fn unified_root() -> Option<&'static Path> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(Path::new)
        .find(|p| exists(&p.join("cgroup.controllers")))
}

fn needed(limits: &CgroupLimits) -> Vec<&'static str> {
    let mut v = Vec::new();
    if limits.memory_max.is_some() {
        v.push("memory");
    }
    if limits.pids_max.is_some() {
        v.push("pids");
    }
    if limits.cpu_max.is_some() {
        v.push("cpu");
    }
    v
}

/// The v2 parent directory when it can host the limits, else `None` (use v1).
pub(super) fn parent(limits: &CgroupLimits, own: &str) -> Option<PathBuf> {
    let parent = match &limits.parent {
        Some(p) if p.is_absolute() && exists(&p.join("cgroup.subtree_control")) => p.clone(),
        Some(_) => return None,
        None => {
            let root = unified_root()?;
            root.join(own_path(own, "")?.trim_start_matches('/'))
        }
    };
    let enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control")).ok()?;
    let has_all = needed(limits)
        .iter()
        .all(|c| enabled.split_whitespace().any(|e| e == *c));
    has_all.then_some(parent)
}

pub(super) fn create(cg: &mut Cgroup, dir: &Path, limits: &CgroupLimits) -> Result<(), Error> {
    cg.mkdir(dir)?;
    if let Some(bytes) = limits.memory_max {
        write_limit(dir, "memory.max", &bytes.to_string())?;
        if exists(&dir.join("memory.swap.max")) {
            write_limit(dir, "memory.swap.max", "0")?;
        }
    }
    if let Some(max) = limits.pids_max {
        write_limit(dir, "pids.max", &max.to_string())?;
    }
    if let Some((quota, period)) = limits.cpu_max {
        write_limit(dir, "cpu.max", &format!("{quota} {period}"))?;
    }
    cg.open_join(dir, "cgroup.procs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needed_lists_only_requested_controllers() {
        let limits = CgroupLimits {
            pids_max: Some(5),
            ..Default::default()
        };
        assert_eq!(needed(&limits), ["pids"]);
    }

    #[test]
    fn parent_without_enabled_controllers_falls_back() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu\n").unwrap();
        let limits = CgroupLimits {
            pids_max: Some(5),
            parent: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(parent(&limits, ""), None);
        std::fs::write(dir.path().join("cgroup.subtree_control"), "cpu pids\n").unwrap();
        assert_eq!(parent(&limits, ""), Some(dir.path().to_path_buf()));
    }
}
