//! App configuration files: `<config>/apps/NAME.yaml` plus `NAME.d/*.yaml` fragments.
//!
//! Every file is checked on its own first (unknown keys and wrong types are reported with
//! the file and line), then the files are deep-merged in order (the main file, then the
//! fragments by name): maps merge key by key, any other value replaces the earlier one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_config::json::merge;
use cairn_config::one_line;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// Which runtime launches the app.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    #[default]
    Native,
    Podman,
    Vm,
}

/// How calls map onto instances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A new instance per call, removed afterwards.
    #[default]
    Fresh,
    Resume,
    Attach,
}

/// Hook commands for confdb views (run by the daemon, which reads the same file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_view: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe_view: Option<String>,
}

/// One app, as merged from its files. Every key is optional in a single file; what a
/// launch needs is checked by [`AppConfig::validate`] after the merge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AppConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// Extra layer images between the base and the image, bottom first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// Size of a vm app's writable overlay (`512M`, `1G`); only the vm engine takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay_size: Option<String>,
    /// The program inside the app's environment; `/` means the image's entrypoint and cmd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_path: Option<PathBuf>,
    #[serde(default)]
    pub engine: Engine,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_tar: Vec<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_path: Vec<PathBuf>,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub confdb_plug: Vec<String>,
    #[serde(default, skip_serializing_if = "is_default_hooks")]
    pub hooks: Hooks,
}

fn is_default_hooks(h: &Hooks) -> bool {
    *h == Hooks::default()
}

impl AppConfig {
    /// Checks what a launch needs: exactly one environment, a target, and what the engine
    /// accepts; from the config alone (what needs the machine, such as a pulled VM, is the
    /// engine's own check at launch).
    pub fn validate(&self, name: &str) -> Result<(), Error> {
        let invalid = |reason: String| Error::Invalid {
            name: name.to_string(),
            reason,
        };
        match (&self.image, &self.node, &self.vm) {
            (Some(_), None, None) | (None, Some(_), None) | (None, None, Some(_)) => {}
            _ => return Err(invalid("give exactly one of image, node and vm".into())),
        }
        if self.image.is_none() && (self.base.is_some() || !self.layers.is_empty()) {
            return Err(invalid("base and layers need an image".into()));
        }
        let Some(target) = &self.target else {
            return Err(invalid("target is missing".into()));
        };
        if !target.is_absolute() {
            return Err(invalid(format!(
                "target {} is not absolute",
                target.display()
            )));
        }
        if self.node.is_some() && target == Path::new("/") {
            return Err(invalid("target / (the entrypoint) needs an image".into()));
        }
        for p in self.include_path.iter().chain(&self.include_tar) {
            if !p.is_absolute() {
                return Err(invalid(format!("include {} is not absolute", p.display())));
            }
        }
        for p in &self.include_path {
            if let Some(reason) = unincludable(p) {
                return Err(invalid(format!("include-path {}: {reason}", p.display())));
            }
        }
        if self.node.is_some() && !(self.include_path.is_empty() && self.include_tar.is_empty()) {
            return Err(invalid(
                "include-tar and include-path need an image app".into(),
            ));
        }
        crate::rules::validate_engine(name, self)
    }
}

/// Why include-path `path` can be neither copied nor shown at its place, if so: every
/// engine mounts its own procfs, sysfs or /dev there (a copy of a device or a kernel file
/// means nothing in a sandbox), and `/` holds them all.
fn unincludable(path: &Path) -> Option<String> {
    use std::path::Component;
    let mut parts = path.components().filter(|c| *c != Component::CurDir);
    let top = match (parts.next(), parts.next()) {
        (Some(Component::RootDir), Some(Component::Normal(top))) => top,
        (Some(Component::RootDir), None) => {
            return Some("the host's whole root cannot be included".into());
        }
        _ => return Some("not a plain absolute path".into()),
    };
    if path.components().any(|c| c == Component::ParentDir) {
        return Some("'..' is not allowed in an include path".into());
    }
    ["proc", "sys", "dev"].contains(&top.to_str()?).then(|| {
        format!(
            "/{} belongs to the sandbox (/proc, /sys and /dev take no includes)",
            top.to_string_lossy()
        )
    })
}

