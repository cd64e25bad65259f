//! Writing each guest's device tree.
//!
//! The tree follows what QEMU's `-M virt` gives Linux (node names, compatibles,
//! the `/soc` simple-bus), so guests built for QEMU find their devices where
//! they expect them. It only describes what the VM really has.

use alloc::string::String;
use alloc::vec::Vec;
use alloc::{format, vec};
use core::fmt;

use fv_addr::{GuestPhysAddr, Range};
use vm_fdt::FdtWriter;

use crate::host::IRQ_S_EXT;
use crate::isa::MmuType;

/// Input clock of the virtual ns16550a in Hz (QEMU's value: 1.8432 MHz x 2).
pub const UART_CLOCK_HZ: u32 = 3_686_400;
/// Size of the virtual ns16550a's register block.
pub const UART_REG_SIZE: u64 = 0x100;
/// Offset of PLIC context 0's threshold/claim registers (PLIC spec).
pub const PLIC_CONTEXT_BASE: u64 = 0x20_0000;
/// Distance between two contexts' threshold/claim registers (PLIC spec).
pub const PLIC_CONTEXT_STRIDE: u64 = 0x1000;
/// Largest number of contexts a PLIC can have (PLIC spec).
pub const PLIC_MAX_CONTEXTS: u32 = 15872;
/// Largest number of interrupt sources a PLIC can have (IDs 1..=1023).
pub const PLIC_MAX_NDEV: u32 = 1023;
/// Size of the syscon register block.
pub const SYSCON_REG_SIZE: u64 = 0x1000;
/// What QEMU's `sifive,test` syscon powers off on (`FINISHER_PASS`).
pub const SYSCON_POWEROFF_VALUE: u32 = 0x5555;
/// What QEMU's `sifive,test` syscon resets on (`FINISHER_RESET`).
pub const SYSCON_REBOOT_VALUE: u32 = 0x7777;

/// Size of the guest PLIC's register block for `vcpus` vCPUs: up to the end of
/// the last context's threshold/claim page.
pub const fn guest_plic_size(vcpus: u32) -> u64 {
    PLIC_CONTEXT_BASE + vcpus as u64 * PLIC_CONTEXT_STRIDE
}

/// The guest's ns16550a.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestUart {
    /// Register block address (size [`UART_REG_SIZE`]).
    pub base: GuestPhysAddr,
    /// PLIC source number (QEMU: 10). Only emitted when the guest has a PLIC.
    pub irq: u32,
}

/// The guest's PLIC.
///
/// Context `i` is vCPU `i`'s S-mode external interrupt (there is no M-mode in
/// a guest); the virtual PLIC must number its contexts the same way. Its
/// register block is [`guest_plic_size`] bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestPlic {
    /// Register block address.
    pub base: GuestPhysAddr,
    /// `riscv,ndev`: number of interrupt sources (1..=[`PLIC_MAX_NDEV`]).
    pub ndev: u32,
}

/// The guest's poweroff/reboot syscon (QEMU's `sifive,test` device at 0x100000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestSyscon {
    /// Register block address (size [`SYSCON_REG_SIZE`]).
    pub base: GuestPhysAddr,
    /// Value written at offset 0 to power off ([`SYSCON_POWEROFF_VALUE`]).
    pub poweroff_value: u32,
    /// Value written at offset 0 to reset ([`SYSCON_REBOOT_VALUE`]).
    pub reboot_value: u32,
}

/// A virtio-mmio transport (VirtIO 1.2 §4.2.1: `compatible = "virtio,mmio"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestVirtioMmio {
    /// Register block address (QEMU `virt`: slot `i` at `0x1000_1000 + 0x1000 * i`).
    pub base: GuestPhysAddr,
    /// Register block size (the device's, e.g. 0x200; QEMU's tree says 0x1000).
    pub size: u64,
    /// PLIC source number (QEMU `virt`: slot `i` has `1 + i`). Only emitted
    /// when the guest has a PLIC.
    pub irq: u32,
}

/// Which device `/chosen/stdout-path` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdout {
    /// No `stdout-path`.
    None,
    /// The ns16550a (requires [`GuestFdtConfig::uart`]).
    Uart,
}

