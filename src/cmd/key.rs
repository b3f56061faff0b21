//! `cairn key create|ls|export`: ed25519 keys that sign node seals, kept in
//! `<config_dir>/keys` (`NAME.key` mode 0600, `NAME.pub`). The `.pub` files in that
//! directory are also the keys `cairn run` trusts for seals.

use crate::output;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a new signing key pair.
    Create { name: String },
    /// List the keys (and trusted public keys).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Print a key's public half (to install as trusted on other devices).
    Export { name: String },
}

/// Where keys live: `<config_dir>/keys`.
pub fn keys_dir() -> anyhow::Result<PathBuf> {
    Ok(cairn_config::Config::load()?.keys_dir())
}

pub fn run(command: KeyCommand) -> anyhow::Result<ExitCode> {
    let dir = keys_dir()?;
    match command {
        KeyCommand::Create { name } => {
            let key = cairn_keys::create_key(&dir, &name)?;
            println!("created key {} ({})", key.name, key.public);
        }
        KeyCommand::Ls { json } => {
            let keys = cairn_keys::list_keys(&dir)?;
            if json {
                output::print_json(&keys)?;
            } else {
                let rows: Vec<Vec<String>> = keys
                    .iter()
                    .map(|k| {
                        let kind = if k.has_secret { "signing" } else { "trusted" };
                        vec![k.name.clone(), kind.to_string(), k.public.clone()]
                    })
                    .collect();
                output::print_table(&["NAME", "KIND", "PUBLIC KEY"], &rows);
            }
        }
        KeyCommand::Export { name } => println!("{}", cairn_keys::export_key(&dir, &name)?),
    }
    Ok(ExitCode::SUCCESS)
}
