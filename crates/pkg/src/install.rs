//! `install` and `upgrade`: resolve with apt, download, stage, check, move into the node
//! under a transaction, record in the node's database, configure.

use crate::apt::{Apt, Planned};
use crate::control::Paragraph;
use crate::db::{Db, conffiles_field, parse_conffiles_field};
use crate::deb::{EntryKind, Staged, md5_file, stage_deb};
use crate::error::{Error, Result};
use crate::family::{Opened, Options, ResealKey, check_sealed, open, owners};
use crate::progress::{Event, Phase};
use crate::scripts::{Invocation, run as run_script};
use crate::txn::{Change, Txn};
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// What a command changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub changes: Vec<PackageChange>,
    /// Things not done, with the reason (already installed, nothing to upgrade).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PackageChange {
    pub package: String,
    pub action: Action,
    pub version: String,
    pub old_version: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Install,
    Upgrade,
    Remove,
}

/// Installs `names` into the leaf of `family` (root first), with whatever dependencies
/// the ancestors (and the host, when given) do not already provide.
pub fn install(
    family: &[PathBuf],
    names: &[String],
    opts: &Options,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome> {
    let reseal = ResealKey::load(opts)?;
    let opened = open(family, &[], progress)?;
    let own = Db::load(&opened.leaf)?;
    let mut outcome = Outcome::default();
    let mut wanted = Vec::new();
    for name in names {
        if own.find(name).is_some() {
            outcome.notes.push(format!("{name} is already installed"));
        } else if let Some(node) = opened.ancestor_with(name).filter(|_| !opts.force) {
            return Err(Error::AncestorHas {
                package: name.clone(),
                node: node.to_path_buf(),
            });
        } else {
            wanted.push(name.clone());
        }
    }
    if wanted.is_empty() {
        return Ok(outcome);
    }
    check_sealed(&opened.leaf, opts, reseal.as_ref(), "install")?;
    let exclude = if opts.force {
        wanted.clone()
    } else {
        Vec::new()
    };
    let apt = prepare_apt(&opened, &own, opts, &exclude)?;
    let mut args = vec!["install"];
    args.extend(wanted.iter().map(String::as_str));
    let plan = apt.simulate(&args)?;
    if !plan.removals.is_empty() {
        return Err(Error::WouldRemove {
            packages: plan.removals.join(", "),
        });
    }
    for name in &wanted {
        if !plan.installs.iter().any(|p| &p.name == name) {
            outcome.notes.push(format!(
                "{name}: nothing to install (already provided by the host's base system or an ancestor)"
            ));
        }
    }
    if !plan.installs.is_empty() {
        outcome.changes = apply_plan(
            &opened,
            own,
            &apt,
            &plan.installs,
            opts,
            reseal.as_ref(),
            progress,
        )?;
        outcome
            .notes
            .extend(stale_seal_note(&opened.leaf, reseal.as_ref()));
    }
    Ok(outcome)
}

/// Upgrades the leaf's own packages to the newest versions its repositories offer.
pub fn upgrade(
    family: &[PathBuf],
    opts: &Options,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Outcome> {
    let reseal = ResealKey::load(opts)?;
    let opened = open(family, &[], progress)?;
    let own = Db::load(&opened.leaf)?;
    let apt = prepare_apt(&opened, &own, opts, &[])?;
    let plan = apt.simulate(&["dist-upgrade"])?;
    if !plan.removals.is_empty() {
        return Err(Error::WouldRemove {
            packages: plan.removals.join(", "),
        });
    }
    let mut outcome = Outcome::default();
    if plan.installs.is_empty() {
        outcome.notes.push("all packages are up to date".into());
        return Ok(outcome);
    }
    check_sealed(&opened.leaf, opts, reseal.as_ref(), "upgrade")?;
    outcome.changes = apply_plan(
        &opened,
        own,
        &apt,
        &plan.installs,
        opts,
        reseal.as_ref(),
        progress,
    )?;
    outcome
        .notes
        .extend(stale_seal_note(&opened.leaf, reseal.as_ref()));
    Ok(outcome)
}

/// A sealed node no longer matches its seal once its packages change (unless resealed).
pub(crate) fn stale_seal_note(
    leaf: &crate::layout::NodePaths,
    reseal: Option<&ResealKey>,
) -> Option<String> {
    (reseal.is_none() && leaf.seal().exists()).then(|| {
        format!(
            "{} is sealed and has changed: seal it again (cairn node seal)",
            leaf.root.display()
        )
    })
}

/// Writes apt's view of the family and refreshes the lists.
pub(crate) fn prepare_apt(
    opened: &Opened,
    own: &Db,
    opts: &Options,
    exclude: &[String],
) -> Result<Apt> {
    if crate::repos::read_lines(&opened.leaf)?.is_empty() {
        return Err(Error::NoRepos {
            node: opened.leaf.root.clone(),
        });
    }
    let status = opened.synthesized_status(own, opts.host_status.as_deref(), exclude)?;
    prepare_apt_with_status(opened, &status)
}

/// Writes apt's configuration with `status` as the installed packages and refreshes lists.
pub(crate) fn prepare_apt_with_status(opened: &Opened, status: &str) -> Result<Apt> {
    if crate::repos::read_lines(&opened.leaf)?.is_empty() {
        return Err(Error::NoRepos {
            node: opened.leaf.root.clone(),
        });
    }
    let apt = Apt::prepare(&opened.leaf, status)?;
    apt.update()?;
    Ok(apt)
}

/// Downloads and installs `plan` in one transaction; any failure leaves the node as it was
/// (its seal included). With `reseal`, the new seal is written once the files and the
/// database are in place, before the postinsts run (their sandbox checks it), and again
/// after them, all before the commit.
fn apply_plan(
    opened: &Opened,
    mut own: Db,
    apt: &Apt,
    plan: &[Planned],
    opts: &Options,
    reseal: Option<&ResealKey>,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<PackageChange>> {
    let total = plan.len();
    progress(Event::Step {
        phase: Phase::Download,
        done: 0,
        total,
        item: &names(plan),
    });
    let debs_dir = opened.leaf.state().join("debs");
    crate::layout::remove_tree(&debs_dir)?;
    let debs = apt.download(plan, &debs_dir)?;
    let mut txn = Txn::begin(&opened.leaf)?;
    let result = (|| {
        let mut staged = Vec::new();
        for (i, deb) in debs.iter().enumerate() {
            progress(Event::Step {
                phase: Phase::Unpack,
                done: i,
                total,
                item: &plan[i].name,
            });
            let s = stage_deb(deb, &txn.stage_dir().join(i.to_string()))?;
            if s.name() != plan[i].name {
                return Err(Error::BadDeb {
                    deb: deb.clone(),
                    message: format!("contains {}, not {}", s.name(), plan[i].name),
                });
            }
            staged.push(s);
        }
        check_conflicts(opened, &own, &staged)?;
        run_preinst(opened, &own, &staged, opts)?;
        let (dirs, changes) = file_changes(&own, &staged)?;
        txn.apply(&dirs, &changes)?;
        record(&mut own, &staged)?;
        if let Some(reseal) = reseal {
            reseal.seal(&opened.leaf)?;
        }
        configure(opened, plan, &staged, opts, progress)?;
        if let Some(reseal) = reseal {
            reseal.seal(&opened.leaf)?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => txn.commit()?,
        Err(err) => {
            if let Err(e) = txn.rollback() {
                // The journal stays; the next command on the node retries the rollback.
                tracing::error!("rollback failed, will be retried: {e}");
            }
            let _ = crate::layout::remove_tree(&debs_dir);
            return Err(err);
        }
    }
    crate::layout::remove_tree(&debs_dir)?;
    progress(Event::Step {
        phase: Phase::Configure,
        done: total,
        total,
        item: "",
    });
    Ok(plan
        .iter()
        .map(|p| PackageChange {
            package: p.name.clone(),
            action: if p.old_version.is_some() {
                Action::Upgrade
            } else {
                Action::Install
            },
            version: p.version.clone(),
            old_version: p.old_version.clone(),
        })
        .collect())
}

fn names(plan: &[Planned]) -> String {
    plan.iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A file may belong to one package only, across the whole family: the leaf's other
/// packages, the ancestors' packages, and the other packages of this same install.
fn check_conflicts(opened: &Opened, own: &Db, staged: &[Staged]) -> Result<()> {
    let own_owners = owners(own)?;
    let ancestor_owners = opened.ancestor_owners()?;
    let mut claimed: HashMap<String, String> = HashMap::new();
    for s in staged {
        for entry in s.entries.iter().filter(|e| e.kind != EntryKind::Dir) {
            let path = format!("/{}", entry.rel);
            let conflict = |owner: &str, node: &std::path::Path| Error::FileConflict {
                path: entry.rel.clone(),
                package: s.name().to_string(),
                owner: owner.to_string(),
                node: node.to_path_buf(),
            };
            if let Some(owner) = own_owners.get(&path).filter(|o| *o != s.name()) {
                return Err(conflict(owner, &opened.leaf.root));
            }
            if let Some((owner, node)) = ancestor_owners.get(&path).filter(|(o, _)| o != s.name()) {
                return Err(conflict(owner, node));
            }
            if let Some(owner) = claimed.insert(path.clone(), s.name().to_string()) {
                return Err(conflict(&owner, &opened.leaf.root));
            }
        }
    }
    Ok(())
}

fn run_preinst(opened: &Opened, own: &Db, staged: &[Staged], opts: &Options) -> Result<()> {
    for s in staged {
        let Some((_, body)) = s.info.scripts.iter().find(|(n, _)| n == "preinst") else {
            continue;
        };
        let old = own.find(s.name()).map(|p| p.version().to_string());
        let args: Vec<&str> = match &old {
            Some(v) => vec!["upgrade", v.as_str()],
            None => vec!["install"],
        };
        run_script(
            &opts.scripts,
            &Invocation {
                leaf: &opened.leaf.root,
                package: s.name(),
                script: "preinst",
                body,
                args: &args,
            },
        )?;
    }
    Ok(())
}

/// Directories to create (parents first) and file changes: every staged file put in
/// place, and every file of a replaced version that the new version no longer has deleted.
fn file_changes(own: &Db, staged: &[Staged]) -> Result<(Vec<String>, Vec<Change>)> {
    let mut dirs = Vec::new();
    let mut seen_dirs = HashSet::new();
    let mut changes = Vec::new();
    let mut put = HashSet::new();
    let kept = locally_modified_conffiles(own, staged);
    for s in staged {
        for entry in &s.entries {
            if kept.contains(&entry.rel) {
                put.insert(entry.rel.clone());
                changes.push(Change::Put {
                    rel: format!("{}.dpkg-dist", entry.rel),
                    source: s.stage.join(&entry.rel),
                });
                continue;
            }
            for (i, _) in entry.rel.match_indices('/') {
                let parent = &entry.rel[..i];
                if seen_dirs.insert(parent.to_string()) {
                    dirs.push(parent.to_string());
                }
            }
            if entry.kind == EntryKind::Dir {
                if seen_dirs.insert(entry.rel.clone()) {
                    dirs.push(entry.rel.clone());
                }
            } else if put.insert(entry.rel.clone()) {
                changes.push(Change::Put {
                    rel: entry.rel.clone(),
                    source: s.stage.join(&entry.rel),
                });
            }
        }
    }
    for s in staged {
        let Some(old) = own.find(s.name()) else {
            continue;
        };
        for path in own.file_list(old)? {
            let rel = path.trim_start_matches('/').to_string();
            let is_dir = s.stage.join(&rel).is_dir() || seen_dirs.contains(&rel);
            if !rel.is_empty() && !is_dir && !put.contains(&rel) {
                changes.push(Change::Delete { rel });
            }
        }
    }
    Ok((dirs, changes))
}

/// Conffiles the administrator changed since the old version installed them, and that the
/// new version changes too: the local file stays, the new one lands beside it as
/// `.dpkg-dist` (dpkg's behaviour without a prompt).
fn locally_modified_conffiles(own: &Db, staged: &[Staged]) -> HashSet<String> {
    let mut kept = HashSet::new();
    for s in staged {
        let Some(old) = own.find(s.name()) else {
            continue;
        };
        for (path, old_md5) in parse_conffiles_field(old.get("Conffiles").unwrap_or("")) {
            let Some((_, new_md5)) = s.conffiles.iter().find(|(p, _)| *p == path) else {
                continue;
            };
            let rel = path.trim_start_matches('/').to_string();
            let Ok(current) = md5_file(&own.paths.root.join(&rel)) else {
                continue;
            };
            if current != old_md5 && current != *new_md5 && old_md5 != *new_md5 {
                kept.insert(rel);
            }
        }
    }
    kept
}

/// Writes the packages into the leaf's database as installed.
fn record(own: &mut Db, staged: &[Staged]) -> Result<()> {
    for s in staged {
        let mut paragraph: Paragraph = s.control.clone();
        paragraph.insert_after("Package", "Status", "install ok installed");
        if !s.conffiles.is_empty() {
            paragraph.set("Conffiles", &conffiles_field(&s.conffiles));
        }
        own.write_info(&paragraph, &s.info)?;
        own.upsert(paragraph);
    }
    own.save()
}

/// Runs each postinst with `configure`, in apt's order (dependencies first).
fn configure(
    opened: &Opened,
    plan: &[Planned],
    staged: &[Staged],
    opts: &Options,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<()> {
    for (i, (p, s)) in plan.iter().zip(staged).enumerate() {
        progress(Event::Step {
            phase: Phase::Configure,
            done: i,
            total: plan.len(),
            item: &p.name,
        });
        let Some((_, body)) = s.info.scripts.iter().find(|(n, _)| n == "postinst") else {
            continue;
        };
        let mut args = vec!["configure"];
        if let Some(old) = &p.old_version {
            args.push(old);
        }
        run_script(
            &opts.scripts,
            &Invocation {
                leaf: &opened.leaf.root,
                package: s.name(),
                script: "postinst",
                body,
                args: &args,
            },
        )?;
    }
    Ok(())
}
