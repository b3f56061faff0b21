//! The bubblewrap command line equivalent to a `SandboxSpec`, for side-by-side benchmarks
//! (`cairn run --print-bwrap`). Generating it from the same spec is what keeps the comparison
//! honest: both tools get the same mounts, namespaces and environment.

use cairn_sandbox::{Mount, SandboxSpec};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn command_line(spec: &SandboxSpec) -> anyhow::Result<String> {
    let mut args: Vec<String> = vec!["bwrap".into()];
    let mut push = |parts: &[&OsStr]| {
        for p in parts {
            args.push(quote(p));
        }
    };
    let ns = &spec.namespaces;
    for (on, flag) in [
        (ns.user, "--unshare-user"),
        (ns.pid, "--unshare-pid"),
        (ns.net, "--unshare-net"),
        (ns.ipc, "--unshare-ipc"),
        (ns.uts, "--unshare-uts"),
        (ns.cgroup, "--unshare-cgroup"),
    ] {
        if on {
            push(&[OsStr::new(flag)]);
        }
    }
    if ns.user {
        push(&[OsStr::new("--uid"), OsStr::new(&spec.user.uid.to_string())]);
        push(&[OsStr::new("--gid"), OsStr::new(&spec.user.gid.to_string())]);
    }
    if let (true, Some(h)) = (ns.uts, &spec.hostname) {
        push(&[OsStr::new("--hostname"), OsStr::new(h)]);
    }
    let files_dir = std::env::temp_dir().join(format!("cairn-bwrap-{}", std::process::id()));
    for (i, mount) in spec.mounts.iter().enumerate() {
        match mount {
            Mount::Bind {
                source,
                dest,
                readonly,
            } => {
                let flag = if *readonly { "--ro-bind" } else { "--bind" };
                push(&[OsStr::new(flag), source.as_os_str(), dest.as_os_str()]);
            }
            Mount::Tmpfs { dest, .. } => push(&[OsStr::new("--tmpfs"), dest.as_os_str()]),
            Mount::Proc { dest } => push(&[OsStr::new("--proc"), dest.as_os_str()]),
            Mount::Dev { dest } => push(&[OsStr::new("--dev"), dest.as_os_str()]),
            Mount::Mqueue { dest } => push(&[OsStr::new("--mqueue"), dest.as_os_str()]),
            Mount::Symlink { target, dest } => push(&[
                OsStr::new("--symlink"),
                target.as_os_str(),
                dest.as_os_str(),
            ]),
            Mount::Dir { dest, .. } => push(&[OsStr::new("--dir"), dest.as_os_str()]),
            Mount::File { dest, contents } => {
                // bwrap reads data files from fds; a stable temp file keeps the command a
                // plain string that a benchmark tool can run many times.
                std::fs::create_dir_all(&files_dir)?;
                let file = files_dir.join(format!("file-{i}"));
                std::fs::write(&file, contents)?;
                push(&[OsStr::new("--ro-bind"), file.as_os_str(), dest.as_os_str()]);
            }
            Mount::Overlay { dest, .. } => {
                // bwrap's --overlay cannot choose overlayfs' xattr namespace, so an image
                // root would lose its opaque directories: refuse rather than differ.
                anyhow::bail!(
                    "no bubblewrap equivalent for the overlay on {}",
                    dest.display()
                );
            }
        }
    }
    push(&[OsStr::new("--remount-ro"), OsStr::new("/")]);
    push(&[OsStr::new("--clearenv")]);
    for (k, v) in &spec.env {
        push(&[OsStr::new("--setenv"), k, v]);
    }
    let chdir = spec.chdir.as_deref().unwrap_or(Path::new("/"));
    push(&[OsStr::new("--chdir"), chdir.as_os_str()]);
    if spec.die_with_parent {
        push(&[OsStr::new("--die-with-parent")]);
    }
    if spec.new_session {
        push(&[OsStr::new("--new-session")]);
    }
    push(&[OsStr::new("--cap-drop"), OsStr::new("ALL")]);
    push(&[OsStr::new("--")]);
    for a in &spec.argv {
        push(&[a]);
    }
    Ok(args.join(" "))
}

/// Single-quotes an argument for sh.
fn quote(s: &OsStr) -> String {
    let text = String::from_utf8_lossy(s.as_bytes());
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c))
    {
        return text.into_owned();
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}
