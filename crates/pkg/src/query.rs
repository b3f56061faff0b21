//! Read-only questions: which packages a family has, what its repositories offer.

use crate::db::Db;
use crate::error::Result;
use crate::family::open;
use crate::layout::NodePaths;
use crate::progress::Event;
use serde::Serialize;
use std::path::PathBuf;

/// One installed package and the node that holds it.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledPackage {
    pub name: String,
    pub version: String,
    pub architecture: String,
    pub summary: String,
    pub node: PathBuf,
}

/// The leaf's packages, or the whole family's (root first) when `all`. Waits for commands
/// changing those nodes, and reports (does not repair) an interrupted transaction.
pub fn packages(
    family: &[PathBuf],
    all: bool,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<InstalledPackage>> {
    let nodes: &[PathBuf] = match (all, family.split_last()) {
        (true, _) => family,
        (false, Some((leaf, _))) => std::slice::from_ref(leaf),
        (false, None) => return Err(crate::error::Error::EmptyFamily),
    };
    let all_paths: Vec<NodePaths> = nodes
        .iter()
        .map(|n| NodePaths::open(n))
        .collect::<Result<_>>()?;
    let _locks = crate::lock::lock_nodes(None, &all_paths, progress)?;
    let mut out = Vec::new();
    for (node, paths) in nodes.iter().zip(&all_paths) {
        if crate::txn::pending(paths) {
            return Err(crate::error::Error::Interrupted { node: node.clone() });
        }
        let db = Db::load(paths)?;
        let mut list: Vec<InstalledPackage> = db
            .installed()
            .map(|p| InstalledPackage {
                name: p.package().to_string(),
                version: p.version().to_string(),
                architecture: p.get("Architecture").unwrap_or("").to_string(),
                summary: p
                    .get("Description")
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string(),
                node: node.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        out.extend(list);
    }
    Ok(out)
}

/// One search result.
#[derive(Debug, Clone, Serialize)]
pub struct SearchHit {
    pub name: String,
    pub summary: String,
    /// The version the leaf's repositories would install.
    pub candidate: Option<String>,
    /// The family node that already has it, if any.
    pub installed_in: Option<PathBuf>,
}

/// Searches the leaf's repositories (names and descriptions, like `apt-cache search`).
pub fn search(
    family: &[PathBuf],
    word: &str,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Vec<SearchHit>> {
    let opened = open(family, &[], progress)?;
    let own = Db::load(&opened.leaf)?;
    // apt sees only the leaf's own packages here, so that hits are what the repositories
    // offer, not every package the host or an ancestor has.
    let own_status: String = own.installed().map(|p| p.to_text() + "\n").collect();
    let apt = crate::install::prepare_apt_with_status(&opened, &own_status)?;
    let mut hits = Vec::new();
    for (name, summary) in apt.search(word)? {
        let installed_in = if own.find(&name).is_some() {
            Some(opened.leaf.root.clone())
        } else {
            opened.ancestor_with(&name).map(|p| p.to_path_buf())
        };
        let candidate = apt.candidate(&name)?;
        hits.push(SearchHit {
            name,
            summary,
            candidate,
            installed_in,
        });
    }
    hits.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(hits)
}
