//! The app's image in podman's storage: `localhost/cairn-app/NAME:TAG`, exported from
//! Cairn's store (base + layers + image, then the include-tar files) and loaded once.
//!
//! TAG is derived from what the image is made of (the pinned manifests and the identity of
//! each include-tar file), so a launch finds its image by name with no podman call of its
//! own: `podman run --pull=never` fails with "image not known" only on the first launch
//! after the pins changed (or after someone removed the image), and the launcher then
//! loads it and runs again. Older tags of the app are removed after a load.

use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cairn_image::{Digest, Rootfs};

use crate::config::AppConfig;
use crate::error::Error;
use crate::registry::{Apps, pin_owners};

use super::engine_error;

/// podman's repository for app `name`.
pub fn repository(name: &str) -> String {
    format!("localhost/cairn-app/{name}")
}

/// The pinned images of app `name`, bottom first.
pub fn parts(apps: &Apps, name: &str, config: &AppConfig) -> Result<Vec<Rootfs>, Error> {
    let store = apps.store()?;
    pin_owners(name, config)
        .into_iter()
        .map(|(owner, _)| Ok(store.pinned(&owner)?))
        .collect()
}

/// `REPOSITORY:TAG` of the image made of `parts` and `include_tars`.
pub fn reference(name: &str, parts: &[Rootfs], include_tars: &[PathBuf]) -> Result<String, Error> {
    let mut identity = String::new();
    for part in parts {
        identity.push_str(&part.manifest);
        identity.push('\n');
    }
    for tar in include_tars {
        let meta = std::fs::metadata(tar).map_err(|e| Error::io(tar, e))?;
        identity.push_str(&format!(
            "{}\0{}:{}:{}:{}.{}\n",
            tar.display(),
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        ));
    }
    let digest = Digest::of(identity.as_bytes());
    Ok(format!("{}:{}", repository(name), &digest.hex()[..16]))
}

/// Exports the image into `podman load`, then drops the app's other tags.
pub fn load(
    podman: &Path,
    apps: &Apps,
    name: &str,
    parts: &[Rootfs],
    include_tars: &[PathBuf],
    reference: &str,
) -> Result<(), Error> {
    let store = apps.store()?;
    let mut child = Command::new(podman)
        .args(["load", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| engine_error(name, &format!("cannot start podman load: {e}")))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| engine_error(name, "podman load has no stdin"))?;
    // Written from another thread: podman may report an error (and stop reading) while
    // the archive is still being written, and its output must be drained meanwhile.
    let (written, output) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || -> Result<(), cairn_image::Error> {
            let mut out = BufWriter::with_capacity(1 << 20, stdin);
            store.export_oci_archive(parts, include_tars, reference, &mut out)?;
            out.flush().map_err(|error| cairn_image::Error::Io {
                path: PathBuf::from("podman load"),
                error,
            })
        });
        let output = child.wait_with_output();
        (writer.join(), output)
    });
    let output =
        output.map_err(|e| engine_error(name, &format!("podman load did not finish: {e}")))?;
    // (message, whether podman stopped reading first): a failed export is the cause of a
    // failed load, unless it only failed because podman had given up (a broken pipe).
    let export_error = match written {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some((e.to_string(), is_broken_pipe(&e))),
        Err(_) => Some(("the export stopped unexpectedly".to_string(), false)),
    };
    let exporting = |e: &str| engine_error(name, &format!("exporting {reference}: {e}"));
    if let Some((e, false)) = &export_error {
        return Err(exporting(e));
    }
    if !output.status.success() {
        return Err(engine_error(
            name,
            &format!(
                "podman load of {reference} failed: {}",
                last_line(&output.stderr)
            ),
        ));
    }
    if let Some((e, _)) = &export_error {
        return Err(exporting(e));
    }
    for old in tags(podman, name)? {
        if old != reference {
            // In use by a running container of another launch: it goes with a later load.
            let _ = quiet(podman).args(["rmi", &old]).status();
        }
    }
    Ok(())
}

fn is_broken_pipe(e: &cairn_image::Error) -> bool {
    matches!(e, cairn_image::Error::Io { error, .. } if error.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Removes every image of app `name` from podman's storage (`cairn app rm`). Without
/// podman there is nothing to remove.
pub fn forget(name: &str) -> Result<(), Error> {
    let Some(podman) = super::host::find_podman() else {
        return Ok(());
    };
    let tags = tags(&podman, name)?;
    if tags.is_empty() {
        return Ok(());
    }
    let output = quiet(&podman)
        .arg("rmi")
        .args(&tags)
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| engine_error(name, &format!("cannot start podman rmi: {e}")))?;
    if !output.status.success() {
        return Err(engine_error(
            name,
            &format!(
                "cannot remove {} from podman: {}",
                tags.join(" "),
                last_line(&output.stderr)
            ),
        ));
    }
    Ok(())
}

/// Whether podman's storage holds `reference` (one of app `name`'s tags).
pub fn has(podman: &Path, name: &str, reference: &str) -> Result<bool, Error> {
    Ok(tags(podman, name)?.iter().any(|t| t == reference))
}

/// The app's tags in podman's storage, as `REPOSITORY:TAG`.
fn tags(podman: &Path, name: &str) -> Result<Vec<String>, Error> {
    let output = quiet(podman)
        .args([
            "images",
            "--noheading",
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])
        .arg(repository(name))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| engine_error(name, &format!("cannot start podman images: {e}")))?;
    if !output.status.success() {
        return Err(engine_error(
            name,
            &format!("podman images failed: {}", last_line(&output.stderr)),
        ));
    }
    let repo = repository(name);
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.strip_prefix(repo.as_str())
                .is_some_and(|t| t.starts_with(':'))
        })
        .map(str::to_string)
        .collect())
}

/// podman with no stdin and no output of its own on the caller's terminal.
fn quiet(podman: &Path) -> Command {
    let mut cmd = Command::new(podman);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// podman's last stderr line (its `Error: ...`), without the prefix.
pub fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    line.trim().trim_start_matches("Error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_follow_the_content() {
        let part = |m: &str| Rootfs {
            reference: "r".into(),
            manifest: m.into(),
            layers: Vec::new(),
            config: Default::default(),
            opaque_xattr: "trusted.overlay.opaque",
        };
        let a = reference("app", &[part("sha256:1")], &[]).unwrap();
        assert!(a.starts_with("localhost/cairn-app/app:"), "{a}");
        assert_eq!(a, reference("app", &[part("sha256:1")], &[]).unwrap());
        assert_ne!(a, reference("app", &[part("sha256:2")], &[]).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("x.tar");
        std::fs::write(&tar, b"one").unwrap();
        let with_tar = reference("app", &[part("sha256:1")], std::slice::from_ref(&tar)).unwrap();
        assert_ne!(a, with_tar);
        assert!(reference("app", &[], &[dir.path().join("missing")]).is_err());
    }

    #[test]
    fn last_line_is_podmans_error() {
        assert_eq!(last_line(b"warn\nError: boom\n\n"), "boom");
        assert_eq!(last_line(b""), "no message");
    }
}
