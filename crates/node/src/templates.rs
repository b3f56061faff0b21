//! The files `create_node` writes: YAML with comments that teach the format.

use std::fmt::Write;
use std::path::Path;

/// Which starting point `create_node` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// A system node: exports the host's base system read-only so ordinary programs run.
    System,
    /// An application node: its own usr/var, meant to sit below a system node.
    Leaf,
    /// Like `Leaf`, plus a `node-admin.yaml` with restrictive settings.
    Admin,
}

const HEADER: &str = "\
# Cairn node file. A node is a directory with this file; its parent is the nearest
# ancestor directory that is a node, and the chain from the topmost node to a leaf is
# the leaf's family. `cairn node config LEAF` shows the merged result of a family.
#
# Variables: $NODE_ALIAS $NODE_NAME $NODE_PATH (this node), $LEAF_ALIAS $LEAF_NAME
# $LEAF_PATH (the node launched), $UID $GID $USER $HOME $HOSTNAME $PID $TODAY $UUID;
# ${NAME} is allowed, $$ is a literal $. Any other variable is an error.
";

fn identity(out: &mut String, alias: &str, name: &str, info: &str) {
    let _ = write!(
        out,
        "node:\n  alias: {alias}            # unique within the family; [A-Za-z0-9+_.@:-]\n  \
         name: {name}   # globally unique, generated at create\n  info: {info:?}\n"
    );
}

/// Export lines for one top-level host directory that merged-/usr systems replace with a
/// symlink (`/bin -> usr/bin`): a symlink when the host has one, else a read-only bind.
fn usr_link(out: &mut String, host_root: &Path, name: &str) {
    let host = host_root.join(name);
    match std::fs::symlink_metadata(&host) {
        Ok(m) if m.file_type().is_symlink() => {
            if let Ok(target) = std::fs::read_link(&host) {
                let _ = writeln!(
                    out,
                    "  - {{ mode: symlink,    mount: /{name}, path: {} }}",
                    target.display()
                );
            }
        }
        Ok(m) if m.is_dir() => {
            let _ = writeln!(
                out,
                "  - {{ mode: restricted, mount: /{name}, path: /{name} }}"
            );
        }
        _ => {}
    }
}

/// `node.yaml` of a system node; `host_root` is `/` except in tests.
pub(crate) fn system(alias: &str, name: &str, host_root: &Path) -> String {
    let mut o = String::from(HEADER);
    identity(
        &mut o,
        alias,
        name,
        "system node: the host's base system, read-only",
    );
    o.push_str(
        "\
config:
  # Scalars: the nearest node wins, and a node-admin.yaml beats every node.yaml.
  # share: { net: false, pid: false, ipc: false, uts: false, user: false, cgroup: false, time: false }
  #   true = use the host's namespace. Restrictions are sticky: once a node unshares a
  #   namespace (false, the default) no descendant can share it again.
  path: /usr/local/bin:/usr/bin:/bin   # path and ldpath cumulate along the family, leaf first
  # umask: \"022\"
  # capabilities: { drop: [all], add: [] }   # default: drop all; a descendant cannot add back
  # seccomp: default                         # default | unconfined | path to a profile
  # cgroup: { memory_max: 512M, pids_max: 512, cpu_max: \"50000 100000\" }
exports:
  # Modes: public (read-write), restricted (read-only), private / private-restricted (only
  # when this node is the leaf), anonymous (empty, per launch), exec (a file holding a
  # command's output), symlink, tmpfs, proc, dev, mqueue. A relative path is relative to
  # this node's directory; a missing source is an error unless `optional: true`.
  # A child exporting the same mount point replaces the entry.
  - { mode: restricted, mount: /usr, path: /usr }
",
    );
    for d in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
        usr_link(&mut o, host_root, d);
    }
    o.push_str(
        "  - { mode: restricted, mount: /etc/alternatives, path: /etc/alternatives, optional: true }
  - { mode: restricted, mount: /etc/ld.so.cache, path: /etc/ld.so.cache }
  - { mode: restricted, mount: /etc/ld.so.conf, path: /etc/ld.so.conf, optional: true }
  - { mode: restricted, mount: /etc/ld.so.conf.d, path: /etc/ld.so.conf.d, optional: true }
  - { mode: restricted, mount: /etc/nsswitch.conf, path: /etc/nsswitch.conf, optional: true }
  - { mode: restricted, mount: /etc/hosts, path: /etc/hosts, optional: true }
  - { mode: restricted, mount: /etc/ssl, path: /etc/ssl, optional: true }
  - { mode: restricted, mount: /etc/resolv.conf, path: /etc/resolv.conf, optional: true }
  - { mode: restricted, mount: /etc/localtime, path: /etc/localtime, optional: true }
  # The host's user and group names (world-readable on the host too). To show only the
  # caller's own entries instead, at the cost of two processes per launch, use:
  #   - { mode: exec, mount: /etc/passwd, command: \"getent passwd root $UID || true\" }
  - { mode: restricted, mount: /etc/passwd, path: /etc/passwd, optional: true }
  - { mode: restricted, mount: /etc/group, path: /etc/group, optional: true }
  - { mode: proc, mount: /proc }
  - { mode: dev, mount: /dev }
  - { mode: tmpfs, mount: /tmp }
  - { mode: restricted, mount: /nodes/$NODE_ALIAS/usr, path: usr }
  - { mode: public, mount: /nodes/$NODE_ALIAS/var, path: var }
environ:
  # Modes: set (after $VAR expansion), literal (as written), exec (a command's output),
  # inherit (from the caller, if set), unset. A child setting the same key replaces it.
  - { mode: set, key: HOME, value: /tmp }
  - { mode: inherit, key: TERM }
  - { mode: set, key: LANG, value: C.UTF-8 }
",
    );
    o
}

