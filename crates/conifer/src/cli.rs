//! Command-line surface. Each subcommand's `run` lives in its own module.

use clap::{Parser, Subcommand};

use crate::wire_cmd::WireCommand;

/// Conifer: peer-to-peer Matrix.
///
/// Every device runs its own small Matrix homeserver; homeservers find each
/// other and federate over a Pinecone-compatible overlay network instead of
/// DNS and TLS certificates.
#[derive(Parser, Debug)]
#[command(name = "conifer", version, propagate_version = true)]
pub struct Cli {
    /// Log at debug level (RUST_LOG, when set, takes precedence).
    #[arg(short, long, global = true)]
    pub verbose: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a P2P Matrix node: overlay peer + homeserver on embedded SQLite.
    Run(Box<crate::run_cmd::RunArgs>),
    /// Run a bare overlay relay node (no homeserver), or ping a key through one.
    Overlay(Box<crate::overlay_cmd::OverlayArgs>),
    /// Run a network simulation scenario in virtual time.
    Sim(crate::sim_cmd::SimArgs),
    /// Inspect Pinecone wire data (handshakes and frames).
    #[command(subcommand)]
    Wire(WireCommand),
    /// Start three nodes on loopback and show them chatting over the overlay.
    Demo,
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Wire(cmd) => cmd.run(),
            Command::Run(args) => args.run(),
            Command::Overlay(args) => args.run(),
            Command::Sim(args) => args.run(),
            Command::Demo => crate::demo_cmd::run(),
        }
    }
}
