//! `conifer wire`: the Pinecone dissector.

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum WireCommand {
    /// Decode a hex handshake or frame and print it as JSON.
    Decode {
        /// The bytes in hex (whitespace and a 0x prefix are ignored).
        hex: String,
    },
}

impl WireCommand {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            WireCommand::Decode { hex: _ } => anyhow::bail!("not written yet"),
        }
    }
}
