//! User namespace id mappings.
//!
//! Rootless: the child maps `spec.user` onto the caller's own euid/egid itself (one line each,
//! after denying setgroups, as the kernel requires for unprivileged maps): no round trip to
//! the parent. As root: a child cannot write a multi-id map for itself (that needs
//! CAP_SETUID in the parent namespace), so the parent writes the identity map for the whole
//! id range and the child waits on a pipe for it; the child then switches to `spec.user`
//! with setresuid/setresgid like a root launch without a user namespace.

use std::io::Write as _;

use crate::error::{Error, Fail};
use crate::spec::UserIds;
use crate::sys;

/// How the user namespace (if any) gets its id maps.
#[derive(Debug)]
pub(crate) enum Mapping {
    /// No user namespace (root launch sharing the host's).
    None,
    /// Rootless: the child writes these maps to its own /proc/self files.
    Child { uid_map: Vec<u8>, gid_map: Vec<u8> },
    /// Root: the parent writes the identity maps, the child waits for them.
    Parent,
}

/// The full range, mapped identically (uid 4294967295 is the invalid id, hence the count).
const IDENTITY_MAP: &[u8] = b"0 0 4294967295\n";

/// Ids of the launching process, read once per launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller {
    pub euid: u32,
    pub egid: u32,
}

impl Caller {
    pub(crate) fn current() -> Caller {
        // SAFETY: geteuid/getegid cannot fail.
        let euid = unsafe { libc::geteuid() };
        // SAFETY: as above.
        let egid = unsafe { libc::getegid() };
        Caller { euid, egid }
    }

    pub(crate) fn is_root(self) -> bool {
        self.euid == 0
    }
}

pub(crate) fn plan(new_userns: bool, user: UserIds, caller: Caller) -> Result<Mapping, Error> {
    match (new_userns, caller.is_root()) {
        (false, true) => Ok(Mapping::None),
        (false, false) => Err(Error::NeedUserNamespace { uid: caller.euid }),
        (true, true) => Ok(Mapping::Parent),
        (true, false) => Ok(Mapping::Child {
            uid_map: format!("{} {} 1\n", user.uid, caller.euid).into_bytes(),
            gid_map: format!("{} {} 1\n", user.gid, caller.egid).into_bytes(),
        }),
    }
}

/// Child side of a rootless launch: deny setgroups, then map our own ids.
pub(crate) fn map_self(uid_map: &[u8], gid_map: &[u8]) -> Result<(), Fail<'static>> {
    let w = libc::O_TRUNC;
    sys::write_file(c"/proc/self/setgroups", w, 0, b"deny")
        .map_err(|e| Fail::new("write", b"/proc/self/setgroups", e))?;
    sys::write_file(c"/proc/self/uid_map", w, 0, uid_map)
        .map_err(|e| Fail::new("write", b"/proc/self/uid_map", e))?;
    sys::write_file(c"/proc/self/gid_map", w, 0, gid_map)
        .map_err(|e| Fail::new("write", b"/proc/self/gid_map", e))
}

/// Parent side of a root launch with a user namespace.
pub(crate) fn map_child(pid: libc::pid_t) -> Result<(), Error> {
    for file in ["uid_map", "gid_map"] {
        let path = format!("/proc/{pid}/{file}");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(IDENTITY_MAP))
            .map_err(|err| Error::Path {
                op: "write",
                path: path.into(),
                err,
            })?;
    }
    Ok(())
}

/// Switches to the program's ids (root launches only: rootless ones already are them).
pub(crate) fn switch_ids(user: UserIds) -> Result<(), Fail<'static>> {
    // SAFETY: setgroups with a zero count reads no memory.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(Fail::bare("setgroups", sys::errno()));
    }
    // SAFETY: plain id-setting calls.
    if unsafe { libc::setresgid(user.gid, user.gid, user.gid) } != 0 {
        return Err(Fail::bare("setresgid", sys::errno()));
    }
    // SAFETY: as above.
    if unsafe { libc::setresuid(user.uid, user.uid, user.uid) } != 0 {
        return Err(Fail::bare("setresuid", sys::errno()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootless_maps_spec_ids_onto_caller_ids() {
        let m = plan(
            true,
            UserIds { uid: 0, gid: 5 },
            Caller {
                euid: 1000,
                egid: 100,
            },
        )
        .unwrap();
        match m {
            Mapping::Child { uid_map, gid_map } => {
                assert_eq!(uid_map, b"0 1000 1\n");
                assert_eq!(gid_map, b"5 100 1\n");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rootless_without_userns_is_an_error_and_root_maps_in_parent() {
        let caller = Caller {
            euid: 1000,
            egid: 1000,
        };
        assert!(plan(false, UserIds::default(), caller).is_err());
        let root = Caller { euid: 0, egid: 0 };
        assert!(matches!(
            plan(true, UserIds::default(), root),
            Ok(Mapping::Parent)
        ));
        assert!(matches!(
            plan(false, UserIds::default(), root),
            Ok(Mapping::None)
        ));
    }
}
