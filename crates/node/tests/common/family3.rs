// A 3-node family with 25-26 exports, as on a real device (system / platform / app).
// Shared by the exact-spec test and the launch-cost example.

use std::path::{Path, PathBuf};

const SYS: &str = r#"node:
  alias: sys
  name: n-sys
config:
  path: /usr/local/bin:/usr/bin:/bin
  capabilities: { drop: [all], add: [NET_BIND_SERVICE, KILL] }
  share: { net: true }
exports:
  - { mode: restricted, mount: /usr, path: $NODE_PATH/host/usr }
  - { mode: symlink, mount: /bin, path: usr/bin }
  - { mode: symlink, mount: /sbin, path: usr/sbin }
  - { mode: symlink, mount: /lib, path: usr/lib }
  - { mode: symlink, mount: /lib64, path: usr/lib64 }
  - { mode: restricted, mount: /etc/ld.so.cache, path: host/etc/ld.so.cache }
  - { mode: restricted, mount: /etc/hosts, path: host/etc/hosts }
  - { mode: restricted, mount: /etc/resolv.conf, path: host/etc/resolv.conf, optional: true }
  - { mode: restricted, mount: /etc/ssl, path: host/etc/ssl }
EXEC
  - { mode: proc, mount: /proc }
  - { mode: dev, mount: /dev }
  - { mode: tmpfs, mount: /tmp }
  - { mode: restricted, mount: /nodes/$NODE_ALIAS/usr, path: usr }
  - { mode: public, mount: /nodes/$NODE_ALIAS/var, path: var }
environ:
  - { mode: set, key: HOME, value: /tmp }
  - { mode: set, key: LANG, value: C.UTF-8 }
  - { mode: inherit, key: TERM }
"#;

const EXEC: &str =
    "  - { mode: exec, mount: /etc/passwd, command: \"echo root:x:0:0::/root:/bin/sh\" }";

const MID: &str = r#"node:
  alias: mid
  name: n-mid
config:
  path: /nodes/$NODE_ALIAS/usr/bin
  ldpath: /nodes/$NODE_ALIAS/usr/lib
  share: { net: false }
  cgroup: { memory_max: 256M, pids_max: 256 }
exports:
  - { mode: restricted, mount: /nodes/$NODE_ALIAS/usr, path: usr }
  - { mode: public, mount: /nodes/$NODE_ALIAS/var, path: var }
  - { mode: private, mount: /nodes/$NODE_ALIAS/secret, path: var }
  - { mode: restricted, mount: /etc/hosts, path: etc/hosts }
  - { mode: mqueue, mount: /dev/mqueue }
  - { mode: anonymous, mount: /var/cache }
environ:
  - { mode: set, key: PLATFORM, value: $NODE_ALIAS-$NODE_NAME }
  - { mode: unset, key: LD_PRELOAD }
"#;

const LEAF: &str = r#"node:
  alias: leaf
  name: n-leaf
config:
  hostname: $LEAF_ALIAS-box
  chdir: /nodes/$NODE_ALIAS/var
  umask: "027"
  path: /nodes/$NODE_ALIAS/usr/bin
  capabilities: { drop: [KILL] }
  user: { uid: 1000, gid: 1000 }
exports:
  - { mode: restricted, mount: /nodes/$NODE_ALIAS/usr, path: usr }
  - { mode: public, mount: /nodes/$NODE_ALIAS/var, path: var }
  - { mode: private, mount: /nodes/$NODE_ALIAS/var/local, path: var/local }
  - { mode: symlink, mount: /nodes/$NODE_ALIAS/current, path: /nodes/$NODE_ALIAS/usr }
  - { mode: tmpfs, mount: /tmp }
environ:
  - { mode: set, key: APP, value: $LEAF_ALIAS }
  - { mode: literal, key: PS1, value: "$ " }
"#;

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn dirs(base: &Path, subs: &[&str]) {
    for s in subs {
        std::fs::create_dir_all(base.join(s)).unwrap();
    }
}

/// Builds the family under `root`; returns the system node and the leaf.
pub fn build(root: &Path, with_exec: bool) -> (PathBuf, PathBuf) {
    let sys = root.join("sys");
    let mid = sys.join("mid");
    let leaf = mid.join("leaf");
    let sys_text = SYS.replace("EXEC\n", if with_exec { "EXEC\n" } else { "" });
    write(
        &sys.join("etc/cairn/node.yaml"),
        &sys_text.replace("EXEC", EXEC),
    );
    write(&mid.join("etc/cairn/node.yaml"), MID);
    write(&leaf.join("etc/cairn/node.yaml"), LEAF);
    dirs(&sys, &["host/usr", "host/etc/ssl", "usr", "var"]);
    write(&sys.join("host/etc/ld.so.cache"), "cache");
    write(&sys.join("host/etc/hosts"), "127.0.0.1 localhost\n");
    dirs(&mid, &["usr", "var"]);
    write(&mid.join("etc/hosts"), "10.0.0.1 platform\n");
    dirs(&leaf, &["usr", "var/local"]);
    (sys, leaf)
}
