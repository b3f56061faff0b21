//! `$VARIABLE` expansion in node files.
//!
//! The set of variables is closed: an unknown name is an error, never an empty string, so a
//! typo cannot silently turn `/nodes/$NODE_ALAIS/usr` into `/nodes//usr`.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::path::Path;

/// Facts about the caller that variables expand to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarContext {
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    pub home: String,
    pub hostname: String,
    pub pid: u32,
}

impl VarContext {
    /// The calling process's facts. `USER` and `HOME` come from the environment when set
    /// (cheap, and what the caller's shell says), else from `/etc/passwd`.
    pub fn from_process() -> VarContext {
        let uid = nix::unistd::getuid();
        let gid = nix::unistd::getgid();
        let env_user = std::env::var("USER").ok().filter(|s| !s.is_empty());
        let env_home = std::env::var("HOME").ok().filter(|s| !s.is_empty());
        let (user, home) = match (env_user, env_home) {
            (Some(u), Some(h)) => (u, h),
            (u, h) => {
                let pw = std::fs::read_to_string("/etc/passwd")
                    .ok()
                    .and_then(|text| passwd_entry(&text, uid.as_raw()));
                let pw_user = pw.as_ref().map(|p| p.0.clone());
                let pw_home = pw.as_ref().map(|p| p.1.clone());
                (
                    u.or(pw_user).unwrap_or_else(|| uid.to_string()),
                    h.or(pw_home).unwrap_or_else(|| "/".to_owned()),
                )
            }
        };
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        VarContext {
            uid: uid.as_raw(),
            gid: gid.as_raw(),
            user,
            home,
            hostname,
            pid: std::process::id(),
        }
    }
}

/// Name and home of `uid` in passwd(5) text. The file is read directly rather than through
/// NSS: the binary is linked statically, and glibc's NSS modules (systemd, sss, ldap) must
/// not be loaded into it (see `nss_files_only` in the binary).
fn passwd_entry(text: &str, uid: u32) -> Option<(String, String)> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 7 && f[2].parse() == Ok(uid)).then(|| (f[0].to_string(), f[5].to_string()))
    })
}

/// Names accepted after `$`, in the order error messages list them.
pub(crate) const VARIABLE_NAMES: &str = "NODE_ALIAS, NODE_NAME, NODE_PATH, LEAF_ALIAS, \
    LEAF_NAME, LEAF_PATH, UID, GID, USER, HOME, HOSTNAME, PID, TODAY, UUID";

/// Identity of one node as variables see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeVars<'a> {
    pub alias: &'a str,
    pub name: &'a str,
    pub path: &'a Path,
}

/// Values computed at most once per load, and only when a file uses them.
#[derive(Debug, Default)]
pub(crate) struct LazyVars {
    today: OnceCell<String>,
    uuid: OnceCell<String>,
}

/// Everything one expansion needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub node: NodeVars<'a>,
    pub leaf: NodeVars<'a>,
    pub ctx: &'a VarContext,
    pub lazy: &'a LazyVars,
}

/// Why a text could not be expanded (the caller adds file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VarError {
    Unknown(String),
    Stray,
    Unclosed,
}

impl VarError {
    pub(crate) fn message(&self, text: &str) -> String {
        match self {
            VarError::Unknown(name) => {
                format!("unknown variable ${name} in {text:?} (expected one of: {VARIABLE_NAMES})")
            }
            VarError::Stray => {
                format!("a $ without a variable name in {text:?} (write $$ for a literal $)")
            }
            VarError::Unclosed => format!("unclosed ${{ in {text:?} (expected ${{NAME}})"),
        }
    }
}

impl Scope<'_> {
    fn push_value(&self, name: &str, out: &mut String) -> Result<(), VarError> {
        use std::fmt::Write;
        let path_str = |p: &Path| p.to_string_lossy().into_owned();
        match name {
            "NODE_ALIAS" => out.push_str(self.node.alias),
            "NODE_NAME" => out.push_str(self.node.name),
            "NODE_PATH" => out.push_str(&path_str(self.node.path)),
            "LEAF_ALIAS" => out.push_str(self.leaf.alias),
            "LEAF_NAME" => out.push_str(self.leaf.name),
            "LEAF_PATH" => out.push_str(&path_str(self.leaf.path)),
            "UID" => write!(out, "{}", self.ctx.uid).unwrap_or(()),
            "GID" => write!(out, "{}", self.ctx.gid).unwrap_or(()),
            "PID" => write!(out, "{}", self.ctx.pid).unwrap_or(()),
            "USER" => out.push_str(&self.ctx.user),
            "HOME" => out.push_str(&self.ctx.home),
            "HOSTNAME" => out.push_str(&self.ctx.hostname),
            "TODAY" => out.push_str(self.lazy.today.get_or_init(today)),
            "UUID" => out.push_str(
                self.lazy
                    .uuid
                    .get_or_init(|| uuid::Uuid::new_v4().hyphenated().to_string()),
            ),
            _ => return Err(VarError::Unknown(name.to_owned())),
        }
        Ok(())
    }

    /// Expands `text`; borrows it unchanged when it holds no `$` (the common case).
    pub(crate) fn expand<'t>(&self, text: &'t str) -> Result<Cow<'t, str>, VarError> {
        if !text.contains('$') {
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::with_capacity(text.len() + 32);
        for piece in Pieces::new(text) {
            match piece? {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(name) => self.push_value(name, &mut out)?,
            }
        }
        Ok(Cow::Owned(out))
    }
}

