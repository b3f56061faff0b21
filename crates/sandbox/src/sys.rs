//! Thin, allocation-free wrappers over the system calls of the set-up child.
//!
//! Each returns the raw errno on failure so the caller can build a [`crate::error::Fail`]
//! naming the step and path; nothing here allocates, because the child may be a fork of a
//! multi-threaded process where the allocator's locks can be held by a vanished thread.

use std::ffi::CStr;
use std::ptr;

use libc::{c_int, c_ulong};

pub(crate) type SysResult<T> = Result<T, i32>;

pub(crate) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

fn check(rc: c_int) -> SysResult<c_int> {
    if rc < 0 { Err(errno()) } else { Ok(rc) }
}

fn check_long(rc: libc::c_long) -> SysResult<libc::c_long> {
    if rc < 0 { Err(errno()) } else { Ok(rc) }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

pub(crate) fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: c_ulong,
    data: Option<&CStr>,
) -> SysResult<()> {
    // SAFETY: every pointer is NUL-terminated or null, as mount(2) accepts.
    let rc = unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    };
    check(rc).map(drop)
}

/// `struct mount_attr` of mount_setattr(2); libc does not define it.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// Sets mount attributes, leaving every other flag (including ones the kernel locked) as is.
pub(crate) fn mount_setattr(path: &CStr, recursive: bool, set: u64) -> SysResult<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: path is NUL-terminated; attr is a valid mount_attr of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check_long(rc).map(drop)
}

pub(crate) fn mkdir(path: &CStr, mode: u32) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::mkdir(path.as_ptr(), mode) }).map(drop)
}

/// Creates an empty regular file in one call (no fd to open and close).
pub(crate) fn mknod_file(path: &CStr, mode: u32) -> SysResult<()> {
    // SAFETY: path is NUL-terminated; S_IFREG needs no device number.
    check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFREG | mode, 0) }).map(drop)
}

pub(crate) fn symlink(target: &CStr, path: &CStr) -> SysResult<()> {
    // SAFETY: both are NUL-terminated.
    check(unsafe { libc::symlink(target.as_ptr(), path.as_ptr()) }).map(drop)
}

pub(crate) fn unlink(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::unlink(path.as_ptr()) }).map(drop)
}

pub(crate) fn open(path: &CStr, flags: c_int, mode: u32) -> SysResult<c_int> {
    // SAFETY: path is NUL-terminated; mode is only read with O_CREAT.
    check(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })
}

/// Makes `to` refer to what `from` refers to (close-on-exec), closing `to`'s old file.
pub(crate) fn dup_onto(from: c_int, to: c_int) -> SysResult<()> {
    // SAFETY: plain descriptor numbers; dup3 replaces `to` atomically.
    check(unsafe { libc::dup3(from, to, libc::O_CLOEXEC) }).map(|_| ())
}

pub(crate) fn close(fd: c_int) {
    // SAFETY: closing an fd we own; errors are irrelevant (the fd is gone either way).
    unsafe { libc::close(fd) };
}

pub(crate) fn write_all(fd: c_int, mut bytes: &[u8]) -> SysResult<()> {
    while !bytes.is_empty() {
        // SAFETY: the buffer is valid for bytes.len() bytes.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// open + write + close: proc files (uid_map, setgroups) and files on the new root.
pub(crate) fn write_file(path: &CStr, flags: c_int, mode: u32, bytes: &[u8]) -> SysResult<()> {
    let fd = open(path, libc::O_WRONLY | flags, mode)?;
    let result = write_all(fd, bytes);
    close(fd);
    result
}

pub(crate) fn chdir(path: &CStr) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

pub(crate) fn pivot_root(new_root: &CStr, put_old: &CStr) -> SysResult<()> {
    // SAFETY: both are NUL-terminated; pivot_root has no libc wrapper.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    check_long(rc).map(drop)
}

pub(crate) fn umount2(path: &CStr, flags: c_int) -> SysResult<()> {
    // SAFETY: path is NUL-terminated.
    check(unsafe { libc::umount2(path.as_ptr(), flags) }).map(drop)
}

pub(crate) fn unshare(flags: c_int) -> SysResult<()> {
    // SAFETY: unshare only changes this process's namespaces.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

pub(crate) fn sethostname(name: &[u8]) -> SysResult<()> {
    // SAFETY: the buffer is valid for name.len() bytes.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

pub(crate) fn prctl(option: c_int, arg2: c_ulong) -> SysResult<c_int> {
    // SAFETY: the options used here take integer arguments only.
    check(unsafe { libc::prctl(option, arg2, 0 as c_ulong, 0 as c_ulong, 0 as c_ulong) })
}

/// Fork-like clone: `flags` are namespace flags; the child continues on a copy of our stack.
pub(crate) fn clone(flags: c_int) -> SysResult<libc::pid_t> {
    let flags = (flags | libc::SIGCHLD) as c_ulong;
    // SAFETY: with a null stack the kernel gives the child a copy-on-write copy of our
    // memory, as fork does; the remaining arguments (tids, tls) are unused with these flags.
    let rc = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    check_long(rc).map(|pid| pid as libc::pid_t)
}

/// Leaves the process without error checking, flushing nothing (the child owns no buffers).
pub(crate) fn exit(code: i32) -> ! {
    // SAFETY: _exit never returns and runs no user-space cleanup, which is what a forked
    // child must do.
    unsafe { libc::_exit(code) }
}
