//! The hostile-archive rules, as a pure function over one tar entry's metadata.
//!
//! Kept free of I/O so that every rule is unit- and property-testable and fuzzable; the
//! unpacker adds the only check that needs the filesystem (never write through a symlink
//! that an earlier entry of the same layer created).
//!
//! Rules: paths are relative, normalized (`./` and empty components dropped), contain no
//! `..`, no NUL, and fit in [`MAX_PATH`]; hard links name a normalized path inside the layer;
//! relative symlink targets must not climb above the layer root (absolute targets are
//! allowed: they are resolved against the container's root at run time, never the host's);
//! device nodes only when unpacking as root; no xattrs that would steer overlayfs
//! (`trusted.overlay.*`, `user.overlay.*`); whiteout names must name a real file.

use std::fmt;
use std::path::PathBuf;

/// Longest accepted entry path or link target (Linux PATH_MAX).
pub const MAX_PATH: usize = 4096;
/// Longest accepted GNU long-name/long-link or PAX extension record block.
pub const MAX_EXTENSION: u64 = 1024 * 1024;

/// The OCI whiteout prefix and the opaque-directory marker.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    Hardlink,
    CharDevice,
    BlockDevice,
    Fifo,
}

/// What the checker needs to know about one entry (already merged with its long-name and
/// PAX records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    pub path: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub kind: EntryKind,
    pub xattr_names: Vec<Vec<u8>>,
}

/// What the unpacker must do with an accepted entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the entry at this relative path; `link` is the normalized hard-link target.
    Create {
        path: PathBuf,
        link: Option<PathBuf>,
    },
    /// Mark `path` deleted (overlayfs: a 0/0 character device).
    Whiteout { path: PathBuf },
    /// Hide the lower layers' content of directory `dir` ("" = layer root).
    Opaque { dir: PathBuf },
    /// Nothing to do (the root directory entry, aufs bookkeeping entries).
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    Absolute,
    ParentTraversal,
    NulByte,
    TooLong,
    Empty,
    LinkMissing,
    LinkEscapes(String),
    DeviceRootless,
    OverlayXattr(String),
    BadWhiteout,
    ThroughSymlink,
    OversizedHeader(u64),
    Unsupported(String),
}

/// A rejected entry: the path (lossy UTF-8) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Hostile {
    pub path: String,
    pub reason: Reason,
}

impl fmt::Display for Hostile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.path;
        match &self.reason {
            Reason::Absolute => write!(f, "hostile entry {path:?}: absolute path"),
            Reason::ParentTraversal => write!(f, "hostile entry {path:?}: path contains \"..\""),
            Reason::NulByte => write!(f, "hostile entry {path:?}: NUL byte in name"),
            Reason::TooLong => write!(
                f,
                "hostile entry {path:?}: name longer than {MAX_PATH} bytes"
            ),
            Reason::Empty => write!(f, "hostile entry {path:?}: empty name"),
            Reason::LinkMissing => write!(f, "hostile entry {path:?}: link without a target"),
            Reason::LinkEscapes(t) => write!(
                f,
                "hostile entry {path:?}: link target {t:?} escapes the layer"
            ),
            Reason::DeviceRootless => write!(
                f,
                "hostile entry {path:?}: device node in a rootless unpack"
            ),
            Reason::OverlayXattr(k) => write!(f, "hostile entry {path:?}: overlayfs xattr {k:?}"),
            Reason::BadWhiteout => write!(f, "hostile entry {path:?}: whiteout of nothing"),
            Reason::ThroughSymlink => {
                write!(f, "hostile entry {path:?}: path goes through a symlink")
            }
            Reason::OversizedHeader(n) => write!(
                f,
                "hostile entry {path:?}: {n}-byte extension header (limit {MAX_EXTENSION})"
            ),
            Reason::Unsupported(what) => write!(f, "entry {path:?}: unsupported {what}"),
        }
    }
}

pub(crate) fn hostile(path: &[u8], reason: Reason) -> Hostile {
    let shown: String = String::from_utf8_lossy(path).chars().take(200).collect();
    Hostile {
        path: shown,
        reason,
    }
}

/// Splits a tar path into its meaningful components, rejecting what could leave the layer.
pub fn normalize(path: &[u8]) -> Result<Vec<&[u8]>, Reason> {
    if path.len() > MAX_PATH {
        return Err(Reason::TooLong);
    }
    if path.contains(&0) {
        return Err(Reason::NulByte);
    }
    if path.first() == Some(&b'/') {
        return Err(Reason::Absolute);
    }
    let mut parts = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(Reason::ParentTraversal),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

fn join(parts: &[&[u8]]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(&parts.join(&b'/')))
}

