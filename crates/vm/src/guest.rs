//! The guest side: `cairn` as the VM's init (PID 1).
//!
//! Steps: mount devtmpfs, proc and sysfs; load the modules listed in the initramfs; find
//! the virtio-serial ports by name; read the request from the control port; mount the
//! rootfs disk read-only under an overlay whose upper layer is a tmpfs of the requested
//! size; move into it; run the target with stdin on the stdin port and stdout/stderr on
//! pipes relayed (and counted) to their ports; forward signals from the control port; when
//! the target has exited, kill what is left, report the status with the byte counts, and
//! power off once the host says it has everything.
//!
//! Failures after the control port is open are reported over it as one line; earlier ones
//! go to the console (`cairn guest: ...`), which the host shows.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{MsFlags, mount};

use crate::initramfs::LOAD_LIST;
use crate::proto::{self, GuestMessage, HostMessage, Request};

/// How the guest init's console messages start (the host looks for it).
pub const LOG_PREFIX: &str = "cairn guest:";
/// How long devices may take to appear after their driver is loaded (TCG is slow).
const DEVICE_WAIT: Duration = Duration::from_secs(60);

/// True when this process is a VM's init started by Cairn: PID 1, started as `/init`, and
/// the kernel command line carries the marker. A container's PID 1 has a mounted /proc
/// without the marker, or another name.
pub fn is_guest() -> bool {
    if std::process::id() != 1 {
        return false;
    }
    if std::env::args_os().next().as_deref() != Some(std::ffi::OsStr::new("/init")) {
        return false;
    }
    let mounted_here = !Path::new("/proc/self").exists()
        && mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::empty(),
            None::<&str>,
        )
        .is_ok();
    let marked = std::fs::read_to_string("/proc/cmdline")
        .is_ok_and(|c| c.split_whitespace().any(|w| w == proto::GUEST_MARKER));
    if mounted_here && !marked {
        let _ = nix::mount::umount("/proc");
    }
    marked
}

/// Runs the guest; never returns (the VM powers off).
pub fn init() -> ! {
    match setup() {
        Ok(ports) => serve(ports),
        Err(message) => log(&message),
    }
    power_off()
}

fn log(message: &str) {
    let line = format!("{LOG_PREFIX} {}\n", message.replace('\n', " "));
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = kmsg.write_all(line.as_bytes());
    }
}

fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // reboot(2) does not return on success; if it failed, PID 1 must not exit either.
    loop {
        std::thread::park();
    }
}

/// The four ports, opened.
struct Ports {
    control: File,
    stdin: File,
    stdout: File,
    stderr: File,
}

fn setup() -> Result<Ports, String> {
    for (fs, dir) in [("devtmpfs", "/dev"), ("sysfs", "/sys")] {
        mount(Some(fs), dir, Some(fs), MsFlags::MS_NOSUID, None::<&str>)
            .map_err(|e| format!("cannot mount {fs} on {dir}: {e}"))?;
    }
    if !Path::new("/proc/self").exists() {
        mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("cannot mount proc: {e}"))?;
    }
    load_modules()?;
    let deadline = Instant::now() + DEVICE_WAIT;
    let open = |name: &str, write: bool| -> Result<File, String> {
        let dev = wait_for_port(name, deadline)?;
        std::fs::OpenOptions::new()
            .read(!write || name == proto::PORT_CONTROL)
            .write(write)
            .open(&dev)
            .map_err(|e| format!("cannot open {} ({name}): {e}", dev.display()))
    };
    Ok(Ports {
        control: open(proto::PORT_CONTROL, true)?,
        stdin: open(proto::PORT_STDIN, false)?,
        stdout: open(proto::PORT_STDOUT, true)?,
        stderr: open(proto::PORT_STDERR, true)?,
    })
}

