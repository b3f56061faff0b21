//! The launch: prepare everything, clone into the namespaces, set up, exec, wait.
//!
//! [`run`] does all the allocating work first ([`Launch::prepare`]: C strings, the mount
//! plan, the seccomp programs, the cgroup). Then one `clone` creates the child in its new
//! namespaces; the child ([`Launch::child`]) only replays the plan with raw system calls and
//! reports the first failure as one line on a close-on-exec pipe. The parent forwards signals
//! until the child exits, then reads that pipe: EOF without data means the program was
//! exec'd and the status is its own.

use std::convert::Infallible;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cairn_process::{Child, FORWARDED_WITH_SIGCHLD, Parent, ParentGone, SignalSet, Signals};
use libc::{c_char, c_int, pid_t};
use seccompiler::BpfProgram;

use crate::cgroup::{self, Cgroup};
use crate::error::{Error, Fail, MsgBuf};
use crate::rootfs::{RootPlan, cstring};
use crate::spec::{SandboxSpec, UserIds};
use crate::userns::{self, Caller, Mapping};
use crate::{caps, seccomp, sys};

/// Runs `spec.argv` in the sandbox described by `spec` and returns its exit status
/// (128+N when killed by signal N). Errors are set-up failures; the program's own failure
/// is just its status.
pub fn run(spec: &SandboxSpec) -> Result<i32, Error> {
    let caller = Caller::current();
    let cgroup = Cgroup::create(&spec.cgroup)?;
    let result = Launch::prepare(spec, caller, cgroup.as_ref()).and_then(|l| l.execute(None));
    if let Some(cg) = cgroup {
        cg.remove();
    }
    result
}

/// Where the child mounts its root tmpfs, inside its own private mount namespace (the host
/// never sees it; bind sources are opened before it is covered, see `rootfs`).
const ROOT_MOUNT_POINT: &str = "/tmp";

/// Everything the child needs, prepared so that it never allocates.
pub(crate) struct Launch {
    clone_flags: c_int,
    /// Unshared by the child after joining the cgroup, so the namespace's root is that cgroup.
    late_cgroup_ns: bool,
    /// Open `tasks` (v1) or `cgroup.procs` (v2) files the child writes "0" to.
    cgroup_fds: Vec<c_int>,
    time_ns: bool,
    /// Fork the program from a reaper (pid namespace, or time namespace that needs a fork).
    fork_program: bool,
    mapping: Mapping,
    hostname: Option<Vec<u8>>,
    loopback: bool,
    root: RootPlan,
    program: Program,
    die_with_parent: bool,
    /// Keep mode (`keeper`): pid 1 holds the namespaces and runs no program.
    keep: bool,
}

/// The program's side: ids, capabilities, process attributes, filters and exec arguments.
pub(crate) struct Program {
    /// argv[0] as given, for "command not found".
    name: Vec<u8>,
    /// Paths to try, in PATH order (one when argv[0] has a slash).
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// execve's arrays, built by the parent so the child does not allocate.
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
    chdir: CString,
    umask: libc::mode_t,
    new_session: bool,
    switch_ids: Option<UserIds>,
    bounding: u64,
    /// Kept set when the program's uid is 0, empty otherwise.
    process_caps: u64,
    filters: Vec<BpfProgram>,
}

impl Program {
    /// Everything the program's process needs, built before any fork. `mapping` is how the
    /// sandbox's user namespace maps ids: root launches switch ids themselves.
    pub(crate) fn prepare(spec: &SandboxSpec, mapping: &Mapping) -> Result<Program, Error> {
        // Root (in or out of a user namespace) switches ids itself; rootless already maps them.
        let root_launch = !matches!(mapping, Mapping::Child { .. });
        let target_is_root = spec.user.uid == 0;
        let kept = caps::mask(&spec.capabilities);
        let mut program = Program {
            name: spec
                .argv
                .first()
                .map(|a| a.as_bytes().to_vec())
                .unwrap_or_default(),
            candidates: candidates(spec)?,
            argv: spec
                .argv
                .iter()
                .map(|a| cstring(a))
                .collect::<Result<_, _>>()?,
            argv_ptrs: Vec::new(),
            envp_ptrs: Vec::new(),
            envp: spec
                .env
                .iter()
                .map(|(k, v)| env_entry(k, v))
                .collect::<Result<_, _>>()?,
            chdir: cstring(spec.chdir.as_deref().unwrap_or(Path::new("/")).as_os_str())?,
            umask: spec.umask.unwrap_or(0o022) as libc::mode_t,
            new_session: spec.new_session,
            switch_ids: (root_launch && spec.user != UserIds::default()).then_some(spec.user),
            bounding: kept,
            process_caps: if target_is_root { kept } else { 0 },
            filters: seccomp::compile(&spec.seccomp)?,
        };
        program.argv_ptrs = pointers(&program.argv);
        program.envp_ptrs = pointers(&program.envp);
        Ok(program)
    }

