//! `conifer sim`: runs a simulator scenario (built-in or file) and writes
//! `results.json`, SVG plots and a summary table.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use conifer_sim::{builtin, RunOptions, Scenario};

#[derive(Args, Debug)]
#[command(after_help = builtin::help_text())]
pub struct SimArgs {
    /// A built-in scenario name (listed below) or a scenario file (.toml or .json).
    pub scenario: String,
    /// RNG seed; the scenario's own seed if omitted. Same scenario + same seed
    /// ⇒ byte-identical results.json.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output directory for results.json and the plots [default: sim-out/<name>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print the scenario as TOML (a starting point for your own) and exit.
    #[arg(long)]
    pub print_scenario: bool,
    /// Engine threads [default: up to 2 for networks of 2 000 nodes or more].
    /// Results are identical whatever the count.
    #[arg(long)]
    pub threads: Option<usize>,
}

impl SimArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let scenario = load(&self.scenario)?;
        if !self.print_scenario {
            use_transparent_huge_pages();
        }
        if self.print_scenario {
            print!("{}", scenario.to_toml());
            return Ok(());
        }
        let seed = self.seed.unwrap_or(scenario.seed);
        let out = self
            .out
            .unwrap_or_else(|| PathBuf::from("sim-out").join(&scenario.name));
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create output directory {}", out.display()))?;

        let mut bar = Progress::new();
        let mut tick = |f: f64| bar.update(f);
        let results = conifer_sim::run(
            &scenario,
            RunOptions {
                seed,
                git_revision: git_revision(),
                progress: Some(&mut tick),
                threads: self.threads,
            },
        )?;
        bar.finish();

        results
            .write_json(&out)
            .with_context(|| format!("cannot write {}/results.json", out.display()))?;
        let plots = conifer_sim::plot::write_all(&results, &out).map_err(anyhow::Error::msg)?;
        println!(
            "scenario {} (seed {seed}): {}",
            scenario.name,
            scenario.topology.describe()
        );
        print!("{}", results.summary_table());
        println!(
            "wall time {:.1} s, {} engine events ({:.2} M/s)",
            results.wall_secs,
            results.events,
            results.events as f64 / results.wall_secs.max(1e-9) / 1e6
        );
        println!("wrote {}", out.join("results.json").display());
        for p in plots {
            println!("wrote {}", p.display());
        }
        Ok(())
    }
}

fn load(name: &str) -> anyhow::Result<Scenario> {
    if let Some(s) = builtin::load(name) {
        return Ok(s);
    }
    let path = Path::new(name);
    if !path.exists() {
        bail!(
            "`{name}` is neither a built-in scenario nor a file.\n{}",
            builtin::help_text()
        );
    }
    Ok(Scenario::from_file(path)?)
}

/// Restarts this process with glibc's transparent-huge-page support for
/// `malloc` turned on (`GLIBC_TUNABLES=glibc.malloc.hugetlb=1`), unless the
/// environment already says either way.
///
/// A large simulation is bound by memory latency: with 10 000 routers the
/// state a frame lands on is almost never in cache, and with 4 KiB pages it
/// is not in the TLB either, so most frames pay a page walk on top of the
/// cache misses. 2 MiB pages make that walk rare (about 11 % less CPU time
/// for 10 000 nodes). Where the kernel only grants huge pages on request
/// (`madvise` mode, the usual default), glibc asks for them only when this
/// tunable is set, and it is read at start-up, hence the restart. Results
/// are unaffected: the allocator's placement never reaches the simulation.
fn use_transparent_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        const TUNABLE: &str = "glibc.malloc.hugetlb";
        let current = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if current.contains(TUNABLE) {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let tunables = if current.is_empty() {
            format!("{TUNABLE}=1")
        } else {
            format!("{current}:{TUNABLE}=1")
        };
        // `exec` only returns on failure; then run on with ordinary pages.
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            cmd.arg0(arg0);
        }
        let err = cmd.args(args).env("GLIBC_TUNABLES", tunables).exec();
        tracing::debug!("could not restart with huge pages: {err}");
    }
}

/// The revision of the working tree we run from, if it is a git checkout.
/// `CONIFER_SIM_GIT_REVISION` overrides it (tests pin it so two runs can be
/// compared byte for byte).
fn git_revision() -> String {
    if let Ok(rev) = std::env::var("CONIFER_SIM_GIT_REVISION") {
        return rev;
    }
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// A progress bar on stderr, shown only on a terminal and only once a run
/// has taken a couple of seconds (short runs stay quiet).
struct Progress {
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    enabled: bool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            started: Instant::now(),
            bar: None,
            enabled: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, fraction: f64) {
        if !self.enabled {
            return;
        }
        if self.bar.is_none() && self.started.elapsed() > Duration::from_secs(2) {
            let bar = indicatif::ProgressBar::new(1000);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:40}] {percent}% virtual time, eta {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            self.bar = Some(bar);
        }
        if let Some(b) = &self.bar {
            b.set_position((fraction.clamp(0.0, 1.0) * 1000.0) as u64);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
