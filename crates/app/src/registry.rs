//! The set of registered apps: their config files, host commands and image pins.

use std::path::{Path, PathBuf};

use cairn_config::{NameKind, check_name};
use serde::Serialize;

use crate::config::{self, AppConfig};
use crate::error::Error;
use crate::instance;

/// Where apps live for one Cairn configuration.
#[derive(Debug, Clone)]
pub struct Apps {
    /// `<config>/apps`: NAME.yaml and NAME.d/.
    pub dir: PathBuf,
    /// `<run>/instances`: one directory per app, one below it per running instance.
    pub instances: PathBuf,
    /// `<state>/images`: the image store the apps pin.
    images: PathBuf,
}

/// One row of `cairn app ls`: the merged config, or why it cannot be read.
#[derive(Debug, Clone, Serialize)]
pub struct AppEntry {
    pub name: String,
    #[serde(flatten)]
    pub config: Option<AppConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The pin owners of an app: its image, base and each extra layer image.
pub fn pin_owners(name: &str, config: &AppConfig) -> Vec<(String, String)> {
    let mut owners = Vec::new();
    if let Some(base) = &config.base {
        owners.push((format!("app:{name}:base"), base.clone()));
    }
    for (i, layer) in config.layers.iter().enumerate() {
        owners.push((format!("app:{name}:layer:{i}"), layer.clone()));
    }
    if let Some(image) = &config.image {
        owners.push((format!("app:{name}"), image.clone()));
    }
    owners
}

/// Where the host command goes by default: `/usr/local/bin/NAME` for root (below
/// `CAIRN_ROOT` when set, like every other path), `~/.local/bin/NAME` otherwise.
pub fn default_app_path(name: &str, env: &cairn_config::Env) -> Result<PathBuf, Error> {
    if let Some(root) = &env.cairn_root {
        return Ok(root.join("usr/local/bin").join(name));
    }
    if env.euid == 0 {
        return Ok(Path::new("/usr/local/bin").join(name));
    }
    let home = env.home.clone().ok_or_else(|| Error::Invalid {
        name: name.to_string(),
        reason: "HOME is not set: give --app-path".into(),
    })?;
    Ok(home.join(".local/bin").join(name))
}

impl Apps {
    pub fn new(config: &cairn_config::Config) -> Apps {
        Apps {
            dir: config.apps_dir(),
            instances: config.instances_dir(),
            images: config.images_dir(),
        }
    }

    pub fn config_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.yaml"))
    }

    /// Cheap check for the multi-call entry: is there a config file for `name`?
    pub fn is_registered(&self, name: &str) -> bool {
        check_name(NameKind::App, name).is_ok() && self.config_file(name).is_file()
    }

    pub fn load(&self, name: &str) -> Result<AppConfig, Error> {
        check_name(NameKind::App, name)?;
        Ok(config::load(&self.dir, name)?)
    }