    /// Whether the program shares the caller's session (and so its terminal's signals).
    pub(crate) fn shares_tty(&self) -> bool {
        !self.new_session
    }

    /// The program's process: drop privileges, apply process attributes, filter, exec.
    /// `death`: how the program dies with its launcher (if it should).
    pub(crate) fn start<'a>(&'a self, err_fd: c_int, death: Death) -> Result<Infallible, Fail<'a>> {
        if self.new_session {
            // SAFETY: setsid has no memory arguments.
            if unsafe { libc::setsid() } < 0 {
                return Err(Fail::bare("setsid", sys::errno()));
            }
        }
        caps::drop_bounding(self.bounding)?;
        if let Some(ids) = self.switch_ids {
            userns::switch_ids(ids)?;
        }
        // After fork and id changes the death signal is reset: set it (again) now.
        match death {
            Death::Never => {}
            Death::WithReaper(pid) => die_with(Parent::Pid(pid))?,
            Death::WithLauncher => die_with_parent(err_fd)?,
        }
        caps::set_process(self.process_caps)?;
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1)
            .map_err(|e| Fail::bare("prctl(PR_SET_NO_NEW_PRIVS)", e))?;
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(self.umask) };
        sys::chdir(&self.chdir).map_err(|e| Fail::new("chdir", self.chdir.to_bytes(), e))?;
        // Every descriptor but 0-2 (and the error pipe, until execve) closes on exec.
        // SAFETY: close_range only changes descriptor flags.
        if unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as c_int) }
            != 0
        {
            return Err(Fail::bare("close_range", sys::errno()));
        }
        cairn_process::reset_for_exec();
        seccomp::install(&self.filters)?;
        exec(self)
    }
}

/// How the program's process follows its launcher into death.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Death {
    /// It does not (die_with_parent off).
    Never,
    /// Its parent is the sandbox's reaper, whose pid is known.
    WithReaper(pid_t),
    /// Its parent is the launching process, which holds the error pipe's only read end.
    WithLauncher,
}

