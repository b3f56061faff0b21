//! The host side of a launch: QEMU `microvm` with Cairn's initramfs, the rootfs as a
//! read-only virtio-blk disk, and four virtio-serial ports whose other ends are socket pairs
//! this process holds. It relays the caller's stdin, the guest's stdout and stderr apart
//! (or a terminal, when the caller has one), forwards the usual signals
//! (`cairn_process::FORWARDED`; SIGWINCH as window size changes), and returns the target's
//! exit status.
//!
//! QEMU gets its ends of the socket pairs as inherited descriptors (`-chardev socket,fd=N`),
//! so no socket file exists and nothing can connect in between. It runs in its own process
//! group (a terminal's Ctrl-C reaches Cairn, which forwards it, not QEMU) and dies with this
//! process (`PR_SET_PDEATHSIG`); it is killed on every path once the call is complete.

use std::ffi::OsString;
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn_process::{Child, FORWARDED, RawTerminal, Signals};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{Error, Result};
use crate::proto::{self, GuestMessage, HostMessage, Request};
use crate::store::Vm;

pub const QEMU: &str = "qemu-system-x86_64";
/// Forces an accelerator (`tcg`, `kvm`); by default KVM is tried first, then TCG.
pub const ACCEL_ENV: &str = "CAIRN_VM_ACCEL";
/// Seconds a guest may take to start the target (fractions allowed).
pub const BOOT_TIMEOUT_ENV: &str = "CAIRN_VM_BOOT_TIMEOUT";
const DEFAULT_BOOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// Extra kernel command line words, for debugging boots (`loglevel=7`).
pub const APPEND_ENV: &str = "CAIRN_VM_APPEND";
/// Guest memory when the app does not say (`--run-arg --memory=SIZE`).
pub const DEFAULT_MEMORY: u64 = 256 << 20;
/// The writable layer's size when the app does not say (`overlay-size`).
pub const DEFAULT_OVERLAY: u64 = 256 << 20;

/// One call: what to run, and how big the guest is.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The target first, then the caller's arguments, exactly.
    pub argv: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
    pub overlay_size: u64,
    pub memory: u64,
    pub cpus: u32,
}

impl Launch {
    pub fn new(argv: Vec<OsString>) -> Launch {
        Launch {
            argv,
            env: vec![("PATH".into(), crate::DEFAULT_PATH.into())],
            cwd: "/".into(),
            overlay_size: DEFAULT_OVERLAY,
            memory: DEFAULT_MEMORY,
            cpus: 1,
        }
    }

    fn request(&self) -> Request {
        Request {
            argv: self.argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: self
                .env
                .iter()
                .map(|(k, v)| {
                    let mut e = k.as_bytes().to_vec();
                    e.push(b'=');
                    e.extend_from_slice(v.as_bytes());
                    e
                })
                .collect(),
            cwd: self.cwd.as_os_str().as_bytes().to_vec(),
            overlay_size: self.overlay_size,
            tty: None,
        }
    }
}

/// Finds QEMU on `PATH`.
pub fn find_qemu() -> Result<PathBuf> {
    crate::find_tool(QEMU).ok_or(Error::NoQemu)
}

/// The host's ends of the four channels.
struct Channels {
    control: UnixStream,
    stdin: UnixStream,
    stdout: UnixStream,
    stderr: UnixStream,
}

