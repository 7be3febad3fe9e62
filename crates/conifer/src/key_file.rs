//! The node's identity on disk: the Ed25519 seed as 64 hex characters.

use std::path::Path;

use anyhow::Context;
use conifer_overlay::Identity;

/// Loads the identity in `path`, creating it (readable by the owner only) if absent.
pub fn load_or_create(path: &Path) -> anyhow::Result<Identity> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(text.trim(), &mut seed).with_context(|| {
                format!(
                    "{} is not a Conifer key file (64 hex characters); move it away to generate a new key",
                    path.display()
                )
            })?;
            Ok(Identity::from_seed(seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity::generate(&mut rand_core_os());
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            write_private(path, &hex::encode(identity.seed()))
                .with_context(|| format!("cannot write key file {}", path.display()))?;
            tracing::info!(path = %path.display(), "generated a new node key");
            Ok(identity)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read key file {}", path.display())),
    }
}

fn rand_core_os() -> rand::rngs::OsRng {
    rand::rngs::OsRng
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
