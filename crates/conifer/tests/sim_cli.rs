//! `conifer sim` as a real process on a tiny scenario file: results.json and
//! the SVG plots appear, the summary goes to stdout, and a second run with
//! the same seed writes a byte-identical results file.

use std::path::Path;
use std::process::Command;

const SCENARIO: &str = r#"
name = "tiny"
duration = 60.0

[topology]
kind = "edge_list"
edges = """
a b c d
c e
"""

[traffic]
start = 15.0
rate = 4.0
"#;

fn sim(dir: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_conifer"))
        .arg("sim")
        .arg(dir.join("tiny.toml"))
        .arg("--out")
        .arg(dir.join(out))
        .args(extra)
        .env("CONIFER_SIM_GIT_REVISION", "pinned")
        .output()
        .expect("run conifer sim")
}

#[test]
fn tiny_scenario_file() {
    let dir = std::env::temp_dir().join(format!("conifer-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tiny.toml"), SCENARIO).unwrap();

    let out = sim(&dir, "a", &["--seed", "5"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("delivery_ratio"), "{stdout}");

    let text = std::fs::read_to_string(dir.join("a/results.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["seed"], 5);
    assert_eq!(json["git_revision"], "pinned");
    assert_eq!(json["scenario"]["name"], "tiny");
    assert_eq!(json["metrics"]["delivery_ratio"], 1.0);
    for svg in [
        "delivery.svg",
        "stretch.svg",
        "control.svg",
        "convergence.svg",
    ] {
        let body = std::fs::read_to_string(dir.join("a").join(svg)).unwrap();
        assert!(body.starts_with("<svg"), "{svg}");
    }

    let again = sim(&dir, "b", &["--seed", "5"]);
    assert!(again.status.success());
    let text_b = std::fs::read_to_string(dir.join("b/results.json")).unwrap();
    assert!(text == text_b, "same seed, different results.json");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_lists_builtins() {
    let out = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args(["sim", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for name in ["mobility", "churn", "adv-sybil", "scale-rgg-10000", "line5"] {
        assert!(help.contains(name), "{name} missing from --help");
    }
}

#[test]
fn unknown_scenario_fails_helpfully() {
    let out = Command::new(env!("CARGO_BIN_EXE_conifer"))
        .args(["sim", "no-such-scenario"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("neither a built-in scenario nor a file"),
        "{err}"
    );
}
