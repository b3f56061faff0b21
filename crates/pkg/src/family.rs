//! The node family as the package layer sees it: the leaf's database, the ancestors'
//! databases (read-only), locks, and the status file apt resolves against.

use crate::control::{Paragraph, parse_paragraphs};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::layout::NodePaths;
use crate::lock::{Locks, lock_nodes};
use crate::progress::Event;
use crate::scripts::Scripts;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Settings of a changing command (install, remove, upgrade).
#[derive(Debug, Clone)]
pub struct Options {
    /// Install into the leaf even when an ancestor already has the package.
    pub force: bool,
    pub scripts: Scripts,
    /// The host's dpkg status, counted as installed when the family exports the host's
    /// base system (normally `/var/lib/dpkg/status`).
    pub host_status: Option<PathBuf>,
    /// Nodes below the leaf, whose packages may depend on the leaf's (removal checks).
    pub descendants: Vec<PathBuf>,
    /// The family says `verify: required`: a sealed leaf is not changed unless `reseal`
    /// says how to seal it again (its maintainer scripts, and every later launch, check
    /// the seal).
    pub seal_required: bool,
    /// `--reseal KEY`: seal the leaf again as part of the change, inside its transaction.
    pub reseal: Option<Reseal>,
}

/// A key of Cairn's keyring to seal the leaf again with (as `cairn node seal --key` takes).
#[derive(Debug, Clone)]
pub struct Reseal {
    pub keys_dir: PathBuf,
    pub key: String,
}

/// The key a change reseals with, loaded before anything is touched.
pub(crate) struct ResealKey {
    key: cairn_keys::SigningKey,
    name: String,
    /// The keyring, whose public keys are the ones seal checks trust.
    keys_dir: PathBuf,
}

impl ResealKey {
    /// Loads `opts.reseal`'s key: a wrong name fails here, before the node is opened.
    pub(crate) fn load(opts: &Options) -> Result<Option<ResealKey>> {
        let Some(reseal) = &opts.reseal else {
            return Ok(None);
        };
        let key = cairn_keys::load_signing_key(&reseal.keys_dir, &reseal.key)?;
        Ok(Some(ResealKey {
            key,
            name: reseal.key.clone(),
            keys_dir: reseal.keys_dir.clone(),
        }))
    }

    /// Writes the leaf's seal for what it holds now (the caller holds its lock).
    pub(crate) fn seal(&self, leaf: &NodePaths) -> Result<()> {
        crate::seal::write_seal(leaf, &self.key, &self.name).map(|_| ())
    }
}

/// Refuses to change a sealed leaf of a `verify: required` family without a key to seal it
/// again: the change would break the seal, so its scripts and every later launch would fail.
/// A reseal starts from an intact seal, so that it never signs changes made outside Cairn.
pub(crate) fn check_sealed(
    leaf: &NodePaths,
    opts: &Options,
    reseal: Option<&ResealKey>,
    verb: &'static str,
) -> Result<()> {
    if !leaf.seal().exists() {
        return Ok(());
    }
    match reseal {
        Some(reseal) => match crate::seal::check_seal(&leaf.root, &reseal.keys_dir) {
            Err(Error::SealBroken { path, change, .. }) => {
                Err(Error::ResealAltered { path, change })
            }
            other => other,
        },
        None if opts.seal_required => Err(Error::Sealed { verb }),
        None => Ok(()),
    }
}

impl Default for Options {
    fn default() -> Options {
        Options {
            force: false,
            scripts: Scripts::Skip,
            host_status: None,
            descendants: Vec::new(),
            seal_required: false,
            reseal: None,
        }
    }
}

/// An opened family with the leaf locked and repaired.
#[derive(Debug)]
pub struct Opened {
    pub leaf: NodePaths,
    pub ancestors: Vec<(NodePaths, Db)>,
    _locks: Locks,
}

