//! LAN discovery between two network namespaces joined by a veth pair: two
//! Conifer nodes find each other, and so do a Conifer node and Go Pinecone.
//!
//! Needs root (it creates namespaces) and, for the Go half, the relay at
//! `$CONIFER_GO_PINECONE`; `.ci/run` runs it with `-- --ignored`.

#[path = "common/netns.rs"]
mod netns;

use netns::{Namespaces, Proc};
use std::time::Duration;

fn conifer(ns: &str) -> (Proc, String) {
    let p = Proc::spawn(ns, env!("CARGO_BIN_EXE_conifer"), &["overlay"]);
    let line = p
        .expect("node key ", Duration::from_secs(10))
        .expect("node prints its key");
    let key = line.trim_start_matches("node key ").trim().to_string();
    (p, key)
}

#[test]
#[ignore = "needs root to create network namespaces; run by .ci/run"]
fn two_conifer_nodes_discover_each_other() {
    let ns = Namespaces::new("cc");
    let (a, key_a) = conifer(&ns.a);
    let (b, key_b) = conifer(&ns.b);
    assert!(
        a.expect(&format!("peer {key_b} connected"), Duration::from_secs(15))
            .is_some(),
        "a discovered b"
    );
    assert!(
        b.expect(&format!("peer {key_a} connected"), Duration::from_secs(15))
            .is_some(),
        "b discovered a"
    );
}

#[test]
#[ignore = "needs root and the Go reference relay; run by .ci/run"]
fn conifer_and_go_discover_each_other() {
    let go_bin = std::env::var("CONIFER_GO_PINECONE").expect("CONIFER_GO_PINECONE is set");
    let ns = Namespaces::new("cg");
    let (a, _key_a) = conifer(&ns.a);
    let go = Proc::spawn(
        &ns.b,
        &go_bin,
        &["-listen", "127.0.0.1:0", "-listenws", "127.0.0.1:0"],
    );
    let line = go
        .expect("Router identity: ", Duration::from_secs(10))
        .expect("Go prints its key");
    let go_key = line
        .trim_start_matches("Router identity: ")
        .trim()
        .to_string();
    assert!(
        a.expect(&format!("peer {go_key} connected"), Duration::from_secs(20))
            .is_some(),
        "Conifer and Go peered by multicast"
    );
}