/// `node.yaml` of an application node.
pub(crate) fn leaf(alias: &str, name: &str) -> String {
    let mut o = String::from(HEADER);
    identity(&mut o, alias, name, "");
    o.push_str(
        "\
config:
  # Scalars: the nearest node wins; hostname defaults to $LEAF_ALIAS, chdir to /.
  # hostname: $LEAF_ALIAS
  # chdir: /nodes/$LEAF_ALIAS/var
  path: /nodes/$NODE_ALIAS/usr/bin     # cumulates: this node's first, then its ancestors'
  ldpath: /nodes/$NODE_ALIAS/usr/lib
exports:
  # A relative path is relative to this node's directory.
  - { mode: restricted, mount: /nodes/$NODE_ALIAS/usr, path: usr }
  - { mode: public, mount: /nodes/$NODE_ALIAS/var, path: var }
  # private: only when this node is the one launched, not for its descendants. Its source
  # must not lie inside a public export, or descendants would reach it through that one.
  - { mode: private, mount: /nodes/$NODE_ALIAS/local, path: local }
environ:
  # - { mode: set, key: APP_HOME, value: /nodes/$NODE_ALIAS }
  # - { mode: unset, key: LD_PRELOAD }
",
    );
    o
}

/// `node-admin.yaml` of an admin node.
pub(crate) fn admin() -> &'static str {
    "\
# Administrator settings for this node: every value here beats the node.yaml files of
# the whole family (restrictions stay sticky for descendants). Owned by the administrator:
# keep it out of reach of whoever maintains node.yaml.
config:
  share: { net: false, pid: false, ipc: false, uts: false, user: false, cgroup: false, time: false }
  capabilities: { drop: [all] }
  seccomp: default
  cgroup: { memory_max: 512M, pids_max: 512 }
"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(text: &str) {
        let file = Path::new("/n/etc/cairn/node.yaml");
        if let Err(e) = crate::check_node_yaml(file, text.as_bytes()) {
            panic!("{e}\n{text}");
        }
    }

    #[test]
    fn templates_are_valid_node_files() {
        valid(&system("sys", "0c9a", Path::new("/")));
        valid(&leaf("app", "0c9b"));
        let admin_as_node = format!("node:\n  alias: a\n  name: b\n{}", admin());
        valid(&admin_as_node);
    }

    #[test]
    fn unmerged_usr_hosts_get_read_only_binds() {
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir(host.path().join("bin")).unwrap();
        std::os::unix::fs::symlink("usr/lib", host.path().join("lib")).unwrap();
        let text = system("sys", "n", host.path());
        assert!(
            text.contains("  - { mode: restricted, mount: /bin, path: /bin }\n"),
            "{text}"
        );
        assert!(
            text.contains("  - { mode: symlink,    mount: /lib, path: usr/lib }\n"),
            "{text}"
        );
        assert!(!text.contains("mount: /sbin"), "{text}");
        valid(&text);
    }
}