/// Everything a guest's device tree says.
#[derive(Clone, Debug)]
pub struct GuestFdtConfig<'a> {
    /// Number of vCPUs; hart IDs are `0..vcpus`.
    pub vcpus: u32,
    /// Guest RAM.
    pub memory: Range<GuestPhysAddr>,
    /// `time` CSR frequency in Hz (must fit in 32 bits: Linux reads one cell).
    pub timebase_frequency: u64,
    /// The `riscv,isa` string (see [`crate::guest_isa`]).
    pub isa: &'a str,
    /// The `riscv,isa-extensions` list (letters and multi-letter names). When
    /// non-empty, `riscv,isa-base` is emitted too (`"rv64i"`).
    pub isa_extensions: &'a [&'a str],
    /// What VS-stage translation the guest may use.
    pub mmu_type: MmuType,
    /// Kernel command line.
    pub bootargs: Option<&'a str>,
    /// Where the initrd was loaded.
    pub initrd: Option<Range<GuestPhysAddr>>,
    /// The console.
    pub stdout: Stdout,
    /// The UART, if the VM has one.
    pub uart: Option<GuestUart>,
    /// The PLIC, if the VM has one.
    pub plic: Option<GuestPlic>,
    /// The poweroff/reboot syscon, if the VM has one.
    pub syscon: Option<GuestSyscon>,
    /// virtio-mmio transports (`/soc/virtio_mmio@…`), in any order.
    pub virtio_mmio: &'a [GuestVirtioMmio],
    /// `/chosen/rng-seed`: entropy for the guest kernel's random pool (Linux
    /// stays uninitialised without it, and every syscall pays for that).
    pub rng_seed: Option<&'a [u8]>,
    /// `riscv,cbom-block-size` of every cpu (needed for Zicbom to be used).
    pub cbom_block_size: Option<u32>,
    /// `riscv,cboz-block-size` of every cpu (needed for Zicboz to be used).
    pub cboz_block_size: Option<u32>,
}

/// Why a guest device tree could not be built.
#[derive(Debug, PartialEq, Eq)]
pub enum FdtWriteError {
    /// `vcpus` is 0 or more than [`PLIC_MAX_CONTEXTS`].
    BadVcpuCount,
    /// The memory range is empty or wraps past 2^64.
    BadMemory,
    /// The initrd range wraps past 2^64.
    BadInitrd,
    /// The timebase is 0 or does not fit in 32 bits.
    BadTimebase,
    /// `riscv,isa` or `riscv,isa-extensions` is empty or does not start with `rv32`/`rv64`.
    BadIsa,
    /// `stdout` names the UART but there is none.
    StdoutWithoutUart,
    /// The PLIC's `ndev` is 0 or above [`PLIC_MAX_NDEV`], or the UART's or a
    /// virtio-mmio transport's irq is not one of its sources.
    BadPlic,
    /// A virtio-mmio transport's register block is empty or wraps past 2^64.
    BadVirtioMmio,
    /// The writer refused something (a string with a NUL, a size past 4 GiB, ...).
    Fdt(vm_fdt::Error),
}

impl From<vm_fdt::Error> for FdtWriteError {
    fn from(e: vm_fdt::Error) -> Self {
        FdtWriteError::Fdt(e)
    }
}

impl fmt::Display for FdtWriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FdtWriteError::BadVcpuCount => f.write_str("bad vCPU count"),
            FdtWriteError::BadMemory => f.write_str("bad guest memory range"),
            FdtWriteError::BadInitrd => f.write_str("bad initrd range"),
            FdtWriteError::BadTimebase => f.write_str("timebase is 0 or above 2^32-1 Hz"),
            FdtWriteError::BadIsa => f.write_str("bad ISA string"),
            FdtWriteError::StdoutWithoutUart => f.write_str("stdout is the UART but there is none"),
            FdtWriteError::BadPlic => f.write_str("bad PLIC configuration"),
            FdtWriteError::BadVirtioMmio => f.write_str("bad virtio-mmio register block"),
            FdtWriteError::Fdt(e) => write!(f, "device tree writer: {e}"),
        }
    }
}

/// Path of the guest UART node (for `stdout-path` and `/aliases/serial0`).
fn uart_path(base: GuestPhysAddr) -> String {
    format!("/soc/serial@{:x}", base.raw())
}

fn reg_prop(start: u64, size: u64) -> [u64; 2] {
    [start, size]
}

