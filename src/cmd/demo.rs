//! `cairn demo`: the quick start's first command. Builds (once) a three-node family under the
//! state directory: a system node exporting the host's base system, an admin node that adds
//! restrictions, and a leaf; then runs a program in the leaf's sandbox.

use clap::Args;
use std::ffi::OsString;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Program to run instead of the built-in tour (for example `-- /bin/sh`).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "PROGRAM"
    )]
    pub command: Vec<OsString>,
}

const TOUR: &str = r#"echo "hello from $(cat /proc/sys/kernel/hostname), inside a sandbox built from the nodes: $(ls /nodes | tr '\n' ' ')"
echo "running as uid $(id -u) with pid $$; processes visible: $(ls /proc | grep -c '^[0-9]')"
echo "network interfaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
echo "capabilities: $(grep CapEff /proc/self/status | cut -f2), seccomp mode: $(grep Seccomp: /proc/self/status | cut -f2)"
echo "root filesystem: $(ls / | tr '\n' ' ')""#;

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let config = cairn_config::Config::load()?;
    let root = config.nodes_dir().join("demo");
    let platform = root.join("platform");
    let leaf = platform.join("hello");
    if !root.exists() {
        std::fs::create_dir_all(config.nodes_dir())?;
        cairn_node::create_node(&root, "demo-system", cairn_node::Template::System)?;
        // The admin template sets cgroup limits, which an unprivileged user can only have in
        // a delegated cgroup; without one, the demo's platform node is a plain leaf.
        let rootless_without_cgroup =
            !nix::unistd::geteuid().is_root() && config.cgroup.root.is_none();
        let template = if rootless_without_cgroup {
            eprintln!(
                "note: no delegated cgroup for this user ([cgroup] root in cairn.toml), so the demo's platform node sets no cgroup limits"
            );
            cairn_node::Template::Leaf
        } else {
            cairn_node::Template::Admin
        };
        cairn_node::create_node(&platform, "platform", template)?;
        cairn_node::create_node(&leaf, "hello", cairn_node::Template::Leaf)?;
        eprintln!(
            "created the demo family: {} -> platform -> hello",
            root.display()
        );
    }
    let command = if args.command.is_empty() {
        vec!["/bin/sh".into(), "-c".into(), TOUR.into()]
    } else {
        args.command
    };
    eprintln!(
        "$ cairn run --node {} -- {}",
        leaf.display(),
        show(&command)
    );
    let request = cairn_model::Request::node(leaf, command);
    Ok(super::exit_code(cairn_launch::run(&config, &request)?))
}

fn show(argv: &[OsString]) -> String {
    if argv.len() == 3 && argv[1] == "-c" {
        return format!("{} -c '...'", argv[0].to_string_lossy());
    }
    argv.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}