/// A literal run or a variable reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'t> {
    Lit(&'t str),
    Var(&'t str),
}

/// Splits a text into literal runs and variable names (`$$` yields a literal `$`).
pub(crate) struct Pieces<'t> {
    rest: &'t str,
}

impl<'t> Pieces<'t> {
    pub(crate) fn new(text: &'t str) -> Pieces<'t> {
        Pieces { rest: text }
    }
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl<'t> Iterator for Pieces<'t> {
    type Item = Result<Piece<'t>, VarError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let rest = self.rest;
        let Some(dollar) = rest.find('$') else {
            self.rest = "";
            return Some(Ok(Piece::Lit(rest)));
        };
        if dollar > 0 {
            self.rest = &rest[dollar..];
            return Some(Ok(Piece::Lit(&rest[..dollar])));
        }
        let after = &rest[1..];
        let bytes = after.as_bytes();
        let result = match bytes.first() {
            Some(b'$') => {
                self.rest = &after[1..];
                Ok(Piece::Lit("$"))
            }
            Some(b'{') => match after.find('}') {
                Some(end) => {
                    let name = &after[1..end];
                    self.rest = &after[end + 1..];
                    if name.is_empty() || !name.bytes().all(is_name_char) {
                        Err(VarError::Unknown(name.to_owned()))
                    } else {
                        Ok(Piece::Var(name))
                    }
                }
                None => Err(VarError::Unclosed),
            },
            Some(c) if is_name_char(*c) => {
                let end = bytes
                    .iter()
                    .position(|c| !is_name_char(*c))
                    .unwrap_or(bytes.len());
                self.rest = &after[end..];
                Ok(Piece::Var(&after[..end]))
            }
            _ => Err(VarError::Stray),
        };
        if result.is_err() {
            self.rest = "";
        }
        Some(result)
    }
}

/// Today's local date as YYYY-MM-DD (UTC when the local time cannot be determined).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let now = libc::time_t::try_from(secs).unwrap_or(0);
    let mut tm = std::mem::MaybeUninit::<libc::tm>::uninit();
    // SAFETY: `now` and `tm` are valid for the call; localtime_r fills `tm` on success.
    let res = unsafe { libc::localtime_r(&now, tm.as_mut_ptr()) };
    if res.is_null() {
        let (y, m, d) = civil_from_days(secs / 86_400);
        return format!("{y:04}-{m:02}-{d:02}");
    }
    // SAFETY: localtime_r returned non-null, so it initialised `tm`.
    let tm = unsafe { tm.assume_init() };
    format!(
        "{:04}-{:02}-{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday
    )
}

/// Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (i64, u32, u32) {
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn passwd_entries_are_found_by_uid() {
        let text = "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\nalice:x:1000:100::/home/alice:/bin/sh\n";
        assert_eq!(
            passwd_entry(text, 1000),
            Some(("alice".into(), "/home/alice".into()))
        );
        assert_eq!(passwd_entry(text, 0).unwrap().0, "root");
        assert_eq!(passwd_entry(text, 7), None);
    }

    fn ctx() -> VarContext {
        VarContext {
            uid: 1000,
            gid: 100,
            user: "alice".into(),
            home: "/home/alice".into(),
            hostname: "box".into(),
            pid: 42,
        }
    }

    fn with_scope<R>(f: impl FnOnce(&Scope<'_>) -> R) -> R {
        let ctx = ctx();
        let lazy = LazyVars::default();
        let node = NodeVars {
            alias: "mid",
            name: "n-mid",
            path: Path::new("/n/mid"),
        };
        let leaf = NodeVars {
            alias: "app",
            name: "n-app",
            path: Path::new("/n/mid/app"),
        };
        f(&Scope {
            node,
            leaf,
            ctx: &ctx,
            lazy: &lazy,
        })
    }

    #[test]
    fn expands_every_variable() {
        with_scope(|s| {
            let got = s
                .expand("$NODE_ALIAS $NODE_NAME $NODE_PATH ${LEAF_ALIAS} $LEAF_NAME $LEAF_PATH")
                .unwrap();
            assert_eq!(got, "mid n-mid /n/mid app n-app /n/mid/app");
            let got = s.expand("$UID:$GID $USER $HOME $HOSTNAME $PID").unwrap();
            assert_eq!(got, "1000:100 alice /home/alice box 42");
        });
    }

    #[test]
    fn braces_join_with_following_text() {
        with_scope(|s| assert_eq!(s.expand("${UID}x/$UID.x").unwrap(), "1000x/1000.x"));
    }

    #[test]
    fn double_dollar_is_literal() {
        with_scope(|s| assert_eq!(s.expand("a$$b$$$UID").unwrap(), "a$b$1000"));
    }

    #[test]
    fn today_and_uuid_are_stable_within_a_load() {
        with_scope(|s| {
            let a = s.expand("$TODAY $UUID").unwrap().into_owned();
            let b = s.expand("$TODAY $UUID").unwrap().into_owned();
            assert_eq!(a, b);
            let (day, id) = a.split_once(' ').unwrap();
            assert_eq!(day.len(), 10);
            assert_eq!(&day[4..5], "-");
            assert!(uuid::Uuid::parse_str(id).is_ok());
        });
    }

    #[test]
    fn unknown_variable_is_an_error() {
        with_scope(|s| {
            assert_eq!(
                s.expand("/x/$NODE_ALAIS"),
                Err(VarError::Unknown("NODE_ALAIS".into()))
            );
            assert_eq!(s.expand("${nope}"), Err(VarError::Unknown("nope".into())));
            assert_eq!(s.expand("${}"), Err(VarError::Unknown(String::new())));
        });
    }

    #[test]
    fn stray_and_unclosed_are_errors() {
        with_scope(|s| {
            assert_eq!(s.expand("5$"), Err(VarError::Stray));
            assert_eq!(s.expand("$ x"), Err(VarError::Stray));
            assert_eq!(s.expand("${UID"), Err(VarError::Unclosed));
        });
    }

    #[test]
    fn error_message_lists_names() {
        let m = VarError::Unknown("X".into()).message("$X");
        assert!(m.starts_with("unknown variable $X in \"$X\" (expected one of: NODE_ALIAS"));
    }

    #[test]
    fn process_context_matches_the_process() {
        let c = VarContext::from_process();
        assert_eq!(c.uid, nix::unistd::getuid().as_raw());
        assert_eq!(c.gid, nix::unistd::getgid().as_raw());
        assert_eq!(c.pid, std::process::id());
        assert!(!c.user.is_empty() && c.home.starts_with('/'), "{c:?}");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }

    proptest! {
        #[test]
        fn text_without_dollar_is_unchanged(text in "[^$]*") {
            with_scope(|s| {
                let got = s.expand(&text).unwrap();
                prop_assert!(matches!(got, Cow::Borrowed(_)));
                prop_assert_eq!(got, text.as_str());
                Ok(())
            })?;
        }

        #[test]
        fn escaped_text_round_trips(text in ".*") {
            let escaped = text.replace('$', "$$");
            with_scope(|s| {
                prop_assert_eq!(s.expand(&escaped).unwrap(), text.as_str());
                Ok(())
            })?;
        }

        #[test]
        fn known_variables_expand_between_literals(
            a in "[^$]*", b in "([^$A-Za-z0-9_][^$]*)?",
            v in prop::sample::select(vec!["UID", "USER", "NODE_ALIAS", "LEAF_PATH"]),
        ) {
            with_scope(|s| {
                let expected = format!("{a}{}{b}", s.expand(&format!("${{{v}}}")).unwrap());
                let plain = format!("{a}${v}{b}");
                let braced = format!("{a}${{{v}}}{b}");
                prop_assert_eq!(s.expand(&plain).unwrap(), expected.clone());
                prop_assert_eq!(s.expand(&braced).unwrap(), expected);
                Ok(())
            })?;
        }

        #[test]
        fn unknown_names_are_rejected(name in "[A-Za-z_][A-Za-z0-9_]{0,12}") {
            let known = VARIABLE_NAMES.split(", ").any(|n| n == name);
            with_scope(|s| {
                let text = format!("x${{{name}}}y");
                let r = s.expand(&text);
                prop_assert_eq!(r.is_ok(), known);
                Ok(())
            })?;
        }
    }
}
