//! VMs' console output and the machine's console input, between the exit
//! handlers and `console` (which decides what reaches the terminal).

use crate::sched::host;
use crate::vm::Vm;
use fv_arch_riscv64::csr;

/// A VM's console output (UART transmit, SBI DBCN, legacy putchar): kept raw
/// in its history (`vm log`), and handed to the console, which queues it as
/// whole lines. Costs O(`bytes.len()`) plus one bounded burst to the UART.
pub fn console_bytes(vm: &Vm, history: &mut fv_mgmt::Ring, bytes: &[u8]) {
    history.push(bytes);
    crate::ctrl::console_output(vm.id, bytes);
    crate::console::guest_output(vm.id, &vm.name, bytes, csr::time());
}

/// How much console output of `vm` can be taken now without dropping any
/// (what its virtio-console hands over at a time).
pub fn output_room(vm: &Vm) -> usize {
    crate::console::guest_output_room(vm.id, &vm.name)
}

/// Queues a VM's unfinished console line (a prompt, an echo) now: the VM
/// waits (WFI).
pub fn flush_line(vm: &Vm) {
    crate::console::flush_vm(vm.id);
}

/// Writes all of a VM's console output now (it stops: its last lines come
/// before the hypervisor's line about it).
pub fn finish_output(vm: &Vm) {
    crate::console::drain_vm(vm.id);
}

/// Queues unfinished console lines that have waited more than 250 ms and
/// writes a burst of pending output (called on the boot hart's loop). Long
/// enough that a VM preempted in the middle of a line (8 VMs on 2 harts wait
/// 15 ms and more between slices) finishes it first; a VM that waits for
/// input has its prompt printed at once (WFI).
pub fn flush_stale_lines(now: u64) {
    crate::console::flush_stale(now, host().timebase / 4);
}

/// Reads console input (polled on the boot hart) and hands it to the
/// management layer (`crate::mgmt::input_byte`): guest input, shell, escapes.
pub fn service_console() {
    while let Some(b) = crate::console::poll_input() {
        crate::mgmt::input_byte(b);
    }
}
