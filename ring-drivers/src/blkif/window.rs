//! [`Window`]: a vbd's own part of a bigger disk (sectors `first..first + sectors`, seen as a
//! disk of its own), and [`slot`], how a toolstack cuts one disk into such parts, one per domU.
//!
//! A back end serving several domUs from one device must keep each inside its part: the back
//! end checks every request against [`Disk::sectors`] (the window's size), and the window checks
//! again before it moves a sector number onto the device, so no request of one domU reaches
//! another's sectors even if a check above it were wrong.

use super::{Disk, DiskError, DiskIo, SECTOR_SIZE};

/// Sectors a [`slot`] is aligned to (4 KiB, one granted frame).
pub const SLOT_ALIGN: u64 = 8;

/// Sectors `first..first + sectors` of `disk`, as a disk of `sectors` sectors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window<D> {
    disk: D,
    first: u64,
    sectors: u64,
}

impl<D: Disk> Window<D> {
    /// The window, or `None` if it does not lie inside `disk`.
    pub fn new(disk: D, first: u64, sectors: u64) -> Option<Window<D>> {
        let end = first.checked_add(sectors)?;
        (end <= disk.sectors()).then_some(Window {
            disk,
            first,
            sectors,
        })
    }

    /// Its first sector on the disk below.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The disk below.
    pub fn inner(&self) -> &D {
        &self.disk
    }

    /// Where `bytes` bytes at the window's `sector` are on the disk below, if they are whole
    /// sectors inside the window.
    fn place(&self, sector: u64, bytes: usize) -> Result<u64, DiskError> {
        if !bytes.is_multiple_of(SECTOR_SIZE) {
            return Err(DiskError::Io);
        }
        let count = (bytes / SECTOR_SIZE) as u64;
        match sector.checked_add(count) {
            Some(end) if end <= self.sectors => Ok(self.first + sector),
            _ => Err(DiskError::Io),
        }
    }
}

impl<D: Disk> Disk for Window<D> {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let at = self.place(sector, buf.len())?;
        self.disk.read(at, buf)
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), DiskError> {
        let at = self.place(sector, data.len())?;
        self.disk.write(at, data)
    }

    fn flush(&mut self) -> Result<(), DiskError> {
        self.disk.flush()
    }

    fn transfer(&mut self, ios: &mut [DiskIo<'_>]) {
        // Every transfer inside the window goes down in one batch, moved to its place; one
        // outside it fails alone (the back end never sends one: this is the second check).
        let mut inside = true;
        for io in ios.iter_mut() {
            io.result = self
                .place(io.sector, io.data.len())
                .map(|at| io.sector = at);
            inside &= io.result.is_ok();
        }
        // The moved sector numbers are the window's again for the caller.
        if inside {
            self.disk.transfer(ios);
            for io in ios.iter_mut() {
                io.sector -= self.first;
            }
        } else {
            for io in ios.iter_mut().filter(|io| io.result.is_ok()) {
                self.disk.transfer(core::slice::from_mut(io));
                io.sector -= self.first;
            }
        }
    }

    fn supports_dma(&self) -> bool {
        self.disk.supports_dma()
    }

    fn discard(&mut self, sector: u64, count: u64) -> Result<(), DiskError> {
        let bytes = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(SECTOR_SIZE))
            .ok_or(DiskError::Io)?;
        let at = self.place(sector, bytes)?;
        self.disk.discard(at, count)
    }

    fn read_only(&self) -> bool {
        self.disk.read_only()
    }

    fn supports_flush(&self) -> bool {
        self.disk.supports_flush()
    }

    fn supports_discard(&self) -> bool {
        self.disk.supports_discard()
    }
}