/// The files that make up app `name`: the main file, then its fragments by name.
pub fn files(apps_dir: &Path, name: &str) -> Result<Vec<PathBuf>, Error> {
    let main = apps_dir.join(format!("{name}.yaml"));
    let mut files = vec![main];
    let frag_dir = apps_dir.join(format!("{name}.d"));
    match std::fs::read_dir(&frag_dir) {
        Ok(entries) => {
            let mut frags = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&frag_dir, e))?;
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "yaml") {
                    frags.push(path);
                }
            }
            frags.sort();
            files.extend(frags);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&frag_dir, e)),
    }
    Ok(files)
}

/// Loads and merges app `name`; a missing main file is [`Error::NotFound`].
pub fn load(apps_dir: &Path, name: &str) -> Result<AppConfig, Error> {
    let files = files(apps_dir, name)?;
    let mut merged = Value::Object(Default::default());
    for (i, path) in files.iter().enumerate() {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if i == 0 && e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound {
                    name: name.to_string(),
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        merge(&mut merged, parse_file(path, &text)?);
    }
    serde_json::from_value(merged).map_err(|e| Error::Invalid {
        name: name.to_string(),
        reason: one_line(&e.to_string()),
    })
}

/// Parses one file: checked against [`AppConfig`] (for file:line errors), returned as a
/// generic value so that only the keys it sets take part in the merge.
///
/// The values come from the typed parse, not from an untyped one: untyped YAML turns
/// `y`, `on` or `8080` into booleans and numbers, which a hook command or an environment
/// value must not become. The untyped parse only says which keys the file sets.
pub fn parse_file(path: &Path, text: &str) -> Result<Value, Error> {
    let parse_error = |e: serde_saphyr::Error| Error::Parse {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()).unwrap_or(0),
        reason: strip_location(&one_line(&e.to_string())),
    };
    if text.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let typed = serde_saphyr::from_str::<AppConfig>(text).map_err(parse_error)?;
    let present: Value = serde_saphyr::from_str(text).map_err(parse_error)?;
    match present {
        Value::Object(_) => {
            let full = serde_json::to_value(&typed).unwrap_or(Value::Null);
            Ok(keep_present(full, present))
        }
        Value::Null => Ok(Value::Object(Default::default())),
        _ => Err(Error::Parse {
            path: path.to_path_buf(),
            line: 1,
            reason: "expected a map of keys".into(),
        }),
    }
}

/// The typed values of the keys `present` sets; where the typed form leaves a key out (an
/// empty list, a null), the file's own value stands.
fn keep_present(typed: Value, present: Value) -> Value {
    match (typed, present) {
        (Value::Object(mut typed), Value::Object(present)) => Value::Object(
            present
                .into_iter()
                .map(|(k, v)| match typed.remove(&k) {
                    Some(t) => {
                        let kept = keep_present(t, v);
                        (k, kept)
                    }
                    None => (k, v),
                })
                .collect(),
        ),
        (typed, _) => typed,
    }
}

/// The `app-path` a file's text names, read without validating the rest (so that a
/// config that no longer validates can still have its host command removed).
pub fn raw_app_path(text: &str) -> Option<PathBuf> {
    let value: Value = serde_saphyr::from_str(text).ok()?;
    value.get("app-path")?.as_str().map(PathBuf::from)
}

/// The YAML text of a config (as `register` writes it and `app info` shows it).
pub fn to_yaml(config: &AppConfig) -> Result<String, Error> {
    serde_saphyr::to_string(config).map_err(|e| Error::Invalid {
        name: String::new(),
        reason: one_line(&e.to_string()),
    })
}