/// Runs `launch` in `vm`; `instance_dir` (existing, owned by the caller) receives the
/// console and QEMU logs. Returns the target's exit status.
pub fn run(vm: &Vm, launch: &Launch, exe: &Path, instance_dir: &Path) -> Result<i32> {
    let qemu = find_qemu()?;
    let initrd = vm.initrd(exe, instance_dir)?;
    let pair = |port: &str| {
        UnixStream::pair().map_err(|e| Error::Protocol {
            port: port.into(),
            reason: e.to_string(),
        })
    };
    let (host_ctl, qemu_ctl) = pair(proto::PORT_CONTROL)?;
    let (host_in, qemu_in) = pair(proto::PORT_STDIN)?;
    let (host_out, qemu_out) = pair(proto::PORT_STDOUT)?;
    let (host_err, qemu_err) = pair(proto::PORT_STDERR)?;
    let ports = [
        (proto::PORT_CONTROL, qemu_ctl.as_raw_fd()),
        (proto::PORT_STDIN, qemu_in.as_raw_fd()),
        (proto::PORT_STDOUT, qemu_out.as_raw_fd()),
        (proto::PORT_STDERR, qemu_err.as_raw_fd()),
    ];
    let console = instance_dir.join("console.log");
    let qemu_log = instance_dir.join("qemu.log");
    let args = qemu_args(vm, &initrd, launch, &ports, &console);
    let child = spawn_qemu(&qemu, &args, &ports, &qemu_log)?;
    // QEMU holds its ends now; ours must go, or EOF would never be seen.
    drop((qemu_ctl, qemu_in, qemu_out, qemu_err));
    let mut qemu = Qemu(child);
    let channels = Channels {
        control: host_ctl,
        stdin: host_in,
        stdout: host_out,
        stderr: host_err,
    };
    let mut request = launch.request();
    request.tty = caller_terminal();
    if request.tty.is_some() {
        pass_term(&mut request);
    }
    // Blocked before the relay starts its stdin thread, which inherits the mask.
    let signals = Signals::block(&FORWARDED).map_err(|e| Error::Protocol {
        port: "signals".into(),
        reason: e.to_string(),
    })?;
    // Raw while the guest's terminal runs: its line discipline does the editing and turns
    // Ctrl-C into SIGINT; restored when this guard goes, on every path.
    let stdin = std::io::stdin();
    let raw = request
        .tty
        .and_then(|_| RawTerminal::enter(stdin.as_fd(), &signals));
    let outcome = relay(channels, &request, &signals);
    drop(raw);
    qemu.kill();
    match outcome {
        Ok(status) => Ok(status),
        Err(Error::Stopped { detail }) => Err(Error::Stopped {
            detail: why_stopped(&detail, &qemu_log, &console),
        }),
        Err(e) => Err(e),
    }
}

fn qemu_args(
    vm: &Vm,
    initrd: &Path,
    launch: &Launch,
    ports: &[(&str, RawFd)],
    console: &Path,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let push = |a: &mut Vec<OsString>, items: &[&str]| a.extend(items.iter().map(OsString::from));
    push(
        &mut a,
        &[
            "-M",
            "microvm",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ],
    );
    match std::env::var(ACCEL_ENV).ok().as_deref() {
        Some("tcg") => push(&mut a, &["-accel", "tcg"]),
        Some("kvm") => push(&mut a, &["-accel", "kvm", "-cpu", "host"]),
        _ => push(&mut a, &["-accel", "kvm", "-accel", "tcg"]),
    }
    let memory = format!("{}M", launch.memory.div_ceil(1 << 20));
    let cpus = launch.cpus.max(1).to_string();
    push(&mut a, &["-m", &memory, "-smp", &cpus]);
    a.push("-kernel".into());
    a.push(vm.kernel().into());
    a.push("-initrd".into());
    a.push(initrd.into());
    a.push("-append".into());
    a.push(kernel_command_line().into());
    a.push("-chardev".into());
    let mut file = OsString::from("file,id=console,path=");
    file.push(escape_option(console));
    a.push(file);
    a.extend(["-serial".into(), "chardev:console".into()]);
    a.push("-drive".into());
    let mut drive = OsString::from("id=root,if=none,format=raw,read-only=on,file=");
    drive.push(escape_option(&vm.rootfs()));
    a.push(drive);
    a.extend(["-device".into(), "virtio-blk-device,drive=root".into()]);
    a.extend(["-device".into(), "virtio-serial-device,max_ports=8".into()]);
    for (i, (name, fd)) in ports.iter().enumerate() {
        a.push("-chardev".into());
        a.push(format!("socket,id=port{i},fd={fd}").into());
        a.push("-device".into());
        a.push(format!("virtserialport,chardev=port{i},name={name}").into());
    }
    a
}

/// The guest kernel's command line: the serial console, a panic powers off (QEMU runs with
/// -no-reboot), no self-tests of crypto algorithms (a third of a second under TCG, for
/// algorithms the guest init never uses), Cairn's marker, and the TSC frequency. Under TCG the kernel cannot
/// calibrate its clock against the emulated PIT in time and stalls; QEMU's TCG clock runs
/// at the host's TSC rate, so the host's frequency is given (KVM guests use kvm-clock).
fn kernel_command_line() -> String {
    let mut line = format!(
        "console=ttyS0 quiet panic=-1 cryptomgr.notests=1 {}",
        proto::GUEST_MARKER
    );
    if let Some(khz) = host_tsc_khz() {
        line.push_str(&format!(" tsc_early_khz={khz}"));
    }
    if let Some(extra) = std::env::var_os(APPEND_ENV) {
        line.push(' ');
        line.push_str(&extra.to_string_lossy());
    }
    line
}

