//! A node's repository list: one-line `deb` sources in `etc/cairn/sources.list`.

use crate::error::{Error, Result};
use crate::layout::{NodePaths, read_optional, write_atomic};
use std::path::Path;

/// Adds a repository line to the node (after checking its syntax).
pub fn add_repo(node: &Path, line: &str) -> Result<()> {
    let paths = NodePaths::open(node)?;
    let line = normalize_line(line)?;
    let mut lines = read_lines(&paths)?;
    if lines.contains(&line) {
        return Err(Error::RepoExists {
            node: node.to_path_buf(),
            line,
        });
    }
    lines.push(line);
    write_lines(&paths, &lines)
}

/// The node's repository lines, in order.
pub fn repos(node: &Path) -> Result<Vec<String>> {
    read_lines(&NodePaths::open(node)?)
}

/// Removes a repository given as its exact line or its 1-based number in `repos`;
/// returns the removed line.
pub fn remove_repo(node: &Path, which: &str) -> Result<String> {
    let paths = NodePaths::open(node)?;
    let mut lines = read_lines(&paths)?;
    let wanted = normalize_line(which).ok();
    let index = match which.trim().parse::<usize>() {
        Ok(n) if n >= 1 && n <= lines.len() => Some(n - 1),
        _ => lines.iter().position(|l| Some(l) == wanted.as_ref()),
    };
    let Some(index) = index else {
        return Err(Error::NoSuchRepo {
            node: node.to_path_buf(),
            which: which.to_string(),
        });
    };
    let removed = lines.remove(index);
    write_lines(&paths, &lines)?;
    Ok(removed)
}

pub(crate) fn read_lines(paths: &NodePaths) -> Result<Vec<String>> {
    let text = read_optional(&paths.sources())?.unwrap_or_default();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

fn write_lines(paths: &NodePaths, lines: &[String]) -> Result<()> {
    let mut text = String::from("# Repositories of this node (cairn node add-repo / rm-repo)\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    write_atomic(&paths.sources(), text.as_bytes(), 0o644)
}

/// Checks a one-line-style source (`deb [opts] URI SUITE [COMPONENT...]`) and returns it
/// with whitespace normalised.
pub fn normalize_line(line: &str) -> Result<String> {
    let bad = |reason: &str| Error::BadRepoLine {
        line: line.to_string(),
        reason: reason.into(),
    };
    if line.contains(['\n', '\r']) {
        return Err(bad("must be a single line"));
    }
    let mut rest = line.trim();
    let Some(after) = rest
        .strip_prefix("deb ")
        .or_else(|| rest.strip_prefix("deb\t"))
    else {
        return Err(bad("must start with \"deb\""));
    };
    rest = after.trim_start();
    let mut out = vec!["deb".to_string()];
    if let Some(opts) = rest.strip_prefix('[') {
        let Some(end) = opts.find(']') else {
            return Err(bad("unclosed \"[\""));
        };
        let options: Vec<&str> = opts[..end].split_whitespace().collect();
        if options.iter().any(|o| !o.contains('=')) {
            return Err(bad("options must be key=value"));
        }
        out.push(format!("[{}]", options.join(" ")));
        rest = opts[end + 1..].trim_start();
    }
    let words: Vec<&str> = rest.split_whitespace().collect();
    let (Some(uri), Some(suite)) = (words.first(), words.get(1)) else {
        return Err(bad("expected a URI and a suite"));
    };
    let scheme_ok = uri.split_once(':').is_some_and(|(s, r)| {
        !s.is_empty() && !r.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '+')
    });
    if !scheme_ok {
        return Err(bad("the URI needs a scheme (file:, http:, https:, ...)"));
    }
    if suite.ends_with('/') && words.len() > 2 {
        return Err(bad("a suite ending in \"/\" takes no components"));
    }
    if !suite.ends_with('/') && words.len() < 3 {
        return Err(bad(
            "expected at least one component after the suite (or a suite ending in \"/\")",
        ));
    }
    out.extend(words.iter().map(|w| w.to_string()));
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_typical_lines() {
        assert_eq!(
            normalize_line("deb  [trusted=yes]   file:/srv/repo ./").unwrap(),
            "deb [trusted=yes] file:/srv/repo ./"
        );
        assert!(normalize_line("deb http://deb.debian.org/debian bookworm main contrib").is_ok());
    }

    #[test]
    fn rejects_bad_lines_with_reason() {
        for (line, why) in [
            ("deb-src file:/x ./", "start with"),
            ("deb [trusted=yes file:/x ./", "unclosed"),
            ("deb /srv/repo ./", "scheme"),
            ("deb file:/x bookworm", "component"),
            ("deb file:/x ./ main", "no components"),
            ("deb file:/x", "URI and a suite"),
        ] {
            let err = normalize_line(line).unwrap_err().to_string();
            assert!(err.contains(why), "{line}: {err}");
        }
    }

    #[test]
    fn add_list_remove() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc/cairn")).unwrap();
        std::fs::write(dir.path().join("etc/cairn/node.yaml"), "node: {alias: a}\n").unwrap();
        add_repo(dir.path(), "deb [trusted=yes] file:/a ./").unwrap();
        add_repo(dir.path(), "deb [trusted=yes] file:/b ./").unwrap();
        assert!(add_repo(dir.path(), "deb [trusted=yes]  file:/a ./").is_err());
        assert_eq!(repos(dir.path()).unwrap().len(), 2);
        assert_eq!(
            remove_repo(dir.path(), "2").unwrap(),
            "deb [trusted=yes] file:/b ./"
        );
        assert!(remove_repo(dir.path(), "deb file:/zzz ./").is_err());
        remove_repo(dir.path(), "deb [trusted=yes] file:/a ./").unwrap();
        assert!(repos(dir.path()).unwrap().is_empty());
    }

    proptest! {
        #[test]
        fn normalized_lines_are_stable(
            opts in proptest::option::of("[a-z]{1,8}=[a-z0-9]{1,8}"),
            uri in "(file|http|https):/[a-z0-9/._-]{1,20}",
            suite in "[a-z]{1,10}",
            comps in proptest::collection::vec("[a-z]{1,8}", 1..4),
            spaces in "[ \t]{1,3}",
        ) {
            let mut line = String::from("deb");
            line.push_str(&spaces);
            if let Some(o) = &opts { line.push_str(&format!("[{o}]{spaces}")); }
            line.push_str(&format!("{uri}{spaces}{suite}{spaces}{}", comps.join(&spaces)));
            let once = normalize_line(&line).unwrap();
            prop_assert_eq!(normalize_line(&once).unwrap(), once.clone());
            prop_assert!(!once.contains("  "));
        }
    }
}
