//! A node's package database in dpkg's format: `status`, `info/<pkg>.list`,
//! `info/<pkg>.md5sums`, `info/<pkg>.conffiles` and the maintainer scripts.

use crate::control::{Paragraph, parse_paragraphs};
use crate::error::{Error, Result};
use crate::layout::{NodePaths, read_optional, remove_if_exists, write_atomic};
use std::path::PathBuf;

/// The status file of one node, loaded in memory; writes go through `save`.
#[derive(Debug, Clone)]
pub struct Db {
    pub paths: NodePaths,
    paragraphs: Vec<Paragraph>,
}

/// The info files of one package, as dpkg keeps them.
#[derive(Debug, Clone, Default)]
pub struct InfoFiles {
    /// Every path the package owns, with a leading `/` (directories included).
    pub list: Vec<String>,
    /// `(md5 hex, path without leading '/')` for regular files that are not conffiles.
    pub md5sums: Vec<(String, String)>,
    /// Conffile paths with a leading `/`.
    pub conffiles: Vec<String>,
    /// Maintainer scripts by name (`preinst`, `postinst`, `prerm`, `postrm`).
    pub scripts: Vec<(String, Vec<u8>)>,
}

impl Db {
    pub fn load(paths: &NodePaths) -> Result<Db> {
        let status = paths.status();
        let text = read_optional(&status)?.unwrap_or_default();
        let paragraphs = parse_paragraphs(&text, &status)?;
        Ok(Db {
            paths: paths.clone(),
            paragraphs,
        })
    }

    /// Packages in dpkg's "installed" state.
    pub fn installed(&self) -> impl Iterator<Item = &Paragraph> {
        self.paragraphs.iter().filter(|p| p.is_installed())
    }

    pub fn find(&self, name: &str) -> Option<&Paragraph> {
        self.installed().find(|p| p.package() == name)
    }

    /// Adds or replaces a package's paragraph (matched by name).
    pub fn upsert(&mut self, paragraph: Paragraph) {
        let name = paragraph.package().to_string();
        match self.paragraphs.iter_mut().find(|p| p.package() == name) {
            Some(slot) => *slot = paragraph,
            None => self.paragraphs.push(paragraph),
        }
    }

    pub fn forget(&mut self, name: &str) {
        self.paragraphs.retain(|p| p.package() != name);
    }

    /// Writes the status file atomically.
    pub fn save(&self) -> Result<()> {
        let mut text = String::new();
        for p in &self.paragraphs {
            text.push_str(&p.to_text());
            text.push('\n');
        }
        write_atomic(&self.paths.status(), text.as_bytes(), 0o644)
    }

    fn info_path(&self, paragraph: &Paragraph, suffix: &str) -> PathBuf {
        self.paths
            .info()
            .join(format!("{}.{suffix}", info_name(paragraph)))
    }

    /// Reads the `.list` of an installed package (empty when dpkg never wrote one).
    pub fn file_list(&self, paragraph: &Paragraph) -> Result<Vec<String>> {
        let text = read_optional(&self.info_path(paragraph, "list"))?.unwrap_or_default();
        Ok(text
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect())
    }

    /// Reads `.md5sums` as `(hash, relative path)`.
    pub fn md5sums(&self, paragraph: &Paragraph) -> Result<Vec<(String, String)>> {
        let text = read_optional(&self.info_path(paragraph, "md5sums"))?.unwrap_or_default();
        Ok(parse_md5sums(&text))
    }

    /// Writes every info file of a package (each atomically) and drops stale scripts.
    pub fn write_info(&self, paragraph: &Paragraph, files: &InfoFiles) -> Result<()> {
        std::fs::create_dir_all(self.paths.info()).map_err(Error::io(self.paths.info()))?;
        let mut list = files.list.join("\n");
        list.push('\n');
        write_atomic(&self.info_path(paragraph, "list"), list.as_bytes(), 0o644)?;
        let md5: String = files
            .md5sums
            .iter()
            .map(|(h, p)| format!("{h}  {p}\n"))
            .collect();
        write_atomic(&self.info_path(paragraph, "md5sums"), md5.as_bytes(), 0o644)?;
        if files.conffiles.is_empty() {
            remove_if_exists(&self.info_path(paragraph, "conffiles"))?;
        } else {
            let text = files.conffiles.join("\n") + "\n";
            write_atomic(
                &self.info_path(paragraph, "conffiles"),
                text.as_bytes(),
                0o644,
            )?;
        }
        for script in SCRIPTS {
            let path = self.info_path(paragraph, script);
            match files.scripts.iter().find(|(n, _)| n == script) {
                Some((_, body)) => write_atomic(&path, body, 0o755)?,
                None => remove_if_exists(&path)?,
            }
        }
        Ok(())
    }