/// The file:line prefix is ours; the parser's own " at line N column M" would repeat it.
fn strip_location(s: &str) -> String {
    match s.find(" at line ") {
        Some(i) => s[..i].trim_end_matches([',', ':']).to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn includes_below_kernel_filesystems_are_refused() {
        for ok in ["/tmp/f", "/run/x/y", "/device", "/opt/proc", "/etc/"] {
            assert_eq!(unincludable(Path::new(ok)), None, "{ok}");
        }
        for bad in [
            "/",
            "/proc",
            "/proc/1/maps",
            "//dev/null",
            "/sys/",
            "/tmp/../proc/x",
        ] {
            assert!(unincludable(Path::new(bad)).is_some(), "{bad}");
        }
    }

    #[test]
    fn maps_merge_and_lists_replace() {
        let mut base =
            json!({"env": {"A": "1", "B": "2"}, "run-args": ["--share-net"], "image": "x"});
        merge(
            &mut base,
            json!({"env": {"B": "3", "C": "4"}, "run-args": [], "target": "/t"}),
        );
        assert_eq!(
            base,
            json!({"env": {"A": "1", "B": "3", "C": "4"}, "run-args": [], "image": "x", "target": "/t"})
        );
    }

    #[test]
    fn scalars_keep_their_typed_meaning_through_the_merge() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "node: /n\ntarget: /t\nenv: {PORT: 8080, FLAG: on}\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("a.d")).unwrap();
        std::fs::write(dir.path().join("a.d/1.yaml"), "hooks: {change-view: y}\n").unwrap();
        let config = load(dir.path(), "a").unwrap();
        assert_eq!(config.env["PORT"], "8080");
        assert_eq!(config.env["FLAG"], "on");
        assert_eq!(config.hooks.change_view.as_deref(), Some("y"));
        assert_eq!(config.target.as_deref(), Some(Path::new("/t")));
    }

    #[test]
    fn fragments_merge_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let apps = dir.path();
        std::fs::write(
            apps.join("a.yaml"),
            "image: one\ntarget: /bin/x\nenv:\n  K: main\n",
        )
        .unwrap();
        std::fs::create_dir(apps.join("a.d")).unwrap();
        std::fs::write(apps.join("a.d/20-late.yaml"), "env:\n  K: late\n").unwrap();
        std::fs::write(apps.join("a.d/10-early.yaml"), "env:\n  K: early\n  J: j\n").unwrap();
        std::fs::write(apps.join("a.d/ignored.txt"), "garbage: [").unwrap();
        let config = load(apps, "a").unwrap();
        assert_eq!(config.env["K"], "late");
        assert_eq!(config.env["J"], "j");
        assert_eq!(config.image.as_deref(), Some("one"));
        config.validate("a").unwrap();
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.yaml");
        std::fs::write(&path, "image: x\ntarget: /bin/sh\nbogus: 1\n").unwrap();
        let err = load(dir.path(), "b").unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}:3: ", path.display())), "{err}");
        assert!(err.contains("bogus"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn bad_engine_value_is_an_error() {
        let err = parse_file(Path::new("/x.yaml"), "engine: docker\n").unwrap_err();
        assert!(err.to_string().starts_with("/x.yaml:1: "), "{err}");
    }

    #[test]
    fn validation_needs_one_environment_and_a_target() {
        let mut c = AppConfig {
            image: Some("i".into()),
            target: Some("/".into()),
            ..Default::default()
        };
        c.validate("a").unwrap();
        c.node = Some("/n".into());
        assert!(c.validate("a").is_err());
        c.image = None;
        assert!(c.validate("a").is_err(), "node app with target /");
        c.target = Some("/bin/x".into());
        c.validate("a").unwrap();
        c.run_args = vec!["--privileged".into()];
        assert!(
            c.validate("a")
                .unwrap_err()
                .to_string()
                .contains("--privileged")
        );
    }
}
