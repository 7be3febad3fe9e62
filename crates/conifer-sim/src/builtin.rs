//! The built-in scenarios, kept as TOML files in `scenarios/` (so they double
//! as examples of the format) and compiled in.

use crate::scenario::Scenario;

pub struct Builtin {
    pub name: &'static str,
    pub summary: &'static str,
    pub toml: &'static str,
}

macro_rules! builtin {
    ($name:literal, $summary:literal) => {
        Builtin {
            name: $name,
            summary: $summary,
            toml: include_str!(concat!("../scenarios/", $name, ".toml")),
        }
    };
}

pub const BUILTINS: &[Builtin] = &[
    builtin!(
        "mobility",
        "arewep2pyet mobility test: 50 nodes, radio range, 360 steps"
    ),
    builtin!(
        "mobility-nearest150",
        "mobility with meshnet-lab's 150 nearest links"
    ),
    builtin!(
        "churn",
        "100 nodes; nodes and links leave and join; reconvergence"
    ),
    builtin!(
        "adv-drop",
        "droppers of bootstraps, broadcasts and traffic at 5/10/20 %"
    ),
    builtin!("adv-drop-bootstrap", "droppers of bootstraps only"),
    builtin!("adv-drop-traffic", "droppers of traffic only"),
    builtin!("adv-sybil", "Sybil: 5 dropping keys behind each attacker"),
    builtin!(
        "adv-eclipse",
        "attackers take every link of victims and drop"
    ),
    builtin!(
        "adv-keyspace",
        "attacker keys adjacent to victims' keys, dropping"
    ),
    builtin!(
        "adv-root-hijack",
        "0xFF-keyed nodes join and leave, taking the root"
    ),
    builtin!("adv-churn", "adversaries join and leave every few seconds"),
    builtin!(
        "scale-rgg-100",
        "100 nodes, random geometric, 10 virtual minutes"
    ),
    builtin!(
        "scale-rgg-1000",
        "1 000 nodes, random geometric, 10 virtual minutes"
    ),
    builtin!(
        "scale-rgg-10000",
        "10 000 nodes, random geometric, one virtual hour, no signatures"
    ),
    builtin!(
        "scale-ba-100",
        "100 nodes, Barabási–Albert, 10 virtual minutes"
    ),
    builtin!(
        "scale-ba-1000",
        "1 000 nodes, Barabási–Albert, 10 virtual minutes"
    ),
    builtin!(
        "scale-ba-10000",
        "10 000 nodes, Barabási–Albert, one virtual hour, no signatures"
    ),
    builtin!("line5", "known answer: a line of 5 delivers every ping"),
    builtin!(
        "partition",
        "known answer: nothing crosses a cut; all recovers after heal"
    ),
];

pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Parses a built-in by name.
pub fn load(name: &str) -> Option<Scenario> {
    find(name).map(|b| Scenario::from_toml(b.toml).expect("built-in scenarios parse"))
}

/// "name  summary" lines for `--help`.
pub fn help_text() -> String {
    let mut s = String::from("Built-in scenarios:\n");
    for b in BUILTINS {
        s += &format!("  {:<22} {}\n", b.name, b.summary);
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn all_parse() {
        for b in super::BUILTINS {
            let s = super::load(b.name).unwrap();
            assert_eq!(s.name, b.name);
        }
    }
}
