//! Who is on the other end of an admin-socket connection (SO_PEERCRED) and whether that
//! caller may administer the daemon.

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::UnixListener;

/// The kernel-reported credentials of a connected peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerInfo {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(cred) => PeerInfo {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            },
            // Unknown credentials must never pass the check: u32::MAX is no real user.
            Err(_) => PeerInfo {
                uid: u32::MAX,
                gid: u32::MAX,
                pid: None,
            },
        }
    }
}

/// The identities allowed on the admin socket: root, the daemon's own user, and the
/// members of group `cairn` (if that group exists).
#[derive(Debug, Clone, Copy)]
pub struct AdminPolicy {
    pub daemon_uid: u32,
    pub cairn_gid: Option<u32>,
}

/// The gid of group `name` in group(5) text.
fn group_gid(text: &str, name: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

impl AdminPolicy {
    /// The group comes from `/etc/group` itself, not NSS: the binary is linked statically
    /// and must not load glibc's NSS modules, so `cairn` has to be a local group.
    pub fn for_this_process() -> AdminPolicy {
        let cairn_gid = std::fs::read_to_string("/etc/group")
            .ok()
            .and_then(|text| group_gid(&text, "cairn"));
        AdminPolicy {
            daemon_uid: nix::unistd::geteuid().as_raw(),
            cairn_gid,
        }
    }

    pub fn allows(&self, peer: &PeerInfo) -> bool {
        if peer.uid == u32::MAX {
            return false;
        }
        if peer.uid == 0 || peer.uid == self.daemon_uid {
            return true;
        }
        let Some(gid) = self.cairn_gid else {
            return false;
        };
        peer.gid == gid
            || peer
                .pid
                .is_some_and(|pid| supplementary_groups(pid).contains(&gid))
    }
}

/// Supplementary groups of a live process, from /proc (empty if it is gone).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    parse_groups_line(&status)
}

fn parse_groups_line(status: &str) -> Vec<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_gid_reads_group_lines() {
        let text = "root:x:0:\nbad line\ncairn:x:998:alice,bob\nodd:x:nan:\n";
        assert_eq!(group_gid(text, "cairn"), Some(998));
        assert_eq!(group_gid(text, "root"), Some(0));
        assert_eq!(group_gid(text, "odd"), None);
        assert_eq!(group_gid(text, "wheel"), None);
    }

    #[test]
    fn policy_allows_root_self_and_group_members_only() {
        let policy = AdminPolicy {
            daemon_uid: 1000,
            cairn_gid: Some(500),
        };
        let peer = |uid, gid| PeerInfo {
            uid,
            gid,
            pid: None,
        };
        assert!(policy.allows(&peer(0, 0)));
        assert!(policy.allows(&peer(1000, 1000)));
        assert!(policy.allows(&peer(1001, 500)));
        assert!(!policy.allows(&peer(1001, 1001)));
        assert!(!policy.allows(&peer(u32::MAX, 500)));
        let no_group = AdminPolicy {
            daemon_uid: 1000,
            cairn_gid: None,
        };
        assert!(!no_group.allows(&peer(1001, 500)));
    }

    #[test]
    fn groups_line_is_parsed() {
        assert_eq!(
            parse_groups_line("Name:\tx\nGroups:\t4 24 500 \nX: 1"),
            vec![4, 24, 500]
        );
        assert!(parse_groups_line("Name: x").is_empty());
    }

    #[test]
    fn own_process_groups_are_readable() {
        let pid = std::process::id() as i32;
        let mine: Vec<u32> = nix::unistd::getgroups()
            .unwrap()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        assert_eq!(supplementary_groups(pid), mine);
    }
}