    /// Reads a stored maintainer script.
    pub fn script(&self, paragraph: &Paragraph, name: &str) -> Result<Option<Vec<u8>>> {
        let path = self.info_path(paragraph, name);
        match std::fs::read(&path) {
            Ok(body) => Ok(Some(body)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io { path, err: e }),
        }
    }

    /// Removes every info file of a package.
    pub fn remove_info(&self, paragraph: &Paragraph) -> Result<()> {
        for suffix in ["list", "md5sums", "conffiles"]
            .iter()
            .chain(SCRIPTS.iter())
        {
            remove_if_exists(&self.info_path(paragraph, suffix))?;
        }
        Ok(())
    }
}

/// The maintainer scripts dpkg knows by name.
pub const SCRIPTS: [&str; 4] = ["preinst", "postinst", "prerm", "postrm"];

/// dpkg names info files `pkg:arch.*` only for `Multi-Arch: same` packages.
pub fn info_name(paragraph: &Paragraph) -> String {
    match (paragraph.get("Multi-Arch"), paragraph.get("Architecture")) {
        (Some("same"), Some(arch)) => format!("{}:{arch}", paragraph.package()),
        _ => paragraph.package().to_string(),
    }
}

/// Parses md5sums lines (`hash  path`, path relative, possibly with spaces).
pub fn parse_md5sums(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let (hash, path) = line.split_once(char::is_whitespace)?;
            let path = path.trim_start().trim_start_matches('/');
            (!hash.is_empty() && !path.is_empty()).then(|| (hash.to_string(), path.to_string()))
        })
        .collect()
}

/// The `Conffiles` status field value: a line per conffile with its md5.
pub fn conffiles_field(entries: &[(String, String)]) -> String {
    entries
        .iter()
        .map(|(path, md5)| format!("\n {path} {md5}"))
        .collect()
}

/// Parses the `Conffiles` status field into `(path, md5)`.
pub fn parse_conffiles_field(value: &str) -> Vec<(String, String)> {
    value
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5sums_parse_handles_spaces_and_slashes() {
        let parsed = parse_md5sums("abc  usr/bin/a b\ndef  /etc/x\n\n");
        assert_eq!(
            parsed,
            vec![
                ("abc".to_string(), "usr/bin/a b".to_string()),
                ("def".to_string(), "etc/x".to_string())
            ]
        );
    }

    #[test]
    fn conffiles_field_round_trip() {
        let entries = vec![("/etc/a".to_string(), "0a".to_string())];
        assert_eq!(parse_conffiles_field(&conffiles_field(&entries)), entries);
    }

    #[test]
    fn status_round_trips_through_disk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/cairn")).unwrap();
        std::fs::write(dir.path().join("etc/cairn/node.yaml"), "node: {alias: a}\n").unwrap();
        let paths = NodePaths::open(dir.path()).unwrap();
        paths.ensure_admindir().unwrap();
        let mut db = Db::load(&paths).unwrap();
        assert_eq!(db.installed().count(), 0);
        let p = parse_paragraphs(
            "Package: a\nStatus: install ok installed\nVersion: 1\nMulti-Arch: same\nArchitecture: amd64\n",
            std::path::Path::new("x"),
        )
        .unwrap()
        .remove(0);
        db.upsert(p.clone());
        db.save().unwrap();
        let files = InfoFiles {
            list: vec!["/.".into(), "/usr".into()],
            ..Default::default()
        };
        db.write_info(&p, &files).unwrap();
        assert!(paths.info().join("a:amd64.list").is_file());
        let db = Db::load(&paths).unwrap();
        assert_eq!(db.find("a").unwrap().version(), "1");
        assert_eq!(db.file_list(&p).unwrap(), vec!["/.", "/usr"]);
    }
}