/// The host CPU's frequency from /proc/cpuinfo, in kHz.
fn host_tsc_khz() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz: f64 = text
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    (mhz > 0.0).then_some((mhz * 1000.0) as u64)
}

/// QEMU option values separate with commas; a comma in a path is written twice.
fn escape_option(path: &Path) -> OsString {
    let bytes = path.as_os_str().as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from(std::ffi::OsStr::from_bytes(&out))
}

fn spawn_qemu(
    qemu: &Path,
    args: &[OsString],
    ports: &[(&str, RawFd)],
    log: &Path,
) -> Result<Child> {
    let log_file = std::fs::File::create(log).map_err(Error::io(log))?;
    let log_err = log_file.try_clone().map_err(Error::io(log))?;
    let fds: Vec<RawFd> = ports.iter().map(|(_, fd)| *fd).collect();
    let mut cmd = Command::new(qemu);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .process_group(0);
    cairn_process::die_with_caller(&mut cmd, libc::SIGKILL);
    let inherit = move || {
        for &fd in &fds {
            // SAFETY: clearing close-on-exec of a descriptor this process holds.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook only calls fcntl (async-signal-safe) on values computed before the
    // fork, and allocates nothing.
    unsafe { cmd.pre_exec(inherit) };
    let (child, _) = Child::spawn(&mut cmd).map_err(|e| Error::Tool {
        program: qemu.display().to_string(),
        message: e.to_string(),
    })?;
    Ok(child)
}

/// QEMU, killed and reaped when the call is over (and on unwinding).
struct Qemu(Child);

impl Qemu {
    fn kill(&mut self) {
        self.0.kill();
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends the request, relays until the guest reported the exit and all output arrived.
/// A signal before the target started ends the call (status 128+N), as it would end a
/// local program.
fn relay(ch: Channels, request: &Request, signals: &Signals) -> Result<i32> {
    let ctl_err = |e: std::io::Error| Error::Protocol {
        port: proto::PORT_CONTROL.into(),
        reason: e.to_string(),
    };
    let mut ctl_writer = ch.control.try_clone().map_err(ctl_err)?;
    proto::send(&mut ctl_writer, &HostMessage::Run(request.clone())).map_err(ctl_err)?;
    let stdin = ch.stdin;
    let stdin_writer = stdin.try_clone().map_err(|e| Error::Protocol {
        port: proto::PORT_STDIN.into(),
        reason: e.to_string(),
    })?;
    std::thread::spawn(move || copy_stdin(stdin_writer));

    let mut control = BufReader::new(ch.control);
    let mut out = Stream::new(ch.stdout, Box::new(std::io::stdout()));
    let mut err = Stream::new(ch.stderr, Box::new(std::io::stderr()));
    let mut started = false;
    let boot_timeout = boot_timeout();
    let boot_deadline = std::time::Instant::now() + boot_timeout;
    let mut exit: Option<(i32, u64, u64)> = None;
    loop {
        if let Some((status, n_out, n_err)) = exit
            && out.count >= n_out
            && err.count >= n_err
        {
            let _ = proto::send(&mut ctl_writer, &HostMessage::Done);
            drop(stdin);
            return Ok(status);
        }
        let deadline = (!started).then_some(boot_deadline);
        let Some(ready) = wait_readable(
            &control,
            &out,
            exit.is_none_or(|(_, n, _)| out.count < n),
            &err,
            exit.is_none_or(|(_, _, n)| err.count < n),
            signals,
            deadline,
        )?
        else {
            return Err(stopped(&format!(
                "the guest did not start the target within {} s; if KVM misbehaves on this host, set {ACCEL_ENV}=tcg",
                boot_timeout.as_secs_f64()
            )));
        };
        if ready.signal
            && let Some(got) = signals.read()
        {
            let signal = got.signal;
            if signal == libc::SIGWINCH {
                if let Some(size) = request.tty.and_then(|_| window_size()) {
                    proto::send(&mut ctl_writer, &HostMessage::Resize(size)).map_err(ctl_err)?;
                }
                continue;
            }
            if !started {
                // A stop and continue of the caller does not end the call.
                if signal == libc::SIGCONT {
                    continue;
                }
                return Ok(128 + signal);
            }
            proto::send(&mut ctl_writer, &HostMessage::Signal(signal)).map_err(ctl_err)?;
        }
        if ready.out && !out.pump()? {
            return Err(stopped(""));
        }
        if ready.err && !err.pump()? {
            return Err(stopped(""));
        }
        if ready.control {
            match proto::receive::<GuestMessage>(&mut control).map_err(ctl_err)? {
                Some(GuestMessage::Started) => started = true,
                Some(GuestMessage::Exit {
                    status,
                    stdout,
                    stderr,
                }) => exit = Some((status, stdout, stderr)),
                Some(GuestMessage::Error(message)) => return Err(Error::Guest { message }),
                None if exit.is_some() => {
                    return Err(stopped(
                        "the control channel closed before all output arrived",
                    ));
                }
                None => return Err(stopped("")),
            }
        }
    }
}

fn stopped(detail: &str) -> Error {
    Error::Stopped {
        detail: detail.to_string(),
    }
}

/// Which sources have something (data, end of file or an error) to read.
#[derive(Debug, Default)]
struct Ready {
    control: bool,
    out: bool,
    err: bool,
    signal: bool,
}

/// How long a guest may take to start the target: `CAIRN_VM_BOOT_TIMEOUT` seconds, by
/// default 120 (a TCG boot takes seconds; a guest hung in a broken KVM never starts).
fn boot_timeout() -> std::time::Duration {
    std::env::var(BOOT_TIMEOUT_ENV)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(std::time::Duration::from_secs_f64)
        .unwrap_or(DEFAULT_BOOT_TIMEOUT)
}

/// Polls the sources still expected to deliver; `None` when `deadline` passed first.
fn wait_readable(
    control: &BufReader<UnixStream>,
    out: &Stream,
    want_out: bool,
    err: &Stream,
    want_err: bool,
    signals: &Signals,
    deadline: Option<std::time::Instant>,
) -> Result<Option<Ready>> {
    if !control.buffer().is_empty() {
        return Ok(Some(Ready {
            control: true,
            ..Ready::default()
        }));
    }
    let flags = PollFlags::POLLIN;
    let none = PollFlags::empty();
    let mut fds = [
        PollFd::new(control.get_ref().as_fd(), flags),
        PollFd::new(out.socket.as_fd(), if want_out { flags } else { none }),
        PollFd::new(err.socket.as_fd(), if want_err { flags } else { none }),
        PollFd::new(signals.as_fd(), flags),
    ];
    loop {
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Ok(None);
                }
                // Whole milliseconds, rounded up, capped at what poll takes.
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut fds, timeout) {
            Ok(0) => continue,
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(Error::Protocol {
                    port: "poll".into(),
                    reason: e.to_string(),
                });
            }
        }
    }
    let ready = |fd: &PollFd| {
        fd.revents().is_some_and(|r| {
            r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR)
        })
    };
    Ok(Some(Ready {
        control: ready(&fds[0]),
        out: want_out && ready(&fds[1]),
        err: want_err && ready(&fds[2]),
        signal: ready(&fds[3]),
    }))
}