/// Slot `index` of a disk of `disk_sectors` cut into `slots` equal parts, as (first sector,
/// sectors): the whole disk for one slot, else parts aligned to [`SLOT_ALIGN`] (the rest at
/// the end is nobody's). `None` if `index` is not a slot or the parts would be empty.
pub fn slot(disk_sectors: u64, slots: u16, index: u16) -> Option<(u64, u64)> {
    if index >= slots {
        return None;
    }
    if slots == 1 {
        return (disk_sectors > 0).then_some((0, disk_sectors));
    }
    let len = disk_sectors / u64::from(slots) / SLOT_ALIGN * SLOT_ALIGN;
    (len > 0).then_some((u64::from(index) * len, len))
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use alloc::vec::Vec;

    use super::*;
    use crate::blkif::{IoData, RamDisk};

    /// A 64-sector disk where every byte of sector n is n.
    fn disk() -> RamDisk {
        let mut d = RamDisk::new(64, true);
        let bytes: Vec<u8> = (0..64 * SECTOR_SIZE)
            .map(|i| (i / SECTOR_SIZE) as u8)
            .collect();
        d.write(0, &bytes).unwrap();
        d
    }

    fn sector_of(d: &RamDisk, n: usize) -> &[u8] {
        &d.bytes()[n * SECTOR_SIZE..(n + 1) * SECTOR_SIZE]
    }

    #[test]
    fn a_window_is_its_own_disk_moved_to_its_first_sector() {
        let mut w = Window::new(disk(), 16, 8).unwrap();
        assert_eq!((w.sectors(), w.first()), (8, 16));
        let mut buf = vec![0u8; 2 * SECTOR_SIZE];
        w.read(0, &mut buf).unwrap();
        assert!(buf[..SECTOR_SIZE].iter().all(|&b| b == 16));
        assert!(buf[SECTOR_SIZE..].iter().all(|&b| b == 17));
        w.write(7, &[0xee; SECTOR_SIZE]).unwrap();
        assert!(sector_of(w.inner(), 23).iter().all(|&b| b == 0xee));
        assert!(sector_of(w.inner(), 24).iter().all(|&b| b == 24));
        w.discard(1, 2).unwrap();
        assert!(sector_of(w.inner(), 17).iter().all(|&b| b == 0));
        assert!(sector_of(w.inner(), 19).iter().all(|&b| b == 19));
    }

    #[test]
    fn nothing_outside_a_window_is_read_or_written() {
        let before = disk();
        let mut w = Window::new(disk(), 16, 8).unwrap();
        let mut buf = vec![0u8; 2 * SECTOR_SIZE];
        // Crossing the end, starting past it, overflowing, not whole sectors.
        for sector in [7, 8, 9, u64::MAX, u64::MAX - 1] {
            assert_eq!(
                w.read(sector, &mut buf),
                Err(DiskError::Io),
                "read at {sector}"
            );
            assert_eq!(
                w.write(sector, &buf),
                Err(DiskError::Io),
                "write at {sector}"
            );
        }
        assert_eq!(w.write(0, &buf[..100]), Err(DiskError::Io));
        assert_eq!(w.discard(4, 5), Err(DiskError::Io));
        assert_eq!(w.discard(0, u64::MAX), Err(DiskError::Io));
        assert_eq!(w.inner(), &before);
    }

    #[test]
    fn a_window_must_lie_inside_its_disk() {
        assert!(Window::new(disk(), 0, 64).is_some());
        assert!(Window::new(disk(), 60, 4).is_some());
        assert!(Window::new(disk(), 60, 5).is_none());
        assert!(Window::new(disk(), 65, 0).is_none());
        assert!(Window::new(disk(), u64::MAX, 2).is_none());
    }

    fn io(sector: u64, write: bool, data: &mut [u8]) -> DiskIo<'_> {
        DiskIo {
            sector,
            write,
            data: IoData::Buf(data),
            result: Err(DiskError::Unsupported),
        }
    }

    #[test]
    fn a_batch_goes_down_moved_and_one_outside_the_window_fails_alone() {
        let mut w = Window::new(disk(), 32, 16).unwrap();
        let (mut a, mut b, mut c) = (
            vec![0u8; SECTOR_SIZE],
            vec![0xaa; SECTOR_SIZE],
            vec![0u8; SECTOR_SIZE],
        );
        let mut ios = [io(3, false, &mut a), io(15, true, &mut b)];
        w.transfer(&mut ios);
        assert_eq!((ios[0].result, ios[1].result), (Ok(()), Ok(())));
        assert_eq!((ios[0].sector, ios[1].sector), (3, 15), "sectors restored");
        assert!(a.iter().all(|&x| x == 35));
        assert!(sector_of(w.inner(), 47).iter().all(|&x| x == 0xaa));
        let mut ios = [io(16, true, &mut b), io(0, false, &mut c)];
        w.transfer(&mut ios);
        assert_eq!(ios[0].result, Err(DiskError::Io));
        assert_eq!(ios[1].result, Ok(()));
        assert_eq!((ios[0].sector, ios[1].sector), (16, 0));
        assert!(c.iter().all(|&x| x == 32));
        assert!(
            sector_of(w.inner(), 48).iter().all(|&x| x == 48),
            "the next window's sector"
        );
    }

    /// A disk that records the DMA transfers it is given (sector, bytes).
    #[derive(Default)]
    struct DmaLog(Vec<(u64, usize)>);

    impl Disk for DmaLog {
        fn sectors(&self) -> u64 {
            64
        }
        fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), DiskError> {
            Err(DiskError::Unsupported)
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), DiskError> {
            Err(DiskError::Unsupported)
        }
        fn flush(&mut self) -> Result<(), DiskError> {
            Ok(())
        }
        fn transfer(&mut self, ios: &mut [DiskIo<'_>]) {
            for io in ios.iter_mut() {
                self.0.push((io.sector, io.data.len()));
                io.result = Ok(());
            }
        }
        fn supports_dma(&self) -> bool {
            true
        }
    }

    #[test]
    fn a_dma_transfer_is_measured_by_its_pieces_and_kept_inside() {
        use crate::blkif::DmaSeg;
        let mut w = Window::new(DmaLog::default(), 40, 16).unwrap();
        assert!(w.supports_dma());
        let piece = |len| DmaSeg {
            addr: 0x1000,
            host: 0,
            len,
        };
        let fits = [piece(4096), piece(2048)]; // 12 sectors
        let past = [piece(4096), piece(4096)]; // 16 sectors
        let dma = |sector, segs| DiskIo {
            sector,
            write: true,
            data: IoData::Dma(segs),
            result: Err(DiskError::Unsupported),
        };
        let mut ios = [dma(4, &fits[..]), dma(1, &past[..]), dma(0, &past[..])];
        w.transfer(&mut ios);
        assert_eq!(ios[0].result, Ok(()));
        assert_eq!(ios[1].result, Err(DiskError::Io), "sectors 1..17 of 16");
        assert_eq!(ios[2].result, Ok(()));
        assert_eq!(w.inner().0, [(44, 6144), (40, 8192)]);
    }

    #[test]
    fn slots_are_disjoint_aligned_and_inside_the_disk() {
        assert_eq!(slot(32768, 1, 0), Some((0, 32768)));
        assert_eq!(slot(1001, 1, 0), Some((0, 1001)));
        assert_eq!(slot(32768, 2, 1), Some((16384, 16384)));
        assert_eq!(slot(32768, 2, 2), None);
        assert_eq!(slot(0, 1, 0), None);
        assert_eq!(slot(15, 2, 0), None, "parts under one aligned unit");
        for (disk, slots) in [(2048u64, 64u16), (1001, 3), (16384, 7), (u64::MAX, 65535)] {
            let mut end = 0;
            for i in 0..slots {
                let (first, len) = slot(disk, slots, i).unwrap();
                assert!(first >= end && first % SLOT_ALIGN == 0 && len % SLOT_ALIGN == 0);
                end = first + len;
                assert!(end <= disk);
            }
        }
    }
}
