//! `remove`: refuse when something still depends on the packages, else delete their files
//! and database entries in one transaction (conffiles included: there is no "purge" step).

use crate::control::{Paragraph, parse_relations};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::family::{Options, ResealKey, check_sealed, open, owners, provided_names};
use crate::install::{Action, Outcome, PackageChange};
use crate::layout::NodePaths;
use crate::progress::{Event, Phase};
use crate::scripts::{Invocation, run as run_script};
use crate::txn::{Change, Txn};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Directories a node has from its creation: never pruned when they become empty.
const SKELETON: [&str; 10] = [
    "usr",
    "usr/bin",
    "usr/lib",
    "var",
    "var/local",
    "var/lib",
    "etc",
    "etc/cairn",
    "var/lib/dpkg",
    "var/lib/cairn",
];

/// Removes `names` from the leaf of `family`.
pub fn remove(
    family: &[PathBuf],
    names: &[String],
    opts: &Options,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome> {
    let reseal = ResealKey::load(opts)?;
    let opened = open(family, &opts.descendants, progress)?;
    let mut own = Db::load(&opened.leaf)?;
    let mut targets = Vec::new();
    for name in names {
        let p = own.find(name).ok_or_else(|| Error::NotInstalled {
            package: name.clone(),
            node: opened.leaf.root.clone(),
        })?;
        targets.push(p.clone());
    }
    check_dependents(&opened.ancestors, &own, &targets, &opts.descendants)?;
    check_sealed(&opened.leaf, opts, reseal.as_ref(), "remove")?;
    let mut txn = Txn::begin(&opened.leaf)?;
    let result = remove_in(
        &opened.leaf,
        &mut own,
        &targets,
        &mut txn,
        opts,
        reseal.as_ref(),
        progress,
    );
    match result {
        Ok(dirs) => {
            txn.commit()?;
            prune_dirs(&opened.leaf.root, &own, &dirs)?;
        }
        Err(err) => {
            if let Err(e) = txn.rollback() {
                // The journal stays; the next command on the node retries the rollback.
                tracing::error!("rollback failed, will be retried: {e}");
            }
            return Err(err);
        }
    }
    Ok(Outcome {
        changes: targets
            .iter()
            .map(|p| PackageChange {
                package: p.package().to_string(),
                action: Action::Remove,
                version: p.version().to_string(),
                old_version: None,
            })
            .collect(),
        notes: crate::install::stale_seal_note(&opened.leaf, reseal.as_ref())
            .into_iter()
            .collect(),
    })
}

/// The steps inside the transaction; returns the directories the packages listed. With
/// `reseal`, the seal is written again before the postrms run and after them.
fn remove_in(
    leaf: &NodePaths,
    own: &mut Db,
    targets: &[Paragraph],
    txn: &mut Txn,
    opts: &Options,
    reseal: Option<&ResealKey>,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<String>> {
    let mut postrms = Vec::new();
    for p in targets {
        if let Some(body) = own.script(p, "prerm")? {
            script(leaf, opts, p, "prerm", &body)?;
        }
        postrms.push(own.script(p, "postrm")?);
    }
    let (changes, dirs) = deletions(own, targets)?;
    for (i, p) in targets.iter().enumerate() {
        progress(Event::Step {
            phase: Phase::Remove,
            done: i,
            total: targets.len(),
            item: p.package(),
        });
    }
    txn.apply(&[], &changes)?;
    for p in targets {
        own.remove_info(p)?;
        own.forget(p.package());
    }
    own.save()?;
    if let Some(reseal) = reseal {
        reseal.seal(leaf)?;
    }
    for (p, body) in targets.iter().zip(postrms) {
        if let Some(body) = body {
            script(leaf, opts, p, "postrm", &body)?;
        }
    }
    if let Some(reseal) = reseal {
        reseal.seal(leaf)?;
    }
    progress(Event::Step {
        phase: Phase::Remove,
        done: targets.len(),
        total: targets.len(),
        item: "",
    });
    Ok(dirs)
}

fn script(leaf: &NodePaths, opts: &Options, p: &Paragraph, name: &str, body: &[u8]) -> Result<()> {
    run_script(
        &opts.scripts,
        &Invocation {
            leaf: &leaf.root,
            package: p.package(),
            script: name,
            body,
            args: &["remove"],
        },
    )
}

/// Files to delete (those no remaining package also owns) and the directories listed.
fn deletions(own: &Db, targets: &[Paragraph]) -> Result<(Vec<Change>, Vec<String>)> {
    let removing: HashSet<&str> = targets.iter().map(|p| p.package()).collect();
    let others = owners(own)?;
    let mut changes = Vec::new();
    let mut dirs = Vec::new();
    for p in targets {
        for path in own.file_list(p)? {
            let rel = path
                .trim_start_matches('/')
                .trim_start_matches("./")
                .to_string();
            if rel.is_empty() || rel == "." {
                continue;
            }
            let shared = others
                .get(&path)
                .is_some_and(|o| !removing.contains(o.as_str()));
            let full = own.paths.root.join(&rel);
            let is_dir = std::fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir());
            if is_dir {
                dirs.push(rel);
            } else if !shared {
                changes.push(Change::Delete { rel });
            }
        }
    }
    Ok((changes, dirs))
}

/// Removes now-empty directories no remaining package lists, deepest first.
fn prune_dirs(root: &Path, own: &Db, dirs: &[String]) -> Result<()> {
    let still = owners(own)?;
    let mut dirs: Vec<&String> = dirs.iter().collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.matches('/').count()));
    for rel in dirs {
        if SKELETON.contains(&rel.as_str()) || still.contains_key(&format!("/{rel}")) {
            continue;
        }
        // Not empty or already gone: both fine.
        let _ = std::fs::remove_dir(root.join(rel));
    }
    Ok(())
}