/// One output stream: guest socket to the caller's descriptor, counted.
struct Stream {
    socket: UnixStream,
    sink: Box<dyn Write>,
    count: u64,
    /// The caller's side went away (a closed pipe): keep draining, stop writing.
    broken: bool,
}

impl Stream {
    fn new(socket: UnixStream, sink: Box<dyn Write>) -> Stream {
        Stream {
            socket,
            sink,
            count: 0,
            broken: false,
        }
    }

    /// Moves what is available; false at end of file.
    fn pump(&mut self) -> Result<bool> {
        let mut buf = [0u8; 65536];
        let n = match self.socket.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(true),
            Err(e) => {
                return Err(Error::Protocol {
                    port: "output".into(),
                    reason: e.to_string(),
                });
            }
        };
        if n == 0 {
            return Ok(false);
        }
        self.count += n as u64;
        if !self.broken && (self.sink.write_all(&buf[..n]).is_err() || self.sink.flush().is_err()) {
            self.broken = true;
        }
        Ok(true)
    }
}

/// Copies the caller's stdin to the guest, then ends it with a half-close (a full close
/// would make QEMU drop what the guest has not read yet).
fn copy_stdin(mut socket: UnixStream) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = [0u8; 65536];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if socket.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = socket.shutdown(std::net::Shutdown::Write);
}

