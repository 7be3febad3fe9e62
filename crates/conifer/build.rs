//! Link settings for the `conifer` program.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // Pack the relative relocations (DT_RELR, glibc 2.36 and later): the
    // dynamic loader reads every relocation at start-up, so the usual table
    // (0.7 MB here) stays resident for the life of the process; packed it
    // is a few kilobytes. Every current LLD and GNU ld understands the flag.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.ends_with("-linux-gnu") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
