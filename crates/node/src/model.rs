//! The validated, expanded content of one node file.
//!
//! Conversion from the file format happens once per load: enumerations are parsed,
//! variables expanded, paths resolved, so merging and launching never look at text again.
//! Every value keeps the line it came from for provenance and later errors.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use cairn_config::one_line;
use cairn_sandbox::Capability;
use serde::Serialize;
use serde_saphyr::{MessageFormatter, Spanned};

use crate::caps::{self, CapName};
use crate::error::{Error, Origin};
use crate::format::{self, ConfigSection, EnvEntry, ExportEntry};
use crate::vars::Scope;

/// A value set by a file, with its line.
pub(crate) type Set<T> = Option<(T, u64)>;

/// Namespace kinds in the order of [`SHARE_NAMES`].
pub(crate) const SHARE_NAMES: [&str; 7] = ["net", "pid", "ipc", "uts", "user", "cgroup", "time"];

/// How an export reaches the sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportMode {
    Public,
    Restricted,
    Private,
    PrivateRestricted,
    Anonymous,
    Exec,
    Symlink,
    Tmpfs,
    Proc,
    Dev,
    Mqueue,
}

const EXPORT_MODES: &str = "public, restricted, private, private-restricted, anonymous, exec, \
    symlink, tmpfs, proc, dev, mqueue";

impl ExportMode {
    fn parse(s: &str) -> Option<ExportMode> {
        Some(match s {
            "public" => ExportMode::Public,
            "restricted" => ExportMode::Restricted,
            "private" => ExportMode::Private,
            "private-restricted" => ExportMode::PrivateRestricted,
            "anonymous" => ExportMode::Anonymous,
            "exec" => ExportMode::Exec,
            "symlink" => ExportMode::Symlink,
            "tmpfs" => ExportMode::Tmpfs,
            "proc" => ExportMode::Proc,
            "dev" => ExportMode::Dev,
            "mqueue" => ExportMode::Mqueue,
            _ => return None,
        })
    }

    /// Binds a host path into the sandbox.
    pub fn is_bind(self) -> bool {
        matches!(
            self,
            ExportMode::Public
                | ExportMode::Restricted
                | ExportMode::Private
                | ExportMode::PrivateRestricted
        )
    }

    /// Only applies when the exporting node is the leaf.
    pub fn is_private(self) -> bool {
        matches!(self, ExportMode::Private | ExportMode::PrivateRestricted)
    }
}

/// How an environment entry is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnvMode {
    Set,
    Literal,
    Exec,
    Inherit,
    Unset,
}

const ENV_MODES: &str = "set, literal, exec, inherit, unset";

impl EnvMode {
    fn parse(s: &str) -> Option<EnvMode> {
        Some(match s {
            "set" => EnvMode::Set,
            "literal" => EnvMode::Literal,
            "exec" => EnvMode::Exec,
            "inherit" => EnvMode::Inherit,
            "unset" => EnvMode::Unset,
            _ => return None,
        })
    }
}

/// The system call filter a family asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Seccomp {
    Default,
    Unconfined,
    Profile(PathBuf),
}

/// Whether launches require sealed nodes to verify (enforced by the launcher).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verify {
    None,
    Required,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct CapsModel {
    pub drop: Vec<(CapName, u64)>,
    pub add: Vec<(Capability, u64)>,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigModel {
    pub share: [Set<bool>; 7],
    pub hostname: Set<String>,
    pub chdir: Set<PathBuf>,
    pub umask: Set<u32>,
    pub path: Set<String>,
    pub ldpath: Set<String>,
    pub die_with_parent: Set<bool>,
    pub new_session: Set<bool>,
    pub inherit_env: Set<bool>,
    pub caps: Option<CapsModel>,
    pub seccomp: Set<Seccomp>,
    pub memory_max: Set<Option<u64>>,
    pub pids_max: Set<Option<u64>>,
    pub cpu_max: Set<Option<(u64, u64)>>,
    pub uid: Set<u32>,
    pub gid: Set<u32>,
    pub verify: Set<Verify>,
}

#[derive(Debug, Clone)]
pub(crate) struct ExportModel {
    pub mode: ExportMode,
    pub mount: PathBuf,
    /// Bind modes: the absolute host path. Symlink: the link target as written.
    pub path: Option<PathBuf>,
    pub command: Option<String>,
    pub optional: bool,
    pub line: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct EnvModel {
    pub mode: EnvMode,
    pub key: String,
    pub value: Option<String>,
    pub command: Option<String>,
    pub line: u64,
}

/// One file's validated content.
#[derive(Debug, Clone)]
pub(crate) struct FileModel {
    pub file: Arc<Path>,
    pub config: ConfigModel,
    pub exports: Vec<ExportModel>,
    pub environ: Vec<EnvModel>,
}

/// Parses YAML text into a format type, turning parser errors into `file:line: msg`.
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    file: &Arc<Path>,
    text: &str,
) -> Result<T, Error> {
    let options = serde_saphyr::options!(with_snippet: false);
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let inner = e.without_snippet();
        let msg = serde_saphyr::DefaultMessageFormatter.format_message(inner);
        let line = inner.location().map_or(1, |l| l.line().max(1));
        Error::Yaml {
            at: Origin::new(file, line),
            msg: friendlier(&one_line(&msg)),
        }
    })
}

