//! The native engine: Cairn's own sandbox. An image app's pinned layers become an overlay
//! root over a fresh instance's upper directory, with the image's runtime config and the
//! caller's arguments.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use cairn_sandbox::{Mount, SandboxSpec};

use super::{LaunchContext, invalid};
use crate::config::{AppConfig, Mode};
use crate::error::Error;
use crate::instance::Instance;
use crate::registry::{Apps, pin_owners};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Engine arguments the native engine understands.
pub const RUN_ARGS: &[&str] = &["--share-net"];

/// What only the native engine requires of a config.
pub fn validate(name: &str, config: &AppConfig) -> Result<(), Error> {
    if config.vm.is_some() || config.overlay_size.is_some() {
        return Err(invalid(name, "vm and overlay-size need engine vm"));
    }
    if config.mode != Mode::Fresh {
        return Err(invalid(
            name,
            &format!("mode {:?} is not available yet (only fresh)", config.mode),
        ));
    }
    if let Some(bad) = config
        .run_args
        .iter()
        .find(|a| !RUN_ARGS.contains(&a.as_str()))
    {
        return Err(invalid(
            name,
            &format!(
                "run-arg {bad:?} is not understood by the native engine (known: {})",
                RUN_ARGS.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Runs image app `name` with `args` (passed exactly) in a fresh instance; returns the
/// target's exit status. The instance is removed afterwards, whatever happened.
pub fn launch(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    args: Vec<OsString>,
    ctx: &LaunchContext,
) -> Result<i32, Error> {
    let instance = Instance::create(&apps.instances.join(name))?;
    provision(config, &instance.upper())?;
    let mut spec = image_spec(apps, name, config, &instance, args)?;
    spec.cgroup.parent = ctx.cgroup_parent.clone();
    let status = cairn_sandbox::run(&spec);
    instance.remove()?;
    Ok(status?)
}

/// The sandbox spec of one launch in `instance`.
pub fn image_spec(
    apps: &Apps,
    name: &str,
    config: &AppConfig,
    instance: &Instance,
    args: Vec<OsString>,
) -> Result<SandboxSpec, Error> {
    let store = apps.store()?;
    let mut layers: Vec<PathBuf> = Vec::new();
    let mut top = None;
    for (owner, _) in pin_owners(name, config) {
        let rootfs = store.pinned(&owner)?;
        layers.extend(rootfs.layers.iter().cloned());
        top = Some(rootfs);
    }
    let Some(image) = top else {
        return Err(Error::Invalid {
            name: name.to_string(),
            reason: "no image".into(),
        });
    };
    layers.reverse();
    let userxattr = image.opaque_xattr.starts_with("user.");
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let runtime = &image.config;
    let target = config.target.as_deref().unwrap_or(Path::new("/"));
    let argv = argv(target, &runtime.entrypoint, &runtime.cmd, args);
    if argv.is_empty() {
        return Err(Error::Invalid {
            name: name.to_string(),
            reason: "target / but the image has no entrypoint or cmd".into(),
        });
    }
    let mut spec = SandboxSpec {
        argv,
        env: env(&runtime.env, config),
        hostname: Some(name.to_string()),
        chdir: runtime
            .working_dir
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(PathBuf::from),
        die_with_parent: true,
        ..Default::default()
    };
    spec.user = user(name, runtime.user.as_deref())?;
    // A root store wrote trusted.overlay.* xattrs, which overlayfs reads only outside a
    // user namespace; a rootless store used user.overlay.* (and must run in one anyway).
    spec.namespaces.user = userxattr || !root;
    spec.namespaces.net = !config.run_args.iter().any(|a| a == "--share-net");
    spec.mounts = vec![
        Mount::Overlay {
            lower: layers,
            upper: instance.upper(),
            work: instance.work(),
            dest: "/".into(),
            userxattr,
        },
        Mount::Proc {
            dest: "/proc".into(),
        },
        Mount::Dev {
            dest: "/dev".into(),
        },
        Mount::Tmpfs {
            dest: "/tmp".into(),
            mode: 0o1777,
        },
    ];
    Ok(spec)
}

/// `target` with the caller's arguments; `/` means the image's entrypoint, followed by the
/// caller's arguments when there are any and by the image's cmd otherwise (as `docker run`).
pub fn argv(
    target: &Path,
    entrypoint: &[String],
    cmd: &[String],
    args: Vec<OsString>,
) -> Vec<OsString> {
    if target != Path::new("/") {
        let mut v = vec![target.as_os_str().to_os_string()];
        v.extend(args);
        return v;
    }
    let mut v: Vec<OsString> = entrypoint.iter().map(OsString::from).collect();
    if args.is_empty() {
        v.extend(cmd.iter().map(OsString::from));
    } else {
        v.extend(args);
    }
    v
}

/// The image's environment, then the app's (which wins); PATH defaults like a container's.
fn env(image_env: &[String], config: &AppConfig) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(ek, _)| ek != k);
        env.push((k.into(), v.into()));
    };
    for entry in image_env {
        if let Some((k, v)) = entry.split_once('=') {
            set(k, v);
        }
    }
    for (k, v) in &config.env {
        set(k, v);
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env
}

/// The image's `user` (numeric `uid[:gid]` or `root`; names would need the image's
/// /etc/passwd, which is not read).
fn user(name: &str, user: Option<&str>) -> Result<cairn_sandbox::UserIds, Error> {
    let text = user.unwrap_or("").trim();
    if text.is_empty() || text == "root" || text == "0" {
        return Ok(cairn_sandbox::UserIds::default());
    }
    let (u, g) = text.split_once(':').unwrap_or((text, ""));
    let uid = u.parse::<u32>();
    let gid = if g.is_empty() {
        uid.clone()
    } else {
        g.parse::<u32>()
    };
    match (uid, gid) {
        (Ok(uid), Ok(gid)) => Ok(cairn_sandbox::UserIds { uid, gid }),
        _ => Err(Error::Invalid {
            name: name.to_string(),
            reason: format!("image user {text:?}: only numeric uid[:gid] is supported"),
        }),
    }
}

/// Copies the app's include-tar archives and include-path trees into the upper directory.
pub fn provision(config: &AppConfig, upper: &Path) -> Result<(), Error> {
    for tar_path in &config.include_tar {
        let file = std::fs::File::open(tar_path).map_err(|e| Error::io(tar_path, e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        archive.set_preserve_permissions(true);
        archive.unpack(upper).map_err(|e| Error::io(tar_path, e))?;
    }
    for host in &config.include_path {
        let rel = host.strip_prefix("/").unwrap_or(host);
        copy_tree(host, &upper.join(rel))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), Error> {
    let meta = std::fs::symlink_metadata(from).map_err(|e| Error::io(from, e))?;
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    if meta.is_symlink() {
        let target = std::fs::read_link(from).map_err(|e| Error::io(from, e))?;
        std::os::unix::fs::symlink(target, to).map_err(|e| Error::io(to, e))
    } else if meta.is_dir() {
        std::fs::create_dir_all(to).map_err(|e| Error::io(to, e))?;
        std::fs::set_permissions(to, meta.permissions()).map_err(|e| Error::io(to, e))?;
        for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
            let entry = entry.map_err(|e| Error::io(from, e))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|e| Error::io(from, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn argv_keeps_arguments_exactly() {
        let args = os(&["", "%x", "@y", "--help", "a b"]);
        let v = argv(Path::new("/bin/t"), &[], &[], args.clone());
        assert_eq!(v[0], "/bin/t");
        assert_eq!(&v[1..], &args[..]);
        let ep = vec!["/ep".to_string()];
        let cmd = vec!["default".to_string()];
        assert_eq!(
            argv(Path::new("/"), &ep, &cmd, vec![]),
            os(&["/ep", "default"])
        );
        assert_eq!(
            argv(Path::new("/"), &ep, &cmd, os(&["x"])),
            os(&["/ep", "x"])
        );
    }

    #[test]
    fn app_env_beats_image_env_and_path_defaults() {
        let mut c = AppConfig::default();
        c.env.insert("A".into(), "app".into());
        let e = env(&["A=image".into(), "B=b".into()], &c);
        assert!(e.contains(&("A".into(), "app".into())));
        assert!(e.contains(&("B".into(), "b".into())));
        assert!(e.iter().any(|(k, _)| k == "PATH"));
    }

    #[test]
    fn users_are_numeric() {
        assert_eq!(user("a", Some("1:2")).unwrap().gid, 2);
        assert_eq!(user("a", Some("5")).unwrap().gid, 5);
        assert!(user("a", Some("nobody")).is_err());
    }
}
