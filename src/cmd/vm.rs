//! `cairn vm pull|ls|rm|run`: the micro-VMs apps with `--vm` run in.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use cairn_vm::{Launch, PullSource, Store};
use clap::{Args, Subcommand};

use crate::output::{print_json, print_table};

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Make VM NAME from a kernel and a root filesystem.
    Pull(PullArgs),
    /// List pulled VMs.
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Remove a VM that no app uses.
    Rm { name: String },
    /// Run one command in a fresh VM (for debugging: apps are the usual way in).
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct PullArgs {
    pub name: String,
    /// A kernel image (bzImage, vmlinux) or a Debian kernel package (.deb).
    #[arg(long, value_name = "FILE")]
    pub kernel: PathBuf,
    /// A directory, a tar archive or an ext4 image.
    #[arg(long, value_name = "PATH")]
    pub rootfs: PathBuf,
    /// An initramfs unpacked before Cairn's own.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Replace an existing VM.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub name: String,
    /// Guest memory (e.g. 512M).
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub memory: String,
    /// Size of the writable overlay (e.g. 1G).
    #[arg(long, value_name = "SIZE", default_value = "256M")]
    pub overlay_size: String,
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// The program (absolute path in the guest) and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

pub fn run(command: VmCommand) -> anyhow::Result<ExitCode> {
    let config = cairn_config::Config::load()?;
    let store = Store::new(&config);
    match command {
        VmCommand::Pull(args) => {
            let exe = std::env::current_exe().context("cannot find the cairn binary")?;
            let source = PullSource {
                kernel: args.kernel,
                rootfs: args.rootfs,
                initrd: args.initrd,
            };
            let info = store.pull(&args.name, &source, &exe, args.force)?;
            eprintln!(
                "pulled {} (kernel {}, {} modules, rootfs {} MiB)",
                info.name,
                info.kernel_version.as_deref().unwrap_or("image"),
                info.modules.len(),
                info.rootfs_bytes.div_ceil(1 << 20)
            );
        }
        VmCommand::Ls { json } => {
            let list = store.list()?;
            if json {
                print_json(&list)?;
            } else {
                let rows = list
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.clone(),
                            v.kernel_version.clone().unwrap_or_else(|| "-".into()),
                            format!("{} MiB", v.rootfs_bytes.div_ceil(1 << 20)),
                            v.rootfs_source.display().to_string(),
                        ]
                    })
                    .collect::<Vec<_>>();
                print_table(&["NAME", "KERNEL", "ROOTFS", "SOURCE"], &rows);
            }
        }
        VmCommand::Rm { name } => {
            cairn_config::check_name(cairn_config::NameKind::Vm, &name)?;
            let apps = cairn_app::Apps::new(&config);
            let users: Vec<String> = apps
                .list()?
                .into_iter()
                .filter(|a| {
                    a.config
                        .as_ref()
                        .is_some_and(|c| c.vm.as_deref() == Some(&name))
                })
                .map(|a| a.name)
                .collect();
            if !users.is_empty() {
                anyhow::bail!(
                    "vm {name} is used by app {} (remove it first with `cairn app rm`)",
                    users.join(", app ")
                );
            }
            store.remove(&name)?;
            eprintln!("removed vm {name}");
        }
        VmCommand::Run(args) => {
            let mut launch = Launch::new(args.command);
            launch.memory = cairn_model::parse_size(&args.memory)?;
            launch.overlay_size = cairn_model::parse_size(&args.overlay_size)?;
            for kv in &args.env {
                let (k, v) = kv
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .with_context(|| format!("expected K=V, got {kv:?}"))?;
                launch.env.retain(|(key, _)| key != k);
                launch.env.push((k.into(), v.into()));
            }
            cairn_config::check_name(cairn_config::NameKind::Vm, &args.name)?;
            let dir = cairn_vm::temp_instance(&config, &args.name)?;
            let code = cairn_vm::run(&store, &args.name, &launch, dir.path())?;
            return Ok(ExitCode::from(code.clamp(0, 255) as u8));
        }
    }
    Ok(ExitCode::SUCCESS)
}