/// Opens `family` (root first, leaf last), locking the leaf exclusively and `shared`
/// nodes plus the ancestors shared, then repairs an interrupted transaction in the leaf.
pub fn open(
    family: &[PathBuf],
    shared: &[PathBuf],
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Opened> {
    let (leaf_path, ancestor_paths) = family.split_last().ok_or(Error::EmptyFamily)?;
    let leaf = NodePaths::open(leaf_path)?;
    let ancestors: Vec<NodePaths> = ancestor_paths
        .iter()
        .map(|p| NodePaths::open(p))
        .collect::<Result<_>>()?;
    let extra: Vec<NodePaths> = shared
        .iter()
        .map(|p| NodePaths::open(p))
        .collect::<Result<_>>()?;
    leaf.ensure_admindir()?;
    let mut shared_all = ancestors.clone();
    shared_all.extend(extra);
    let locks = lock_nodes(Some(&leaf), &shared_all, progress)?;
    if crate::txn::repair(&leaf)? {
        progress(Event::RolledBack { node: &leaf.root });
    }
    // With the shared locks held no command is changing an ancestor, so a transaction
    // left in one was interrupted: its database cannot be trusted until it is repaired.
    if let Some(broken) = ancestors.iter().find(|a| crate::txn::pending(a)) {
        return Err(Error::Interrupted {
            node: broken.root.clone(),
        });
    }
    let ancestors = ancestors
        .into_iter()
        .map(|paths| {
            let db = Db::load(&paths)?;
            Ok((paths, db))
        })
        .collect::<Result<_>>()?;
    Ok(Opened {
        leaf,
        ancestors,
        _locks: locks,
    })
}

impl Opened {
    /// The nearest ancestor that has `name` installed.
    pub fn ancestor_with(&self, name: &str) -> Option<&Path> {
        self.ancestors
            .iter()
            .rev()
            .find(|(_, db)| db.find(name).is_some())
            .map(|(p, _)| p.root.as_path())
    }

    /// The status file apt resolves against: host and ancestors' packages held (present,
    /// never to be changed), nearest node winning, then the leaf's own packages.
    /// Packages in `exclude` are left out of the ancestors' part (for `--force`).
    pub fn synthesized_status(
        &self,
        own: &Db,
        host_status: Option<&Path>,
        exclude: &[String],
    ) -> Result<String> {
        let mut seen: HashSet<String> = own.installed().map(|p| p.package().to_string()).collect();
        seen.extend(exclude.iter().cloned());
        let mut text = String::new();
        let held = |p: &Paragraph, seen: &mut HashSet<String>, text: &mut String| {
            if p.is_installed() && seen.insert(p.package().to_string()) {
                let mut p = p.clone();
                p.set("Status", "hold ok installed");
                text.push_str(&p.to_text());
                text.push('\n');
            }
        };
        for (_, db) in self.ancestors.iter().rev() {
            for p in db.installed() {
                held(p, &mut seen, &mut text);
            }
        }
        if let Some(host) = host_status {
            let host_text = crate::layout::read_optional(host)?.unwrap_or_default();
            for p in parse_paragraphs(&host_text, host)? {
                held(&p, &mut seen, &mut text);
            }
        }
        for p in own.installed() {
            text.push_str(&p.to_text());
            text.push('\n');
        }
        Ok(text)
    }

    /// Who owns each path in the ancestors: path (with leading `/`) to (package, node).
    pub fn ancestor_owners(&self) -> Result<HashMap<String, (String, PathBuf)>> {
        let mut owners = HashMap::new();
        for (paths, db) in &self.ancestors {
            for p in db.installed() {
                for path in db.file_list(p)? {
                    owners.insert(path, (p.package().to_string(), paths.root.clone()));
                }
            }
        }
        Ok(owners)
    }
}

/// Path (with leading `/`) to owning package, for one database.
pub fn owners(db: &Db) -> Result<HashMap<String, String>> {
    let mut owners = HashMap::new();
    for p in db.installed() {
        for path in db.file_list(p)? {
            owners.insert(path, p.package().to_string());
        }
    }
    Ok(owners)
}

/// Names a set of packages provides: their own names and their `Provides`.
pub fn provided_names<'a>(packages: impl Iterator<Item = &'a Paragraph>) -> HashSet<String> {
    let mut names = HashSet::new();
    for p in packages {
        names.insert(p.package().to_string());
        if let Some(provides) = p.get("Provides") {
            for group in crate::control::parse_relations(provides) {
                names.extend(group.into_iter().map(|r| r.name));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::Path;

    fn node(dir: &Path, status: &str) -> PathBuf {
        std::fs::create_dir_all(dir.join("etc/cairn")).unwrap();
        std::fs::create_dir_all(dir.join("var/lib/dpkg")).unwrap();
        std::fs::write(dir.join("etc/cairn/node.yaml"), "node: {alias: x}\n").unwrap();
        std::fs::write(dir.join("var/lib/dpkg/status"), status).unwrap();
        dir.to_path_buf()
    }

    fn names_and_status(text: &str) -> Vec<(String, String)> {
        parse_paragraphs(text, Path::new("s"))
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p.package().to_string(),
                    p.get("Status").unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn synthesized_status_holds_ancestors_and_host_nearest_first() {
        let dir = tempfile::tempdir().unwrap();
        let ok = "install ok installed";
        let root = node(
            &dir.path().join("r"),
            &format!(
                "Package: a\nStatus: {ok}\nVersion: 2\n\nPackage: b\nStatus: deinstall ok config-files\n"
            ),
        );
        let mid = node(
            &root.join("m"),
            &format!("Package: a\nStatus: {ok}\nVersion: 3\n"),
        );
        let leaf = node(
            &mid.join("l"),
            &format!("Package: c\nStatus: {ok}\nVersion: 1\n"),
        );
        let host = dir.path().join("host-status");
        std::fs::write(&host, format!("Package: a\nStatus: {ok}\nVersion: 1\n\nPackage: h\nStatus: {ok}\n\nPackage: x\nStatus: {ok}\n")).unwrap();
        let family = [root, mid, leaf];
        let opened = open(&family, &[], &mut |_| {}).unwrap();
        let own = Db::load(&opened.leaf).unwrap();
        let text = opened
            .synthesized_status(&own, Some(&host), &["x".to_string()])
            .unwrap();
        let hold = "hold ok installed".to_string();
        assert_eq!(
            names_and_status(&text),
            vec![
                ("a".to_string(), hold.clone()),
                ("h".to_string(), hold),
                ("c".to_string(), ok.to_string()),
            ]
        );
        assert!(
            text.contains("Version: 3"),
            "the nearest ancestor's version wins: {text}"
        );
        assert_eq!(opened.ancestor_with("a"), Some(family[1].as_path()));
        assert_eq!(opened.ancestor_with("b"), None);
        let without_host = opened.synthesized_status(&own, None, &[]).unwrap();
        assert_eq!(names_and_status(&without_host).len(), 2);
    }

    /// Per node (root first, leaf last): package names (from a small pool) with versions.
    fn layers() -> impl Strategy<Value = Vec<Vec<(u8, u8)>>> {
        proptest::collection::vec(proptest::collection::vec((0u8..6, 0u8..9), 0..5), 1..4)
    }

    fn status_of(packages: &[(u8, u8)]) -> String {
        let mut seen = HashSet::new();
        packages
            .iter()
            .filter(|(n, _)| seen.insert(*n))
            .map(|(n, v)| format!("Package: p{n}\nStatus: install ok installed\nVersion: {v}\n\n"))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn merge_keeps_one_entry_per_package_nearest_first(layers in layers(), host in proptest::collection::vec((0u8..6, 0u8..9), 0..5)) {
            let dir = tempfile::tempdir().unwrap();
            let mut family = Vec::new();
            let mut path = dir.path().join("n0");
            for (i, pkgs) in layers.iter().enumerate() {
                family.push(node(&path, &status_of(pkgs)));
                path = path.join(format!("n{}", i + 1));
            }
            let host_file = dir.path().join("host");
            std::fs::write(&host_file, status_of(&host)).unwrap();
            let opened = open(&family, &[], &mut |_| {}).unwrap();
            let own = Db::load(&opened.leaf).unwrap();
            let text = opened.synthesized_status(&own, Some(&host_file), &[]).unwrap();
            let merged = parse_paragraphs(&text, Path::new("s")).unwrap();
            let mut names = HashSet::new();
            for p in &merged {
                prop_assert!(names.insert(p.package().to_string()), "duplicate {}", p.package());
                let name: u8 = p.package()[1..].parse().unwrap();
                let first = |pkgs: &[(u8, u8)]| pkgs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
                // The leaf's own entry, else the nearest ancestor's, else the host's.
                let expected = first(layers.last().unwrap())
                    .map(|v| (v, "install ok installed"))
                    .or_else(|| layers.iter().rev().skip(1).find_map(|l| first(l)).map(|v| (v, "hold ok installed")))
                    .or_else(|| first(&host).map(|v| (v, "hold ok installed")));
                let (version, status) = expected.unwrap();
                prop_assert_eq!(p.version(), version.to_string());
                prop_assert_eq!(p.get("Status").unwrap(), status);
            }
            let all: HashSet<String> = layers.iter().flatten().chain(host.iter()).map(|(n, _)| format!("p{n}")).collect();
            prop_assert_eq!(names, all);
        }
    }
}
