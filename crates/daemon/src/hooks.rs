//! Running an app's custodian hooks.
//!
//! A hook is a shell command from the app config. It runs in the app's sandbox through
//! the cairn binary itself (a [`cairn_model::Request`] re-exec: `cairn run --node LEAF --
//! sh -c CMD` for node apps, `cairn app exec NAME -- sh -c CMD` for image apps), never by
//! forking the multi-threaded daemon. Apps with neither (only possible in
//! administrator-written configs) run the command unsandboxed with `sh -c`. The view data goes to stdin as
//! JSON; a change-view hook may print modified JSON on stdout (nothing = unchanged) and
//! rejects the change by exiting non-zero with a message on stderr.

use crate::apps::{App, AppSource};
use cairn_config::one_line;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    ChangeView,
    ObserveView,
}

impl HookKind {
    pub fn name(self) -> &'static str {
        match self {
            HookKind::ChangeView => "change-view",
            HookKind::ObserveView => "observe-view",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HookError {
    #[error("rejected by custodian {app:?}: {message}")]
    Rejected { app: String, message: String },
    #[error("{kind} hook of app {app:?} failed: {reason}")]
    Failed {
        app: String,
        kind: &'static str,
        reason: String,
    },
    #[error("{kind} hook of app {app:?} did not finish within {secs} s")]
    TimedOut {
        app: String,
        kind: &'static str,
        secs: u64,
    },
}

/// How hooks are started.
#[derive(Debug, Clone)]
pub struct HookRunner {
    /// The cairn binary (sandboxed hooks are re-execs of it).
    pub exe: std::path::PathBuf,
    pub timeout: Duration,
}

impl HookRunner {
    /// Runs `command` for `app` on `view` with `data` on stdin. `Ok(Some(v))` is a
    /// replacement printed by the hook, `Ok(None)` means unchanged.
    pub async fn run(
        &self,
        app: &App,
        kind: HookKind,
        command: &str,
        view: &str,
        data: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, HookError> {
        let failed = |reason: String| HookError::Failed {
            app: app.name.clone(),
            kind: kind.name(),
            reason: one_line(&reason),
        };
        let env = [
            ("CAIRN_HOOK", kind.name()),
            ("CAIRN_VIEW", view),
            ("CAIRN_APP", &app.name),
        ];
        let mut cmd = self.command(app, command, &env).map_err(failed)?;
        cmd.envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| failed(format!("cannot start: {e}")))?;
        let pid = child.id();
        let input = data.to_string().into_bytes();
        let stdin = child.stdin.take();
        let writer = async move {
            if let Some(mut stdin) = stdin {
                // A hook that does not read its input is fine: ignore broken pipes.
                let _ = stdin.write_all(&input).await;
                let _ = stdin.shutdown().await;
            }
        };
        let waited = tokio::time::timeout(self.timeout, async {
            let (_, output) = tokio::join!(writer, child.wait_with_output());
            output
        })
        .await;
        let output = match waited {
            Ok(output) => output.map_err(|e| failed(e.to_string()))?,
            Err(_) => {
                kill_group(pid);
                return Err(HookError::TimedOut {
                    app: app.name.clone(),
                    kind: kind.name(),
                    secs: self.timeout.as_secs(),
                });
            }
        };
        if !output.status.success() {
            let stderr = one_line(&String::from_utf8_lossy(&output.stderr));
            let message = if stderr.is_empty() {
                output.status.to_string()
            } else {
                stderr
            };
            return Err(match kind {
                HookKind::ChangeView => HookError::Rejected {
                    app: app.name.clone(),
                    message,
                },
                HookKind::ObserveView => failed(message),
            });
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        if kind == HookKind::ObserveView || stdout.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(stdout.trim())
            .map(Some)
            .map_err(|e| failed(format!("printed invalid JSON: {e}")))
    }

    fn command(
        &self,
        app: &App,
        command: &str,
        env: &[(&str, &str)],
    ) -> Result<tokio::process::Command, String> {
        let shell = cairn_model::Request::shell_args(command);
        let request = match (&app.node, app.image, app.source) {
            (Some(node), _, _) => Some(cairn_model::Request::node(node, shell)),
            (None, true, _) => Some(cairn_model::Request::app_exec(&app.name, shell)),
            (None, false, _) => None,
        };
        if let Some(mut request) = request {
            // The launch starts the program with the nodes' or the image's environment, so
            // the hook's variables go into the request.
            request.env = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            return Ok(tokio::process::Command::from(request.command(&self.exe)));
        }
        match app.source {
            AppSource::Config => {
                let mut cmd = tokio::process::Command::new("sh");
                cmd.arg("-c").arg(command);
                Ok(cmd)
            }
            AppSource::Session => Err("a session without a node cannot run hooks".to_string()),
        }
    }
}

/// Kills the hook's whole process group (the shell and whatever it started).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::Hooks;
    use serde_json::json;

    fn app(node: Option<&str>, source: AppSource) -> App {
        App {
            name: "vpn".into(),
            node: node.map(Into::into),
            image: false,
            plugs: vec![],
            hooks: Hooks::default(),
            source,
        }
    }

    fn runner(timeout_ms: u64) -> HookRunner {
        HookRunner {
            exe: "/bin/false".into(),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    async fn change(cmd: &str) -> Result<Option<serde_json::Value>, HookError> {
        let data = json!({"peers": ["10.0.0.1"]});
        runner(5000)
            .run(
                &app(None, AppSource::Config),
                HookKind::ChangeView,
                cmd,
                "a/b/c",
                &data,
            )
            .await
    }

    #[tokio::test]
    async fn hook_sees_data_and_environment_and_may_modify() {
        let out = change(r#"read -r d; printf '{"seen":%s,"view":"%s"}' "$d" "$CAIRN_VIEW""#)
            .await
            .unwrap();
        assert_eq!(
            out,
            Some(json!({"seen": {"peers": ["10.0.0.1"]}, "view": "a/b/c"}))
        );
        assert_eq!(change("cat >/dev/null").await.unwrap(), None);
    }

    #[tokio::test]
    async fn hook_rejection_carries_its_message() {
        let err = change("echo 'peer 10.0.0.1 is banned' >&2; exit 3")
            .await
            .unwrap_err();
        assert_eq!(
            err,
            HookError::Rejected {
                app: "vpn".into(),
                message: "peer 10.0.0.1 is banned".into()
            }
        );
        let err = change("echo not-json").await.unwrap_err().to_string();
        assert!(err.contains("printed invalid JSON"), "{err}");
    }

    #[tokio::test]
    async fn slow_hook_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        let cmd = format!("(sleep 2; touch {}) & sleep 30", marker.display());
        let started = std::time::Instant::now();
        let err = runner(300)
            .run(
                &app(None, AppSource::Config),
                HookKind::ChangeView,
                &cmd,
                "a/b/c",
                &json!({}),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            !marker.exists(),
            "the hook's background child outlived the kill"
        );
    }

    #[tokio::test]
    async fn sandboxed_hooks_go_through_cairn_run_and_sessions_need_a_node() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("cairn");
        std::fs::write(&fake, "#!/bin/sh\necho \"$@\" >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let runner = HookRunner {
            exe: fake,
            timeout: Duration::from_secs(5),
        };
        let err = runner
            .run(
                &app(Some("/n/leaf"), AppSource::Config),
                HookKind::ChangeView,
                "x y",
                "a/b/c",
                &json!(1),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            HookError::Rejected {
                app: "vpn".into(),
                message: "run --node /n/leaf --env CAIRN_HOOK=change-view --env CAIRN_VIEW=a/b/c --env CAIRN_APP=vpn -- sh -c x y".into()
            }
        );
        let err = runner
            .run(
                &app(None, AppSource::Session),
                HookKind::ChangeView,
                "true",
                "a/b/c",
                &json!(1),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, HookError::Failed { .. }), "{err}");
    }
}