    /// Every app, sorted by name; a broken one is listed with its error.
    pub fn list(&self) -> Result<Vec<AppEntry>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let file = entry.file_name();
            let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".yaml")) else {
                continue;
            };
            if check_name(NameKind::App, name).is_ok() {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names
            .into_iter()
            .map(|name| match self.load(&name) {
                Ok(config) => AppEntry {
                    name,
                    config: Some(config),
                    error: None,
                },
                Err(e) => AppEntry {
                    name,
                    config: None,
                    error: Some(e.to_string()),
                },
            })
            .collect())
    }

    /// Registers `name`: checks everything first (name, config, images, the command path),
    /// then pins the images, writes the config atomically and points the command at `exe`.
    /// `config.app_path` must be set (the caller resolves the default).
    pub fn register(
        &self,
        name: &str,
        config: &AppConfig,
        exe: &Path,
        force: bool,
    ) -> Result<(), Error> {
        check_name(NameKind::App, name)?;
        crate::engine::validate(name, config)?;
        let app_path = config.app_path.clone().ok_or_else(|| Error::Invalid {
            name: name.to_string(),
            reason: "app-path is missing".into(),
        })?;
        let previous = self.load(name).ok();
        if !force && self.config_file(name).exists() {
            return Err(Error::Exists {
                name: name.to_string(),
            });
        }
        let ours = previous
            .as_ref()
            .and_then(|p| p.app_path.as_deref())
            .is_some_and(|p| p == app_path);
        if !force && !ours && std::fs::symlink_metadata(&app_path).is_ok() {
            return Err(Error::PathTaken { path: app_path });
        }
        let store = self.store()?;
        let owners = pin_owners(name, config);
        for (_, reference) in &owners {
            store.rootfs(reference)?;
        }
        if let Some(previous) = &previous {
            for (owner, _) in pin_owners(name, previous) {
                store.unpin(&owner)?;
            }
        }
        for (owner, reference) in &owners {
            store.pin(owner, reference)?;
        }
        let text = config::to_yaml(config)?;
        write_atomic(&self.config_file(name), text.as_bytes())?;
        if let Some(old) = previous.and_then(|p| p.app_path).filter(|p| *p != app_path) {
            remove_command(&old, exe)?;
        }
        link_atomic(exe, &app_path)
    }

    /// Removes everything of `name`: command, config, fragments, pins, instances.
    pub fn remove(&self, name: &str, exe: &Path) -> Result<(), Error> {
        check_name(NameKind::App, name)?;
        let config_file = self.config_file(name);
        if !config_file.exists() {
            return Err(Error::NotFound {
                name: name.to_string(),
            });
        }
        // Calls in progress refuse the removal; kept (resume, attach) instances are stopped.
        let running: Vec<String> = instance::running(&self.instances)?
            .into_iter()
            .filter(|r| r.app == name && r.mode == crate::config::Mode::Fresh)
            .map(|r| r.id.to_string())
            .collect();
        if !running.is_empty() {
            return Err(Error::Invalid {
                name: name.to_string(),
                reason: format!(
                    "instances {running:?} are running (`cairn app stop {name}` first)"
                ),
            });
        }
        instance::stop_all_kept(&self.instances, name)?;
        // A config that no longer validates still names its command: read that key alone.
        let config = self.load(name).unwrap_or_else(|_| AppConfig {
            app_path: raw_app_path(&config_file),
            ..Default::default()
        });
        if config.engine == config::Engine::Podman {
            crate::engine::podman::forget(name)?;
        }
        if let Some(path) = &config.app_path {
            remove_command(path, exe)?;
        }
        let store = self.store()?;
        let mut owners: Vec<String> = pin_owners(name, &config).into_iter().map(|o| o.0).collect();
        owners.push(format!("app:{name}"));
        for owner in owners {
            store.unpin(&owner)?;
        }
        instance::remove_tree(&self.instances.join(name))?;
        instance::remove_tree(&self.dir.join(format!("{name}.d")))?;
        std::fs::remove_file(&config_file).map_err(|e| Error::io(&config_file, e))
    }

    pub fn store(&self) -> Result<cairn_image::ImageStore, Error> {
        Ok(cairn_image::ImageStore::open(&self.images)?)
    }
}

/// The `app-path` of a config file, read without validating the rest.
fn raw_app_path(file: &Path) -> Option<PathBuf> {
    config::raw_app_path(&std::fs::read_to_string(file).ok()?)
}

/// Removes the host command only if it is still a symlink to cairn (never a user's file).
fn remove_command(path: &Path, exe: &Path) -> Result<(), Error> {
    match std::fs::read_link(path) {
        Ok(target) if target == exe || target.file_name() == exe.file_name() => {
            std::fs::remove_file(path).map_err(|e| Error::io(path, e))
        }
        _ => Ok(()),
    }
}

/// Temp file in the same directory, then rename: readers see the old or the new file.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    cairn_config::write_atomic(path, data, 0o644).map_err(|e| Error::io(path, e))
}

/// A symlink `path -> target`, replacing whatever was at `path` in one rename.
fn link_atomic(target: &Path, path: &Path) -> Result<(), Error> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(".cairn-link-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["aws", "a-1", "x"] {
            check_name(NameKind::App, ok).unwrap();
        }
        for bad in ["", "-x", "A", "a/b", "a.b", "..", &"a".repeat(65)] {
            assert!(check_name(NameKind::App, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_app_path_is_prefixed_by_cairn_root() {
        let env = cairn_config::Env {
            cairn_root: Some("/r".into()),
            ..Default::default()
        };
        assert_eq!(
            default_app_path("aws", &env).unwrap(),
            Path::new("/r/usr/local/bin/aws")
        );
        let user = cairn_config::Env {
            euid: 1000,
            home: Some("/home/u".into()),
            ..Default::default()
        };
        assert_eq!(
            default_app_path("aws", &user).unwrap(),
            Path::new("/home/u/.local/bin/aws")
        );
    }

    #[test]
    fn pins_cover_base_layers_and_image() {
        let c = AppConfig {
            image: Some("i".into()),
            base: Some("b".into()),
            layers: vec!["l0".into(), "l1".into()],
            ..Default::default()
        };
        let owners: Vec<String> = pin_owners("x", &c).into_iter().map(|o| o.0).collect();
        assert_eq!(
            owners,
            ["app:x:base", "app:x:layer:0", "app:x:layer:1", "app:x"]
        );
    }
}
