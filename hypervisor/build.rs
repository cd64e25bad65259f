//! Links the bare-metal hypervisor with its own linker script.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("riscv64") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        println!("cargo:rustc-link-arg=-T{dir}/linker.ld");
        println!("cargo:rerun-if-changed={dir}/linker.ld");
    }
}
