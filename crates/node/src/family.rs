//! Finding a leaf's family on disk and loading it: parse, check identities, expand, and
//! enforce the sticky restrictions.

use cairn_config::{NODE_FILE, is_node};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::caps::{self, CapName, CapSet};
use crate::error::{Error, Origin};
use crate::format::{AdminFile, ConfigSection, EnvEntry, ExportEntry, NodeFile, NodeSection};
use crate::model::{self, Converter, FileModel, SHARE_NAMES};
use crate::vars::{LazyVars, NodeVars, Scope, VarContext};
use serde_saphyr::Spanned;

/// Relative location of a node's administrator file.
pub(crate) const ADMIN_FILE: &str = "etc/cairn/node-admin.yaml";

/// One node of a family, with its validated files.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's directory (absolute, symlinks resolved).
    pub path: PathBuf,
    pub alias: String,
    pub name: String,
    pub info: Option<String>,
    /// `node.yaml`, then `node-admin.yaml` when present.
    pub files: Vec<PathBuf>,
    pub(crate) normal: FileModel,
    pub(crate) admin: Option<FileModel>,
}

/// A leaf and its ancestors, root (the system node) first.
#[derive(Debug, Clone)]
pub struct Family {
    /// Root first, the leaf last; never empty as loaded.
    pub nodes: Vec<Node>,
    /// Capabilities the program keeps, with the line that added each.
    pub(crate) caps: Vec<(cairn_sandbox::Capability, Origin)>,
}

impl Family {
    /// Every node, root (the system node) first, the leaf last.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The node the family was loaded for. Panics only if the caller emptied `nodes`.
    pub fn leaf(&self) -> &Node {
        &self.nodes[self.nodes.len() - 1]
    }

    /// The topmost node. Panics only if the caller emptied `nodes`.
    pub fn system(&self) -> &Node {
        &self.nodes[0]
    }
}

/// Node directories from `leaf` up to `/`, root first (leaf included, not checked).
pub(crate) fn chain(leaf: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = leaf
        .ancestors()
        .skip(1)
        .filter(|d| is_node(d))
        .map(Path::to_path_buf)
        .collect();
    dirs.reverse();
    dirs.push(leaf.to_path_buf());
    dirs
}

/// `[A-Za-z0-9+_.@:-]+`
pub(crate) fn valid_alias(alias: &str) -> bool {
    !alias.is_empty()
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+_.@:-".contains(&b))
}

/// Reads a file, `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A node's identity, parsed from `node.yaml`.
struct Ident {
    dir: PathBuf,
    file: Arc<Path>,
    section: Spanned<NodeSection>,
}

/// The rest of a node's files, consumed by conversion.
struct Body {
    config: Option<ConfigSection>,
    exports: Option<Vec<Spanned<ExportEntry>>>,
    environ: Option<Vec<Spanned<EnvEntry>>>,
    admin: Option<(Arc<Path>, AdminFile)>,
}

fn parse_node(dir: PathBuf) -> Result<(Ident, Body), Error> {
    let path = dir.join(NODE_FILE);
    let Some(text) = read_optional(&path)? else {
        return Err(Error::NotANode { path: dir });
    };
    let file: Arc<Path> = Arc::from(path.as_path());
    let NodeFile {
        node,
        config,
        exports,
        environ,
    } = model::parse_yaml(&file, &text)?;
    let admin_path = dir.join(ADMIN_FILE);
    let admin = match read_optional(&admin_path)? {
        Some(text) => {
            let afile: Arc<Path> = Arc::from(admin_path.as_path());
            let parsed: AdminFile = model::parse_yaml(&afile, &text)?;
            Some((afile, parsed))
        }
        None => None,
    };
    Ok((
        Ident {
            dir,
            file,
            section: node,
        },
        Body {
            config,
            exports,
            environ,
            admin,
        },
    ))
}