/// Rewords serde's messages in the crate's style: `what (hint)`, file-format words.
fn friendlier(msg: &str) -> String {
    let tick = |s: &str| s.trim().trim_matches('`').to_owned();
    if let Some(rest) = msg.strip_prefix("unknown field ") {
        let (field, hint) = match rest.split_once(", expected ") {
            Some(pair) => pair,
            None => (rest.split_once(", ").map_or(rest, |(f, _)| f), ""),
        };
        let hint = hint.trim_start_matches("one of ");
        let hint: Vec<String> = hint
            .split(", ")
            .map(tick)
            .filter(|s| !s.is_empty())
            .collect();
        return match hint.len() {
            0 => format!("unknown key {:?} (no keys allowed here)", tick(field)),
            _ => format!(
                "unknown key {:?} (expected one of: {})",
                tick(field),
                hint.join(", ")
            ),
        };
    }
    if let Some(field) = msg.strip_prefix("missing field ") {
        return format!("missing key {:?}", tick(field));
    }
    if msg == "invalid boolean" {
        return "invalid boolean (expected true or false)".to_owned();
    }
    msg.to_owned()
}

/// Converts file sections into the model; `node_dir` resolves relative paths.
pub(crate) struct Converter<'a> {
    pub file: &'a Arc<Path>,
    pub node_dir: &'a Path,
    pub scope: Scope<'a>,
}