/// Refuses when a package of the leaf (not being removed) or of a descendant has a
/// dependency that only the removed packages satisfy.
fn check_dependents(
    ancestors: &[(NodePaths, Db)],
    own: &Db,
    targets: &[Paragraph],
    descendants: &[PathBuf],
) -> Result<()> {
    let removing: HashSet<&str> = targets.iter().map(|p| p.package()).collect();
    let removed_names = provided_names(targets.iter());
    let descendant_dbs: Vec<(PathBuf, Db)> = descendants
        .iter()
        .map(|d| Ok((d.clone(), Db::load(&NodePaths::open(d)?)?)))
        .collect::<Result<_>>()?;
    let remaining = provided_names(
        ancestors
            .iter()
            .flat_map(|(_, db)| db.installed())
            .chain(own.installed().filter(|p| !removing.contains(p.package())))
            .chain(descendant_dbs.iter().flat_map(|(_, db)| db.installed())),
    );
    let mut dependents = Vec::new();
    let candidates = own
        .installed()
        .filter(|p| !removing.contains(p.package()))
        .map(|p| (p, own.paths.root.as_path()))
        .chain(
            descendant_dbs
                .iter()
                .flat_map(|(d, db)| db.installed().map(move |p| (p, d.as_path()))),
        );
    for (p, node) in candidates {
        if breaks(p, &removed_names, &remaining) {
            dependents.push(format!("{} (in {})", p.package(), node.display()));
        }
    }
    if dependents.is_empty() {
        return Ok(());
    }
    Err(Error::HasDependents {
        package: targets
            .iter()
            .map(|p| p.package())
            .collect::<Vec<_>>()
            .join(", "),
        dependents: dependents.join(", "),
    })
}

fn breaks(p: &Paragraph, removed: &HashSet<String>, remaining: &HashSet<String>) -> bool {
    ["Depends", "Pre-Depends"]
        .iter()
        .filter_map(|f| p.get(f))
        .any(|field| {
            parse_relations(field).iter().any(|group| {
                group.iter().any(|r| removed.contains(&r.name))
                    && !group.iter().any(|r| remaining.contains(&r.name))
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::parse_paragraphs;

    fn para(text: &str) -> Paragraph {
        parse_paragraphs(text, Path::new("t")).unwrap().remove(0)
    }

    #[test]
    fn dependency_breakage_respects_alternatives() {
        let removed: HashSet<String> = ["lib".to_string()].into();
        let mut remaining: HashSet<String> = ["other".to_string()].into();
        assert!(breaks(
            &para("Package: t\nDepends: lib (>= 1)\n"),
            &removed,
            &remaining
        ));
        assert!(!breaks(
            &para("Package: t\nDepends: lib | other\n"),
            &removed,
            &remaining
        ));
        assert!(!breaks(
            &para("Package: t\nDepends: zzz\n"),
            &removed,
            &remaining
        ));
        remaining.insert("lib".into());
        assert!(!breaks(
            &para("Package: t\nPre-Depends: lib\n"),
            &removed,
            &remaining
        ));
    }
}