/// File descriptors of one launch: error pipe (child -> parent) and map sync pipe.
struct Pipes {
    err_read: OwnedFd,
    err_write: OwnedFd,
    sync: Option<(OwnedFd, OwnedFd)>,
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(Error::sys("pipe2"));
    }
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Launch {
    /// Switches the prepared launch to keep mode (see `keeper`): no program, no time
    /// namespace (it would only apply to children pid 1 never forks).
    pub(crate) fn into_keeper(mut self) -> Launch {
        self.keep = true;
        self.time_ns = false;
        self
    }

    pub(crate) fn prepare(
        spec: &SandboxSpec,
        caller: Caller,
        cgroup: Option<&Cgroup>,
    ) -> Result<Launch, Error> {
        let ns = spec.namespaces;
        let mut flags = libc::CLONE_NEWNS;
        let cgroup_fds = cgroup.map(Cgroup::join_fds).unwrap_or_default();
        let late_cgroup_ns = ns.cgroup && !cgroup_fds.is_empty();
        for (on, flag) in [
            (ns.user, libc::CLONE_NEWUSER),
            (ns.pid, libc::CLONE_NEWPID),
            (ns.net, libc::CLONE_NEWNET),
            (ns.ipc, libc::CLONE_NEWIPC),
            (ns.uts, libc::CLONE_NEWUTS),
            (ns.cgroup && !late_cgroup_ns, libc::CLONE_NEWCGROUP),
        ] {
            if on {
                flags |= flag;
            }
        }
        let mapping = userns::plan(ns.user, spec.user, caller)?;
        let program = Program::prepare(spec, &mapping)?;
        let hostname = match (&spec.hostname, ns.uts) {
            (Some(h), true) => Some(h.as_bytes().to_vec()),
            _ => None,
        };
        Ok(Launch {
            clone_flags: flags,
            late_cgroup_ns,
            cgroup_fds,
            time_ns: ns.time,
            fork_program: ns.pid || ns.time,
            mapping,
            hostname,
            loopback: ns.net,
            root: RootPlan::with_proc_protection(
                &spec.mounts,
                Path::new(ROOT_MOUNT_POINT),
                !ns.user,
            )?,
            program,
            die_with_parent: spec.die_with_parent,
            keep: false,
        })
    }

    /// Parent side of the launch, from clone to the program's exit. In keep mode,
    /// `on_ready` gets the sandbox's pid 1 once it is set up (before the wait).
    pub(crate) fn execute(self, on_ready: Option<&mut dyn FnMut(pid_t)>) -> Result<i32, Error> {
        let (err_read, err_write) = pipe()?;
        let sync = match self.mapping {
            Mapping::Parent => Some(pipe()?),
            _ => None,
        };
        let pipes = Pipes {
            err_read,
            err_write,
            sync,
        };
        let signals = Signals::block(&FORWARDED_WITH_SIGCHLD).map_err(|err| Error::Sys {
            op: "block signals",
            err,
        })?;
        let child = match sys::clone(self.clone_flags) {
            Ok(0) => self.child(&pipes, signals.set()),
            Ok(pid) => pid,
            Err(e) => {
                let err = std::io::Error::from_raw_os_error(e);
                return Err(Error::Sys {
                    op: "create namespaces (clone)",
                    err,
                });
            }
        };
        let Pipes {
            err_read,
            err_write,
            sync,
        } = pipes;
        drop(err_write);
        if let Some((sync_read, sync_write)) = sync {
            drop(sync_read);
            // First thing after clone: the child waits for the maps before its mounts.
            let result = userns::map_child(child);
            // EOF on the sync pipe: the maps are written.
            drop(sync_write);
            if let Err(e) = result {
                // Killed and reaped (by pid, when no pidfd can be had).
                let _ = took_over(child).map(|mut child| child.kill());
                return Err(e);
            }
        }
        let mut child = took_over(child)?;
        if let Some(ready) = on_ready {
            // Keep mode: pid 1 closes its end once set up, so EOF here means ready.
            if let Err(e) = read_report(&err_read) {
                child.kill();
                return Err(e);
            }
            ready(child.pid());
        }
        // Not waiting for the exec report here saves a wake-up on the hot path: the report
        // (or EOF) is read once the sandbox has exited, when every writer is gone.
        let code = supervise(&mut child, &signals, self.program.shares_tty())?;
        read_report(&err_read)?;
        Ok(code)
    }

    /// The set-up child. Never returns: it execs the program, becomes the reaper, or exits.
    fn child(&self, pipes: &Pipes, set: &SignalSet) -> ! {
        sys::close(pipes.err_read.as_raw_fd());
        let err_fd = pipes.err_write.as_raw_fd();
        let sync_fd = pipes.sync.as_ref().map(|(r, w)| {
            sys::close(w.as_raw_fd());
            r.as_raw_fd()
        });
        let Err(fail) = self.setup(err_fd, sync_fd, set);
        report(err_fd, &fail);
        sys::exit(1)
    }

    fn setup<'a>(
        &'a self,
        err_fd: c_int,
        sync_fd: Option<c_int>,
        set: &SignalSet,
    ) -> Result<Infallible, Fail<'a>> {
        if self.die_with_parent {
            die_with_parent(err_fd)?;
        }
        if let Mapping::Child { uid_map, gid_map } = &self.mapping {
            userns::map_self(uid_map, gid_map)?;
        }
        cgroup::join(&self.cgroup_fds)?;
        if self.late_cgroup_ns {
            sys::unshare(libc::CLONE_NEWCGROUP).map_err(|e| Fail::bare("unshare cgroup ns", e))?;
        }
        // Modes in the plan are exact; the program's umask is applied just before exec.
        // SAFETY: umask cannot fail.
        unsafe { libc::umask(0) };
        if let Some(name) = &self.hostname {
            sys::sethostname(name).map_err(|e| Fail::new("sethostname", name, e))?;
        }
        if self.loopback {
            loopback_up()?;
        }
        // Root launches: the parent writes the maps right after clone, usually before we get
        // here, so this rarely blocks; nothing above needs mapped ids, the mounts below do.
        if let Some(fd) = sync_fd {
            wait_for_eof(fd)?;
        }
        self.root.apply()?;
        if self.time_ns {
            // Applies to children only: the program, forked below.
            sys::unshare(libc::CLONE_NEWTIME).map_err(|e| Fail::bare("unshare time ns", e))?;
        }
        if self.keep {
            // Nothing to run: closing every descriptor (the error pipe too) tells the parent
            // the sandbox is ready; then hold the namespaces until told to stop.
            // SAFETY: closing every descriptor above stderr, none of which we use again.
            unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
            cairn_process::reap::until_stopped(set);
            sys::exit(0)
        }
        if !self.fork_program {
            return self.exec_program(err_fd, None);
        }
        // SAFETY: getpid cannot fail.
        let reaper = unsafe { libc::getpid() };
        match sys::clone(0) {
            Ok(0) => self.exec_program(err_fd, Some(reaper)),
            Ok(program) => {
                // The reaper needs no descriptor: holding the caller's (pipes, sockets) for the
                // sandbox's lifetime would keep them open behind the caller's back.
                // SAFETY: closing every descriptor above stderr, none of which we use again.
                unsafe { libc::close_range(3, libc::c_uint::MAX, 0) };
                let code = cairn_process::reap::until_exit(program, set, self.program.shares_tty());
                sys::exit(code)
            }
            Err(e) => Err(Fail::bare("fork program", e)),
        }
    }

    /// The program's process, forked by the reaper (`reaper`) or exec'd in place.
    fn exec_program<'a>(
        &'a self,
        err_fd: c_int,
        reaper: Option<pid_t>,
    ) -> Result<Infallible, Fail<'a>> {
        let death = match (self.die_with_parent, reaper) {
            (false, _) => Death::Never,
            (true, Some(pid)) => Death::WithReaper(pid),
            (true, None) => Death::WithLauncher,
        };
        self.program.start(err_fd, death)
    }
}