impl Converter<'_> {
    fn at(&self, line: u64) -> Origin {
        Origin::new(self.file, line)
    }

    fn expand(&self, s: &Spanned<String>) -> Result<String, Error> {
        match self.scope.expand(&s.value) {
            Ok(v) => Ok(v.into_owned()),
            Err(e) => Err(Error::Variable {
                at: self.at(s.referenced.line()),
                msg: e.message(&s.value),
            }),
        }
    }

    /// Resolves a host path: relative paths are relative to the node's directory.
    fn host_path(&self, p: String) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_absolute() {
            p
        } else {
            self.node_dir.join(p)
        }
    }

    pub(crate) fn file(
        &self,
        config: Option<ConfigSection>,
        exports: Option<Vec<Spanned<ExportEntry>>>,
        environ: Option<Vec<Spanned<EnvEntry>>>,
    ) -> Result<FileModel, Error> {
        let config = match config {
            Some(c) => self.config(c)?,
            None => ConfigModel::default(),
        };
        let exports = exports.unwrap_or_default();
        let exports = exports
            .into_iter()
            .map(|e| self.export(e))
            .collect::<Result<_, _>>()?;
        let environ = environ.unwrap_or_default();
        let environ = environ
            .into_iter()
            .map(|e| self.env(e))
            .collect::<Result<_, _>>()?;
        Ok(FileModel {
            file: Arc::clone(self.file),
            config,
            exports,
            environ,
        })
    }

    fn config(&self, c: ConfigSection) -> Result<ConfigModel, Error> {
        let mut m = ConfigModel::default();
        if let Some(s) = c.share {
            let flags = [s.net, s.pid, s.ipc, s.uts, s.user, s.cgroup, s.time];
            for (slot, flag) in m.share.iter_mut().zip(flags) {
                *slot = flag.map(|f| (f.value, f.referenced.line()));
            }
        }
        m.hostname = self.opt(c.hostname, |s, v| self.hostname(s, v))?;
        m.chdir = self.opt(c.chdir, |s, v| self.absolute(s, v, "chdir"))?;
        m.umask = self.opt(c.umask, |s, _| self.umask(s))?;
        m.path = self.opt(c.path, |_, v| Ok(v))?;
        m.ldpath = self.opt(c.ldpath, |_, v| Ok(v))?;
        let flag = |f: format::Flag| f.map(|f| (f.value, f.referenced.line()));
        m.die_with_parent = flag(c.die_with_parent);
        m.new_session = flag(c.new_session);
        m.inherit_env = flag(c.inherit_env);
        if let Some(caps) = c.capabilities {
            m.caps = Some(self.caps(caps)?);
        }
        m.seccomp = self.opt(c.seccomp, |_, v| Ok(self.seccomp(v)))?;
        if let Some(cg) = c.cgroup {
            m.memory_max = self.raw(cg.memory_max, |s| self.memory(s))?;
            m.pids_max = self.raw(cg.pids_max, |s| self.pids(s))?;
            m.cpu_max = self.raw(cg.cpu_max, |s| self.cpu(s))?;
        }
        if let Some(u) = c.user {
            m.uid = u.uid.map(|v| (v.value, v.referenced.line()));
            m.gid = u.gid.map(|v| (v.value, v.referenced.line()));
        }
        m.verify = self.raw(c.verify, |s| self.verify(s))?;
        Ok(m)
    }

    /// Expands an optional string, then validates/converts it.
    fn opt<T>(
        &self,
        s: format::Str,
        f: impl FnOnce(&Spanned<String>, String) -> Result<T, Error>,
    ) -> Result<Set<T>, Error> {
        let Some(s) = s else { return Ok(None) };
        let v = self.expand(&s)?;
        Ok(Some((f(&s, v)?, s.referenced.line())))
    }

    /// Converts an optional string that takes no variables.
    fn raw<T>(
        &self,
        s: format::Str,
        f: impl FnOnce(&Spanned<String>) -> Result<T, Error>,
    ) -> Result<Set<T>, Error> {
        let Some(s) = s else { return Ok(None) };
        Ok(Some((f(&s)?, s.referenced.line())))
    }

    fn hostname(&self, s: &Spanned<String>, v: String) -> Result<String, Error> {
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if ok {
            Ok(v)
        } else {
            let msg = format!("invalid hostname {v:?} (expected 1 to 64 of A-Z a-z 0-9 - . _)");
            Err(Error::invalid(self.at(s.referenced.line()), msg))
        }
    }

    fn absolute(&self, s: &Spanned<String>, v: String, what: &str) -> Result<PathBuf, Error> {
        match clean_absolute(&v) {
            Some(p) => Ok(p),
            None => Err(Error::invalid(
                self.at(s.referenced.line()),
                format!("invalid {what} {v:?} (expected an absolute path without ..)"),
            )),
        }
    }

    fn umask(&self, s: &Spanned<String>) -> Result<u32, Error> {
        match u32::from_str_radix(s.value.trim(), 8) {
            Ok(v) if v <= 0o777 => Ok(v),
            _ => Err(Error::invalid(
                self.at(s.referenced.line()),
                format!(
                    "invalid umask {:?} (expected an octal number from \"000\" to \"777\")",
                    s.value
                ),
            )),
        }
    }

    fn caps(&self, c: format::CapsSection) -> Result<CapsModel, Error> {
        let mut m = CapsModel::default();
        for d in &c.drop {
            m.drop.push((self.cap_name(d)?, d.referenced.line()));
        }
        for a in &c.add {
            match self.cap_name(a)? {
                CapName::One(cap) => m.add.push((cap, a.referenced.line())),
                CapName::All => {
                    return Err(Error::invalid(
                        self.at(a.referenced.line()),
                        "capabilities: `add: [all]` is not allowed (name each capability to add)",
                    ));
                }
            }
        }
        Ok(m)
    }

    fn cap_name(&self, s: &Spanned<String>) -> Result<CapName, Error> {
        caps::parse(&s.value).ok_or_else(|| {
            Error::invalid(
                self.at(s.referenced.line()),
                format!(
                    "unknown capability {:?} (expected `all` or a name like CAP_NET_ADMIN or NET_ADMIN)",
                    s.value
                ),
            )
        })
    }

    fn seccomp(&self, v: String) -> Seccomp {
        match v.as_str() {
            "default" => Seccomp::Default,
            "unconfined" => Seccomp::Unconfined,
            _ => Seccomp::Profile(self.host_path(v)),
        }
    }

    fn memory(&self, s: &Spanned<String>) -> Result<Option<u64>, Error> {
        parse_memory(&s.value).ok_or_else(|| {
            Error::invalid(
                self.at(s.referenced.line()),
                format!("invalid memory_max {:?} (expected bytes with an optional K, M or G suffix, or \"max\")", s.value),
            )
        })
    }

    fn pids(&self, s: &Spanned<String>) -> Result<Option<u64>, Error> {
        let v = s.value.trim();
        if v == "max" {
            return Ok(None);
        }
        match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(Error::invalid(
                self.at(s.referenced.line()),
                format!(
                    "invalid pids_max {:?} (expected a positive number or \"max\")",
                    s.value
                ),
            )),
        }
    }

    fn cpu(&self, s: &Spanned<String>) -> Result<Option<(u64, u64)>, Error> {
        parse_cpu(&s.value).ok_or_else(|| {
            Error::invalid(
                self.at(s.referenced.line()),
                format!(
                    "invalid cpu_max {:?} (expected \"QUOTA PERIOD\" in microseconds, or \"max\")",
                    s.value
                ),
            )
        })
    }

    fn verify(&self, s: &Spanned<String>) -> Result<Verify, Error> {
        match s.value.as_str() {
            "none" => Ok(Verify::None),
            "required" => Ok(Verify::Required),
            other => Err(Error::invalid(
                self.at(s.referenced.line()),
                format!("unknown verify value {other:?} (expected one of: none, required)"),
            )),
        }
    }

    fn export(&self, e: Spanned<ExportEntry>) -> Result<ExportModel, Error> {
        let line = e.referenced.line();
        let e = e.value;
        let mode = ExportMode::parse(&e.mode.value).ok_or_else(|| {
            Error::invalid(
                self.at(e.mode.referenced.line()),
                format!(
                    "unknown export mode {:?} (expected one of: {EXPORT_MODES})",
                    e.mode.value
                ),
            )
        })?;
        let mount = self.expand(&e.mount)?;
        let mount = self.absolute(&e.mount, mount, "export mount point")?;
        if mount == Path::new("/") {
            return Err(Error::invalid(
                self.at(e.mount.referenced.line()),
                "an export cannot be mounted on / (the root is Cairn's own tmpfs)",
            ));
        }
        let wants_path = mode.is_bind() || mode == ExportMode::Symlink;
        let wants_command = mode == ExportMode::Exec;
        let mode_name = &e.mode.value;
        let path = match (&e.path, wants_path) {
            (Some(p), true) => {
                let v = self.expand(p)?;
                if v.is_empty() {
                    return Err(Error::invalid(
                        self.at(p.referenced.line()),
                        "empty export path",
                    ));
                }
                Some(if mode == ExportMode::Symlink {
                    PathBuf::from(v)
                } else {
                    self.host_path(v)
                })
            }
            (None, true) => {
                return Err(Error::invalid(
                    self.at(line),
                    format!("{mode_name} export of {} needs a `path`", mount.display()),
                ));
            }
            (Some(p), false) => {
                return Err(Error::invalid(
                    self.at(p.referenced.line()),
                    format!("{mode_name} exports take no `path`"),
                ));
            }
            (None, false) => None,
        };
        let command = match (&e.command, wants_command) {
            (Some(c), true) => Some(self.expand(c)?),
            (None, true) => {
                return Err(Error::invalid(
                    self.at(line),
                    format!("exec export of {} needs a `command`", mount.display()),
                ));
            }
            (Some(c), false) => {
                return Err(Error::invalid(
                    self.at(c.referenced.line()),
                    format!("{mode_name} exports take no `command`"),
                ));
            }
            (None, false) => None,
        };
        Ok(ExportModel {
            mode,
            mount,
            path,
            command,
            optional: e.optional,
            line,
        })
    }

    fn env(&self, e: Spanned<EnvEntry>) -> Result<EnvModel, Error> {
        let line = e.referenced.line();
        let e = e.value;
        let mode = EnvMode::parse(&e.mode.value).ok_or_else(|| {
            Error::invalid(
                self.at(e.mode.referenced.line()),
                format!(
                    "unknown environ mode {:?} (expected one of: {ENV_MODES})",
                    e.mode.value
                ),
            )
        })?;
        let key = &e.key.value;
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(Error::invalid(
                self.at(e.key.referenced.line()),
                format!(
                    "invalid environment key {key:?} (expected a non-empty name without = or NUL)"
                ),
            ));
        }
        let mode_name = &e.mode.value;
        let value = match (&e.value, mode) {
            (Some(v), EnvMode::Set) => Some(self.expand(v)?),
            (Some(v), EnvMode::Literal) => Some(v.value.clone()),
            (None, EnvMode::Set | EnvMode::Literal) => {
                return Err(Error::invalid(
                    self.at(line),
                    format!("{mode_name} entry for {key} needs a `value`"),
                ));
            }
            (Some(v), _) => {
                return Err(Error::invalid(
                    self.at(v.referenced.line()),
                    format!("{mode_name} entries take no `value`"),
                ));
            }
            (None, _) => None,
        };
        let command = match (&e.command, mode) {
            (Some(c), EnvMode::Exec) => Some(self.expand(c)?),
            (None, EnvMode::Exec) => {
                return Err(Error::invalid(
                    self.at(line),
                    format!("exec entry for {key} needs a `command`"),
                ));
            }
            (Some(c), _) => {
                return Err(Error::invalid(
                    self.at(c.referenced.line()),
                    format!("{mode_name} entries take no `command`"),
                ));
            }
            (None, _) => None,
        };
        Ok(EnvModel {
            mode,
            key: key.clone(),
            value,
            command,
            line,
        })
    }
}

