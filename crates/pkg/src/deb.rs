//! Reading a `.deb` into a staging directory, refusing anything that could land outside.
//!
//! `dpkg-deb` does the decompression (every compressor dpkg supports); the tar streams are
//! walked here, entry by entry, so that no maintainer script and no unchecked path ever
//! touches the host. Set-id bits are dropped: node files live on the host's filesystem.

use crate::control::{Paragraph, parse_paragraphs};
use crate::db::{InfoFiles, SCRIPTS, parse_md5sums};
use crate::error::{Error, Result};
use crate::layout::{check_no_symlink_parents, hex};
use md5::{Digest, Md5};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What one entry of the data archive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink,
}

/// One entry, by its path relative to the node root (no leading `/`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub rel: String,
    pub kind: EntryKind,
}

/// A package unpacked into `stage`, with the database files dpkg would keep for it.
#[derive(Debug, Clone)]
pub struct Staged {
    pub control: Paragraph,
    pub stage: PathBuf,
    pub entries: Vec<Entry>,
    pub info: InfoFiles,
    /// `(path with leading '/', md5)` for the `Conffiles` status field.
    pub conffiles: Vec<(String, String)>,
}

impl Staged {
    pub fn name(&self) -> &str {
        self.control.package()
    }
}

/// Unpacks `deb` into the empty directory `stage`.
pub fn stage_deb(deb: &Path, stage: &Path) -> Result<Staged> {
    let control_files = read_control_tar(deb)?;
    let control_text = control_files
        .iter()
        .find(|(n, _)| n == "control")
        .map(|(_, body)| String::from_utf8_lossy(body).into_owned())
        .ok_or_else(|| bad(deb, "no control file"))?;
    let control = parse_paragraphs(&control_text, &deb.join("control"))?
        .into_iter()
        .next()
        .ok_or_else(|| bad(deb, "empty control file"))?;
    check_control(deb, &control)?;
    std::fs::create_dir_all(stage).map_err(Error::io(stage))?;
    let (entries, hashes) = extract_data(deb, stage)?;
    let mut info = InfoFiles {
        list: std::iter::once("/.".to_string())
            .chain(entries.iter().map(|e| format!("/{}", e.rel)))
            .collect(),
        ..InfoFiles::default()
    };
    let declared = control_files
        .iter()
        .find(|(n, _)| n == "md5sums")
        .map(|(_, b)| parse_md5sums(&String::from_utf8_lossy(b)))
        .unwrap_or_default();
    check_declared_sums(deb, &declared, &hashes)?;
    info.conffiles = control_files
        .iter()
        .find(|(n, _)| n == "conffiles")
        .map(|(_, b)| {
            String::from_utf8_lossy(b)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut conffiles = Vec::new();
    for path in &info.conffiles {
        let rel = path.trim_start_matches('/');
        let md5 = hashes
            .iter()
            .find(|(_, p)| p == rel)
            .map(|(h, _)| h.clone());
        let md5 = md5.ok_or_else(|| bad(deb, &format!("conffile {path} is not in the package")))?;
        conffiles.push((path.clone(), md5));
    }
    info.md5sums = hashes
        .into_iter()
        .filter(|(_, p)| {
            !info
                .conffiles
                .iter()
                .any(|c| c.trim_start_matches('/') == p)
        })
        .collect();
    info.scripts = control_files
        .into_iter()
        .filter(|(n, _)| SCRIPTS.contains(&n.as_str()))
        .collect();
    Ok(Staged {
        control,
        stage: stage.to_path_buf(),
        entries,
        info,
        conffiles,
    })
}

fn bad(deb: &Path, message: &str) -> Error {
    Error::BadDeb {
        deb: deb.to_path_buf(),
        message: message.to_string(),
    }
}

fn check_control(deb: &Path, control: &Paragraph) -> Result<()> {
    let name = control.package();
    let valid = name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if !valid {
        return Err(bad(deb, &format!("bad package name {name:?}")));
    }
    if control.version().is_empty() {
        return Err(bad(deb, "no Version field"));
    }
    Ok(())
}

/// Runs `dpkg-deb` with `args` and returns its stdout as a stream reader plus the child.
fn dpkg_deb(deb: &Path, arg: &str) -> Result<std::process::Child> {
    Command::new("dpkg-deb")
        .arg(arg)
        .arg(deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            tool: "dpkg-deb".into(),
            err: source,
        })
}

fn finish(deb: &Path, mut child: std::process::Child) -> Result<()> {
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(Error::io(deb))?;
    if !status.success() {
        return Err(bad(deb, stderr.trim()));
    }
    Ok(())
}

/// The control archive's regular files by name (`control`, `md5sums`, scripts, ...).
fn read_control_tar(deb: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut child = dpkg_deb(deb, "--ctrl-tarfile")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| bad(deb, "no output from dpkg-deb"))?;
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(stdout);
    let tar_err = |e: std::io::Error| bad(deb, &format!("control archive: {e}"));
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_start_matches("./").to_string();
        let mut body = Vec::new();
        entry.read_to_end(&mut body).map_err(tar_err)?;
        files.push((name, body));
    }
    finish(deb, child)?;
    Ok(files)
}