/// Dies with the launching process, recognised by the error pipe's write end (its only
/// reader is the launcher, and getppid says 0 across a new pid namespace).
pub(crate) fn die_with_parent(err_fd: c_int) -> Result<(), Fail<'static>> {
    die_with(Parent::PipeWriter(err_fd))
}

/// SIGKILL when `parent` dies; exits at once if it already has (no one is left to tell).
fn die_with(parent: Parent) -> Result<(), Fail<'static>> {
    match cairn_process::die_with_parent(libc::SIGKILL, parent) {
        Ok(()) => Ok(()),
        Err(ParentGone::Already) => sys::exit(1),
        Err(ParentGone::Prctl(e)) => Err(Fail::bare("prctl(PR_SET_PDEATHSIG)", e)),
    }
}

/// The sandbox's first process (or an entered program), held from here on (killed if it
/// cannot be).
pub(crate) fn took_over(pid: pid_t) -> Result<Child, Error> {
    Child::forked(pid).map_err(|err| Error::Sys {
        op: "open a pidfd of the sandbox",
        err,
    })
}

/// Passes the caller's signals to `child` until it exits; its exit code.
pub(crate) fn supervise(
    child: &mut Child,
    signals: &Signals,
    shared_tty: bool,
) -> Result<i32, Error> {
    cairn_process::supervise(child, signals, shared_tty).map_err(|err| Error::Sys {
        op: "wait for the sandbox",
        err,
    })
}

fn wait_for_eof(fd: c_int) -> Result<(), Fail<'static>> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reading into a one-byte buffer.
        let n = unsafe { libc::read(fd, (&mut byte as *mut u8).cast(), 1) };
        match n {
            0 => break,
            n if n < 0 && sys::errno() == libc::EINTR => continue,
            n if n < 0 => return Err(Fail::bare("wait for parent", sys::errno())),
            _ => {}
        }
    }
    sys::close(fd);
    Ok(())
}

/// Brings `lo` up in the new network namespace (the kernel then adds 127.0.0.1 and ::1).
fn loopback_up() -> Result<(), Fail<'static>> {
    // SAFETY: creating a socket only for the ioctl below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Fail::bare("socket for lo", sys::errno()));
    }
    // SAFETY: an all-zero ifreq is valid; we fill the name and flags.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as c_char;
    }
    req.ifr_ifru.ifru_flags =
        (libc::IFF_UP | libc::IFF_RUNNING | libc::IFF_LOOPBACK) as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads the ifreq we own.
    let rc = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req as *const libc::ifreq) };
    let e = sys::errno();
    sys::close(sock);
    if rc != 0 {
        return Err(Fail::new("bring up", b"lo", e));
    }
    Ok(())
}

