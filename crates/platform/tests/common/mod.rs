//! Helpers shared by the integration tests: a tiny tree builder on top of
//! vm-fdt, and access to the captured DTBs in `testdata/`.
#![allow(dead_code)]

use vm_fdt::{FdtReserveEntry, FdtWriter};

/// Reads `testdata/<name>`.
pub fn testdata(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every captured DTB, by file name.
pub fn all_testdata() -> Vec<(String, Vec<u8>)> {
    let dir = format!("{}/testdata", env!("CARGO_MANIFEST_DIR"));
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "dtb"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

/// A node to be written with vm-fdt.
#[derive(Clone, Debug)]
pub struct N {
    pub name: String,
    pub props: Vec<(String, Vec<u8>)>,
    pub children: Vec<N>,
}

impl N {
    pub fn new(name: impl Into<String>) -> Self {
        N {
            name: name.into(),
            props: Vec::new(),
            children: Vec::new(),
        }
    }
    pub fn bytes(mut self, name: &str, v: impl Into<Vec<u8>>) -> Self {
        self.props.retain(|(n, _)| n != name);
        self.props.push((name.into(), v.into()));
        self
    }
    pub fn null(self, name: &str) -> Self {
        self.bytes(name, Vec::new())
    }
    pub fn u32(self, name: &str, v: u32) -> Self {
        self.bytes(name, v.to_be_bytes().to_vec())
    }
    pub fn u64(self, name: &str, v: u64) -> Self {
        self.bytes(name, v.to_be_bytes().to_vec())
    }
    pub fn cells(self, name: &str, v: &[u32]) -> Self {
        self.bytes(
            name,
            v.iter().flat_map(|c| c.to_be_bytes()).collect::<Vec<u8>>(),
        )
    }
    pub fn str(self, name: &str, v: &str) -> Self {
        let mut b = v.as_bytes().to_vec();
        b.push(0);
        self.bytes(name, b)
    }
    pub fn strs(self, name: &str, v: &[&str]) -> Self {
        let mut b = Vec::new();
        for s in v {
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        }
        self.bytes(name, b)
    }
    pub fn without(mut self, name: &str) -> Self {
        self.props.retain(|(n, _)| n != name);
        self
    }
    pub fn child(mut self, c: N) -> Self {
        self.children.push(c);
        self
    }
    /// The descendant at `path` (relative, `/`-separated full names).
    pub fn at(&mut self, path: &str) -> &mut N {
        let mut n = self;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            n = n
                .children
                .iter_mut()
                .find(|c| c.name == comp)
                .unwrap_or_else(|| panic!("no node {comp}"));
        }
        n
    }
    /// Replaces the descendant at `path` with `f(it)`.
    pub fn edit(mut self, path: &str, f: impl FnOnce(N) -> N) -> Self {
        let n = self.at(path);
        let old = std::mem::replace(n, N::new(""));
        *n = f(old);
        self
    }
    /// Removes the descendant at `path`.
    pub fn remove(mut self, path: &str) -> Self {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        self.at(parent).children.retain(|c| c.name != name);
        self
    }
    fn write(&self, w: &mut FdtWriter) {
        let node = w.begin_node(&self.name).unwrap();
        for (name, v) in &self.props {
            w.property(name, v).unwrap();
        }
        for c in &self.children {
            c.write(w);
        }
        w.end_node(node).unwrap();
    }
    pub fn dtb(&self) -> Vec<u8> {
        self.dtb_with_reserve(&[])
    }
    pub fn dtb_with_reserve(&self, reserve: &[(u64, u64)]) -> Vec<u8> {
        let entries: Vec<FdtReserveEntry> = reserve
            .iter()
            .map(|&(a, s)| FdtReserveEntry::new(a, s).unwrap())
            .collect();
        let mut w = FdtWriter::new_with_mem_reserv(&entries).unwrap();
        self.write(&mut w);
        w.finish().unwrap()
    }
}

/// `reg` cells for a 2/2-cell bus.
pub fn reg2(addr: u64, size: u64) -> Vec<u32> {
    vec![
        (addr >> 32) as u32,
        addr as u32,
        (size >> 32) as u32,
        size as u32,
    ]
}

pub fn cpu(hartid: u32, intc_phandle: u32) -> N {
    N::new(format!("cpu@{hartid:x}"))
        .str("device_type", "cpu")
        .u32("reg", hartid)
        .str("status", "okay")
        .str("compatible", "riscv")
        .str("riscv,isa", "rv64imafdc_zicsr_zifencei")
        .str("mmu-type", "riscv,sv48")
        .child(
            N::new("interrupt-controller")
                .u32("#interrupt-cells", 1)
                .null("interrupt-controller")
                .str("compatible", "riscv,cpu-intc")
                .u32("phandle", intc_phandle),
        )
}

/// A small but complete platform: 2 harts (intc phandles 0x10, 0x11), 256 MiB
/// at 0x80000000, a UART and a PLIC on /soc.
pub fn platform() -> N {
    N::new("")
        .u32("#address-cells", 2)
        .u32("#size-cells", 2)
        .child(N::new("chosen").str("stdout-path", "/soc/serial@10000000"))
        .child(
            N::new("memory@80000000")
                .str("device_type", "memory")
                .cells("reg", &reg2(0x8000_0000, 0x1000_0000)),
        )
        .child(
            N::new("cpus")
                .u32("#address-cells", 1)
                .u32("#size-cells", 0)
                .u32("timebase-frequency", 10_000_000)
                .child(cpu(0, 0x10))
                .child(cpu(1, 0x11)),
        )
        .child(
            N::new("soc")
                .u32("#address-cells", 2)
                .u32("#size-cells", 2)
                .str("compatible", "simple-bus")
                .null("ranges")
                .child(
                    N::new("serial@10000000")
                        .str("compatible", "ns16550a")
                        .cells("reg", &reg2(0x1000_0000, 0x100))
                        .u32("interrupts", 10)
                        .u32("interrupt-parent", 0x20)
                        .u32("clock-frequency", 3_686_400),
                )
                .child(
                    N::new("plic@c000000")
                        .strs("compatible", &["sifive,plic-1.0.0", "riscv,plic0"])
                        .cells("reg", &reg2(0xc00_0000, 0x60_0000))
                        .u32("#interrupt-cells", 1)
                        .null("interrupt-controller")
                        .u32("riscv,ndev", 95)
                        .cells(
                            "interrupts-extended",
                            &[0x10, 0xffff_ffff, 0x10, 9, 0x11, 0xffff_ffff, 0x11, 9],
                        )
                        .u32("phandle", 0x20),
                ),
        )
}

/// Overwrites the big-endian u32 at `off`.
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Reads the big-endian u32 at `off`.
pub fn get32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
}
