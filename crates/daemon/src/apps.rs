//! App configurations as far as the daemon needs them: which views an app plugs and
//! which hooks it declares.
//!
//! The app format belongs to `cairn-app`: files are read and merged (`NAME.yaml`, then
//! `NAME.d/*.yaml`) by `cairn_model::app`, so the daemon and `cairn app` never disagree on
//! what an app file says. This module keeps what the daemon needs: the node, the plugs, the
//! hooks.

use cairn_config::{NameKind, check_name, one_line};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where an app's definition came from; decides whether unsandboxed hooks are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppSource {
    /// An administrator-written file under `<config>/apps`.
    Config,
    /// An ephemeral session requested by `cairn run --confdb-plug`.
    Session,
}

/// One plugged view: `acme/network/control-device` or `...:custodian`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plug {
    /// The view in its `account/schema/view` text form.
    pub view: String,
    pub custodian: bool,
}

/// Hook commands (run with `sh -c`) of an app: the app format's own type.
pub use cairn_model::Hooks;

/// What the daemon knows about one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    /// The node leaf the app (and so its hooks) runs in.
    pub node: Option<PathBuf>,
    /// An image app: its hooks run in a fresh sandbox of its image (`cairn app exec`). Apps
    /// with neither a node nor an image (administrator-written plug-only configs) run hooks
    /// unsandboxed.
    pub image: bool,
    pub plugs: Vec<Plug>,
    pub hooks: Hooks,
    pub source: AppSource,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppError {
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("invalid plug {plug:?}: {reason}")]
    Plug { plug: String, reason: &'static str },
    /// App names become socket file names.
    #[error(transparent)]
    Name(#[from] cairn_config::NameError),
    #[error("cannot read {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// The app format's own error (it names the file and line).
    #[error("{0}")]
    Config(String),
}

impl App {
    /// The plug for `view` if the app has one (the access check).
    pub fn plug(&self, view: &str) -> Option<&Plug> {
        self.plugs.iter().find(|p| p.view == view)
    }

    /// Builds an app from the parts a session request carries.
    pub fn new(
        name: &str,
        node: Option<PathBuf>,
        plugs: &[String],
        hooks: Hooks,
        source: AppSource,
    ) -> Result<App, AppError> {
        check_name(NameKind::App, name)?;
        let plugs = plugs
            .iter()
            .map(|p| parse_plug(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(App {
            name: name.to_string(),
            node,
            image: false,
            plugs,
            hooks,
            source,
        })
    }
}

/// Parses `account/schema/view[:custodian]`.
pub fn parse_plug(text: &str) -> Result<Plug, AppError> {
    let err = |reason| AppError::Plug {
        plug: text.to_string(),
        reason,
    };
    let (view, custodian) = match text.split_once(':') {
        None => (text, false),
        Some((view, "custodian")) => (view, true),
        Some(_) => return Err(err("the only role after ':' is \"custodian\"")),
    };
    let parts: Vec<&str> = view.split('/').collect();
    let segment_ok = |s: &&str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if parts.len() != 3 || !parts.iter().all(segment_ok) {
        return Err(err("expected ACCOUNT/SCHEMA/VIEW"));
    }
    Ok(Plug {
        view: view.to_string(),
        custodian,
    })
}

/// Parses one app file's text (`name` comes from the file name).
pub fn parse_app(name: &str, path: &Path, text: &str) -> Result<App, AppError> {
    let config_error = |e: cairn_model::Error| AppError::Config(e.to_string());
    let value = cairn_model::app::parse_file(path, text).map_err(config_error)?;
    let config = serde_json::from_value(value).map_err(|e| AppError::Invalid {
        path: path.to_path_buf(),
        reason: one_line(&e.to_string()),
    })?;
    app_from_config(name, path, config)
}

/// `NAME.yaml`, then the fragments `NAME.d/*.yaml` in name order, merged by the app format.
fn load_app(dir: &Path, name: &str, main: &Path) -> Result<App, AppError> {
    let config = cairn_model::app::load(dir, name).map_err(|e| AppError::Config(e.to_string()))?;
    app_from_config(name, main, config)
}

fn app_from_config(
    name: &str,
    path: &Path,
    config: cairn_model::AppConfig,
) -> Result<App, AppError> {
    let invalid = |reason: String| AppError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    check_name(NameKind::App, name).map_err(|e| invalid(e.to_string()))?;
    let plugs = config
        .confdb_plug
        .iter()
        .map(|p| parse_plug(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("confdb-plug: {e}")))?;
    let mut hooks = config.hooks;
    if config.vm.is_some() && hooks != Hooks::default() {
        // A VM cannot reach the daemon; running them on the host instead would be a
        // silent sandbox escape.
        tracing::warn!(
            "{}: hooks of vm apps are not supported; ignoring them",
            path.display()
        );
        hooks = Hooks::default();
    }
    Ok(App {
        name: name.to_string(),
        node: config.node,
        image: config.image.is_some(),
        plugs,
        hooks,
        source: AppSource::Config,
    })
}

/// Loads every `*.yaml` in `dir` (a missing directory means no apps). A broken file is
/// reported and skipped so that one bad app cannot take the others' sockets away.
pub fn load_dir(dir: &Path) -> (BTreeMap<String, App>, Vec<AppError>) {
    let mut apps = BTreeMap::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (apps, errors),
        Err(e) => {
            errors.push(AppError::Read {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            });
            return (apps, errors);
        }
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") || !path.is_file() {
            continue;
        }
        let Some(name) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        match load_app(dir, &name, &path) {
            Ok(app) if app.plugs.is_empty() => {} // no confdb access: no socket needed
            Ok(app) => {
                apps.insert(name, app);
            }
            Err(e) => errors.push(e),
        }
    }
    (apps, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_plugs_and_hooks() {
        let text = "node: /n/leaf\nconfdb-plug:\n  - acme/network/control-device\n  - acme/network/control-tunnel:custodian\nhooks:\n  change-view: ./check\n";
        let app = parse_app("vpn", Path::new("vpn.yaml"), text).unwrap();
        assert_eq!(app.node.as_deref(), Some(Path::new("/n/leaf")));
        assert_eq!(app.plugs.len(), 2);
        assert!(!app.plugs[0].custodian);
        assert!(app.plugs[1].custodian);
        assert_eq!(
            app.plug("acme/network/control-tunnel").map(|p| p.custodian),
            Some(true)
        );
        assert!(app.plug("acme/network/other").is_none());
        assert_eq!(app.hooks.change_view.as_deref(), Some("./check"));
        assert_eq!(app.hooks.observe_view, None);
    }

    #[test]
    fn unknown_keys_are_refused_like_cairn_app_refuses_them() {
        let err = parse_app(
            "x",
            Path::new("/e/x.yaml"),
            "confdb-plug: [a/b/c]\nplugs: [x]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/e/x.yaml:2") && err.contains("plugs"),
            "{err}"
        );
    }

    #[test]
    fn hooks_of_image_apps_are_kept_for_their_sandbox() {
        let text = "image: r/x:1\nconfdb-plug: [a/b/c:custodian]\nhooks: {change-view: ./x}\n";
        let app = parse_app("x", Path::new("x.yaml"), text).unwrap();
        assert!(app.image);
        assert_eq!(app.hooks.change_view.as_deref(), Some("./x"));
        assert_eq!(app.plugs.len(), 1);
    }

    #[test]
    fn bad_plug_names_the_file_and_the_plug() {
        let err = parse_app("x", Path::new("/e/x.yaml"), "confdb-plug: [acme/network]\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "/e/x.yaml: confdb-plug: invalid plug \"acme/network\": expected ACCOUNT/SCHEMA/VIEW"
        );
        let err = parse_plug("a/b/c:owner").unwrap_err().to_string();
        assert!(err.contains("custodian"), "{err}");
    }

    #[test]
    fn fragments_merge_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("vpn.yaml"),
            "node: /a\nconfdb-plug: [a/b/c]\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("vpn.d")).unwrap();
        std::fs::write(
            dir.path().join("vpn.d/10-plugs.yaml"),
            "confdb-plug: [a/b/d]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("vpn.d/20-hooks.yaml"),
            "hooks: {observe-view: x}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("vpn.d/30-more.yaml"),
            "hooks: {change-view: y}\n",
        )
        .unwrap();
        let (apps, errors) = load_dir(dir.path());
        assert!(errors.is_empty(), "{errors:?}");
        let app = &apps["vpn"];
        assert_eq!(
            app.plugs
                .iter()
                .map(|p| p.view.as_str())
                .collect::<Vec<_>>(),
            vec!["a/b/d"]
        );
        assert_eq!(app.hooks.observe_view.as_deref(), Some("x"));
        assert_eq!(app.hooks.change_view.as_deref(), Some("y"));
        assert_eq!(app.node.as_deref(), Some(Path::new("/a")));
    }

    #[test]
    fn load_dir_skips_broken_and_plugless_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.yaml"), "confdb-plug: [a/b/c]\n").unwrap();
        std::fs::write(dir.path().join("none.yaml"), "node: /x\n").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "confdb-plug: [nope]\n").unwrap();
        std::fs::write(dir.path().join("Bad_Name.yaml"), "confdb-plug: [a/b/c]\n").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let (apps, errors) = load_dir(dir.path());
        assert_eq!(apps.keys().collect::<Vec<_>>(), vec!["good"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        let (apps, errors) = load_dir(&dir.path().join("missing"));
        assert!(apps.is_empty() && errors.is_empty());
    }

    proptest! {
        #[test]
        fn plug_text_round_trips(
            a in "[a-z0-9][a-z0-9-]{0,8}", s in "[a-z0-9][a-z0-9-]{0,8}",
            v in "[a-z0-9][a-z0-9-]{0,8}", custodian: bool,
        ) {
            let view = format!("{a}/{s}/{v}");
            let text = if custodian { format!("{view}:custodian") } else { view.clone() };
            let plug = parse_plug(&text).unwrap();
            prop_assert_eq!(plug.view, view);
            prop_assert_eq!(plug.custodian, custodian);
        }

        #[test]
        fn plug_parser_never_panics(text in ".{0,40}") {
            let _ = parse_plug(&text);
        }

        #[test]
        fn names_with_bad_bytes_are_refused(name in "[a-z]{0,4}[A-Z/._ ][a-z]{0,4}") {
            prop_assert!(check_name(NameKind::App, &name).is_err());
        }
    }
}