/// The caller's `TERM` for a target with a terminal, unless the app sets its own.
fn pass_term(request: &mut Request) {
    let Some(term) = std::env::var_os("TERM") else {
        return;
    };
    if request.env.iter().any(|e| e.starts_with(b"TERM=")) {
        return;
    }
    let mut entry = b"TERM=".to_vec();
    entry.extend_from_slice(term.as_bytes());
    request.env.push(entry);
}

/// The caller's terminal, when stdin and stdout are one (as `ssh -t` decides).
fn caller_terminal() -> Option<proto::Tty> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    if !(nix::unistd::isatty(&stdin).unwrap_or(false)
        && nix::unistd::isatty(&stdout).unwrap_or(false))
    {
        return None;
    }
    Some(proto::Tty {
        size: window_size().unwrap_or(proto::WindowSize { rows: 24, cols: 80 }),
        stderr: nix::unistd::isatty(std::io::stderr()).unwrap_or(false),
    })
}

/// The size of the terminal on stdout.
fn window_size() -> Option<proto::WindowSize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ on stdout with a valid winsize to fill.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_row > 0).then_some(proto::WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Why the VM stopped early: what the relay saw (`detail`, empty when the channels just
/// closed because QEMU exited), with the guest init's own
/// message on the console when it left one, else QEMU's last message (QEMU also logs
/// harmless warnings, so it comes second), else the console's last lines.
fn why_stopped(detail: &str, qemu_log: &Path, console: &Path) -> String {
    match (detail.is_empty(), log_summary(qemu_log, console)) {
        (true, Some(summary)) => summary,
        (true, None) => "QEMU exited without a message".into(),
        (false, Some(summary)) => format!("{detail}: {summary}"),
        (false, None) => detail.to_string(),
    }
}

fn log_summary(qemu_log: &Path, console: &Path) -> Option<String> {
    let console_text =
        String::from_utf8_lossy(&std::fs::read(console).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = console_text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let prefix = crate::guest::LOG_PREFIX;
    if let Some(line) = lines
        .iter()
        .rev()
        .find_map(|l| l.find(prefix).map(|i| &l[i..]))
    {
        return Some(line.to_string());
    }
    let qemu_text = std::fs::read_to_string(qemu_log).unwrap_or_default();
    if let Some(line) = qemu_text
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
    {
        return Some(match line.starts_with("qemu") {
            true => line.to_string(),
            false => format!("qemu: {line}"),
        });
    }
    let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
    (!tail.is_empty()).then(|| format!("console: {tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_in_paths_are_doubled() {
        assert_eq!(
            escape_option(Path::new("/a,b/c")),
            OsString::from("/a,,b/c")
        );
    }

    #[test]
    fn request_bytes_are_exact() {
        let launch = Launch::new(vec!["/bin/sh".into(), "".into(), "a b".into(), "%x".into()]);
        let r = launch.request();
        assert_eq!(
            r.argv,
            vec![b"/bin/sh".to_vec(), vec![], b"a b".to_vec(), b"%x".to_vec()]
        );
        assert!(r.env.iter().any(|e| e.starts_with(b"PATH=")));
        assert_eq!(r.cwd, b"/");
    }

    #[test]
    fn early_stops_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = dir.path().join("q");
        let console = dir.path().join("c");
        std::fs::write(&qemu, "").unwrap();
        std::fs::write(&console, "boot\nreboot\n").unwrap();
        assert_eq!(why_stopped("", &qemu, &console), "console: boot | reboot");
        std::fs::write(&qemu, "qemu-system-x86_64: -kernel x: no such file\n").unwrap();
        assert_eq!(
            why_stopped("", &qemu, &console),
            "qemu-system-x86_64: -kernel x: no such file"
        );
        std::fs::write(&qemu, "Could not access KVM kernel module\n").unwrap();
        assert_eq!(
            why_stopped("", &qemu, &console),
            "qemu: Could not access KVM kernel module"
        );
        let guest = "boot\n[    1.5] cairn guest: no port cairn.control\nreboot\n";
        std::fs::write(&console, guest).unwrap();
        assert_eq!(
            why_stopped("", &qemu, &console),
            "cairn guest: no port cairn.control"
        );
        assert_eq!(
            why_stopped("late", &qemu, &console),
            "late: cairn guest: no port cairn.control"
        );
        std::fs::write(&console, "").unwrap();
        std::fs::write(&qemu, "").unwrap();
        assert_eq!(why_stopped("late", &qemu, &console), "late");
        assert_eq!(
            why_stopped("", &qemu, &console),
            "QEMU exited without a message"
        );
    }
}
