//! Capability names and their kernel numbers.

use cairn_sandbox::Capability;

/// Kernel capability names without the `CAP_` prefix, indexed by number (0..=40).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// Number of capabilities the kernel defines (and the size of [`CapSet`]).
pub(crate) const COUNT: u8 = 41;

/// A name from a node file: one capability, or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CapName {
    All,
    One(Capability),
}

/// Parses `CAP_NET_ADMIN`, `net_admin`, `all` (case-insensitive).
pub(crate) fn parse(name: &str) -> Option<CapName> {
    if name.eq_ignore_ascii_case("all") {
        return Some(CapName::All);
    }
    let bare = match name.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("cap_") => &name[4..],
        _ => name,
    };
    let idx = NAMES.iter().position(|n| n.eq_ignore_ascii_case(bare))?;
    u8::try_from(idx).ok().map(|n| CapName::One(Capability(n)))
}

/// The canonical `CAP_...` name of a capability.
pub(crate) fn name(cap: Capability) -> String {
    match NAMES.get(usize::from(cap.0)) {
        Some(n) => format!("CAP_{n}"),
        None => format!("CAP_{}", cap.0),
    }
}

/// A set of capabilities as a bit mask (cheap to copy and compare).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSet(u64);

impl CapSet {
    #[cfg(test)]
    pub(crate) const ALL: CapSet = CapSet((1u64 << COUNT) - 1);

    pub(crate) fn contains(self, cap: Capability) -> bool {
        self.0 & (1u64 << cap.0) != 0
    }

    pub(crate) fn insert(&mut self, cap: Capability) {
        self.0 |= 1u64 << cap.0;
    }

    pub(crate) fn remove(&mut self, cap: Capability) {
        self.0 &= !(1u64 << cap.0);
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Capability> {
        (0..COUNT)
            .map(Capability)
            .filter(move |c| self.contains(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_in_every_spelling() {
        assert_eq!(parse("CAP_NET_ADMIN"), Some(CapName::One(Capability(12))));
        assert_eq!(parse("net_admin"), Some(CapName::One(Capability(12))));
        assert_eq!(parse("Cap_Chown"), Some(CapName::One(Capability(0))));
        assert_eq!(
            parse("checkpoint_restore"),
            Some(CapName::One(Capability(40)))
        );
        assert_eq!(parse("ALL"), Some(CapName::All));
        assert_eq!(parse("CAP_NOPE"), None);
        assert_eq!(parse("CAP_"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn names_round_trip() {
        for n in 0..COUNT {
            assert_eq!(
                parse(&name(Capability(n))),
                Some(CapName::One(Capability(n)))
            );
        }
    }

    #[test]
    fn set_operations() {
        let mut s = CapSet::default();
        s.insert(Capability(40));
        s.insert(Capability(0));
        assert!(s.contains(Capability(40)));
        assert_eq!(
            s.iter().collect::<Vec<_>>(),
            vec![Capability(0), Capability(40)]
        );
        s.remove(Capability(0));
        assert!(!s.contains(Capability(0)));
        assert_eq!(CapSet::ALL.iter().count(), 41);
    }
}
