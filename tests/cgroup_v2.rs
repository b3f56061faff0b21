//! The sandbox's cgroup v2 path, proven in a guest: this host's cgroups are hybrid (the
//! controllers live in v1 hierarchies), so `crates/sandbox/src/cgroup/v2.rs` cannot run here.
//!
//! One micro-VM (the vm engine's own machinery: `cairn vm pull` of Debian's cloud kernel, QEMU
//! microvm under TCG, `cairn` as the guest's init) boots with `cgroup_no_v1=all`; its program
//! ([`GUEST_SCRIPT`]) mounts a pure cgroup2 hierarchy at /sys/fs/cgroup, enables
//! `+memory +pids +cpu`, and runs `cairn run` (the binary under test, copied into the rootfs)
//! with a node whose `cgroup:` sets all three limits: as root (the sandbox's cgroup goes below
//! its own, the root), then as an unprivileged user (a user namespace) through a delegated
//! subtree given as `[cgroup] root`. It prints `KEY VALUE` lines; the checks are here.
//!
//! Skips (loudly) without a kernel package, QEMU, e2fsprogs or busybox, like tests/vm.rs.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::vm::{boot_prerequisites, busybox_rootfs};
use support::{World, skip, write};

/// The unprivileged user of the guest (an `/etc/passwd` line in its rootfs).
const GUEST_USER: (&str, u32) = ("cairnu", 1000);

/// The limits of node `lim`, as node.yaml says them and as the cgroup files read back.
const MEMORY_MAX: (&str, &str) = ("32M", "33554432");
const PIDS_MAX: u32 = 24;
const CPU_MAX: &str = "50000 100000";