/// Loads the family of `leaf`: the leaf must be a node; its parents are the nearest
/// ancestor directories that are nodes, up to `/`.
pub fn load_family(leaf: &Path, ctx: &VarContext) -> Result<Family, Error> {
    let leaf = std::fs::canonicalize(leaf).map_err(|e| Error::io(leaf, e))?;
    if !is_node(&leaf) {
        return Err(Error::NotANode { path: leaf });
    }
    let dirs = chain(&leaf);
    let mut idents = Vec::with_capacity(dirs.len());
    let mut bodies = Vec::with_capacity(dirs.len());
    for dir in dirs {
        let (i, b) = parse_node(dir)?;
        idents.push(i);
        bodies.push(b);
    }
    check_identities(&idents)?;
    let lazy = LazyVars::default();
    let leaf_vars = vars_of(&idents[idents.len() - 1]);
    let mut nodes = Vec::with_capacity(idents.len());
    for (ident, body) in idents.iter().zip(bodies) {
        let scope = Scope {
            node: vars_of(ident),
            leaf: leaf_vars,
            ctx,
            lazy: &lazy,
        };
        nodes.push(convert(ident, body, scope)?);
    }
    check_shares(&nodes)?;
    let caps = walk_caps(&nodes)?;
    Ok(Family { nodes, caps })
}

fn vars_of(i: &Ident) -> NodeVars<'_> {
    NodeVars {
        alias: &i.section.value.alias.value,
        name: &i.section.value.name.value,
        path: &i.dir,
    }
}

fn convert(ident: &Ident, body: Body, scope: Scope<'_>) -> Result<Node, Error> {
    let conv = Converter {
        file: &ident.file,
        node_dir: &ident.dir,
        scope,
    };
    let normal = conv.file(body.config, body.exports, body.environ)?;
    check_unique_entries(&normal)?;
    let mut files = vec![ident.file.to_path_buf()];
    let admin = match body.admin {
        Some((afile, a)) => {
            files.push(afile.to_path_buf());
            let conv = Converter {
                file: &afile,
                node_dir: &ident.dir,
                scope,
            };
            let m = conv.file(a.config, a.exports, a.environ)?;
            check_unique_entries(&m)?;
            Some(m)
        }
        None => None,
    };
    let s = &ident.section.value;
    Ok(Node {
        path: ident.dir.clone(),
        alias: s.alias.value.clone(),
        name: s.name.value.clone(),
        info: s.info.clone(),
        files,
        normal,
        admin,
    })
}

/// Aliases well-formed and unique, names present.
fn check_identities(idents: &[Ident]) -> Result<(), Error> {
    for (i, ident) in idents.iter().enumerate() {
        let s = &ident.section.value;
        let at = Origin::new(&ident.file, s.alias.referenced.line());
        if !valid_alias(&s.alias.value) {
            return Err(Error::invalid(
                at,
                format!(
                    "invalid alias {:?} (expected one or more of A-Z a-z 0-9 + _ . @ : -)",
                    s.alias.value
                ),
            ));
        }
        if let Some(other) = idents[..i]
            .iter()
            .find(|o| o.section.value.alias.value == s.alias.value)
        {
            return Err(Error::DuplicateAlias {
                at,
                alias: s.alias.value.clone(),
                other: other.dir.clone(),
            });
        }
        if s.name.value.trim().is_empty() {
            return Err(Error::invalid(
                Origin::new(&ident.file, s.name.referenced.line()),
                "empty node name (expected a unique name, such as a UUID)",
            ));
        }
    }
    Ok(())
}

/// A mount point or environment key appears at most once per file.
fn check_unique_entries(m: &FileModel) -> Result<(), Error> {
    for (i, e) in m.exports.iter().enumerate() {
        if let Some(first) = m.exports[..i]
            .iter()
            .find(|o| o.mount.as_os_str() == e.mount.as_os_str())
        {
            return Err(Error::invalid(
                Origin::new(&m.file, e.line),
                format!(
                    "mount point {} is already exported at line {}",
                    e.mount.display(),
                    first.line
                ),
            ));
        }
    }
    for (i, e) in m.environ.iter().enumerate() {
        if let Some(first) = m.environ[..i].iter().find(|o| o.key == e.key) {
            return Err(Error::invalid(
                Origin::new(&m.file, e.line),
                format!(
                    "environment key {} is already set at line {}",
                    e.key, first.line
                ),
            ));
        }
    }
    Ok(())
}

