//! `verify`: the node's files against its packages' checksums, plus files no package owns.
//!
//! Unowned files are looked for everywhere except `etc/cairn/` (the node's own settings),
//! `var/` (run-time data, written by programs by design) and descendant nodes (nodes nest
//! in the filesystem; each one is verified on its own).

use crate::control::Paragraph;
use crate::db::{Db, parse_conffiles_field};
use crate::deb::md5_file;
use crate::error::{Error, Result};
use crate::family::open;
use crate::progress::Event;
use serde::Serialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Paths (with a leading `/`) that differ from what the packages installed.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct VerifyReport {
    pub modified: Vec<String>,
    pub missing: Vec<String>,
    pub unowned: Vec<String>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.modified.is_empty() && self.missing.is_empty() && self.unowned.is_empty()
    }
}

/// Checks the leaf node of `family` (repairing an interrupted transaction first).
pub fn verify(family: &[PathBuf], progress: &mut dyn FnMut(Event<'_>)) -> Result<VerifyReport> {
    let opened = open(family, &[], progress)?;
    let db = Db::load(&opened.leaf)?;
    let root = opened.leaf.root.clone();
    let mut report = VerifyReport::default();
    let mut owned = HashSet::new();
    for p in db.installed() {
        check_package(&root, &db, p, &mut report, &mut owned)?;
    }
    walk_unowned(&root, &root, &owned, &mut report.unowned)?;
    report.modified.sort();
    report.missing.sort();
    report.unowned.sort();
    Ok(report)
}

fn check_package(
    root: &Path,
    db: &Db,
    p: &Paragraph,
    report: &mut VerifyReport,
    owned: &mut HashSet<String>,
) -> Result<()> {
    let mut sums = db.md5sums(p)?;
    let conffiles = parse_conffiles_field(p.get("Conffiles").unwrap_or(""));
    sums.extend(
        conffiles
            .into_iter()
            .map(|(path, md5)| (md5, path.trim_start_matches('/').to_string())),
    );
    let summed: HashSet<String> = sums.iter().map(|(_, rel)| rel.clone()).collect();
    for (md5, rel) in &sums {
        let path = root.join(rel);
        match std::fs::symlink_metadata(&path) {
            Err(_) => report.missing.push(format!("/{rel}")),
            Ok(m) if !m.is_file() => report.modified.push(format!("/{rel}")),
            Ok(_) => {
                let actual = md5_file(&path).map_err(Error::io(&path))?;
                if !actual.eq_ignore_ascii_case(md5) {
                    report.modified.push(format!("/{rel}"));
                }
            }
        }
    }
    for listed in db.file_list(p)? {
        let rel = listed.trim_start_matches('/').to_string();
        if rel.is_empty() || rel == "." {
            continue;
        }
        if !summed.contains(&rel) && std::fs::symlink_metadata(root.join(&rel)).is_err() {
            report.missing.push(listed.clone());
        }
        owned.insert(rel);
    }
    Ok(())
}

/// Lists files and symlinks below `dir` that no package owns, stopping at descendant nodes.
fn walk_unowned(
    root: &Path,
    dir: &Path,
    owned: &HashSet<String>,
    out: &mut Vec<String>,
) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(Error::io(dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(dir))?;
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if rel == "var" || rel == "etc/cairn" {
            continue;
        }
        let kind = entry.file_type().map_err(Error::io(&path))?;
        if kind.is_dir() {
            if !cairn_config::is_node(&path) {
                walk_unowned(root, &path, owned, out)?;
            }
        } else if !owned.contains(&rel) {
            out.push(format!("/{rel}"));
        }
    }
    Ok(())
}
