//! Property tests of the merge rules against a direct reference model.

#![allow(clippy::unwrap_used)]

mod common;
use common::*;

use std::path::PathBuf;

use proptest::prelude::*;

const MOUNTS: [&str; 4] = ["/a", "/a/b", "/c", "/d"];
const KEYS: [&str; 3] = ["K1", "K2", "K3"];

#[derive(Debug, Clone)]
struct Export {
    mount: usize,
    private: bool,
}

#[derive(Debug, Clone)]
struct File {
    hostname: Option<u8>,
    exports: Vec<Export>,
    environ: Vec<(usize, u8)>,
}

#[derive(Debug, Clone)]
struct NodeSpec {
    normal: File,
    admin: Option<File>,
}

fn file() -> impl Strategy<Value = File> {
    (
        proptest::option::of(any::<u8>()),
        proptest::sample::subsequence(vec![0usize, 1, 2, 3], 0..=4),
        proptest::collection::vec(any::<bool>(), 4),
        proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3),
        any::<u8>(),
    )
        .prop_map(|(hostname, mounts, privs, keys, v)| File {
            hostname,
            exports: mounts
                .into_iter()
                .map(|m| Export {
                    mount: m,
                    private: privs[m],
                })
                .collect(),
            environ: keys.into_iter().map(|k| (k, v)).collect(),
        })
}

fn family() -> impl Strategy<Value = Vec<NodeSpec>> {
    proptest::collection::vec(
        (file(), proptest::option::of(file()))
            .prop_map(|(normal, admin)| NodeSpec { normal, admin }),
        1..=3,
    )
}

fn render(f: &File, tag: &str) -> String {
    let mut s = String::new();
    if let Some(h) = f.hostname {
        s.push_str(&format!("config:\n  hostname: h{h}-{tag}\n"));
    }
    s.push_str("exports:\n");
    for e in &f.exports {
        let mode = if e.private { "private" } else { "tmpfs" };
        let path = if e.private { ", path: ." } else { "" };
        s.push_str(&format!(
            "  - {{ mode: {mode}, mount: {}{path} }}\n",
            MOUNTS[e.mount]
        ));
    }
    s.push_str("environ:\n");
    for (k, v) in &f.environ {
        s.push_str(&format!(
            "  - {{ mode: set, key: {}, value: \"{v}-{tag}\" }}\n",
            KEYS[*k]
        ));
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn merge_matches_the_reference(fam in family()) {
        let t = tmp();
        let mut dir = t.path().to_path_buf();
        let mut dirs = Vec::new();
        for (i, n) in fam.iter().enumerate() {
            dir = dir.join(format!("n{i}"));
            node(&dir, &yaml(&format!("n{i}"), &render(&n.normal, &format!("n{i}"))));
            if let Some(a) = &n.admin {
                admin(&dir, &render(a, &format!("a{i}")));
            }
            dirs.push(dir.clone());
        }
        let leaf = fam.len() - 1;
        let loaded = cairn_node::load_family(&dirs[leaf], &ctx()).unwrap();
        let merged = loaded.merged().unwrap();

        // Scalars: admin files nearest first, then normal files nearest first.
        let admins = fam.iter().enumerate().rev().filter_map(|(i, n)| n.admin.as_ref().map(|a| (a, format!("a{i}"))));
        let normals = fam.iter().enumerate().rev().map(|(i, n)| (&n.normal, format!("n{i}")));
        let want_host = admins.chain(normals).find_map(|(f, tag)| f.hostname.map(|h| format!("h{h}-{tag}")));
        prop_assert_eq!(merged.config.hostname.value.clone(), want_host.unwrap_or_else(|| format!("n{leaf}")));

        // Cumulation: normal files root first, then admin files root first; later replaces
        // earlier in place; private exports only from the leaf.
        let mut files: Vec<(usize, &File, String)> = fam.iter().enumerate().map(|(i, n)| (i, &n.normal, format!("n{i}"))).collect();
        files.extend(fam.iter().enumerate().filter_map(|(i, n)| n.admin.as_ref().map(|a| (i, a, format!("a{i}")))));
        let mut want_exports: Vec<(PathBuf, bool, usize)> = Vec::new();
        let mut want_env: Vec<(String, String)> = Vec::new();
        for (i, f, tag) in &files {
            for e in &f.exports {
                if e.private && *i != leaf {
                    continue;
                }
                let entry = (PathBuf::from(MOUNTS[e.mount]), e.private, *i);
                match want_exports.iter_mut().find(|w| w.0 == entry.0) {
                    Some(slot) => *slot = entry,
                    None => want_exports.push(entry),
                }
            }
            for (k, v) in &f.environ {
                let entry = (KEYS[*k].to_owned(), format!("{v}-{tag}"));
                match want_env.iter_mut().find(|w| w.0 == entry.0) {
                    Some(slot) => *slot = entry,
                    None => want_env.push(entry),
                }
            }
        }
        let got_exports: Vec<(PathBuf, bool, usize)> = merged
            .exports
            .iter()
            .map(|e| {
                let owner = dirs.iter().rposition(|d| e.origin.file.starts_with(canon(d))).unwrap();
                (e.mount.clone(), e.mode == cairn_node::ExportMode::Private, owner)
            })
            .collect();
        prop_assert_eq!(got_exports, want_exports);
        let got_env: Vec<(String, String)> =
            merged.environ.iter().map(|e| (e.key.clone(), e.value.clone().unwrap_or_default())).collect();
        prop_assert_eq!(got_env, want_env);

        // The spec mounts every parent before its children.
        let spec = loaded.to_spec(&cairn_node::Launch::default()).unwrap();
        let depths: Vec<usize> = spec.mounts.iter().map(|m| match m {
            cairn_sandbox::Mount::Tmpfs { dest, .. } | cairn_sandbox::Mount::Bind { dest, .. } => dest.components().count(),
            other => panic!("{other:?}"),
        }).collect();
        prop_assert!(depths.windows(2).all(|w| w[0] <= w[1]), "{:?}", depths);
    }
}