/// The guest's program, run as root; it re-runs itself with `rootless` as the user.
///
/// `$READBACK` runs in the sandbox of `lim`, which shares the cgroup namespace and sees the
/// guest's cgroup2 mount at /cg: it names its own cgroup, reads the limit files there, and
/// burns CPU until cpu.stat shows 0.3 s used (or gives up), then reports how often it was
/// throttled. The whole program is bounded by `timeout` (nothing else stops a stuck guest).
/// `$FORKBOMB N` forks N sleepers, one "fork" line each (busybox sh exits at the first
/// failed fork). `$HOG N` reads N MiB into one buffer (dd's), all of it touched at once.
const GUEST_SCRIPT: &str = r#"export PATH=/bin
READBACK='p=$(cut -d: -f3 /proc/self/cgroup); d=/cg$p; echo "cgroup $p"
for f in memory.max memory.swap.max pids.max cpu.max; do echo "$f $(cat $d/$f)"; done
n=0; until [ "$(sed -n "s/^usage_usec //p" $d/cpu.stat)" -ge 300000 ] || [ $n = 1000 ]; do
  i=0; while [ $i -lt 300 ]; do i=$((i+1)); done; n=$((n+1))
done
echo "nr_throttled $(sed -n "s/^nr_throttled //p" $d/cpu.stat)"'
FORKBOMB='i=0; while [ $i -lt $0 ]; do sleep 30 & i=$((i+1)); echo fork; done'
HOG='dd if=/dev/zero of=/dev/null bs=$0M count=1 2>/dev/null && echo "survived $0"'

run() { cairn run --node "/nodes/$1" -- /bin/sh -c "$2" "$3"; }

# The limit cases as $1 (root or rootless), the sandboxes' cgroups made below $2.
cases() {
    export CAIRN_ROOT=/tmp/$1 HOME=/tmp/$1
    mkdir -p $CAIRN_ROOT/etc/cairn
    [ "$1" = rootless ] && printf '[cgroup]\nroot = "%s"\n' "$2" > $CAIRN_ROOT/etc/cairn/cairn.toml
    echo "$1.uid $(id -u)"
    run lim "$READBACK" 2>&1 | sed "s/^/$1./"
    echo "$1.forks $(run lim "$FORKBOMB" 100 2>/dev/null | grep -c fork)"
    out=$(run lim "$HOG" 64 2>&1); echo "$1.hog64 $? $(echo $out)"
    out=$(run lim "$HOG" 4 2>&1); echo "$1.hog4 $? $(echo $out)"
    echo "$1.leftover $(ls -d $2/cairn-* 2>/dev/null | wc -l)"
}

if [ "$1" = rootless ]; then cases rootless /sys/fs/cgroup/deleg; exit 0; fi

echo "cmdline $(cat /proc/cmdline)"
mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 10
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control || exit 11
echo "subtree_control $(cat /sys/fs/cgroup/cgroup.subtree_control)"
echo "v1_hierarchies $(grep -c ' cgroup ' /proc/mounts)"
cases root /sys/fs/cgroup
# Controls: the same programs without limits fork them all and keep their memory.
echo "control.forks $(run free "$FORKBOMB" 40 2>/dev/null | grep -c fork)"
out=$(run free "$HOG" 64 2>&1); echo "control.hog64 $? $(echo $out)"

# Delegation as cgroup-v2.rst describes it: the directory and its cgroup.procs,
# cgroup.threads and cgroup.subtree_control to the user, controllers enabled for its
# children; the user's shell in a leaf below it (no internal processes).
d=/sys/fs/cgroup/deleg
mkdir $d $d/user || exit 12
echo "+memory +pids +cpu" > $d/cgroup.subtree_control || exit 13
chown UID:UID $d $d/cgroup.procs $d/cgroup.threads $d/cgroup.subtree_control || exit 14
chown -R UID:UID $d/user || exit 15
sh -c "echo \$\$ > $d/user/cgroup.procs && exec su -s /bin/sh -c 'sh /cgroup-v2.sh rootless' USER"
echo "rootless.status $?"
"#;

/// Nodes of the guest: `lim` with all three limits, `free` with none.
fn node_yaml(alias: &str) -> String {
    let (share, limits, cg) = match alias {
        "lim" => (
            "  share: { cgroup: true }\n",
            format!(
                "  cgroup: {{ memory_max: {}, pids_max: {PIDS_MAX}, cpu_max: \"{CPU_MAX}\" }}\n",
                MEMORY_MAX.0
            ),
            "  - { mode: restricted, mount: /cg, path: /sys/fs/cgroup }\n",
        ),
        _ => ("", String::new(), ""),
    };
    format!(
        "node:\n  alias: {alias}\n  name: {alias}-cgroup-v2\nconfig:\n{share}  path: /bin\n{limits}\
         exports:\n  - {{ mode: restricted, mount: /bin, path: /bin }}\n{cg}\
         \x20 - {{ mode: proc, mount: /proc }}\n  - {{ mode: dev, mount: /dev }}\n\
         \x20 - {{ mode: tmpfs, mount: /tmp }}\n"
    )
}

/// The guest's rootfs: busybox, `cairn` (stripped: the debug build is ~200 MB), the script,
/// the nodes, and the user.
fn guest_rootfs(dir: &Path) -> std::path::PathBuf {
    let applets = [
        "cat", "chown", "cut", "grep", "head", "id", "ls", "mkdir", "mount", "printf", "sed",
        "sleep", "su", "timeout", "wc", "dd",
    ];
    let root = busybox_rootfs(dir, &applets);
    cairn_vm::initramfs::stripped_copy(&support::cairn_bin(), &root.join("bin/cairn")).unwrap();
    let (user, uid) = GUEST_USER;
    let script = GUEST_SCRIPT
        .replace("UID", &uid.to_string())
        .replace("USER", user);
    write(&root.join("cgroup-v2.sh"), &script);
    write(
        &root.join("etc/passwd"),
        &format!("root:x:0:0:root:/tmp:/bin/sh\n{user}:x:{uid}:{uid}::/tmp:/bin/sh\n"),
    );
    write(
        &root.join("etc/group"),
        &format!("root:x:0:\n{user}:x:{uid}:\n"),
    );
    for alias in ["lim", "free"] {
        write(
            &root.join("nodes").join(alias).join("etc/cairn/node.yaml"),
            &node_yaml(alias),
        );
    }
    root
}

/// The guest's `KEY VALUE` lines and the checks on them that failed: every check is made
/// (one boot shows all that is wrong), then the test fails on any.
struct Checks {
    got: BTreeMap<String, String>,
    failed: Vec<String>,
}

impl Checks {
    fn new(out: &str) -> Checks {
        let got = out
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.trim().to_string()))
            .collect();
        Checks {
            got,
            failed: Vec::new(),
        }
    }

    fn get(&self, key: &str) -> &str {
        self.got.get(key).map(String::as_str).unwrap_or("")
    }

    fn num(&self, key: &str) -> Option<u64> {
        self.get(key).parse().ok()
    }

    /// Records a failure unless `ok`; `want` says what was expected.
    fn that(&mut self, key: &str, ok: bool, want: &str) {
        if !ok {
            let line = format!("{key}: {:?}, expected {want}", self.get(key));
            self.failed.push(line);
        }
    }

    fn eq(&mut self, key: &str, want: &str) {
        let ok = self.get(key) == want;
        self.that(key, ok, want);
    }
}

