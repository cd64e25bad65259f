//! virtio-rng, the entropy device (§5.4): one queue (`requestq`); the
//! device fills each buffer's device-writable part with random bytes. No
//! feature bits, no configuration space.

use fv_vm::GuestMemory;

use crate::buffer::Buffer;
use crate::device::{DeviceError, Handled, VirtioDevice};
use crate::device_id;

/// Where the device gets its random bytes.
pub trait EntropySource: Send + 'static {
    /// Fills the start of `buf` with random bytes; returns how many (0: none
    /// available now).
    fn fill(&mut self, buf: &mut [u8]) -> usize;
}

/// Index of `requestq`.
pub const REQUESTQ: u16 = 0;

/// Most bytes given for one request: the device may write less than the
/// buffer (§5.4.6.1), and this bounds the time one chain takes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// Queue size offered.
pub const QUEUE_SIZE: u16 = 64;

/// The virtio-rng device model.
#[derive(Debug)]
pub struct Rng<E> {
    source: E,
}

impl<E: EntropySource> Rng<E> {
    /// An entropy device fed by `source`.
    pub fn new(source: E) -> Self {
        Self { source }
    }
}

impl<E: EntropySource> VirtioDevice for Rng<E> {
    fn device_id(&self) -> u32 {
        device_id::ENTROPY
    }

    fn num_queues(&self) -> u16 {
        1
    }

    fn queue_max_size(&self, _queue: u16) -> u16 {
        QUEUE_SIZE
    }

    fn handle(
        &mut self,
        queue: u16,
        buffer: &Buffer,
        mem: &mut dyn GuestMemory,
    ) -> Result<Handled, DeviceError> {
        if queue != REQUESTQ {
            return Err(DeviceError::BadQueue);
        }
        let mut w = buffer.writer();
        if w.remaining() == 0 {
            return Err(DeviceError::NoWritable);
        }
        let mut chunk = [0u8; 256];
        while w.remaining() > 0 && (w.written() as usize) < MAX_REQUEST {
            let want = usize::try_from(w.remaining())
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            let Some(dst) = chunk.get_mut(..want) else {
                break;
            };
            let got = self.source.fill(dst).min(want);
            if got == 0 {
                break;
            }
            w.write_all(mem, chunk.get(..got).unwrap_or(&[]))?;
        }
        if w.written() == 0 {
            return Ok(Handled::Later);
        }
        Ok(Handled::Used(w.written()))
    }
}
