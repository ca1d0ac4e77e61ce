//! [`RamDisk`]: a [`Disk`] in memory, for tests and for a back end with no real device.

use alloc::vec;
use alloc::vec::Vec;

use super::{Disk, DiskError, SECTOR_SIZE};

/// A disk in memory: for tests, and for a back end with no real device behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RamDisk {
    data: Vec<u8>,
    discard: bool,
    flushes: u64,
}

impl RamDisk {
    /// A zeroed disk of `sectors` 512-byte sectors; `discard`: offer `feature-discard`
    /// (discarded sectors read back as zeros).
    pub fn new(sectors: u64, discard: bool) -> Self {
        RamDisk {
            data: vec![0; sectors as usize * SECTOR_SIZE],
            discard,
            flushes: 0,
        }
    }

    /// The disk's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Flushes served so far.
    pub fn flushes(&self) -> u64 {
        self.flushes
    }

    fn range(&self, sector: u64, len: usize) -> Result<core::ops::Range<usize>, DiskError> {
        let start = usize::try_from(sector)
            .ok()
            .and_then(|s| s.checked_mul(SECTOR_SIZE))
            .ok_or(DiskError::Io)?;
        let end = start.checked_add(len).ok_or(DiskError::Io)?;
        if end > self.data.len() || !len.is_multiple_of(SECTOR_SIZE) {
            return Err(DiskError::Io);
        }
        Ok(start..end)
    }
}

impl Disk for RamDisk {
    fn sectors(&self) -> u64 {
        (self.data.len() / SECTOR_SIZE) as u64
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let r = self.range(sector, buf.len())?;
        buf.copy_from_slice(&self.data[r]);
        Ok(())
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let r = self.range(sector, data.len())?;
        self.data[r].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.flushes += 1;
        Ok(())
    }

    fn discard(&mut self, sector: u64, count: u64) -> Result<(), DiskError> {
        if !self.discard {
            return Err(DiskError::Unsupported);
        }
        let len = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(SECTOR_SIZE))
            .ok_or(DiskError::Io)?;
        let r = self.range(sector, len)?;
        self.data[r].fill(0);
        Ok(())
    }

    fn supports_discard(&self) -> bool {
        self.discard
    }
}