/// Loads the modules the initramfs lists, in order; built-in or already loaded is fine.
fn load_modules() -> Result<(), String> {
    let list = match std::fs::read_to_string(LOAD_LIST) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{LOAD_LIST}: {e}")),
    };
    for name in list.lines().filter(|l| !l.is_empty()) {
        let path = Path::new(crate::initramfs::MODULES_DIR).join(format!("{name}.ko"));
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // SAFETY: finit_module with an open descriptor and a NUL-terminated empty string.
        let rc =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), c"".as_ptr(), 0) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EEXIST) {
                return Err(format!("cannot load module {name}: {err}"));
            }
        }
    }
    Ok(())
}

/// The device of the virtio-serial port named `name`, once the driver has created it.
fn wait_for_port(name: &str, deadline: Instant) -> Result<PathBuf, String> {
    loop {
        if let Ok(entries) = std::fs::read_dir("/sys/class/virtio-ports") {
            for entry in entries.flatten() {
                let named = std::fs::read_to_string(entry.path().join("name"))
                    .is_ok_and(|n| n.trim_end() == name);
                let dev = Path::new("/dev").join(entry.file_name());
                if named && dev.exists() {
                    return Ok(dev);
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no virtio-serial port named {name}"));
        }
        // Device discovery has no notification short of a uevent socket; poll briefly.
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn wait_for_block(dev: &str, deadline: Instant) -> Result<(), String> {
    while !Path::new("/dev").join(dev).exists() {
        if Instant::now() > deadline {
            return Err(format!("no disk /dev/{dev} (the rootfs)"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

fn serve(ports: Ports) {
    let Ports {
        control,
        stdin,
        stdout,
        stderr,
    } = ports;
    let reply = match control.try_clone() {
        Ok(c) => c,
        Err(e) => return log(&format!("control port: {e}")),
    };
    let reply = std::sync::Arc::new(std::sync::Mutex::new(reply));
    let mut reader = BufReader::new(control);
    let request = match proto::receive::<HostMessage>(&mut reader) {
        Ok(Some(HostMessage::Run(r))) => r,
        Ok(other) => return log(&format!("expected a run request, got {other:?}")),
        Err(e) => return log(&format!("control port: {e}")),
    };
    let report = match run(&request, reader, &reply, stdin, stdout, stderr) {
        Ok((status, out, err)) => GuestMessage::Exit {
            status,
            stdout: out,
            stderr: err,
        },
        Err(message) => GuestMessage::Error(message),
    };
    if send(&reply, &report).is_err() {
        log("cannot report to the host");
    }
    // Powering off now could drop the report inside QEMU: the host ends the VM once it has
    // everything (and the control thread, when the target ran, powers off on Done).
    loop {
        std::thread::park();
    }
}

type Reply = std::sync::Arc<std::sync::Mutex<File>>;

fn send(reply: &Reply, message: &GuestMessage) -> std::io::Result<()> {
    let mut port = reply
        .lock()
        .map_err(|_| std::io::Error::other("control port lock"))?;
    proto::send(&mut *port, message)
}

/// Runs the request; returns (status, stdout bytes, stderr bytes).
fn run(
    request: &Request,
    control: BufReader<File>,
    reply: &Reply,
    stdin: File,
    stdout_port: File,
    stderr_port: File,
) -> Result<(i32, u64, u64), String> {
    prepare_root(request.overlay_size)?;
    let argv: Vec<OsString> = request
        .argv
        .iter()
        .map(|a| OsString::from_vec(a.clone()))
        .collect();
    let Some(program) = argv.first() else {
        return Err("empty argv".into());
    };
    let pty = match &request.tty {
        Some(tty) => Some(open_pty(tty)?),
        None => None,
    };
    let mut cmd = Command::new(program);
    cmd.arg0(program)
        .args(&argv[1..])
        .env_clear()
        .current_dir(OsString::from_vec(request.cwd.clone()));
    for entry in &request.env {
        let text = OsString::from_vec(entry.clone());
        let bytes = text.as_encoded_bytes();
        if let Some(eq) = bytes.iter().position(|&b| b == b'=') {
            cmd.env(
                OsString::from_vec(bytes[..eq].to_vec()),
                OsString::from_vec(bytes[eq + 1..].to_vec()),
            );
        }
    }
    let stderr_on_tty = request.tty.is_some_and(|t| t.stderr);
    let terminal = match &pty {
        Some(pty) => {
            let slave = |what: &str| {
                pty.slave
                    .try_clone()
                    .map(Stdio::from)
                    .map_err(|e| format!("terminal {what}: {e}"))
            };
            cmd.stdin(slave("stdin")?).stdout(slave("stdout")?);
            cmd.stderr(if stderr_on_tty {
                slave("stderr")?
            } else {
                Stdio::piped()
            });
            true
        }
        None => {
            cmd.stdin(Stdio::from(OwnedFd::from(
                stdin.try_clone().map_err(|e| e.to_string())?,
            )))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
            false
        }
    };
    // The target leads its own session, like a program started by a login, with the
    // terminal (if any) as its controlling one.
    let session = move || {
        // SAFETY: setsid is async-signal-safe and has no memory arguments.
        unsafe { libc::setsid() };
        // SAFETY: TIOCSCTTY on the terminal just made stdin takes an integer argument.
        if terminal && unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook makes only async-signal-safe calls and allocates nothing.
    unsafe { cmd.pre_exec(session) };
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    // The command keeps copies of the terminal's slave side; they must go, or the master
    // would never see the end of the output.
    drop(cmd);
    let pid = child.id() as libc::pid_t;
    let (out_relay, master) = match pty {
        Some(Pty { master, slave }) => {
            drop(slave);
            let reader = File::from(master.try_clone().map_err(|e| e.to_string())?);
            let writer = File::from(master.try_clone().map_err(|e| e.to_string())?);
            std::thread::spawn(move || copy_counted(stdin, writer));
            (
                std::thread::spawn(move || copy_counted(reader, stdout_port)),
                Some(master),
            )
        }
        None => {
            let out = child.stdout.take().ok_or("no stdout pipe")?;
            (
                std::thread::spawn(move || copy_counted(out, stdout_port)),
                None,
            )
        }
    };
    let err_relay = match child.stderr.take() {
        Some(err) => std::thread::spawn(move || copy_counted(err, stderr_port)),
        None => std::thread::spawn(|| 0),
    };
    std::thread::spawn(move || control_loop(control, pid, master));
    send(reply, &GuestMessage::Started).map_err(|e| format!("control port: {e}"))?;
    let status = cairn_process::reap::blocking_until(pid);
    // Whatever the target left behind would hold the pipes open: PID 1 ends it all.
    // SAFETY: kill(-1) from PID 1 signals every other process of the guest.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    cairn_process::reap::all();
    let n_out = out_relay.join().map_err(|_| "stdout relay panicked")?;
    let n_err = err_relay.join().map_err(|_| "stderr relay panicked")?;
    Ok((status, n_out, n_err))
}

fn copy_counted(mut from: impl Read, mut to: File) -> u64 {
    let mut buf = [0u8; 65536];
    let mut total = 0;
    loop {
        match from.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return total;
                }
                total += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return total,
        }
    }
}

/// Signals for the target, sizes for its terminal; power off when the host is done (or
/// gone).
fn control_loop(mut control: BufReader<File>, pid: libc::pid_t, master: Option<OwnedFd>) {
    loop {
        match proto::receive::<HostMessage>(&mut control) {
            Ok(Some(HostMessage::Signal(sig))) => {
                // SAFETY: kill with a signal number from the host; an invalid one fails.
                unsafe { libc::kill(pid, sig) };
            }
            Ok(Some(HostMessage::Resize(size))) => {
                if let Some(master) = &master {
                    let ws = winsize(size);
                    // SAFETY: TIOCSWINSZ on the terminal's master with a valid winsize;
                    // the kernel sends SIGWINCH to the foreground process group.
                    unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
                }
            }
            Ok(Some(HostMessage::Done)) | Ok(None) | Err(_) => power_off(),
            Ok(Some(HostMessage::Run(_))) => {}
        }
    }
}

/// A pseudo-terminal of the guest's own devpts instance.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
}

fn winsize(size: proto::WindowSize) -> libc::winsize {
    libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn open_pty(tty: &proto::Tty) -> Result<Pty, String> {
    let pts = Path::new("/dev/pts");
    std::fs::create_dir_all(pts).map_err(|e| format!("/dev/pts: {e}"))?;
    if !Path::new("/dev/pts/ptmx").exists() {
        mount(
            Some("devpts"),
            pts,
            Some("devpts"),
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )
        .map_err(|e| format!("cannot mount devpts: {e}"))?;
    }
    let pty = nix::pty::openpty(Some(&winsize(tty.size)), None)
        .map_err(|e| format!("cannot open a terminal: {e}"))?;
    Ok(Pty {
        master: pty.master,
        slave: pty.slave,
    })
}

/// The rootfs disk read-only under an overlay with a tmpfs upper layer, made the root.
fn prepare_root(overlay_size: u64) -> Result<(), String> {
    let deadline = Instant::now() + DEVICE_WAIT;
    wait_for_block("vda", deadline)?;
    let ro = MsFlags::MS_RDONLY;
    mount(Some("/dev/vda"), "/lower", Some("ext4"), ro, None::<&str>)
        .map_err(|e| format!("cannot mount the rootfs (/dev/vda, ext4): {e}"))?;
    let size = format!("size={overlay_size},mode=0755");
    mount(
        Some("cairn-rw"),
        "/rw",
        Some("tmpfs"),
        MsFlags::empty(),
        Some(size.as_str()),
    )
    .map_err(|e| format!("cannot mount the overlay's tmpfs: {e}"))?;
    for d in ["/rw/upper", "/rw/work"] {
        std::fs::create_dir(d).map_err(|e| format!("{d}: {e}"))?;
    }
    mount(
        Some("overlay"),
        "/newroot",
        Some("overlay"),
        MsFlags::empty(),
        Some("lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work"),
    )
    .map_err(|e| format!("cannot mount the overlay: {e}"))?;
    for (dir, fs) in [("dev", "devtmpfs"), ("proc", "proc"), ("sys", "sysfs")] {
        let target = Path::new("/newroot").join(dir);
        std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        mount(
            Some(fs),
            &target,
            Some(fs),
            MsFlags::MS_NOSUID,
            None::<&str>,
        )
        .map_err(|e| format!("cannot mount {fs} on {}: {e}", target.display()))?;
    }
    let tmp = Path::new("/newroot/tmp");
    if tmp.is_dir() {
        mount(
            Some("tmpfs"),
            tmp,
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some("mode=1777"),
        )
        .map_err(|e| format!("cannot mount /tmp: {e}"))?;
    }
    // The initramfs is the real root and cannot be pivoted away: move the overlay over
    // it and chroot, as switch_root does.
    std::env::set_current_dir("/newroot").map_err(|e| format!("/newroot: {e}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| format!("cannot move the new root: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("/: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::FromRawFd;

    #[test]
    fn not_a_guest_here() {
        assert!(!is_guest());
    }

    #[test]
    fn counted_copy() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = File::create(dir.path().join("o")).unwrap();
        let mut w = File::from(w);
        w.write_all(b"hello").unwrap();
        drop(w);
        // SAFETY: the descriptor is owned and not used elsewhere.
        let r = unsafe { File::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(r)) };
        assert_eq!(copy_counted(r, out), 5);
        assert_eq!(std::fs::read(dir.path().join("o")).unwrap(), b"hello");
    }
}
