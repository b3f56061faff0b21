//! Creating, listing and removing nodes. Changes are atomic: a node appears or disappears
//! with one rename.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use serde::Serialize;

use crate::error::Error;
use crate::family::{ADMIN_FILE, valid_alias};
use crate::format::IdentityOnly;
use crate::model;
use crate::templates::{self, Template};
use cairn_config::{NODE_FILE, is_node};

/// A node as listings show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeInfo {
    pub path: PathBuf,
    pub alias: String,
    pub name: String,
    pub info: Option<String>,
    /// The nearest ancestor node, `None` for a system node.
    pub parent: Option<PathBuf>,
}

/// Marker in the names of the hidden siblings used while creating or removing a node.
const TEMP_MARK: &str = ".cairn-";

fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::io(path, e))
}

/// Reads a node's identity only.
fn identity(dir: &Path) -> Result<(String, String, Option<String>), Error> {
    let path = dir.join(NODE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let file = std::sync::Arc::from(path.as_path());
    let id: IdentityOnly = model::parse_yaml(&file, &text)?;
    Ok((id.node.alias.value, id.node.name.value, id.node.info))
}

/// The nearest ancestor of `path` that is a node.
fn parent_node(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .skip(1)
        .find(|d| is_node(d))
        .map(Path::to_path_buf)
}

/// A hidden sibling of `path` for building or discarding it.
fn temp_sibling(path: &Path, what: &str) -> Result<PathBuf, Error> {
    let (Some(parent), Some(base)) = (path.parent(), path.file_name()) else {
        return Err(Error::io(
            path,
            std::io::Error::new(ErrorKind::InvalidInput, "not a removable or creatable path"),
        ));
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    Ok(parent.join(format!(
        ".{}{TEMP_MARK}{what}-{}",
        base.to_string_lossy(),
        &id[..12]
    )))
}

/// Creates a node at `path` from a template. Refuses an existing path and an alias already
/// used in the family the node would join; on any failure nothing is left behind.
pub fn create_node(path: &Path, alias: &str, template: Template) -> Result<NodeInfo, Error> {
    if !valid_alias(alias) {
        return Err(Error::BadAlias {
            alias: alias.to_owned(),
        });
    }
    let path = absolute(path)?;
    if std::fs::symlink_metadata(&path).is_ok() {
        return Err(Error::AlreadyExists { path });
    }
    let mut ancestor = parent_node(&path);
    let parent = ancestor.clone();
    while let Some(dir) = ancestor {
        let (a, _, _) = identity(&dir)?;
        if a == alias {
            return Err(Error::AliasTaken {
                path,
                alias: alias.to_owned(),
                other: dir,
            });
        }
        ancestor = parent_node(&dir);
    }
    let name = uuid::Uuid::new_v4().hyphenated().to_string();
    let dir_parent = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir_parent).map_err(|e| Error::io(dir_parent, e))?;
    let tmp = temp_sibling(&path, "new")?;
    let built = build_node(&tmp, alias, &name, template).and_then(|()| {
        renameat2(
            AT_FDCWD,
            &tmp,
            AT_FDCWD,
            &path,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| {
            if e == nix::errno::Errno::EEXIST {
                Error::AlreadyExists { path: path.clone() }
            } else {
                Error::io(&path, std::io::Error::from(e))
            }
        })
    });
    if let Err(e) = built {
        // Best effort: the temp dir is hidden and marked, so a leftover is recognisable.
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(NodeInfo {
        path,
        alias: alias.to_owned(),
        name,
        info: None,
        parent,
    })
}

fn build_node(dir: &Path, alias: &str, name: &str, template: Template) -> Result<(), Error> {
    for sub in ["etc/cairn", "usr/bin", "usr/lib", "var", "local"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let text = match template {
        Template::System => templates::system(alias, name, Path::new("/")),
        Template::Leaf | Template::Admin => templates::leaf(alias, name),
    };
    write_file(&dir.join(NODE_FILE), &text)?;
    if template == Template::Admin {
        write_file(&dir.join(ADMIN_FILE), templates::admin())?;
    }
    Ok(())
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// Every node at or below `dir`, depth first in name order, with its parent node.
pub fn list_nodes(dir: &Path) -> Result<Vec<NodeInfo>, Error> {
    let dir = absolute(dir)?;
    let meta = std::fs::metadata(&dir).map_err(|e| Error::io(&dir, e))?;
    if !meta.is_dir() {
        return Err(Error::io(
            &dir,
            std::io::Error::new(ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut out = Vec::new();
    let above = parent_node(&dir);
    walk(&dir, above.as_deref(), &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, parent: Option<&Path>, out: &mut Vec<NodeInfo>) -> Result<(), Error> {
    let here_is_node = is_node(dir);
    if here_is_node {
        let (alias, name, info) = identity(dir)?;
        out.push(NodeInfo {
            path: dir.to_path_buf(),
            alias,
            name,
            info,
            parent: parent.map(Path::to_path_buf),
        });
    }
    let next_parent = if here_is_node { Some(dir) } else { parent };
    for sub in subdirs(dir)? {
        walk(&sub, next_parent, out)?;
    }
    Ok(())
}

/// Real subdirectories (no symlinks, no temp siblings), sorted by name.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A directory we may not read cannot hold nodes we could use either.
        Err(e) if e.kind() == ErrorKind::PermissionDenied => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut subs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let name = entry.file_name();
        let hidden_temp = name.to_string_lossy().contains(TEMP_MARK);
        if is_dir && !hidden_temp {
            subs.push(entry.path());
        }
    }
    subs.sort();
    Ok(subs)
}

/// The first node strictly below `dir`, if any.
fn first_child_node(dir: &Path) -> Result<Option<PathBuf>, Error> {
    for sub in subdirs(dir)? {
        if is_node(&sub) {
            return Ok(Some(sub));
        }
        if let Some(found) = first_child_node(&sub)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Removes the node at `path`. Refuses a non-node, and a node holding child nodes unless
/// `recursive`. The node disappears at once (rename to a hidden sibling), then is deleted.
pub fn remove_node(path: &Path, recursive: bool) -> Result<(), Error> {
    let path = absolute(path)?;
    let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
    if !meta.is_dir() || !is_node(&path) {
        return Err(Error::NotANode { path });
    }
    if !recursive && let Some(child) = first_child_node(&path)? {
        return Err(Error::HasChildNodes { path, child });
    }
    let tmp = temp_sibling(&path, "rm")?;
    renameat2(
        AT_FDCWD,
        &path,
        AT_FDCWD,
        &tmp,
        RenameFlags::RENAME_NOREPLACE,
    )
    .map_err(|e| Error::io(&path, std::io::Error::from(e)))?;
    std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))
}