/// Normalises a tar path to a node-relative path; `Err(reason)` for anything that could
/// escape (`..`), is not UTF-8, or is otherwise unusable.
pub fn normalize_entry(raw: &[u8]) -> std::result::Result<String, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "path is not UTF-8".to_string())?;
    if text.contains('\0') {
        return Err("path contains NUL".into());
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("path contains \"..\"".into()),
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// `(md5 hex, node-relative path)` of regular files.
type Md5List = Vec<(String, String)>;

/// Extracts the data archive; returns the entries and `(md5, rel)` of each regular file.
fn extract_data(deb: &Path, stage: &Path) -> Result<(Vec<Entry>, Md5List)> {
    let mut child = dpkg_deb(deb, "--fsys-tarfile")?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| bad(deb, "no output from dpkg-deb"))?;
    let mut archive = tar::Archive::new(stdout);
    let tar_err = |e: std::io::Error| bad(deb, &format!("data archive: {e}"));
    let mut entries = Vec::new();
    let mut hashes: Vec<(String, String)> = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let unsafe_entry = |reason: &str| Error::UnsafeEntry {
            deb: deb.to_path_buf(),
            entry: shown.clone(),
            reason: reason.to_string(),
        };
        let rel = normalize_entry(&raw).map_err(|r| unsafe_entry(&r))?;
        if rel.is_empty() {
            continue;
        }
        check_no_symlink_parents(stage, &rel)
            .map_err(|_| unsafe_entry("goes through a symlink"))?;
        let target = stage.join(&rel);
        let mode = entry.header().mode().map_err(tar_err)? & 0o1777;
        let kind = match entry.header().entry_type() {
            tar::EntryType::Directory => {
                make_dir(&target, mode)?;
                EntryKind::Dir
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                make_parent(&target)?;
                let md5 = write_file(&mut entry, &target, mode)?;
                hashes.retain(|(_, p)| p != &rel);
                hashes.push((md5, rel.clone()));
                EntryKind::File
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry("no link target"))?;
                let link = String::from_utf8(link.into_owned())
                    .map_err(|_| unsafe_entry("link target is not UTF-8"))?;
                make_parent(&target)?;
                crate::layout::remove_if_exists(&target)?;
                std::os::unix::fs::symlink(&link, &target).map_err(Error::io(&target))?;
                EntryKind::Symlink
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry("no link target"))?;
                let source = normalize_entry(&link).map_err(|r| unsafe_entry(&r))?;
                let md5 = hashes
                    .iter()
                    .find(|(_, p)| p == &source)
                    .map(|(h, _)| h.clone())
                    .ok_or_else(|| unsafe_entry("hard link to a file outside the package"))?;
                make_parent(&target)?;
                crate::layout::remove_if_exists(&target)?;
                std::fs::hard_link(stage.join(&source), &target).map_err(Error::io(&target))?;
                hashes.push((md5, rel.clone()));
                EntryKind::File
            }
            other => return Err(unsafe_entry(&format!("unsupported entry type {other:?}"))),
        };
        entries.push(Entry { rel, kind });
    }
    finish(deb, child)?;
    Ok((entries, hashes))
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path).map_err(Error::io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | 0o700))
        .map_err(Error::io(path))
}

