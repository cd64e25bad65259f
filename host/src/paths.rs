//! Where things are: the workspace, its target directory, the hypervisor binary,
//! the cache.

use std::env;
use std::path::{Path, PathBuf};

/// The bare-metal target the hypervisor and test guests are built for.
pub const RISCV_TARGET: &str = "riscv64gc-unknown-none-elf";

/// The command that builds the hypervisor (and the test guests).
pub const BUILD_COMMAND: &str = "scripts/build.sh  (or: cargo build --release --target riscv64gc-unknown-none-elf -p ferrovisor-hv)";

/// The workspace this tool was built from.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` if set, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Where a release build of bare-metal binary `name` lands.
pub fn bare_metal_binary(name: &str) -> PathBuf {
    target_dir().join(RISCV_TARGET).join("release").join(name)
}

/// The default hypervisor: the ELF of `ferrovisor-hv` (QEMU's `-kernel` loads ELF).
pub fn default_hypervisor() -> PathBuf {
    bare_metal_binary("ferrovisor-hv")
}

/// Where integration-test logs are kept: `<target>/qemu-logs`.
pub fn qemu_log_dir() -> PathBuf {
    target_dir().join("qemu-logs")
}

/// The tool's cache: `$XDG_CACHE_HOME/ferrovisor`, else `~/.cache/ferrovisor`, else
/// `<target>/ferrovisor-cache`.
pub fn cache_dir() -> PathBuf {
    if let Some(xdg) = env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        let xdg = PathBuf::from(xdg);
        if xdg.is_absolute() {
            return xdg.join("ferrovisor");
        }
    }
    if let Some(home) = env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".cache").join("ferrovisor");
    }
    target_dir().join("ferrovisor-cache")
}

/// A file-name-safe version of `name` (anything but `[A-Za-z0-9._-]` becomes `_`).
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unnamed".into()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_keeps_safe_names() {
        assert_eq!(sanitize("sbi-test_smp4.v1"), "sbi-test_smp4.v1");
        assert_eq!(sanitize("a b/c"), "a_b_c");
        assert_eq!(sanitize(""), "unnamed");
    }

    #[test]
    fn hypervisor_path_is_the_release_elf() {
        let p = default_hypervisor();
        assert!(p.ends_with("riscv64gc-unknown-none-elf/release/ferrovisor-hv"));
    }
}
