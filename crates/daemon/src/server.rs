//! The daemon's life: open the database, bind the sockets, serve, reload on SIGHUP, drain
//! and stop on SIGTERM/SIGINT; readiness and the watchdog for systemd.
//!
//! Everything runs on one current-thread tokio runtime (small idle memory; SQLite work
//! happens on the database driver's own thread). The service ([`crate::service`]) holds
//! the state; the sockets ([`crate::sockets`]) are its transport.

use crate::Error;
use crate::hooks::HookRunner;
use crate::peer::AdminPolicy;
use crate::service::{Service, ServiceOptions};
use crate::sockets::{self, Sockets};
use cairn_confdb::Confdb;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Where the daemon finds and puts things.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    /// The cairn binary, used to run hooks of sandboxed apps (`cairn run --node ...`).
    pub exe: PathBuf,
    pub hook_timeout: Duration,
    /// How long shutdown waits for open requests and streams.
    pub drain_timeout: Duration,
}

impl DaemonOptions {
    /// The standard layout under the three Cairn roots.
    pub fn new(config_dir: &Path, state_dir: &Path, run_dir: &Path) -> DaemonOptions {
        DaemonOptions {
            config_dir: config_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            run_dir: run_dir.to_path_buf(),
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("cairn")),
            hook_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
        }
    }

    /// The layout of a loaded configuration.
    pub fn from_config(config: cairn_config::Config) -> DaemonOptions {
        DaemonOptions::new(&config.config_dir, &config.state_dir, &config.run_dir)
    }

    /// The roots as a configuration, for the locations it names.
    fn paths(&self) -> cairn_config::Config {
        cairn_config::Config::with_dirs(&self.config_dir, &self.state_dir, &self.run_dir)
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.paths().admin_socket()
    }
}

/// A running daemon (sockets bound, tasks spawned on the current runtime).
#[derive(Debug)]
pub struct Daemon {
    service: Arc<Service>,
    sockets: Arc<Sockets>,
    options: DaemonOptions,
}

impl Daemon {
    /// Opens the databases, binds the admin socket and every app's socket, and starts
    /// serving. Refuses to start when another daemon answers on the admin socket.
    pub async fn start(options: DaemonOptions) -> Result<Daemon, Error> {
        sockets::prepare_dir(&options.run_dir, 0o755)?;
        let paths = options.paths();
        let trust = cairn_confdb::keys::TrustStore::load(&paths.trust_dir())?;
        let confdb = Confdb::open(&paths.confdb_dir(), trust).await?;
        // Sessions belonged to runs of a previous daemon; their sockets are dead.
        remove_dir_if_present(&cairn_config::sessions_dir(&options.run_dir))?;
        let admin = sockets::bind_admin(&options.run_dir)?;
        let policy = AdminPolicy::for_this_process();
        if let Some(gid) = policy.cairn_gid {
            let path = options.admin_socket();
            if let Err(e) = nix::unistd::chown(&path, None, Some(nix::unistd::Gid::from_raw(gid))) {
                tracing::warn!("cannot give {} to group cairn: {e}", path.display());
            }
        }
        let sockets = Arc::new(Sockets::new(&options.run_dir, policy));
        let service = Service::new(
            confdb,
            ServiceOptions {
                apps_dir: options.config_dir.join("apps"),
                hooks: HookRunner {
                    exe: options.exe.clone(),
                    timeout: options.hook_timeout,
                },
            },
            sockets.clone(),
        );
        sockets.serve_admin(&service, admin);
        service.reload();
        sockets.track(tokio::spawn(service.clone().observe_commits()));
        tracing::info!("listening on {}", options.admin_socket().display());
        Ok(Daemon {
            service,
            sockets,
            options,
        })
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.options.admin_socket()
    }

    /// Re-reads the app configs (see [`Service::reload`]).
    pub fn reload(&self) {
        self.service.reload();
    }

    /// Stops accepting, ends watch streams, and waits up to the drain timeout for open
    /// requests; removes every socket it created.
    pub async fn shutdown(self) {
        self.service.stop();
        let tasks = self.sockets.take_tasks();
        let drained = tokio::time::timeout(self.options.drain_timeout, async {
            for task in tasks {
                let _ = task.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("open requests did not finish in time; stopping anyway");
        }
        let _ = std::fs::remove_file(self.options.admin_socket());
        self.service.close().await;
        let _ = std::fs::remove_dir_all(cairn_config::sessions_dir(&self.options.run_dir));
    }
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT; SIGHUP reloads the app
/// configs. Tells systemd when ready and feeds its watchdog when asked to.
pub fn run(options: DaemonOptions) -> Result<(), Error> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(Error::Signals)?;
        let mut int = signal(SignalKind::interrupt()).map_err(Error::Signals)?;
        let mut hup = signal(SignalKind::hangup()).map_err(Error::Signals)?;
        let daemon = Daemon::start(options).await?;
        notify(&[sd_notify::NotifyState::Ready]);
        crate::memory::release_clean_pages();
        let trimmer = tokio::spawn(trim_when_idle(daemon.sockets.clone()));
        let watchdog = tokio::spawn(feed_watchdog());
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => {
                    tracing::info!("reloading app configs");
                    daemon.reload();
                }
            }
        }
        tracing::info!("shutting down");
        notify(&[sd_notify::NotifyState::Stopping]);
        watchdog.abort();
        trimmer.abort();
        daemon.shutdown().await;
        Ok(())
    })
}

fn notify(state: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, state)
    {
        tracing::warn!("cannot notify systemd: {e}");
    }
}

/// The watchdog period systemd asks for, as sd_watchdog_enabled(3) reads it: a
/// `WATCHDOG_PID` that names another process turns it off, a missing one does not.
fn watchdog_usec() -> Option<u64> {
    let usec = std::env::var("WATCHDOG_USEC")
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(usec),
    }
}

async fn feed_watchdog() {
    let Some(usec) = watchdog_usec() else { return };
    let mut tick = tokio::time::interval(Duration::from_micros(usec / 2));
    loop {
        tick.tick().await;
        notify(&[sd_notify::NotifyState::Watchdog]);
    }
}

/// After each burst of requests followed by a quiet period, hands the code pages the burst
/// faulted in back to the kernel (see [`crate::memory`]).
async fn trim_when_idle(sockets: Arc<Sockets>) {
    // Trims once no request came for a whole tick: after 5 to 10 quiet seconds.
    const QUIET: Duration = Duration::from_secs(5);
    let mut trimmed_at = sockets.requests();
    let mut seen = trimmed_at;
    let mut tick = tokio::time::interval(QUIET);
    loop {
        tick.tick().await;
        let now = sockets.requests();
        if now == seen && now != trimmed_at {
            crate::memory::release_clean_pages();
            trimmed_at = now;
        }
        seen = now;
    }
}

fn remove_dir_if_present(path: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Error::Prepare {
            path: path.to_path_buf(),
            err,
        }),
    }
}