/// An absolute path with `.`, duplicate and trailing slashes removed; `None` if relative or
/// holding `..` (mount points must not climb).
pub(crate) fn clean_absolute(s: &str) -> Option<PathBuf> {
    let p = Path::new(s);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `64M` → 64 MiB; `max` → no limit. Suffixes are binary (K = 1024).
pub(crate) fn parse_memory(s: &str) -> Option<Option<u64>> {
    let s = s.trim();
    if s == "max" {
        return Some(None);
    }
    let (digits, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1u64 << 20),
        b'G' | b'g' => (&s[..s.len() - 1], 1u64 << 30),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse::<u64>().ok()?.checked_mul(mult)?;
    (n > 0).then_some(Some(n))
}

/// `"50000 100000"` → quota and period; `max` (optionally with a period) → no limit.
pub(crate) fn parse_cpu(s: &str) -> Option<Option<(u64, u64)>> {
    let mut parts = s.split_whitespace();
    let quota = parts.next()?;
    let period = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let period = match period {
        Some(p) => p
            .parse::<u64>()
            .ok()
            .filter(|p| (1000..=1_000_000).contains(p))?,
        None if quota == "max" => 100_000,
        None => return None,
    };
    if quota == "max" {
        return Some(None);
    }
    let quota = quota.parse::<u64>().ok().filter(|q| *q >= 1000)?;
    Some(Some((quota, period)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64M"), Some(Some(64 << 20)));
        assert_eq!(parse_memory("1k"), Some(Some(1024)));
        assert_eq!(parse_memory("2G"), Some(Some(2 << 30)));
        assert_eq!(parse_memory("4096"), Some(Some(4096)));
        assert_eq!(parse_memory("max"), Some(None));
        for bad in ["", "M", "-1M", "1.5G", "12T", "0", "99999999999999999999G"] {
            assert_eq!(parse_memory(bad), None, "{bad}");
        }
    }

    #[test]
    fn cpu_limits() {
        assert_eq!(parse_cpu("50000 100000"), Some(Some((50_000, 100_000))));
        assert_eq!(parse_cpu("max"), Some(None));
        assert_eq!(parse_cpu("max 100000"), Some(None));
        for bad in ["", "50000", "a b", "1 100000", "50000 100000 3", "50000 10"] {
            assert_eq!(parse_cpu(bad), None, "{bad}");
        }
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean_absolute("/a//b/./c/"), Some(PathBuf::from("/a/b/c")));
        assert_eq!(clean_absolute("/"), Some(PathBuf::from("/")));
        assert_eq!(clean_absolute("a/b"), None);
        assert_eq!(clean_absolute("/a/../b"), None);
    }

    #[test]
    fn serde_messages_are_reworded() {
        assert_eq!(
            friendlier("unknown field `x`, expected one of `a`, `b`"),
            "unknown key \"x\" (expected one of: a, b)"
        );
        assert_eq!(
            friendlier("unknown field `x`, expected `a`"),
            "unknown key \"x\" (expected one of: a)"
        );
        assert_eq!(
            friendlier("unknown field `x`, there are no fields"),
            "unknown key \"x\" (no keys allowed here)"
        );
        assert_eq!(friendlier("missing field `node`"), "missing key \"node\"");
        assert_eq!(friendlier("something else"), "something else");
    }

    proptest! {
        #[test]
        fn memory_suffixes_scale(n in 1u64..1_000_000) {
            prop_assert_eq!(parse_memory(&format!("{n}K")), Some(Some(n * 1024)));
            prop_assert_eq!(parse_memory(&format!("{n}M")), Some(Some(n << 20)));
        }

        #[test]
        fn clean_absolute_is_idempotent(s in "/[a-z./]{0,20}") {
            if let Some(p) = clean_absolute(&s) {
                let again = clean_absolute(&p.to_string_lossy());
                prop_assert_eq!(again, Some(p));
            }
        }
    }
}
