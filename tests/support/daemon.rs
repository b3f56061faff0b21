//! A real `cairn daemon` for end-to-end tests, and the registries-poc network schema
//! signed with a trusted key.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::World;

pub const NETWORK: &str = include_str!("../../crates/daemon/tests/network.yaml");

pub fn run_dir(world: &World) -> PathBuf {
    world.path("run/cairn")
}

pub fn admin_socket(world: &World) -> PathBuf {
    run_dir(world).join("cairn.sock")
}

pub fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// `cairn daemon` as a child; SIGTERM and wait on drop.
pub struct Daemon {
    pub child: Child,
}

impl Daemon {
    pub fn start(world: &World) -> Daemon {
        Daemon::start_with(world, |_| {})
    }

    pub fn start_with(world: &World, tweak: impl FnOnce(&mut std::process::Command)) -> Daemon {
        let mut cmd = world.cairn_std();
        cmd.arg("daemon").stdout(Stdio::null());
        tweak(&mut cmd);
        let child = cmd.spawn().unwrap();
        let socket = admin_socket(world);
        wait_for("the daemon's socket", || {
            UnixStream::connect(&socket).is_ok()
        });
        Daemon { child }
    }

    /// Sends a signal by name (`TERM`, `HUP`) with kill(1): the test crate has no libc.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal("TERM");
            let _ = self.child.wait();
        }
    }
}

/// Creates the `acme` key, trusts it, signs the network schema; returns the signed file.
pub fn signed_schema(world: &World) -> PathBuf {
    world
        .cairn()
        .args(["conf", "key", "create", "acme"])
        .assert()
        .success();
    let out = world
        .cairn()
        .args(["conf", "key", "export", "acme"])
        .output()
        .unwrap();
    let public = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(public.starts_with("ed25519:"), "{public}");
    world
        .cairn()
        .args(["conf", "trust", "add", "acme", &public])
        .assert()
        .success();
    let schema = world.path("network.yaml");
    std::fs::write(&schema, NETWORK).unwrap();
    let out = world
        .cairn()
        .args(["conf", "sign"])
        .arg(&schema)
        .args(["--key", "acme"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let signed = world.path("network.signed");
    std::fs::write(&signed, out.stdout).unwrap();
    signed
}

/// `cairn conf schema add SIGNED` through the world's running daemon.
pub fn add_schema(world: &World, signed: &std::path::Path) {
    world
        .cairn()
        .args(["conf", "schema", "add"])
        .arg(signed)
        .assert()
        .success();
}
