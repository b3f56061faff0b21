//! End-to-end tests of the vm engine: `cairn vm pull|ls|rm|run` and apps registered with
//! `--vm`, booting real micro-VMs (QEMU microvm under TCG, Debian's cloud kernel, a busybox
//! rootfs) whose init is the `cairn` binary under test.
//!
//! The kernel package comes from `CAIRN_TEST_KERNEL_DEB`, else from
//! `/var/cache/cairn-test/linux-image-*.deb`; without one (or without QEMU, e2fsprogs or
//! busybox) the booting tests skip with a message. Boots take seconds under TCG, so each
//! one checks many things at once.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::vm::{boot_prerequisites, on_path};
use support::{World, skip};

/// A busybox root filesystem directory.
fn busybox_rootfs(dir: &Path) -> PathBuf {
    support::vm::busybox_rootfs(
        dir,
        &["cat", "echo", "true", "sleep", "printf", "head", "stty"],
    )
}

/// A world with VM `leap` pulled from the kernel package and a busybox rootfs; TCG forced.
fn world_with_vm(deb: &Path) -> World {
    let world = World::new();
    let rootfs = busybox_rootfs(world.root());
    world
        .cairn()
        .args(["vm", "pull", "leap", "--kernel"])
        .arg(deb)
        .arg("--rootfs")
        .arg(&rootfs)
        .assert()
        .success();
    world
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn one_error_line(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(out.stdout.is_empty());
    err
}

/// Everything under `dir`, relative, sorted (to see that nothing was written).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// Bad input is one error line, exit status 1, and nothing stored: no kernel, a file that
/// is not a kernel, a bad name, a rootfs that is none, an unknown vm for an app.
#[test]
fn bad_inputs_store_nothing() {
    let world = World::new();
    let rootfs = busybox_like_dir(world.root());
    let not_kernel = world.path("notes.txt");
    std::fs::write(&not_kernel, "just text\n").unwrap();
    let before = tree(&world.path("var"));
    let pull = |name: &str, kernel: &Path, rootfs: &Path| {
        world
            .cairn()
            .args(["vm", "pull", name, "--kernel"])
            .arg(kernel)
            .arg("--rootfs")
            .arg(rootfs)
            .output()
            .unwrap()
    };
    let err = one_error_line(&pull("leap", &world.path("missing.deb"), &rootfs));
    assert!(
        err.contains("missing.deb") && err.contains("No such file"),
        "{err}"
    );
    let err = one_error_line(&pull("leap", &not_kernel, &rootfs));
    assert!(err.contains("notes.txt: not a kernel image"), "{err}");
    let err = one_error_line(&pull("Bad/Name", &not_kernel, &rootfs));
    assert!(err.contains("invalid vm name"), "{err}");
    let mut bz = vec![0u8; 0x400];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    let kernel = world.path("bzImage");
    std::fs::write(&kernel, bz).unwrap();
    let err = one_error_line(&pull("leap", &kernel, &not_kernel));
    assert!(err.contains("not a rootfs"), "{err}");
    assert_eq!(tree(&world.path("var")), before);

    let out = world
        .cairn()
        .args([
            "app", "register", "mybash", "--vm", "nope", "--target", "/bin/sh",
        ])
        .output()
        .unwrap();
    let err = one_error_line(&out);
    assert!(err.contains("no vm named nope"), "{err}");
    assert!(!world.path("etc/cairn/apps/mybash.yaml").exists());
    assert!(!world.path("usr/local/bin/mybash").exists());
    let out = world.cairn().args(["vm", "rm", "nope"]).output().unwrap();
    assert!(one_error_line(&out).contains("no vm named nope"));
    let out = world.cairn().args(["vm", "ls", "--json"]).output().unwrap();
    assert_eq!(text(&out.stdout).trim(), "[]");
}

fn busybox_like_dir(dir: &Path) -> PathBuf {
    let root = dir.join("tree");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/sh"), "#!\n").unwrap();
    root
}

/// Pull, list, a second pull refused without --force, the boot timeout, removal refused
/// while an app uses the VM (naming it), then allowed.
#[test]
fn vm_pull_ls_rm() {
    let deb = match boot_prerequisites() {
        Ok(deb) => deb,
        Err(why) => return skip(&why),
    };
    let world = world_with_vm(&deb);
    let out = world.cairn().args(["vm", "ls", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["name"], "leap", "{list}");
    assert!(list[0]["kernel_version"].as_str().is_some(), "{list}");
    // The modules the guest loads (which ones depends on the kernel's configuration) are
    // stored beside the kernel.
    for module in list[0]["modules"].as_array().unwrap() {
        let file = format!(
            "var/lib/cairn/vms/leap/modules/{}.ko",
            module.as_str().unwrap()
        );
        assert!(world.path(&file).is_file(), "{file}");
    }
    let table = world.cairn().args(["vm", "ls"]).output().unwrap();
    assert!(
        text(&table.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("leap ")
    );

    let again = world
        .cairn()
        .args(["vm", "pull", "leap", "--kernel"])
        .arg(&deb)
        .arg("--rootfs")
        .arg(world.path("rootfs"))
        .output()
        .unwrap();
    assert!(one_error_line(&again).contains("already exists"));

    // A guest that does not start the target in time is stopped (no boot takes 0.2 s).
    let late = world
        .cairn()
        .env("CAIRN_VM_ACCEL", "tcg")
        .env("CAIRN_VM_BOOT_TIMEOUT", "0.2")
        .args(["vm", "run", "leap", "--", "/bin/true"])
        .output()
        .unwrap();
    let err = one_error_line(&late);
    assert!(
        err.contains("the guest did not start the target within 0.2 s"),
        "{err}"
    );

    world
        .cairn()
        .args([
            "app", "register", "mybash", "--vm", "leap", "--target", "/bin/sh",
        ])
        .assert()
        .success();
    let busy = world.cairn().args(["vm", "rm", "leap"]).output().unwrap();
    assert!(one_error_line(&busy).contains("used by app mybash"));
    world
        .cairn()
        .args(["app", "rm", "mybash"])
        .assert()
        .success();
    world.cairn().args(["vm", "rm", "leap"]).assert().success();
    let out = world.cairn().args(["vm", "ls", "--json"]).output().unwrap();
    assert_eq!(text(&out.stdout).trim(), "[]");
    assert!(!world.path("var/lib/cairn/vms/leap").exists());
}

/// Runs the app command at `path` with `args` and `stdin` (all of it, then end of file),
/// TCG forced.
fn call(world: &World, path: &Path, args: &[&str], stdin: Vec<u8>) -> Output {
    let mut child = Command::new(path)
        .args(args)
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("CAIRN_VM_ACCEL", "tcg")
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written aside: a target echoing its input blocks once nobody reads its output.
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

/// The test the issue asks for: an app in a VM behaves like a local program. One boot
/// checks the exit status, stdout and stderr apart, stdin piped through (1 MB), argv
/// exact, the app's environment, and a writable root (the overlay, of the size asked);
/// a second one a guest-side failure.
#[test]
fn vm_app_runs_one_command_and_returns_its_status() {
    let deb = match boot_prerequisites() {
        Ok(deb) => deb,
        Err(why) => return skip(&why),
    };
    let world = world_with_vm(&deb);
    world
        .cairn()
        .args([
            "app", "register", "mybash", "--vm", "leap", "--target", "/bin/sh",
        ])
        .args(["--overlay-size", "64M", "--env", "APP_VAR=set"])
        .assert()
        .success();
    let app = world.path("usr/local/bin/mybash");
    // The overlay is 64M: 70 MB do not fit.
    let script = r#"echo out; echo err >&2; cat; printf '[%s]' "$@"; echo;
        echo "$APP_VAR" > /written && cat /written;
        head -c 70000000 /dev/zero > /big 2>/dev/null && echo fits || echo full; exit 42"#;
    // A megabyte of input (not a multiple of any buffer) goes through `cat` and back.
    let input: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
    let out = call(
        &world,
        &app,
        &["-c", script, "argv0", "a b", "", "%x", "@y", "--help"],
        input.clone(),
    );
    assert_eq!(out.status.code(), Some(42), "{}", text(&out.stderr));
    let mut expected = b"out\n".to_vec();
    expected.extend_from_slice(&input);
    expected.extend_from_slice(b"[a b][][%x][@y][--help]\nset\nfull\n");
    assert!(
        out.stdout == expected,
        "stdout differs: {} bytes, expected {}",
        out.stdout.len(),
        expected.len()
    );
    assert_eq!(text(&out.stderr), "err\n");
    assert!(
        tree(&world.path("run/cairn/instances"))
            .iter()
            .all(|p| p == "mybash")
    );

    let out = world
        .cairn()
        .env("CAIRN_VM_ACCEL", "tcg")
        .args(["vm", "run", "leap", "--", "/bin/missing", "x"])
        .output()
        .unwrap();
    let err = one_error_line(&out);
    assert!(
        err.contains("the guest failed: cannot run /bin/missing"),
        "{err}"
    );
}

/// Much output arrives whole (2 MB through a 64 KiB-buffered channel), and a signal sent to
/// the launcher (`cairn app stop`) reaches the target in the guest: status 128+15.
#[test]
fn vm_app_streams_and_signals() {
    let deb = match boot_prerequisites() {
        Ok(deb) => deb,
        Err(why) => return skip(&why),
    };
    let world = world_with_vm(&deb);
    world
        .cairn()
        .args([
            "app", "register", "big", "--vm", "leap", "--target", "/bin/sh",
        ])
        .assert()
        .success();
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut child = Command::new(world.path("usr/local/bin/big"))
        .args(["-c", "cat /bin/busybox; echo; echo ready; exec sleep 600"])
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("CAIRN_VM_ACCEL", "tcg")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut received = vec![0u8; busybox.len()];
    stdout.read_exact(&mut received).unwrap();
    assert!(
        received == busybox,
        "the guest's stdout differs from /bin/busybox"
    );
    let mut lines = String::new();
    stdout.read_line(&mut lines).unwrap();
    stdout.read_line(&mut lines).unwrap();
    assert_eq!(lines, "\nready\n");
    world
        .cairn()
        .args(["app", "stop", &format!("big@{}", child.id())])
        .assert()
        .success();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// The QEMU processes whose command line mentions `root` (this world's VM store).
fn qemu_pids(root: &Path) -> Vec<i32> {
    let needle = root.as_os_str().as_encoded_bytes();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let is_qemu =
                cmdline.starts_with(b"/usr/bin/qemu-system") || cmdline.starts_with(b"qemu-system");
            (is_qemu && cmdline.windows(needle.len()).any(|w| w == needle)).then_some(pid)
        })
        .collect()
}

/// A launcher killed outright (SIGKILL, no chance to clean up) takes its VM with it. (The
/// VM comes from a tar archive with an extra initramfs: both boot like the plain kind.)
#[test]
fn killed_launcher_leaves_no_vm() {
    use nix::libc;
    let deb = match boot_prerequisites() {
        Ok(deb) => deb,
        Err(why) => return skip(&why),
    };
    // This VM is pulled from a tar archive of the rootfs, with an extra initramfs.
    let world = World::new();
    let rootfs = busybox_rootfs(world.root());
    let tar_path = world.path("rootfs.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar_path)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let mut extra = cairn_vm::cpio::Writer::new(Vec::new());
    extra
        .file("extra-file", 0o644, b"from the extra initramfs\n")
        .unwrap();
    let initrd = world.path("extra.cpio");
    std::fs::write(&initrd, extra.finish().unwrap()).unwrap();
    world
        .cairn()
        .args(["vm", "pull", "leap", "--kernel"])
        .arg(&deb)
        .arg("--rootfs")
        .arg(&tar_path)
        .arg("--initrd")
        .arg(&initrd)
        .assert()
        .success();
    let mut child = world
        .cairn_std()
        .env("CAIRN_VM_ACCEL", "tcg")
        .args([
            "vm",
            "run",
            "leap",
            "--",
            "/bin/sh",
            "-c",
            "echo ready; exec sleep 600",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    let pids = qemu_pids(world.root());
    assert_eq!(pids.len(), 1, "{pids:?}");
    // SAFETY: pidfd_open on a pid that is alive (its launcher still waits for it).
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pids[0], 0) } as i32;
    assert!(fd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    child.kill().unwrap();
    child.wait().unwrap();
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // Readable when QEMU has exited; the timeout only bounds a failure.
    // SAFETY: poll on one valid pollfd.
    let ready = unsafe { libc::poll(&mut poll, 1, 60_000) };
    assert_eq!(ready, 1, "QEMU outlived its killed launcher");
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    // The killed launcher's instance directory goes at the next call (cut short here).
    let instances = || {
        std::fs::read_dir(world.path("run/cairn/vm-run"))
            .unwrap()
            .count()
    };
    assert_eq!(instances(), 1);
    let late = world
        .cairn()
        .env("CAIRN_VM_ACCEL", "tcg")
        .env("CAIRN_VM_BOOT_TIMEOUT", "0.1")
        .args(["vm", "run", "leap", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_eq!(late.status.code(), Some(1));
    assert_eq!(instances(), 0);
}

/// A kernel QEMU cannot boot is reported in one line with QEMU's reason, and leaves no
/// instance behind. (No kernel package needed: the "kernel" is a bare bzImage header.)
#[test]
fn unbootable_kernel_is_reported() {
    for (program, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("mkfs.ext4", "e2fsprogs"),
    ] {
        if !on_path(program) {
            return skip(&format!("{program} is not installed (package {package})"));
        }
    }
    let world = World::new();
    let mut bz = vec![0u8; 0x1000];
    bz[0x202..0x206].copy_from_slice(b"HdrS");
    let kernel = world.path("bzImage");
    std::fs::write(&kernel, bz).unwrap();
    world
        .cairn()
        .args(["vm", "pull", "fake", "--kernel"])
        .arg(&kernel)
        .arg("--rootfs")
        .arg(busybox_like_dir(world.root()))
        .assert()
        .success();
    let out = world
        .cairn()
        .env("CAIRN_VM_ACCEL", "tcg")
        .args(["vm", "run", "fake", "--", "/bin/sh"])
        .output()
        .unwrap();
    let err = one_error_line(&out);
    assert!(
        err.contains("the vm stopped before the target finished (qemu"),
        "{err}"
    );
    assert!(tree(&world.path("run/cairn/vm-run")).is_empty());
}

/// A caller with a terminal gives the target one (its size too), stderr apart when the
/// caller's is not a terminal; Ctrl-C typed on it interrupts the target in the guest.
#[test]
fn vm_app_gets_a_terminal_when_the_caller_has_one() {
    let deb = match boot_prerequisites() {
        Ok(deb) => deb,
        Err(why) => return skip(&why),
    };
    let world = world_with_vm(&deb);
    world
        .cairn()
        .args([
            "app", "register", "term", "--vm", "leap", "--target", "/bin/sh",
        ])
        .assert()
        .success();
    let size = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&size), None).unwrap();
    let slave = std::fs::File::from(pty.slave);
    let script = "test -t 0 && test -t 1 && echo tty; test -t 2 || echo stderr apart; \
        stty size; echo err >&2; echo ready; exec sleep 600";
    let child = Command::new(world.path("usr/local/bin/term"))
        .args(["-c", script])
        .env_clear()
        .env("CAIRN_ROOT", world.root())
        .env("CAIRN_VM_ACCEL", "tcg")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(slave);
    let mut master = std::fs::File::from(pty.master);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.ends_with(b"ready\r\n") {
        let n = master.read(&mut buf).unwrap();
        assert!(n > 0, "{}", text(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    assert_eq!(text(&seen), "tty\r\nstderr apart\r\n30 100\r\nready\r\n");
    master.write_all(b"\x03").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 2), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr), "err\n");
}