fn make_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) => std::fs::create_dir_all(parent).map_err(Error::io(parent)),
        None => Ok(()),
    }
}

/// Copies one file out of the archive, hashing as it goes.
fn write_file(entry: &mut impl Read, path: &Path, mode: u32) -> Result<String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    crate::layout::remove_if_exists(path)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(Error::io(path))?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = entry.read(&mut buf).map_err(Error::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(Error::io(path))?;
    }
    // The umask may have narrowed the mode given at creation.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .map_err(Error::io(path))?;
    Ok(hex(&hasher.finalize()))
}

/// A package whose md5sums disagree with its own content is corrupt: refuse it.
fn check_declared_sums(
    deb: &Path,
    declared: &[(String, String)],
    actual: &[(String, String)],
) -> Result<()> {
    for (hash, path) in declared {
        match actual.iter().find(|(_, p)| p == path) {
            Some((h, _)) if h.eq_ignore_ascii_case(hash) => {}
            Some(_) => return Err(bad(deb, &format!("checksum mismatch for /{path}"))),
            None => return Err(bad(deb, &format!("md5sums lists missing file /{path}"))),
        }
    }
    Ok(())
}

/// md5 of a file on disk (for verify and conffile handling).
pub fn md5_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One raw tar entry: names are written as given (no sanitising), like a hostile tool.
    fn entry(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        body: &[u8],
        link: &str,
    ) {
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        h.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(body.len() as u64);
        h.set_cksum();
        b.append(&h, body).unwrap();
    }

    type Raw<'a> = (&'a str, tar::EntryType, u32, &'a [u8], &'a str);
    /// Data entries, extra control files, and the expected error text.
    type Case<'a> = (Vec<Raw<'a>>, Vec<(&'a str, &'a [u8])>, &'a str);

    /// Writes a .deb (ar archive of debian-binary, control.tar, data.tar).
    fn deb(dir: &Path, control_extra: &[(&str, &[u8])], data: &[Raw<'_>]) -> PathBuf {
        let mut control = tar::Builder::new(Vec::new());
        let text = b"Package: tt\nVersion: 1\nArchitecture: all\nDescription: t\n";
        entry(
            &mut control,
            "./control",
            tar::EntryType::Regular,
            0o644,
            text,
            "",
        );
        for (name, body) in control_extra {
            entry(&mut control, name, tar::EntryType::Regular, 0o644, body, "");
        }
        let mut tar = tar::Builder::new(Vec::new());
        for (name, kind, mode, body, link) in data {
            entry(&mut tar, name, *kind, *mode, body, link);
        }
        let mut ar = b"!<arch>\n".to_vec();
        let members = [
            ("debian-binary", b"2.0\n".to_vec()),
            ("control.tar", control.into_inner().unwrap()),
            ("data.tar", tar.into_inner().unwrap()),
        ];
        for (name, body) in members {
            let header = format!(
                "{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                0,
                0,
                0,
                100644,
                body.len()
            );
            ar.extend_from_slice(header.as_bytes());
            ar.extend_from_slice(&body);
            if body.len() % 2 == 1 {
                ar.push(b'\n');
            }
        }
        let path = dir.join("t.deb");
        std::fs::write(&path, ar).unwrap();
        path
    }

    use tar::EntryType as T;

    #[test]
    fn stages_files_links_and_drops_setid_bits() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let d = deb(
            dir.path(),
            &[
                ("./conffiles", b"/etc/t.conf\n"),
                ("./postinst", b"#!/bin/sh\n"),
            ],
            &[
                ("./", T::Directory, 0o755, b"", ""),
                ("./usr/bin/su-ish", T::Regular, 0o4755, b"x", ""),
                ("./usr/bin/same", T::Link, 0o755, b"", "./usr/bin/su-ish"),
                ("./usr/bin/ln", T::Symlink, 0o777, b"", "/etc/passwd"),
                ("./etc/t.conf", T::Regular, 0o644, b"conf", ""),
            ],
        );
        let stage = dir.path().join("stage");
        let staged = stage_deb(&d, &stage).unwrap();
        assert_eq!(staged.name(), "tt");
        let mode = std::fs::metadata(stage.join("usr/bin/su-ish"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755, "set-id bits are dropped");
        let a = std::fs::metadata(stage.join("usr/bin/su-ish")).unwrap();
        let b = std::fs::metadata(stage.join("usr/bin/same")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(
            std::fs::read_link(stage.join("usr/bin/ln")).unwrap(),
            Path::new("/etc/passwd")
        );
        let md5_paths: Vec<&str> = staged
            .info
            .md5sums
            .iter()
            .map(|(_, p)| p.as_str())
            .collect();
        assert_eq!(
            md5_paths,
            ["usr/bin/su-ish", "usr/bin/same"],
            "conffiles are not in md5sums"
        );
        assert_eq!(staged.conffiles.len(), 1);
        assert_eq!(staged.info.scripts[0].0, "postinst");
        assert_eq!(staged.info.list[0], "/.");
        assert!(staged.info.list.contains(&"/usr/bin/ln".to_string()));
    }

    #[test]
    fn refuses_hostile_and_corrupt_archives() {
        let cases: Vec<Case<'_>> = vec![
            (
                vec![("./dev/x", T::Char, 0o644, b"", "")],
                vec![],
                "unsupported entry type",
            ),
            (
                vec![("./a", T::Link, 0o644, b"", "../../etc/passwd")],
                vec![],
                "\"..\"",
            ),
            (
                vec![("./a", T::Link, 0o644, b"", "./not-there")],
                vec![],
                "hard link",
            ),
            (
                vec![
                    ("./l", T::Symlink, 0o777, b"", "/"),
                    ("./l/etc/x", T::Regular, 0o644, b"x", ""),
                ],
                vec![],
                "goes through a symlink",
            ),
            (
                vec![("./a", T::Regular, 0o644, b"x", "")],
                vec![("./md5sums", b"00000000000000000000000000000000  a\n")],
                "checksum mismatch",
            ),
            (
                vec![("./a", T::Regular, 0o644, b"x", "")],
                vec![("./conffiles", b"/etc/none\n")],
                "conffile /etc/none",
            ),
        ];
        for (data, control, why) in cases {
            let dir = tempfile::tempdir().unwrap();
            let d = deb(dir.path(), &control, &data);
            let err = stage_deb(&d, &dir.path().join("stage"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn normalize_rejects_escapes() {
        assert_eq!(normalize_entry(b"./usr/bin/x").unwrap(), "usr/bin/x");
        assert_eq!(normalize_entry(b"/usr//bin/./x/").unwrap(), "usr/bin/x");
        assert_eq!(normalize_entry(b"./").unwrap(), "");
        assert!(normalize_entry(b"./usr/../../etc/passwd").is_err());
        assert!(normalize_entry(b"..").is_err());
        assert!(normalize_entry(b"\xff\xfe").is_err());
    }

    proptest! {
        #[test]
        fn normalized_paths_never_escape(parts in proptest::collection::vec(
            prop_oneof!["\\.\\.", "\\.", "", "[a-z]{1,5}"], 0..8)) {
            let raw = parts.join("/");
            if let Ok(rel) = normalize_entry(raw.as_bytes()) {
                prop_assert!(!rel.starts_with('/'));
                prop_assert!(rel.split('/').all(|p| p != ".." && p != "."));
                prop_assert!(!raw.split('/').any(|p| p == ".."));
            }
        }
    }
}