/// True when a relative symlink placed in `dir_depth` directories below the layer root
/// climbs above that root.
fn symlink_escapes(dir_depth: usize, target: &[u8]) -> bool {
    if target.first() == Some(&b'/') {
        return false;
    }
    let mut depth = dir_depth as isize;
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

/// Decides what to do with one entry, or why it is hostile.
pub fn check_entry(meta: &EntryMeta, rootless: bool) -> Result<Action, Hostile> {
    let fail = |reason| hostile(&meta.path, reason);
    let parts = normalize(&meta.path).map_err(fail)?;
    for name in &meta.xattr_names {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            return Err(fail(Reason::OverlayXattr(
                String::from_utf8_lossy(name).into_owned(),
            )));
        }
    }
    let Some((last, parents)) = parts.split_last() else {
        return match meta.kind {
            EntryKind::Dir => Ok(Action::Skip),
            _ => Err(fail(Reason::Empty)),
        };
    };
    if *last == OPAQUE_MARKER {
        return Ok(Action::Opaque { dir: join(parents) });
    }
    if last.starts_with(b".wh..wh.") {
        return Ok(Action::Skip);
    }
    if let Some(name) = last.strip_prefix(WHITEOUT_PREFIX) {
        if name.is_empty() || name == b"." || name == b".." {
            return Err(fail(Reason::BadWhiteout));
        }
        let mut target = parents.to_vec();
        target.push(name);
        return Ok(Action::Whiteout {
            path: join(&target),
        });
    }
    let link = match meta.kind {
        EntryKind::Symlink => {
            let target = meta
                .link
                .as_deref()
                .filter(|t| !t.is_empty())
                .ok_or_else(|| fail(Reason::LinkMissing))?;
            if target.len() > MAX_PATH {
                return Err(fail(Reason::TooLong));
            }
            if target.contains(&0) {
                return Err(fail(Reason::NulByte));
            }
            if symlink_escapes(parents.len(), target) {
                return Err(fail(Reason::LinkEscapes(
                    String::from_utf8_lossy(target).into_owned(),
                )));
            }
            None
        }
        EntryKind::Hardlink => {
            let target = meta
                .link
                .as_deref()
                .ok_or_else(|| fail(Reason::LinkMissing))?;
            let escapes = |_| Reason::LinkEscapes(String::from_utf8_lossy(target).into_owned());
            let target_parts = normalize(target).map_err(escapes).map_err(fail)?;
            if target_parts.is_empty() {
                return Err(fail(Reason::LinkMissing));
            }
            Some(join(&target_parts))
        }
        EntryKind::CharDevice | EntryKind::BlockDevice if rootless => {
            return Err(fail(Reason::DeviceRootless));
        }
        _ => None,
    };
    Ok(Action::Create {
        path: join(&parts),
        link,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn meta(path: &str, kind: EntryKind, link: Option<&str>) -> EntryMeta {
        EntryMeta {
            path: path.as_bytes().to_vec(),
            link: link.map(|l| l.as_bytes().to_vec()),
            kind,
            xattr_names: vec![],
        }
    }

    fn reason(m: &EntryMeta, rootless: bool) -> Reason {
        check_entry(m, rootless).unwrap_err().reason
    }

    #[test]
    fn accepts_ordinary_entries() {
        let a = check_entry(
            &meta("./usr/bin/sh", EntryKind::Symlink, Some("busybox")),
            true,
        );
        assert_eq!(
            a,
            Ok(Action::Create {
                path: "usr/bin/sh".into(),
                link: None
            })
        );
        let a = check_entry(
            &meta("bin/ls", EntryKind::Hardlink, Some("./bin/busybox")),
            true,
        );
        assert_eq!(
            a,
            Ok(Action::Create {
                path: "bin/ls".into(),
                link: Some("bin/busybox".into())
            })
        );
        assert_eq!(
            check_entry(&meta("./", EntryKind::Dir, None), false),
            Ok(Action::Skip)
        );
        // Absolute symlink targets are resolved in the container's root, not the host's.
        assert!(check_entry(&meta("lib", EntryKind::Symlink, Some("/usr/lib")), true).is_ok());
        assert!(check_entry(&meta("dev/null", EntryKind::CharDevice, None), false).is_ok());
        assert!(check_entry(&meta("a/b/c", EntryKind::Symlink, Some("../../x")), false).is_ok());
    }

    #[test]
    fn whiteouts_and_opaque() {
        let a = check_entry(&meta("etc/.wh.motd", EntryKind::File, None), false);
        assert_eq!(
            a,
            Ok(Action::Whiteout {
                path: "etc/motd".into()
            })
        );
        let a = check_entry(
            &meta("var/cache/.wh..wh..opq", EntryKind::File, None),
            false,
        );
        assert_eq!(
            a,
            Ok(Action::Opaque {
                dir: "var/cache".into()
            })
        );
        let a = check_entry(&meta(".wh..wh..opq", EntryKind::File, None), false);
        assert_eq!(a, Ok(Action::Opaque { dir: "".into() }));
        assert_eq!(
            reason(&meta("etc/.wh.", EntryKind::File, None), false),
            Reason::BadWhiteout
        );
        assert_eq!(
            reason(&meta("etc/.wh...", EntryKind::File, None), false),
            Reason::BadWhiteout
        );
        assert_eq!(
            check_entry(&meta(".wh..wh.plnk", EntryKind::Dir, None), false),
            Ok(Action::Skip)
        );
    }

    #[test]
    fn rejects_hostile_entries() {
        assert_eq!(
            reason(&meta("../etc/passwd", EntryKind::File, None), false),
            Reason::ParentTraversal
        );
        assert_eq!(
            reason(&meta("a/../../b", EntryKind::File, None), false),
            Reason::ParentTraversal
        );
        assert_eq!(
            reason(&meta("/etc/passwd", EntryKind::File, None), false),
            Reason::Absolute
        );
        assert_eq!(
            reason(&meta("x", EntryKind::Symlink, Some("../etc")), false),
            Reason::LinkEscapes("../etc".into())
        );
        assert_eq!(
            reason(
                &meta("a/x", EntryKind::Symlink, Some("b/../../../etc")),
                false
            ),
            Reason::LinkEscapes("b/../../../etc".into())
        );
        assert!(matches!(
            reason(&meta("x", EntryKind::Hardlink, Some("/etc/shadow")), false),
            Reason::LinkEscapes(_)
        ));
        assert!(matches!(
            reason(&meta("x", EntryKind::Hardlink, Some("../shadow")), false),
            Reason::LinkEscapes(_)
        ));
        assert_eq!(
            reason(&meta("dev/sda", EntryKind::BlockDevice, None), true),
            Reason::DeviceRootless
        );
        assert_eq!(
            reason(&meta("x", EntryKind::Symlink, None), true),
            Reason::LinkMissing
        );
        assert_eq!(
            reason(&meta(&"a/".repeat(3000), EntryKind::File, None), true),
            Reason::TooLong
        );
        assert_eq!(
            reason(&meta("a\0b", EntryKind::File, None), true),
            Reason::NulByte
        );
        assert_eq!(
            reason(&meta(".", EntryKind::File, None), true),
            Reason::Empty
        );
        let mut m = meta("etc", EntryKind::Dir, None);
        m.xattr_names = vec![b"trusted.overlay.opaque".to_vec()];
        assert_eq!(
            reason(&m, false),
            Reason::OverlayXattr("trusted.overlay.opaque".into())
        );
        let text = check_entry(&meta("../x", EntryKind::File, None), false)
            .unwrap_err()
            .to_string();
        assert_eq!(text, "hostile entry \"../x\": path contains \"..\"");
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("..".to_string()),
            Just(".".to_string()),
            Just("".to_string()),
            "[a-z.]{1,4}",
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        (any::<bool>(), prop::collection::vec(component(), 0..6))
            .prop_map(|(abs, parts)| format!("{}{}", if abs { "/" } else { "" }, parts.join("/")))
    }

    /// Resolves `target` lexically from `dir` (components); None when a relative target climbs
    /// above the root (an absolute one stays at `/`, as the kernel does).
    fn resolve(dir: &[String], target: &str) -> Option<Vec<String>> {
        let absolute = target.starts_with('/');
        let mut stack: Vec<String> = if absolute { vec![] } else { dir.to_vec() };
        for part in target.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if stack.pop().is_none() && !absolute {
                        return None;
                    }
                }
                p => stack.push(p.to_string()),
            }
        }
        Some(stack)
    }

    proptest! {
        /// Whatever the input, an accepted entry's path stays inside the layer: relative,
        /// free of `..`, and its links resolve inside the layer too.
        #[test]
        fn accepted_entries_stay_inside(p in path(), target in path(), kind in 0u8..7, rootless: bool) {
            let kind = [EntryKind::File, EntryKind::Dir, EntryKind::Symlink, EntryKind::Hardlink,
                EntryKind::CharDevice, EntryKind::BlockDevice, EntryKind::Fifo][kind as usize];
            let m = EntryMeta { path: p.clone().into_bytes(), link: Some(target.clone().into_bytes()), kind, xattr_names: vec![] };
            match check_entry(&m, rootless) {
                Ok(Action::Whiteout { path }) => {
                    prop_assert!(path.is_relative());
                    prop_assert!(path.components().all(|c| matches!(c, std::path::Component::Normal(_))));
                }
                Ok(Action::Create { path, link }) => {
                    if let Some(link) = link {
                        prop_assert!(link.components().all(|c| matches!(c, std::path::Component::Normal(_))));
                    }
                    prop_assert!(path.is_relative());
                    prop_assert!(path.components().all(|c| matches!(c, std::path::Component::Normal(_))));
                    prop_assert!(!p.split('/').any(|c| c == ".."));
                    if kind == EntryKind::Symlink {
                        let dir: Vec<String> = path.parent().unwrap().iter().map(|c| c.to_string_lossy().into_owned()).collect();
                        prop_assert!(resolve(&dir, &target).is_some());
                    }
                    if rootless {
                        prop_assert!(!matches!(kind, EntryKind::CharDevice | EntryKind::BlockDevice));
                    }
                }
                Ok(Action::Opaque { dir }) => prop_assert!(dir.is_relative()),
                Ok(_) => {}
                Err(h) => prop_assert!(!h.to_string().contains('\n')),
            }
        }
    }
}
