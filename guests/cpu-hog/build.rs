//! Links the guest with fv-guest-rt's linker script (found through the
//! search path fv-guest-rt's build script adds).

fn main() {
    println!("cargo:rustc-link-arg-bins=-Tfv-guest-rt.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
