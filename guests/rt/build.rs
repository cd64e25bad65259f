//! Puts the shared guest linker script where every guest's link step finds it.
//!
//! `cargo:rustc-link-search` from a dependency's build script is passed on to
//! the crates that depend on it, so a guest only has to add
//! `cargo:rustc-link-arg-bins=-Tfv-guest-rt.ld` in its own build script.

use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let script = include_bytes!("link.ld");
    fs::write(out.join("fv-guest-rt.ld"), script).expect("write linker script to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=link.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