/// Builds the device tree blob for one guest.
///
/// Layout: `/chosen`, `/aliases`, `/memory@…`, `/cpus` (one `cpu@N` per vCPU,
/// each with its `riscv,cpu-intc`), `/soc` with the UART (`serial@…`),
/// virtio-mmio transports (`virtio_mmio@…`), PLIC (`plic@…`) and syscon
/// (`test@…`), and `/poweroff`, `/reboot` referring to
/// the syscon.
pub fn build_guest_fdt(cfg: &GuestFdtConfig<'_>) -> Result<Vec<u8>, FdtWriteError> {
    if cfg.vcpus == 0 || cfg.vcpus > PLIC_MAX_CONTEXTS {
        return Err(FdtWriteError::BadVcpuCount);
    }
    if cfg.memory.size == 0 || cfg.memory.start.checked_add(cfg.memory.size).is_err() {
        return Err(FdtWriteError::BadMemory);
    }
    let initrd_end = match cfg.initrd {
        Some(r) => Some(
            r.start
                .checked_add(r.size)
                .map_err(|_| FdtWriteError::BadInitrd)?,
        ),
        None => None,
    };
    let timebase = u32::try_from(cfg.timebase_frequency)
        .ok()
        .filter(|&t| t != 0)
        .ok_or(FdtWriteError::BadTimebase)?;
    let xlen = cfg.isa.get(..4).ok_or(FdtWriteError::BadIsa)?;
    if xlen != "rv64" && xlen != "rv32" {
        return Err(FdtWriteError::BadIsa);
    }
    if cfg.stdout == Stdout::Uart && cfg.uart.is_none() {
        return Err(FdtWriteError::StdoutWithoutUart);
    }
    if let Some(plic) = cfg.plic {
        if plic.ndev == 0 || plic.ndev > PLIC_MAX_NDEV {
            return Err(FdtWriteError::BadPlic);
        }
        if let Some(uart) = cfg.uart {
            if uart.irq == 0 || uart.irq > plic.ndev {
                return Err(FdtWriteError::BadPlic);
            }
        }
        if cfg
            .virtio_mmio
            .iter()
            .any(|v| v.irq == 0 || v.irq > plic.ndev)
        {
            return Err(FdtWriteError::BadPlic);
        }
    }
    if cfg
        .virtio_mmio
        .iter()
        .any(|v| v.size == 0 || v.base.checked_add(v.size).is_err())
    {
        return Err(FdtWriteError::BadVirtioMmio);
    }

    // Phandles: the PLIC, the syscon, then each vCPU's cpu node and intc.
    const PLIC_PHANDLE: u32 = 1;
    const SYSCON_PHANDLE: u32 = 2;
    let cpu_phandle = |i: u32| 3 + 2 * i;
    let intc_phandle = |i: u32| 4 + 2 * i;

    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string_list(
        "compatible",
        vec![
            String::from("ferrovisor,riscv-virt"),
            String::from("riscv-virtio"),
        ],
    )?;
    fdt.property_string("model", "Ferrovisor RISC-V VM")?;

    // /chosen
    let chosen = fdt.begin_node("chosen")?;
    if let Some(args) = cfg.bootargs {
        fdt.property_string("bootargs", args)?;
    }
    if let (Stdout::Uart, Some(uart)) = (cfg.stdout, cfg.uart) {
        fdt.property_string("stdout-path", &uart_path(uart.base))?;
    }
    if let (Some(r), Some(end)) = (cfg.initrd, initrd_end) {
        fdt.property_u64("linux,initrd-start", r.start.raw())?;
        fdt.property_u64("linux,initrd-end", end.raw())?;
    }
    if let Some(seed) = cfg.rng_seed {
        fdt.property("rng-seed", seed)?;
    }
    fdt.end_node(chosen)?;

    // /aliases
    if let Some(uart) = cfg.uart {
        let aliases = fdt.begin_node("aliases")?;
        fdt.property_string("serial0", &uart_path(uart.base))?;
        fdt.end_node(aliases)?;
    }

    // /memory
    let mem = fdt.begin_node(&format!("memory@{:x}", cfg.memory.start.raw()))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &reg_prop(cfg.memory.start.raw(), cfg.memory.size))?;
    fdt.end_node(mem)?;

    // /cpus
    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", timebase)?;
    for i in 0..cfg.vcpus {
        let cpu = fdt.begin_node(&format!("cpu@{i:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_u32("reg", i)?;
        fdt.property_string("status", "okay")?;
        fdt.property_string("compatible", "riscv")?;
        fdt.property_string("riscv,isa", cfg.isa)?;
        if !cfg.isa_extensions.is_empty() {
            fdt.property_string("riscv,isa-base", &format!("{xlen}i"))?;
            fdt.property_string_list(
                "riscv,isa-extensions",
                cfg.isa_extensions
                    .iter()
                    .map(|&e| String::from(e))
                    .collect(),
            )?;
        }
        fdt.property_string("mmu-type", cfg.mmu_type.dt_name())?;
        if let Some(b) = cfg.cbom_block_size {
            fdt.property_u32("riscv,cbom-block-size", b)?;
        }
        if let Some(b) = cfg.cboz_block_size {
            fdt.property_u32("riscv,cboz-block-size", b)?;
        }
        fdt.property_phandle(cpu_phandle(i))?;
        let intc = fdt.begin_node("interrupt-controller")?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_string("compatible", "riscv,cpu-intc")?;
        fdt.property_phandle(intc_phandle(i))?;
        fdt.end_node(intc)?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(cpus)?;

    // /soc
    let soc = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    fdt.property_null("ranges")?;
    if let Some(syscon) = cfg.syscon {
        let node = fdt.begin_node(&format!("test@{:x}", syscon.base.raw()))?;
        fdt.property_string_list(
            "compatible",
            vec![
                String::from("sifive,test1"),
                String::from("sifive,test0"),
                String::from("syscon"),
            ],
        )?;
        fdt.property_array_u64("reg", &reg_prop(syscon.base.raw(), SYSCON_REG_SIZE))?;
        fdt.property_phandle(SYSCON_PHANDLE)?;
        fdt.end_node(node)?;
    }
    if let Some(uart) = cfg.uart {
        let node = fdt.begin_node(&format!("serial@{:x}", uart.base.raw()))?;
        fdt.property_string("compatible", "ns16550a")?;
        fdt.property_array_u64("reg", &reg_prop(uart.base.raw(), UART_REG_SIZE))?;
        fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
        if cfg.plic.is_some() {
            fdt.property_u32("interrupt-parent", PLIC_PHANDLE)?;
            fdt.property_u32("interrupts", uart.irq)?;
        }
        fdt.end_node(node)?;
    }
    for v in cfg.virtio_mmio {
        let node = fdt.begin_node(&format!("virtio_mmio@{:x}", v.base.raw()))?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.property_array_u64("reg", &reg_prop(v.base.raw(), v.size))?;
        if cfg.plic.is_some() {
            fdt.property_u32("interrupt-parent", PLIC_PHANDLE)?;
            fdt.property_u32("interrupts", v.irq)?;
        }
        fdt.end_node(node)?;
    }
    if let Some(plic) = cfg.plic {
        let node = fdt.begin_node(&format!("plic@{:x}", plic.base.raw()))?;
        fdt.property_string_list(
            "compatible",
            vec![
                String::from("sifive,plic-1.0.0"),
                String::from("riscv,plic0"),
            ],
        )?;
        fdt.property_array_u64(
            "reg",
            &reg_prop(plic.base.raw(), guest_plic_size(cfg.vcpus)),
        )?;
        fdt.property_u32("#address-cells", 0)?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_null("interrupt-controller")?;
        let mut ext = Vec::new();
        for i in 0..cfg.vcpus {
            ext.push(intc_phandle(i));
            ext.push(IRQ_S_EXT);
        }
        fdt.property_array_u32("interrupts-extended", &ext)?;
        fdt.property_u32("riscv,ndev", plic.ndev)?;
        fdt.property_phandle(PLIC_PHANDLE)?;
        fdt.end_node(node)?;
    }
    fdt.end_node(soc)?;

    if let Some(syscon) = cfg.syscon {
        for (name, compat, value) in [
            ("poweroff", "syscon-poweroff", syscon.poweroff_value),
            ("reboot", "syscon-reboot", syscon.reboot_value),
        ] {
            let node = fdt.begin_node(name)?;
            fdt.property_string("compatible", compat)?;
            fdt.property_u32("regmap", SYSCON_PHANDLE)?;
            fdt.property_u32("offset", 0)?;
            fdt.property_u32("value", value)?;
            fdt.end_node(node)?;
        }
    }

    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}
