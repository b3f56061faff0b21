//! Capability dropping.
//!
//! The bounding set is cut to the kept set first (it needs CAP_SETPCAP, which we still have),
//! then, after any id switch, the permitted/effective/inheritable sets are set with one
//! capset: the kept set when the program runs as uid 0 inside (execve then grants root
//! exactly the bounding set, and no_new_privs intersects it with what we hold), empty
//! otherwise. Ambient capabilities are cleared so nothing survives execve implicitly.

use crate::error::Fail;
use crate::spec::Capability;
use crate::sys;

/// Bit mask of the kept capabilities (numbers above 63 cannot exist and are ignored).
pub(crate) fn mask(caps: &[Capability]) -> u64 {
    caps.iter()
        .filter(|c| c.0 < 64)
        .fold(0, |m, c| m | (1u64 << c.0))
}

/// Removes every capability not in `kept` from the bounding set.
pub(crate) fn drop_bounding(kept: u64) -> Result<(), Fail<'static>> {
    for cap in 0..64u32 {
        if kept & (1 << cap) != 0 {
            continue;
        }
        match sys::prctl(libc::PR_CAPBSET_DROP, cap.into()) {
            Ok(_) => {}
            // Past the kernel's last capability: done, without reading cap_last_cap.
            Err(libc::EINVAL) => break,
            Err(e) => return Err(Fail::bare("drop bounding capabilities", e)),
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Sets effective = permitted = inheritable = `set`, and clears the ambient set.
pub(crate) fn set_process(set: u64) -> Result<(), Fail<'static>> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let (lo, hi) = (set as u32, (set >> 32) as u32);
    let data = [
        CapData {
            effective: lo,
            permitted: lo,
            inheritable: lo,
        },
        CapData {
            effective: hi,
            permitted: hi,
            inheritable: hi,
        },
    ];
    // SAFETY: header and the two-element data array are what capset(2) v3 reads.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) };
    if rc != 0 {
        return Err(Fail::bare("capset", sys::errno()));
    }
    let clear_all = libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong;
    match sys::prctl(libc::PR_CAP_AMBIENT, clear_all) {
        // EINVAL: a kernel without ambient capabilities has nothing to clear.
        Ok(_) | Err(libc::EINVAL) => Ok(()),
        Err(e) => Err(Fail::bare("clear ambient capabilities", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_sets_one_bit_per_capability() {
        assert_eq!(mask(&[]), 0);
        assert_eq!(
            mask(&[Capability(0), Capability(21), Capability(40)]),
            1 | 1 << 21 | 1 << 40
        );
        assert_eq!(mask(&[Capability(200)]), 0);
    }
}