#[test]
fn cgroup_v2_limits_as_root_and_delegated_rootless() {
    let deb = match boot_prerequisites() {
        Ok(deb) => deb,
        Err(why) => return skip(&why),
    };
    let world = World::new();
    let rootfs = guest_rootfs(world.root());
    world
        .cairn()
        .args(["vm", "pull", "cg", "--kernel"])
        .arg(&deb)
        .arg("--rootfs")
        .arg(&rootfs)
        .assert()
        .success();
    let out = world
        .cairn()
        .env("CAIRN_VM_ACCEL", "tcg")
        .env("CAIRN_VM_APPEND", "cgroup_no_v1=all")
        .args(["vm", "run", "cg", "--"])
        .args(["/bin/timeout", "120", "/bin/sh", "/cgroup-v2.sh"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!("{stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    let mut c = Checks::new(&stdout);

    // A pure v2 guest: no v1 hierarchy, the three controllers enabled below the root.
    c.eq("v1_hierarchies", "0");
    c.eq("subtree_control", "cpu memory pids");
    let no_v1 = c.get("cmdline").split(' ').any(|a| a == "cgroup_no_v1=all");
    c.that("cmdline", no_v1, "cgroup_no_v1=all in it");

    let (_, uid) = GUEST_USER;
    for (who, id, parent) in [("root", 0, "/"), ("rootless", uid, "/deleg/")] {
        let key = |k: &str| format!("{who}.{k}");
        c.eq(&key("uid"), &id.to_string());
        // The sandbox made its cgroup below the expected parent: its own cgroup (the root)
        // for root, `[cgroup] root` (the delegated subtree) for the user ...
        let prefix = format!("{parent}cairn-");
        let below = c.get(&key("cgroup")).starts_with(&prefix);
        c.that(&key("cgroup"), below, &format!("{prefix}*"));
        // ... and wrote the node's limits there (read back from inside the sandbox).
        c.eq(&key("memory.max"), MEMORY_MAX.1);
        c.eq(&key("memory.swap.max"), "0");
        c.eq(&key("pids.max"), &PIDS_MAX.to_string());
        c.eq(&key("cpu.max"), CPU_MAX);
        // cpu.max is enforced: 0.3 s of CPU at 50 % gets throttled.
        let throttled = c.num(&key("nr_throttled")).is_some_and(|n| n > 0);
        c.that(&key("nr_throttled"), throttled, "> 0");
        // The fork bomb stops below pids.max (the sandbox's pid 1 and the shell count).
        let range = 5..u64::from(PIDS_MAX);
        let stopped = c.num(&key("forks")).is_some_and(|n| range.contains(&n));
        c.that(&key("forks"), stopped, &format!("{range:?}"));
        // The 64 MiB hog is killed (SIGKILL: 137) at memory.max; 4 MiB fit.
        c.eq(&key("hog64"), "137");
        c.eq(&key("hog4"), "0 survived 4");
        c.eq(&key("leftover"), "0");
    }
    // Without the limits the same programs complete: the cgroup did the stopping.
    c.eq("control.forks", "40");
    c.eq("control.hog64", "0 survived 64");
    c.eq("rootless.status", "0");
    assert!(
        c.failed.is_empty(),
        "{}\n--- the guest said:\n{all}",
        c.failed.join("\n")
    );
}