/// execve over the candidates with execvpe's rules; only returns by exiting.
fn exec(p: &Program) -> ! {
    let mut denied = false;
    let mut last = libc::ENOENT;
    for candidate in &p.candidates {
        // SAFETY: candidate, argv and envp are NUL-terminated arrays of NUL-terminated strings.
        unsafe {
            libc::execve(
                candidate.as_ptr(),
                p.argv_ptrs.as_ptr(),
                p.envp_ptrs.as_ptr(),
            )
        };
        let e = sys::errno();
        match e {
            libc::ENOENT | libc::ENOTDIR => {}
            libc::EACCES => denied = true,
            _ => {
                last = e;
                break;
            }
        }
        last = e;
    }
    let mut msg = MsgBuf::new();
    msg.push_bytes(b"cairn: ");
    msg.push_bytes(&p.name);
    let code = if !denied && matches!(last, libc::ENOENT | libc::ENOTDIR) {
        let slash = p.name.contains(&b'/');
        msg.push_bytes(if slash {
            b": No such file or directory\n"
        } else {
            b": command not found\n"
        });
        127
    } else {
        msg.push_bytes(b": ");
        msg.push_strerror(if denied { libc::EACCES } else { last });
        msg.push_bytes(b"\n");
        126
    };
    let _ = sys::write_all(2, msg.as_bytes());
    sys::exit(code)
}

/// NULL-terminated pointer array over `strings` (whose heap buffers never move).
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

pub(crate) fn report(err_fd: c_int, fail: &Fail<'_>) {
    let mut msg = MsgBuf::new();
    fail.format(&mut msg);
    let _ = sys::write_all(err_fd, msg.as_bytes());
}

/// Reads the child's report: EOF alone = the program was exec'd.
pub(crate) fn read_report(fd: &OwnedFd) -> Result<(), Error> {
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        match n {
            0 => break,
            n if n < 0 && sys::errno() == libc::EINTR => continue,
            n if n < 0 => return Err(Error::sys("read set-up report")),
            n => text.extend_from_slice(&buf[..n as usize]),
        }
    }
    if text.is_empty() {
        return Ok(());
    }
    let line = String::from_utf8_lossy(&text);
    Err(Error::Setup(line.trim_end().to_string()))
}

fn env_entry(key: &OsStr, value: &OsStr) -> Result<CString, Error> {
    if key.as_bytes().contains(&b'=') {
        return Err(Error::Spec(format!(
            "environment key {} contains '='",
            key.to_string_lossy()
        )));
    }
    let mut entry = OsString::with_capacity(key.len() + value.len() + 1);
    entry.push(key);
    entry.push("=");
    entry.push(value);
    cstring(&entry)
}

/// Where execve looks for argv[0]: itself when it holds a slash, else each PATH entry (from
/// the sandbox's environment, execvpe's default when unset; empty entries mean ".").
fn candidates(spec: &SandboxSpec) -> Result<Vec<CString>, Error> {
    let prog = spec
        .argv
        .first()
        .ok_or_else(|| Error::Spec("argv is empty".into()))?;
    if prog.is_empty() {
        return Err(Error::Spec("argv[0] is empty".into()));
    }
    if prog.as_bytes().contains(&b'/') {
        return Ok(vec![cstring(prog)?]);
    }
    let path = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(OsStr::new("/bin:/usr/bin"), |(_, v)| v.as_os_str());
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b".".as_slice() } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(prog.as_bytes());
            cstring(OsStr::from_bytes(&full))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], path: Option<&str>) -> SandboxSpec {
        SandboxSpec {
            argv: argv.iter().map(OsString::from).collect(),
            env: path
                .map(|p| vec![("PATH".into(), p.into())])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn candidates_follow_path_and_slashes() {
        let c = candidates(&spec(&["ls"], Some("/a::/b"))).unwrap();
        let c: Vec<_> = c.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(c, ["/a/ls", "./ls", "/b/ls"]);
        let c = candidates(&spec(&["./x"], Some("/a"))).unwrap();
        assert_eq!(c[0].to_str().unwrap(), "./x");
        let c = candidates(&spec(&["sh"], None)).unwrap();
        assert_eq!(c[0].to_str().unwrap(), "/bin/sh");
    }

    #[test]
    fn empty_argv_and_bad_env_are_spec_errors() {
        assert!(matches!(candidates(&spec(&[], None)), Err(Error::Spec(_))));
        assert!(matches!(
            candidates(&spec(&[""], None)),
            Err(Error::Spec(_))
        ));
        assert!(env_entry(OsStr::new("A=B"), OsStr::new("c")).is_err());
        assert_eq!(
            env_entry(OsStr::new("A"), OsStr::new("b=c"))
                .unwrap()
                .to_str(),
            Ok("A=b=c")
        );
    }
}
