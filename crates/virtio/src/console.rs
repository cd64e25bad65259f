//! virtio-console (§5.3) with a single port and no `VIRTIO_CONSOLE_F_MULTIPORT`:
//! queue 0 is `receiveq` (port 0, device to driver), queue 1 is `transmitq`
//! (port 0, driver to device). No feature bits are offered; the configuration
//! space (`cols`, `rows`, `max_nr_ports`, `emerg_wr`) reads as zeros, its
//! fields being valid only with features this device does not offer.
//!
//! # Bounded output
//!
//! A transmit chain may name up to 4 GiB of guest RAM. The device reads only
//! as much of it as the [`ConsoleOutput`] has [`room`](ConsoleOutput::room)
//! for: a chain that does not fit while the sink still holds earlier output is
//! left available ([`Handled::Later`]) until the owner has drained the sink and
//! notified [`TRANSMITQ`] again; what does not fit into an empty sink is
//! dropped and counted ([`Console::dropped`]). So one call of the transport's
//! `process` copies at most one sink's worth of bytes per chain, whatever the
//! guest put in its descriptors.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use fv_vm::GuestMemory;

use crate::buffer::Buffer;
use crate::device::{DeviceError, Handled, VirtioDevice};
use crate::device_id;

/// Feature bit: configuration `cols` and `rows` are valid.
pub const VIRTIO_CONSOLE_F_SIZE: u32 = 0;
/// Feature bit: multiple ports and control virtqueues.
pub const VIRTIO_CONSOLE_F_MULTIPORT: u32 = 1;
/// Feature bit: emergency write (`emerg_wr`) is supported.
pub const VIRTIO_CONSOLE_F_EMERG_WRITE: u32 = 2;

/// Index of `receiveq` (port 0).
pub const RECEIVEQ: u16 = 0;
/// Index of `transmitq` (port 0).
pub const TRANSMITQ: u16 = 1;

/// Size of `struct virtio_console_config` (le16 cols, le16 rows, le32
/// max_nr_ports, le32 emerg_wr).
pub const CONFIG_LEN: u32 = 12;

/// Queue size offered for both queues.
pub const QUEUE_SIZE: u16 = 64;

/// Where transmitted bytes go (the hypervisor's console multiplexer).
pub trait ConsoleOutput: Send + 'static {
    /// The guest sent `bytes` (never more than [`room`](Self::room) said).
    fn write(&mut self, bytes: &[u8]);

    /// How many more bytes [`write`](Self::write) takes now. The default takes
    /// everything.
    fn room(&self) -> usize {
        usize::MAX
    }

    /// Whether the sink holds no output not yet passed on. The default passes
    /// everything on at once.
    fn is_empty(&self) -> bool {
        true
    }
}

impl ConsoleOutput for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// The virtio-console device model.
#[derive(Debug)]
pub struct Console<O> {
    output: O,
    input: VecDeque<u8>,
    input_cap: usize,
    dropped: u64,
}

impl<O: ConsoleOutput> Console<O> {
    /// A console sending guest output to `output`, holding at most
    /// `input_capacity` bytes of host input not yet delivered.
    pub fn new(output: O, input_capacity: usize) -> Self {
        Self {
            output,
            input: VecDeque::new(),
            input_cap: input_capacity,
            dropped: 0,
        }
    }

    /// The output sink.
    pub fn output(&self) -> &O {
        &self.output
    }

    /// The output sink, mutably (to drain it).
    pub fn output_mut(&mut self) -> &mut O {
        &mut self.output
    }

    /// Queues host input for the guest; returns how many bytes were taken
    /// (fewer when the input buffer is full: the host keeps the rest). Follow
    /// with a notification of [`RECEIVEQ`] on the transport.
    pub fn push_input(&mut self, bytes: &[u8]) -> usize {
        let n = bytes
            .len()
            .min(self.input_cap.saturating_sub(self.input.len()));
        self.input.extend(bytes.iter().take(n));
        n
    }

    /// Bytes of host input not yet delivered.
    pub fn pending_input(&self) -> usize {
        self.input.len()
    }

    /// Forgets the host input not yet delivered (VM reset; a device reset by
    /// the driver keeps it).
    pub fn clear_input(&mut self) {
        self.input.clear();
    }

    /// Transmitted bytes dropped because a chain was larger than the whole
    /// sink (see the module docs).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

impl<O: ConsoleOutput> VirtioDevice for Console<O> {
    fn device_id(&self) -> u32 {
        device_id::CONSOLE
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        QUEUE_SIZE
    }

    fn config_len(&self) -> u32 {
        CONFIG_LEN
    }

    fn handle(
        &mut self,
        queue: u16,
        buffer: &Buffer,
        mem: &mut dyn GuestMemory,
    ) -> Result<Handled, DeviceError> {
        match queue {
            TRANSMITQ => {
                let len = usize::try_from(buffer.readable_len()).unwrap_or(usize::MAX);
                let room = self.output.room();
                if len > room && !self.output.is_empty() {
                    // Drained first, then this chain again (module docs).
                    return Ok(Handled::Later);
                }
                let mut left = len.min(room);
                self.dropped = self
                    .dropped
                    .saturating_add(u64::try_from(len - left).unwrap_or(u64::MAX));
                let mut r = buffer.reader();
                let mut chunk = [0u8; 256];
                while left > 0 {
                    let want = left.min(chunk.len());
                    let n = r.read(mem, chunk.get_mut(..want).unwrap_or(&mut []))?;
                    if n == 0 {
                        break;
                    }
                    self.output.write(chunk.get(..n).unwrap_or(&[]));
                    left -= n;
                }
                Ok(Handled::Used(0))
            }
            RECEIVEQ => {
                if self.input.is_empty() {
                    return Ok(Handled::Later);
                }
                let mut w = buffer.writer();
                if w.remaining() == 0 {
                    return Err(DeviceError::NoWritable);
                }
                let (a, b) = self.input.as_slices();
                let mut n = w.write(mem, a)?;
                if n == a.len() {
                    n += w.write(mem, b)?;
                }
                self.input.drain(..n.min(self.input.len()));
                Ok(Handled::Used(w.written()))
            }
            _ => Err(DeviceError::BadQueue),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_match_spec() {
        assert_eq!(VIRTIO_CONSOLE_F_SIZE, 0);
        assert_eq!(VIRTIO_CONSOLE_F_MULTIPORT, 1);
        assert_eq!(VIRTIO_CONSOLE_F_EMERG_WRITE, 2);
        assert_eq!((RECEIVEQ, TRANSMITQ), (0, 1));
        assert_eq!(CONFIG_LEN, 12);
    }
}