/// A node's files in the order their settings apply (normal, then admin).
pub(crate) fn files_of(n: &Node) -> impl Iterator<Item = &FileModel> {
    std::iter::once(&n.normal).chain(n.admin.as_ref())
}

/// Sticky namespaces: once a node (or the default, at the system node) unshares a
/// namespace, no descendant may share it again.
fn check_shares(nodes: &[Node]) -> Result<(), Error> {
    // Effective "shared" state below each node; the default is unshared.
    let mut shared = [false; 7];
    for (depth, node) in nodes.iter().enumerate() {
        let mut next = shared;
        for f in files_of(node) {
            for (k, set) in f.config.share.iter().enumerate() {
                let Some((value, line)) = *set else { continue };
                if value && depth > 0 && !shared[k] {
                    return Err(Error::Sticky {
                        at: Origin::new(&f.file, line),
                        msg: format!(
                            "share.{}: true is not allowed: an ancestor node unshares this namespace (restrictions are sticky)",
                            SHARE_NAMES[k]
                        ),
                    });
                }
                next[k] = value;
            }
        }
        shared = next;
    }
    Ok(())
}

/// Sticky capabilities: walks the family root first; a node may only add a capability its
/// parent still keeps (the system node starts from the default, which drops all).
fn walk_caps(nodes: &[Node]) -> Result<Vec<(cairn_sandbox::Capability, Origin)>, Error> {
    let mut kept = CapSet::default();
    let mut origins: Vec<Option<Origin>> = vec![None; usize::from(caps::COUNT)];
    for (depth, node) in nodes.iter().enumerate() {
        let parent = kept;
        for f in files_of(node) {
            let Some(c) = &f.config.caps else { continue };
            for (name, _) in &c.drop {
                match name {
                    CapName::All => kept = CapSet::default(),
                    CapName::One(cap) => kept.remove(*cap),
                }
            }
            for (cap, line) in &c.add {
                let at = Origin::new(&f.file, *line);
                if depth > 0 && !parent.contains(*cap) {
                    return Err(Error::Sticky {
                        at,
                        msg: format!(
                            "capabilities: cannot add {}: an ancestor node drops it (restrictions are sticky)",
                            caps::name(*cap)
                        ),
                    });
                }
                kept.insert(*cap);
                origins[usize::from(cap.0)] = Some(at);
            }
        }
    }
    Ok(kept
        .iter()
        .filter_map(|c| origins[usize::from(c.0)].take().map(|o| (c, o)))
        .collect())
}

/// Parses and validates one node file's text on its own (no family, placeholder variable
/// values): for editors, `cairn node check` of a single file, and fuzzing.
pub fn check_node_yaml(file: &Path, text: &[u8]) -> Result<(), Error> {
    let afile: Arc<Path> = Arc::from(file);
    let text = std::str::from_utf8(text).map_err(|e| Error::Yaml {
        at: Origin::new(&afile, 1),
        msg: format!("not UTF-8 text ({e})"),
    })?;
    let dir = file
        .ancestors()
        .nth(3)
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let NodeFile {
        node,
        config,
        exports,
        environ,
    } = model::parse_yaml(&afile, text)?;
    let ident = Ident {
        dir,
        file: afile,
        section: node,
    };
    check_identities(std::slice::from_ref(&ident))?;
    let ctx = VarContext {
        uid: 0,
        gid: 0,
        user: "root".into(),
        home: "/root".into(),
        hostname: "localhost".into(),
        pid: 1,
    };
    let lazy = LazyVars::default();
    let scope = Scope {
        node: vars_of(&ident),
        leaf: vars_of(&ident),
        ctx: &ctx,
        lazy: &lazy,
    };
    let body = Body {
        config,
        exports,
        environ,
        admin: None,
    };
    let node = convert(&ident, body, scope)?;
    check_shares(std::slice::from_ref(&node))?;
    walk_caps(std::slice::from_ref(&node))?;
    Ok(())
}
