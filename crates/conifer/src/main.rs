//! The `conifer` command: one binary for every way of running Conifer.

mod cli;
mod demo_cmd;
mod idle_trim;
mod key_file;
mod overlay_cmd;
mod overlay_transport;
mod run_cmd;
mod sim_cmd;
mod wire_cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    return_large_allocations_to_the_os();
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    match cli.command.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: what failed and why.
            eprintln!("conifer: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (e.g. `RUST_LOG=conifer_overlay=debug`);
/// `-v` raises the default from `info` to `debug`.
fn init_logging(verbose: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if verbose { "debug" } else { "info" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// glibc raises its mmap threshold after large blocks are freed, and then
/// keeps later large blocks in the heap: each password hash (Argon2, 19 MiB)
/// left the node 19 MiB bigger. A fixed 1 MiB threshold makes every large
/// block its own mapping, handed back to the OS when freed.
fn return_large_allocations_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; it is called before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
