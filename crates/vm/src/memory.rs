//! How the core and device models reach guest RAM.
//!
//! The hypervisor implements [`GuestMemory`] over the VM's G-stage mapping; tests
//! implement it over a `Vec`. Every access names guest-physical addresses and is
//! checked against the VM's own RAM, so a guest can never make the hypervisor read
//! or write anything outside that VM.

use fv_addr::GuestPhysAddr;

/// A guest memory access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// Some byte of the span is not guest RAM of this VM.
    NotRam,
    /// The span wraps around the address space.
    Overflow,
}

/// Byte access to one VM's guest-physical RAM.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes starting at `gpa` into `buf`.
    fn read(&mut self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemoryError>;
    /// Copies `data` into guest RAM starting at `gpa`.
    fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError>;
}

/// A `Vec`-backed guest RAM for tests and host-side tools.
#[derive(Debug, Clone)]
pub struct VecMemory {
    base: GuestPhysAddr,
    bytes: alloc::vec::Vec<u8>,
}

impl VecMemory {
    /// `size` zeroed bytes of RAM at `base`.
    pub fn new(base: GuestPhysAddr, size: usize) -> Self {
        Self {
            base,
            bytes: alloc::vec![0; size],
        }
    }

    fn span(
        &self,
        gpa: GuestPhysAddr,
        len: usize,
    ) -> Result<core::ops::Range<usize>, GuestMemoryError> {
        let off = gpa
            .offset_from(self.base)
            .map_err(|_| GuestMemoryError::NotRam)?;
        let off = usize::try_from(off).map_err(|_| GuestMemoryError::NotRam)?;
        let end = off.checked_add(len).ok_or(GuestMemoryError::Overflow)?;
        if end > self.bytes.len() {
            return Err(GuestMemoryError::NotRam);
        }
        Ok(off..end)
    }
}

impl GuestMemory for VecMemory {
    fn read(&mut self, gpa: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let r = self.span(gpa, buf.len())?;
        buf.copy_from_slice(self.bytes.get(r).ok_or(GuestMemoryError::NotRam)?);
        Ok(())
    }

    fn write(&mut self, gpa: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemoryError> {
        let r = self.span(gpa, data.len())?;
        self.bytes
            .get_mut(r)
            .ok_or(GuestMemoryError::NotRam)?
            .copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_memory_bounds() {
        let mut m = VecMemory::new(GuestPhysAddr::new(0x8000_0000), 0x1000);
        m.write(GuestPhysAddr::new(0x8000_0ffc), &[1, 2, 3, 4])
            .unwrap();
        let mut b = [0u8; 4];
        m.read(GuestPhysAddr::new(0x8000_0ffc), &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(
            m.write(GuestPhysAddr::new(0x8000_0ffd), &[1, 2, 3, 4]),
            Err(GuestMemoryError::NotRam)
        );
        assert_eq!(
            m.read(GuestPhysAddr::new(0x7fff_ffff), &mut b),
            Err(GuestMemoryError::NotRam)
        );
        assert_eq!(
            m.read(GuestPhysAddr::new(u64::MAX), &mut b),
            Err(GuestMemoryError::NotRam)
        );
    }
}
